"""The CA's methods: stoq/1 ``ca`` and the HTTP routes (issuance, revocation, CRLs,
issuer certificates, OCSP), in one table.

Issuance is one method on both transports: stoq/1 ``ca.issue`` and REST
``POST /ca/v1/issue`` (HTTPS or HTTP/3 with a client certificate; plain
HTTP has none, so policy refuses it).
"""

from __future__ import annotations

import base64
import logging
import ssl
from datetime import timedelta
from typing import Any, Protocol

from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from pydantic import BaseModel, ConfigDict, Field

from bootstrap.init import ROOT_KEY_PURPOSE
from bootstrap.transport_certs import node_dns_names
from transport.ca import CaRunner, new_serial
from transport.methods import Call, Method, Reply, Service
from trustchain.ca import revocation
from trustchain.ca.authority import CertificateAuthority, NetworkInfo
from trustchain.ca.lint import require_pkilint
from trustchain.ca.policy import MAX_CSR_BYTES
from trustchain.ca.ratelimit import DEFAULT_LIMITS, Limit
from trustchain.ca.signer import Signer
from trustchain.config import NodeConfig
from trustchain.errors import BadRequest, Forbidden, NotFound
from trustchain.identity import Peer, Role
from trustchain.storage.audit import AuditLog
from trustchain.storage.ca import SqliteCaStore
from trustchain.storage.dns import SqliteZoneStore
from trustchain.storage.ratelimit import RateLimiter
from trustchain.wiring.keys import KeystoreCaKeys
from trustchain.wiring.node import OpenNode, utcnow

log = logging.getLogger("trustchain.ca")

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


class RevokeByKey(BaseModel):
    """Revocation by proof of the certificate's private key (no account, no TLS identity)."""

    model_config = ConfigDict(extra="ignore")
    certificate: str = Field(max_length=64 * 1024)
    signature: str = Field(max_length=4096)
    reason: str = Field(default="unspecified", max_length=32)


class NetworkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    network: str | None = Field(default=None, max_length=63)


def pem_chain(certificates: list[bytes]) -> str:
    """DER certificates as one PEM text, in order."""
    return "".join(ssl.DER_cert_to_PEM_cert(der) for der in certificates)


def ca_base_url(node: OpenNode) -> str:
    """``ca_url``, or this node's own name in its zone with its HTTP port."""
    if node.config.ca_url:
        return node.config.ca_url
    host = node_dns_names(node.identity.origin, node.identity.node_id)[1]
    port = node.config.http_port
    return f"http://{host}" if port in (80, 0) else f"http://{host}:{port}"


def rate_limits(config: NodeConfig) -> dict[str, Limit]:
    """The default limits with the operator's ``ca_rate_limits`` over them."""
    limits = dict(DEFAULT_LIMITS)
    for name, override in config.ca_rate_limits.items():
        limits[name] = Limit(name, override.count, timedelta(seconds=override.period_seconds),
                             override.burst, what=DEFAULT_LIMITS[name].what)
    return limits


def ca_limiter(node: OpenNode) -> RateLimiter:
    """The CA's rate limits, persisted in the node's database."""
    return RateLimiter(node.db, rate_limits(node.config))


def build_ca(node: OpenNode, limiter: RateLimiter) -> CertificateAuthority:
    """The node's CA: its stores, the signing layer over the key store, limits and audit log.

    :raises LocalError: ``ca_lint = true`` but pkilint is not installed.
    """
    if node.config.ca_lint:
        require_pkilint()
    zones = SqliteZoneStore(node.db)

    def networks() -> dict[str, NetworkInfo]:
        return {row["name"]: NetworkInfo(row["zone"], tuple(row["prefixes"]))
                for row in zones.networks()}

    def network(name: str) -> NetworkInfo | None:
        row = zones.network(name)
        return NetworkInfo(row["zone"], tuple(row["prefixes"])) if row is not None else None

    return CertificateAuthority(
        keys=KeystoreCaKeys(node.keystore), signer=Signer(node.keystore),
        store=SqliteCaStore(node.db),
        audit=AuditLog(node.db), limiter=limiter,
        root=node.genesis.root_certificate, root_key_purpose=ROOT_KEY_PURPOSE,
        own_network=node.identity.network_name, organisation=node.identity.network_name,
        base_url=ca_base_url(node), networks=networks, network=network, lint=node.config.ca_lint,
        crl_shards=node.config.ca_crl_shards,
    )


def reconcile_at_start(authority: CertificateAuthority) -> list[int]:
    """Settle the issuances the last run left unfinished, before any listener opens (so no
    request of this run can be among them); say so in the log."""
    serials = authority.reconcile(utcnow())
    if serials:
        log.warning("CA: %d issuance(s) cut short by the last stop: serial(s) %s marked "
                    "abandoned (still revocable; audit kind cert.reconcile)", len(serials),
                    ", ".join(f"{s:x}" for s in serials[:10])
                    + (", ..." if len(serials) > 10 else ""))
    return serials


class FederationRevocations(Protocol):
    """Revocation of a certificate another node issued (:mod:`trustchain.wiring.federation_ca`)."""

    async def revoke(self, serial: int, reason: revocation.RevocationReason
                     ) -> dict[str, Any]: ...
    def announce(self, serial: int, reason: revocation.RevocationReason) -> None: ...
    async def relay_ocsp(self, request: bytes) -> bytes | None:
        """The issuing node's answer for another node's intermediate (None: not one)."""
        ...

    def others_issue(self) -> bool:
        """Whether another node operates an intermediate (may have issued a serial)."""
        ...


def _unauthorized(answer: bytes) -> bool:
    return ocsp.load_der_ocsp_response(answer).response_status is \
        ocsp.OCSPResponseStatus.UNAUTHORIZED


def ca_service(runner: CaRunner, federation: FederationRevocations | None = None) -> Service:
    """The CA's methods; with ``federation``, a serial this node did not issue is revoked
    through the consensus (its issuer applies it), and one it did is also made known."""
    authority = runner.authority

    def actor(peer: Peer | None) -> str:
        assert peer is not None  # the permission table admits identified callers only
        return f"{peer.role.value}:{peer.name}"

    def network_of(peer: Peer | None) -> str | None:
        """The one network a network credential may act for (None: this network's admin,
        who acts for all).

        :raises Forbidden: the credential is not (or no longer) good.
        """
        if peer is None:
            raise Forbidden("certificate requests need a client certificate of this "
                            "network: HTTPS, HTTP/3 or stoq/1")
        if peer.role is not Role.NETWORK:
            return None
        authority.authorise(peer, peer.name, runner.now())
        return peer.name

    async def issue(call: Call) -> dict[str, Any]:
        if call.peer is None:
            raise Forbidden("certificate requests need a client certificate of this network: "
                            "HTTPS, HTTP/3 or stoq/1")
        req = call.parse(IssueRequest)
        chain = await runner.issue(req.csr.encode(), network=req.network,
                                   profile=req.profile, peer=call.peer, client_address=None)
        return {"serial": f"{chain.serial:x}", "chain": pem_chain(chain.chain),
                "logs": list(chain.logs)}

    async def revoke(call: Call) -> dict[str, Any]:
        req = call.parse(RevokeRequest)
        network = network_of(call.peer)
        try:
            reason = revocation.RevocationReason.parse(req.reason)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        serial = int(req.serial, 16)
        if federation is not None and network is None and federation.others_issue() and \
                authority.store.certificate(serial) is None:
            return await federation.revoke(serial, reason)  # issued at another node
        authority.revoke(serial, reason, actor=actor(call.peer), now=runner.now(),
                         network=network)
        if federation is not None:  # every node's replicated state learns it too
            federation.announce(serial, reason)
        return {"serial": req.serial.lower(), "reason": reason.value}

    def revoke_by_key(call: Call) -> dict[str, str]:
        req = call.parse(RevokeByKey)
        try:
            certificate = base64.b64decode(req.certificate, validate=True)
            signature = base64.b64decode(req.signature, validate=True)
            reason = revocation.RevocationReason.parse(req.reason)
        except ValueError as exc:
            raise BadRequest('{"certificate": base64 DER, "reason": R, "signature": base64}: '
                             f"{exc}") from None
        serial = authority.revoke_by_key(certificate, reason, signature, runner.now())
        return {"serial": f"{serial:x}", "reason": reason.value}

    def rotate(call: Call) -> dict[str, Any]:
        req = call.parse(NetworkRequest)
        if not req.network:
            raise BadRequest("name the network to rotate")
        issued = authority.rotate(req.network, runner.now(), actor=actor(call.peer),
                                  serial=new_serial())
        return {"network": issued.network, "generation": issued.generation,
                "key_id": issued.key_id,
                "not_after": issued.certificate.not_valid_after_utc.isoformat()}

    def listing(call: Call) -> list[dict[str, str]]:
        req = call.parse(NetworkRequest)
        own = network_of(call.peer)
        if own is not None and req.network not in (None, own):
            raise Forbidden(f"the credential of network {own} lists that network's "
                            "certificates only")
        return [{"serial": f"{r.serial:x}", "network": r.network, "profile": r.profile,
                 "names": ",".join(r.names), "not_after": r.not_after.isoformat(),
                 "state": "revoked" if r.revoked_at else r.state}
                for r in authority.store.certificates(own or req.network)]

    async def ocsp(call: Call) -> Reply:
        """RFC 6960: the DER OCSPRequest in (POST body, GET path, stoq/1 message)."""
        request = call.body
        if "request" in call.args:  # GET /ocsp/<base64 of the DER request>
            try:
                request = revocation.ocsp_request_from_get_path(str(call.args["request"]))
            except ValueError:
                request = b""
        if len(request) > MAX_OCSP_REQUEST_BYTES:
            request = b""  # answered malformedRequest
        answer = authority.ocsp(request, runner.now())
        if federation is not None and _unauthorized(answer):
            # Another node's intermediate: its operator answers (and signs), relayed here.
            answer = await federation.relay_ocsp(request) or answer
        return Reply(answer, "application/ocsp-response")

    def crl(call: Call) -> Reply:
        der = authority.crl(str(call.args["key_id"]), runner.now(), int(call.args["shard"]))
        return Reply(der, "application/pkix-crl", {"cache-control": "public, max-age=3600"})

    def issuer(call: Call) -> Reply:
        key_id = str(call.args["key_id"])
        if key_id == authority.root_key_id_or_none():
            cert = authority.root
        else:
            record = authority.store.issuer(key_id)
            if record is None:
                raise NotFound(f"no issuer {key_id}")
            cert = record.certificate
        return Reply(cert.public_bytes(Encoding.DER), "application/pkix-cert",
                     {"cache-control": "public, max-age=86400"})

    return Service("ca", (
        Method(issue, stoq="issue", http="POST /ca/v1/issue", http_status=201,
               max_body=2 * MAX_CSR_BYTES),
        Method(revoke, stoq="revoke"),
        Method(rotate, stoq="rotate"),
        Method(listing, stoq="list"),
        Method(ocsp, stoq="ocsp", http="POST /ocsp", raw=True,
               max_body=MAX_OCSP_REQUEST_BYTES + 1),
        Method(ocsp, http="GET /ocsp/{request:path}"),
        Method(revoke_by_key, http="POST /ca/revoke"),
        Method(crl, http="GET /ca/crl/{key_id:str}/{shard:int}.crl"),
        Method(issuer, http="GET /ca/issuers/{key_id:str}.der"),
    ))
