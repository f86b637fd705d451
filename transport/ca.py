"""The asyncio side of the CA: issuance waits for the logs' SCTs; stoq/1 ``ca`` and HTTP routes.

An issuance is :meth:`CertificateAuthority.prepare` (policy, limits, serial,
precertificate), then the precertificate goes to every log of this node that
accepts its expiry (at least two, concurrently; each answers once the entry
is sequenced and covered by a signed head), then
:meth:`CertificateAuthority.complete` (SCTs verified and embedded, final
certificate stored with its audit record).
"""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.serialization import Encoding
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from transport.ct import LogRunner
from transport.group_commit import GroupCommit
from transport.problem import problem
from transport.workers import InlineWork, Work, WorkerStopped
from trustchain.ca import revocation
from trustchain.ca.authority import CaError, CertificateAuthority
from trustchain.ca.issuance import IssuanceError
from trustchain.ca.lint import LintError
from trustchain.ca.policy import MAX_CSR_BYTES, NotAuthorised, PolicyError
from trustchain.ca.ratelimit import RateLimited
from trustchain.ca.work import check_request, final_certificate, precertificate
from trustchain.canonical import canonical_json
from trustchain.ct.log import BadSubmission
from trustchain.errors import StorageError
from trustchain.identity import Peer, Role
from trustchain.stoq.router import (
    BadRequest,
    Forbidden,
    Router,
    TooManyRequests,
    Unavailable,
    parse_message,
)

MAX_OCSP_REQUEST_BYTES = 16 * 1024


class IssueRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    csr: str = Field(max_length=MAX_CSR_BYTES)
    network: str | None = Field(default=None, max_length=63)
    profile: str | None = Field(default=None, max_length=32)


class RevokeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    serial: str = Field(pattern=r"^[0-9a-fA-F]{1,40}$")
    reason: str = Field(default="unspecified", max_length=32)


class NetworkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    network: str | None = Field(default=None, max_length=63)


def pem_chain(certificates: list[bytes]) -> str:
    """DER certificates as one PEM text, in order."""
    return "".join(ssl.DER_cert_to_PEM_cert(der) for der in certificates)


@dataclass(frozen=True)
class IssuedChain:
    serial: int
    chain: list[bytes]  # DER: the certificate, then its issuer

    def answer(self) -> dict[str, str]:
        """The JSON answer of ``ca.issue`` and ``POST /ca/v1/issue``."""
        return {"serial": f"{self.serial:x}", "chain": pem_chain(self.chain)}


class CaRunner:
    def __init__(self, authority: CertificateAuthority, logs: LogRunner,
                 clock: Callable[[], datetime], work: Work | None = None) -> None:
        self.authority = authority
        self.logs = logs
        self._clock = clock
        #: Where the CSR checks and signatures run (worker processes, or inline).
        self.work: Work = work if work is not None else InlineWork(authority.signer)
        self._commits = GroupCommit(authority.store.db)

    async def issue(self, csr: bytes, *, network: str | None, profile: str | None,
                    peer: Peer | None, client_address: str | None = None) -> IssuedChain:
        """The final certificate and its issuer.

        Its two writes (limits + serial reservation, then certificate + audit
        record) each share a durable commit with the concurrent requests'
        (:class:`GroupCommit`); the precertificate is signed only once its
        serial is reserved, and logged only after that commit.  The CSR
        check and the signatures run in :attr:`work`.

        :raises PolicyError, RateLimited, CaError: refused, with the reason.
        """
        ca = self.authority
        order = ca.order(csr, network=network, profile=profile, peer=peer,
                         client_address=client_address, now=self._clock())
        names = await self.work.run(check_request, csr, order.info.zone, order.info.prefixes,
                                    order.profile.name)
        pending = ca.pending(order, names, self._clock())
        chosen = [lg for lg in self.logs.logs.values() if pending.not_after in lg.expiry]
        if len(chosen) < 2:
            raise CaError(f"fewer than two logs of this node accept certificates expiring "
                          f"{pending.not_after.isoformat()} (see ct_logs)")

        def admit(conn: sqlite3.Connection) -> Exception | None:
            now = self._clock()
            try:
                ca.admit(conn, pending, now)
            except RateLimited as exc:
                ca.refused(conn, pending, exc, now)
                return exc
            return None

        refusal = await self._commits.run(admit)
        if refusal is not None:
            raise refusal
        try:
            pre = await self.work.sign(precertificate, pending.layout, ca.lint)
        except LintError as exc:
            lint_refusal = exc
            await self._commits.run(lambda conn: ca.release(conn, pending, lint_refusal,
                                                            self._clock()))
            raise CaError(str(exc)) from None
        chain = [base64.b64encode(der).decode() for der in (pre, pending.layout.issuer)]
        try:
            scts = await asyncio.gather(*(self.logs.submit(lg.name, chain, precert=True)
                                          for lg in chosen))
        except BadSubmission as exc:
            raise CaError(f"a log refused the precertificate: {exc}") from None
        final = await self.work.sign(final_certificate, pending.layout, pre, [
            (sct.to_bytes(), self.logs.public_key_der(lg.name))
            for sct, lg in zip(scts, chosen, strict=True)])
        await self._commits.run(lambda conn: ca.record(
            conn, pending, final, [sct.log_id for sct in scts], self._clock()))
        return IssuedChain(pending.serial, [final, pending.layout.issuer])

    # --- stoq/1 -------------------------------------------------------------------

    def register(self, router: Router) -> None:
        router.register("ca", "issue", self._issue)
        router.register("ca", "revoke", self._revoke)
        router.register("ca", "rotate", self._rotate)
        router.register("ca", "list", self._list)
        router.register("ca", "ocsp", self._ocsp)

    async def _issue(self, message: bytes, peer: Peer | None) -> bytes:
        req = parse_message(IssueRequest, message)
        try:
            chain = await self.issue(req.csr.encode(), network=req.network, profile=req.profile,
                                     peer=peer)
        except RateLimited as exc:
            raise TooManyRequests(str(exc)) from None
        except NotAuthorised as exc:
            raise Forbidden(str(exc)) from None
        except (PolicyError, CaError, IssuanceError, StorageError) as exc:
            raise BadRequest(str(exc)) from None
        except WorkerStopped as exc:
            raise Unavailable(f"{exc}; retry") from None
        return canonical_json(chain.answer())

    def _network_of(self, peer: Peer | None) -> str | None:
        """The one network a network credential may act for (None: this network's admin,
        who acts for all).

        :raises Forbidden: the credential is not (or no longer) good.
        """
        assert peer is not None
        if peer.role is not Role.NETWORK:
            return None
        try:
            self.authority.authorise(peer, peer.name, self._clock())
        except NotAuthorised as exc:
            raise Forbidden(str(exc)) from None
        return peer.name

    def _revoke(self, message: bytes, peer: Peer | None) -> bytes:
        req = parse_message(RevokeRequest, message)
        assert peer is not None
        network = self._network_of(peer)
        try:
            reason = revocation.RevocationReason.parse(req.reason)
            self.authority.revoke(int(req.serial, 16), reason,
                                  actor=f"{peer.role.value}:{peer.name}", now=self._clock(),
                                  network=network)
        except (ValueError, CaError, StorageError) as exc:
            raise BadRequest(str(exc)) from None
        return canonical_json({"serial": req.serial.lower(), "reason": reason.value})

    def _rotate(self, message: bytes, peer: Peer | None) -> bytes:
        req = parse_message(NetworkRequest, message)
        assert peer is not None
        if not req.network:
            raise BadRequest("name the network to rotate")
        try:
            issued = self.authority.rotate(req.network, self._clock(),
                                           actor=f"{peer.role.value}:{peer.name}")
        except CaError as exc:
            raise BadRequest(str(exc)) from None
        return canonical_json({"network": issued.network, "generation": issued.generation,
                               "key_id": issued.key_id,
                               "not_after": issued.certificate.not_valid_after_utc.isoformat()})

    def _list(self, message: bytes, peer: Peer | None) -> bytes:
        req = parse_message(NetworkRequest, message)
        own = self._network_of(peer)
        if own is not None and req.network not in (None, own):
            raise Forbidden(f"the credential of network {own} lists that network's "
                            "certificates only")
        rows = [{"serial": f"{r.serial:x}", "network": r.network, "profile": r.profile,
                 "names": ",".join(r.names), "not_after": r.not_after.isoformat(),
                 "state": "revoked" if r.revoked_at else r.state}
                for r in self.authority.store.certificates(own or req.network)]
        return canonical_json(rows)

    def _ocsp(self, message: bytes, peer: Peer | None) -> bytes:
        """RFC 6960 over stoq/1: the DER OCSPRequest in, the DER OCSPResponse out."""
        oversize = len(message) > MAX_OCSP_REQUEST_BYTES
        return self.authority.ocsp(b"" if oversize else message, self._clock())

    # --- HTTP ---------------------------------------------------------------------

    def routes(self) -> list[Route]:
        """CRLs, issuer certificates and OCSP (RFC 6960 appendix A: GET and POST)."""

        async def crl(request: Request) -> Response:
            try:
                der = self.authority.crl(request.path_params["key_id"], self._clock(),
                                         request.path_params["shard"])
            except CaError:
                return Response(status_code=404)
            return Response(der, media_type="application/pkix-crl",
                            headers={"cache-control": "public, max-age=3600"})

        async def issuer(request: Request) -> Response:
            key_id = request.path_params["key_id"]
            if key_id == self.authority.root_key_id_or_none():
                cert = self.authority.root
            else:
                record = self.authority.store.issuer(key_id)
                if record is None:
                    return Response(status_code=404)
                cert = record.certificate
            return Response(cert.public_bytes(Encoding.DER), media_type="application/pkix-cert",
                            headers={"cache-control": "public, max-age=86400"})

        def answer(der: bytes) -> Response:
            return Response(der, media_type="application/ocsp-response")

        async def ocsp_post(request: Request) -> Response:
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_OCSP_REQUEST_BYTES:
                    return answer(revocation.unsuccessful_ocsp_response(
                        revocation.ocsp.OCSPResponseStatus.MALFORMED_REQUEST))
            return answer(self.authority.ocsp(bytes(body), self._clock()))

        async def ocsp_get(request: Request) -> Response:
            try:
                der = revocation.ocsp_request_from_get_path(request.path_params["request"])
            except ValueError:
                der = b""
            return answer(self.authority.ocsp(der, self._clock()))

        async def revoke(request: Request) -> Response:
            """Revocation by proof of the certificate's private key (no account, no TLS identity)."""
            raw = bytearray()
            async for chunk in request.stream():
                raw += chunk
                if len(raw) > 64 * 1024:
                    return problem(400, "bad request", "the body is too large")
            try:
                body = json.loads(raw)
                certificate = base64.b64decode(body["certificate"], validate=True)
                signature = base64.b64decode(body["signature"], validate=True)
                reason = revocation.RevocationReason.parse(str(body.get("reason", "unspecified")))
            except (ValueError, KeyError, TypeError) as exc:
                return problem(400, "bad request", '{"certificate": base64 DER, "reason": R, '
                               f'"signature": base64}}: {exc}')
            try:
                serial = self.authority.revoke_by_key(certificate, reason, signature,
                                                      self._clock())
            except (CaError, StorageError) as exc:
                return problem(400, "revocation refused", str(exc))
            return JSONResponse({"serial": f"{serial:x}", "reason": reason.value})

        async def issue(request: Request) -> Response:
            """``ca.issue`` over REST, over HTTPS or HTTP/3 with a client certificate (the
            identity that policy authorises); plain HTTP has none."""
            peer = request.scope.get("extensions", {}).get("trustchain.peer")
            if not isinstance(peer, Peer):
                return problem(403, "forbidden", "certificate requests need a client "
                               "certificate of this network: HTTPS, HTTP/3 or stoq/1")
            raw = bytearray()
            async for chunk in request.stream():
                raw += chunk
                if len(raw) > 2 * MAX_CSR_BYTES:
                    return problem(400, "bad request", "the body is too large")
            try:
                req = IssueRequest.model_validate_json(bytes(raw))
            except ValueError as exc:
                return problem(400, "bad request", f'{{"csr": PEM, "network": N, "profile": P}}: '
                               f"{exc}")
            try:
                chain = await self.issue(req.csr.encode(), network=req.network,
                                         profile=req.profile, peer=peer, client_address=None)
            except RateLimited as exc:
                return problem(429, "too many requests", str(exc))
            except NotAuthorised as exc:
                return problem(403, "forbidden", str(exc))
            except (PolicyError, CaError, IssuanceError, StorageError) as exc:
                return problem(400, "certificate refused", str(exc))
            except WorkerStopped as exc:
                return problem(503, "unavailable", f"{exc}; retry")
            return JSONResponse(chain.answer(), status_code=201)

        return [
            Route("/ca/v1/issue", issue, methods=["POST"]),
            Route("/ca/revoke", revoke, methods=["POST"]),
            Route("/ca/crl/{key_id:str}/{shard:int}.crl", crl, methods=["GET"]),
            Route("/ca/issuers/{key_id:str}.der", issuer, methods=["GET"]),
            Route("/ocsp", ocsp_post, methods=["POST"]),
            Route("/ocsp/{request:path}", ocsp_get, methods=["GET"]),
        ]
