"""ACME over HTTP: the routes under ``/acme/`` of the node's API (HTTPS, HTTP/3, and the
plain HTTP port for tests and local clients), each request handed to the core
(:class:`trustchain.ca.acme.server.AcmeServer`) and its response sent as it is; and the
core's jobs done here, at the edge: challenges checked (http-01 and tls-alpn-01 over the
network to the name's addresses in this node's zones, dns-01 read from those zones) and
certificates
issued by the node's CA, exactly as for its own API.

The request URL the core checks a JWS's ``url`` against is the one the client
addressed (scheme, Host and path), so a node reached under several names answers
each with URLs of that name.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from datetime import datetime
from typing import Any

import dns.name
import dns.rdatatype
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from transport.ca import CaRunner
from transport.methods import Call, Method, Service, read_body
from trustchain.ca.acme import caa, jws
from trustchain.ca.acme.ari import CertificateStatus
from trustchain.ca.acme.orders import HTTP_01, TLS_ALPN_01, Issue, Revoke, Validate
from trustchain.ca.acme.problems import AcmeProblem
from trustchain.ca.acme.server import AcmeRequest, AcmeResponse, AcmeServer, Meta
from trustchain.ca.acme.store import Account
from trustchain.ca.authority import CertificateAuthority
from trustchain.ca.errors import CaError
from trustchain.ca.policy import NotAuthorised, PolicyError, within
from trustchain.ca.ratelimit import (
    ADDRESS,
    AUTHZ,
    ORDERS,
    RateLimited,
    address_key,
    authz_key,
)
from trustchain.ca.revocation import RevocationReason
from trustchain.dns.engine import ZoneSet
from trustchain.errors import BadRequest, Forbidden, NotFound
from trustchain.identity import Peer, Role
from trustchain.storage.acme import SqliteAcmeStore
from trustchain.storage.ratelimit import RateLimiter
from trustchain.wiring.node import OpenNode, utcnow

#: Largest ACME request body read (a finalize's CSR is the largest: a few KiB).
MAX_BODY = 64 * 1024
HTTP01_TIMEOUT = 10.0
HTTP01_MAX = 8 * 1024
ACME_TLS_ALPN = "acme-tls/1"
#: id-pe-acmeIdentifier (RFC 8737 section 6.1).
ACME_IDENTIFIER = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")
log = logging.getLogger("trustchain.acme")


def caa_identities(node: OpenNode) -> tuple[str, ...]:
    """The names CAA ``issue`` records use for this CA: the federation's origin."""
    return (node.identity.origin.rstrip(".").lower(),)


def build_acme(node: OpenNode, limiter: RateLimiter, store: SqliteAcmeStore,
               authority: CertificateAuthority,
               on_limited: Callable[[RateLimited], None] = lambda _refused: None
               ) -> AcmeServer:
    """The node's ACME server: its nonces prefixed with the node's id (whose they are,
    in a federation), its identity for CAA the federation's origin, new accounts
    limited per client address (the CA's ``address`` limit: 10 in 3 hours by default,
    ``ca_rate_limits`` in trustchain.toml), orders only for the names of one
    registered network (whose intermediate issues); ``on_limited`` hears of each request
    a rate limit refuses (the node's metrics)."""
    def network_of(names: list[str]) -> str:
        networks = authority.networks()
        zones = [info.zone for info in networks.values()]
        outside = [n for n in names if not any(within(n, zone) for zone in zones)]
        if outside:
            raise AcmeProblem("rejectedIdentifier", "not inside a network registered here: "
                              + ", ".join(outside[:5]), extra={"subproblems": [
                                  {"type": "urn:ietf:params:acme:error:rejectedIdentifier",
                                   "detail": f"{n} is inside no registered network",
                                   "identifier": {"type": "dns", "value": n}}
                                  for n in outside]})
        homes = {name for name, info in networks.items()
                 if all(within(n, info.zone) for n in names)}
        if not homes:
            raise AcmeProblem("rejectedIdentifier", "one certificate is for the names of one "
                              "network: order for each network on its own")
        return min(homes, key=lambda h: -len(networks[h].zone))  # the innermost

    def certificate_status(serial: int) -> CertificateStatus | None:
        record = authority.store.certificate(serial)
        if record is None or record.certificate is None:
            return None
        certificate = record.certificate
        try:
            aki = certificate.extensions.get_extension_for_class(
                x509.AuthorityKeyIdentifier).value.key_identifier or b""
        except x509.ExtensionNotFound:
            return None
        return CertificateStatus(aki, certificate.not_valid_before_utc,
                                 certificate.not_valid_after_utc, record.revoked_at is not None)

    return AcmeServer(store, nonce_prefix=node.identity.node_id[:8],
                      meta=Meta(caa_identities(node), node.config.acme_terms_of_service,
                                node.config.acme_website), random=secrets.token_bytes,
                      limits=AcmeLimits(limiter, on_limited), network_of=network_of,
                      certificate_status=certificate_status)


class AcmeLimits:
    """The ACME limits in the CA's buckets: ``address`` (new accounts per client address,
    IPv6 by /64), ``orders`` (per account), ``authz`` (failed validations per account
    and name); each configurable in ``ca_rate_limits``."""

    def __init__(self, limiter: RateLimiter,
                 on_limited: Callable[[RateLimited], None] = lambda _refused: None) -> None:
        self._limiter = limiter
        self._on_limited = on_limited

    def _check(self, keys: dict[str, str], now: datetime) -> None:
        try:
            self._limiter.check(keys, now)
        except RateLimited as refused:
            self._on_limited(refused)
            raise

    def new_account(self, client: str | None, now: datetime) -> None:
        if client is not None:
            try:
                key = address_key(client)
            except ValueError:  # not an IP address (a transport that names clients)
                key = client
            self._check({ADDRESS: key}, now)

    def new_order(self, account_id: int, now: datetime) -> None:
        self._check({ORDERS: f"acme-account-{account_id}"}, now)

    def may_validate(self, account_id: int, name: str, now: datetime) -> None:
        key = authz_key(f"acme-account-{account_id}", name)
        decision = self._limiter.decision(AUTHZ, key, now)
        if not decision.allowed:
            refused = RateLimited(self._limiter.limits[AUTHZ], key, decision.retry_after, now)
            self._on_limited(refused)
            raise refused

    def failed(self, account_id: int, name: str, now: datetime) -> None:
        self._limiter.check({AUTHZ: authz_key(f"acme-account-{account_id}", name)}, now)


class Acme:
    """The edge's part: challenges checked over the network, certificates from the CA."""

    def __init__(self, server: AcmeServer, ca: CaRunner, zones: Callable[[], ZoneSet],
                 network: str, ports: tuple[int, int], caa_identities: Sequence[str],
                 announce: Callable[[int, RevocationReason], None]) -> None:
        """``ports``: where http-01 and tls-alpn-01 connect (80 and 443 but in tests);
        ``announce(serial, reason)`` makes a revocation known to the federation."""
        self.server = server
        self._tls_alpn01_port = ports[1]
        self._caa_identities = caa_identities
        self._announce = announce
        self._ca = ca
        self._zones = zones
        self._network = network
        self._http01_port = ports[0]
        self._background: set[asyncio.Future[None]] = set()

    async def answer(self, request: AcmeRequest) -> AcmeResponse:
        answer = self.server.handle(request, utcnow())
        job, answer.job = answer.job, None
        if isinstance(job, Validate):  # after the answer, as RFC 8555 7.5.1 has it
            task = asyncio.ensure_future(self._validate(job))
            self._background.add(task)  # held until done: the loop keeps a weak reference
            task.add_done_callback(self._background.discard)
        elif isinstance(job, Issue):  # finalize answers once the certificate is there
            answer.body = await self._issue(job, request)
        elif isinstance(job, Revoke):
            refused = self._revoke(job)
            if refused is not None:
                return self.server.refuse(request, refused, utcnow())
        return answer

    def _revoke(self, job: Revoke) -> AcmeProblem | None:
        """Revoked by the CA as through its own API (record, audit, CRL, OCSP), and made
        known to the federation."""
        authority = self._ca.authority
        record = authority.store.certificate(job.serial)
        if record is None or record.certificate is None or \
                record.certificate.public_bytes(Encoding.DER) != job.certificate:
            return AcmeProblem("malformed", "this CA did not issue that certificate",
                               status=404)
        if record.revoked_at is not None:
            return AcmeProblem("alreadyRevoked", f"revoked at {record.revoked_at.isoformat()}")
        reason = RevocationReason(job.reason)
        try:
            authority.revoke(job.serial, reason, actor=job.actor, now=self._ca.now())
        except CaError as exc:  # revoked meanwhile
            return AcmeProblem("alreadyRevoked", str(exc))
        self._announce(job.serial, reason)
        return None

    async def _issue(self, job: Issue, request: AcmeRequest) -> bytes:
        """The CA issues as for its own API (the CSR's checks, the network's intermediate,
        rate limits, CT, the audit log); the ACME account stands for the requester."""
        account_uri = f"{request.base}/acme/acct/{job.account_id}"
        try:  # CAA at issuance, from this node's zones (RFC 8659, 8657)
            for name, method in job.methods:
                caa.check(name, self._caa_records, self._caa_identities, account_uri, method)
        except AcmeProblem as refused:
            return self.server.issued(job, None, None, refused, request.base, utcnow())
        peer = Peer(Role.ACME, f"acme-account-{job.account_id}", self._network)
        try:
            issued = await self._ca.issue(job.csr, network=None, profile=None, peer=peer,
                                          client_address=request.client, renews=job.replaces)
        except RateLimited as exc:
            return self.server.issued(job, None, None, AcmeProblem("rateLimited", str(exc)),
                                      request.base, utcnow())
        except (PolicyError, NotAuthorised, CaError) as exc:
            return self.server.issued(job, None, None, AcmeProblem("badCSR", str(exc)),
                                      request.base, utcnow())
        chain = "".join(x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode()
                        for der in issued.chain)
        return self.server.issued(job, f"{issued.serial:x}", chain, None, request.base, utcnow())

    async def _validate(self, job: Validate) -> None:
        try:
            if job.type == HTTP_01:
                error = await self._http01(job)
            elif job.type == TLS_ALPN_01:
                error = await self._tls_alpn01(job)
            else:
                error = self._dns01(job)
        except Exception as exc:  # a validation never takes the node down
            log.exception("ACME validation of %s failed", job.name)
            error = AcmeProblem("serverInternal", f"the validation failed: {exc}")
        self.server.validated(job, error, utcnow())

    def _rrset(self, name: str, rdtype: dns.rdatatype.RdataType) -> list[Any]:
        owner = dns.name.from_text(name)
        zone = self._zones().find(owner)
        found = zone.get(owner, rdtype) if zone is not None else None
        return list(found) if found is not None else []

    def _caa_records(self, owner: str) -> list[caa.Record]:
        return [(r.flags, r.tag.decode("ascii", "replace"), r.value.decode("utf-8", "replace"))
                for r in self._rrset(owner, dns.rdatatype.CAA)]

    async def _http01(self, job: Validate) -> AcmeProblem | None:
        """RFC 8555 8.3: GET http://<name>/.well-known/acme-challenge/<token> at the name's
        addresses in this node's zones (no redirect followed, 10 s, 8 KiB)."""
        addresses = self._addresses(job.name)
        if not addresses:
            return AcmeProblem("dns", f"{job.name} has no A or AAAA record in the zones "
                                      "this node serves")
        errors = []
        for address in addresses:
            host = f"[{address}]" if ":" in address else address
            url = f"http://{host}:{self._http01_port}/.well-known/acme-challenge/{job.token}"
            try:
                body = await asyncio.to_thread(_fetch, url, job.name)
            except OSError as exc:
                errors.append(f"{address}: {exc}")
                continue
            if body.decode("ascii", "replace").strip() == job.key_authorization:
                return None
            return AcmeProblem("incorrectResponse", f"{address} answered another key "
                               f"authorization than {job.key_authorization[:12]}...")
        return AcmeProblem("connection", "no address of the name answered: "
                           + "; ".join(errors)[:300])

    def _addresses(self, name: str) -> list[str]:
        return [r.address for t in (dns.rdatatype.AAAA, dns.rdatatype.A)
                for r in self._rrset(name, t)]

    async def _tls_alpn01(self, job: Validate) -> AcmeProblem | None:
        """RFC 8737 3: a TLS connection to the name's addresses (port 443), SNI the name,
        ALPN ``acme-tls/1`` only; the certificate (its chain is not verified) names
        exactly the name and carries the critical acmeIdentifier extension holding the
        SHA-256 of the key authorization."""
        addresses = self._addresses(job.name)
        if not addresses:
            return AcmeProblem("dns", f"{job.name} has no A or AAAA record in the zones "
                                      "this node serves")
        expected = b"\x04\x20" + hashlib.sha256(job.key_authorization.encode()).digest()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the challenge certificate is self-signed
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols([ACME_TLS_ALPN])
        errors = []
        for address in addresses:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(
                    address, self._tls_alpn01_port, ssl=context, server_hostname=job.name),
                    HTTP01_TIMEOUT)
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                errors.append(f"{address}: {exc}")
                continue
            try:
                tls = writer.get_extra_info("ssl_object")
                protocol = tls.selected_alpn_protocol() if tls is not None else None
                der = tls.getpeercert(binary_form=True) if tls is not None else None
            finally:
                writer.close()
            if protocol != ACME_TLS_ALPN or not der:
                return AcmeProblem("incorrectResponse", f"{address} did not negotiate "
                                                        f"{ACME_TLS_ALPN}")
            return _acme_identifier_problem(x509.load_der_x509_certificate(der), job.name,
                                            expected, address)
        return AcmeProblem("connection", "no address of the name answered: "
                           + "; ".join(errors)[:300])

    def _dns01(self, job: Validate) -> AcmeProblem | None:
        """RFC 8555 8.4: a TXT record at _acme-challenge.<name> with the base64url SHA-256
        of the key authorization, read from the zones this node serves (no resolver)."""
        digest = jws.b64url(hashlib.sha256(job.key_authorization.encode()).digest())
        texts = [b"".join(r.strings).decode("ascii", "replace")
                 for r in self._rrset(f"_acme-challenge.{job.name}", dns.rdatatype.TXT)]
        if digest in texts:
            return None
        if not texts:
            return AcmeProblem("dns", f"no TXT record at _acme-challenge.{job.name}")
        return AcmeProblem("incorrectResponse", f"no TXT record at _acme-challenge.{job.name} "
                                                "holds the key authorization's digest")


def _acme_identifier_problem(certificate: x509.Certificate, name: str, expected: bytes,
                             address: str) -> AcmeProblem | None:
    try:
        sans = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value
        identifier = certificate.extensions.get_extension_for_oid(ACME_IDENTIFIER)
    except x509.ExtensionNotFound:
        return AcmeProblem("incorrectResponse", f"{address}'s certificate has no "
                                                "subjectAltName or acmeIdentifier")
    if list(sans) != [x509.DNSName(name)]:
        return AcmeProblem("incorrectResponse", f"{address}'s certificate names other than "
                                                f"{name} alone")
    value = identifier.value
    if not identifier.critical or not isinstance(value, x509.UnrecognizedExtension) or \
            value.value != expected:
        return AcmeProblem("incorrectResponse", f"{address}'s acmeIdentifier is not the key "
                                                "authorization's digest (or not critical)")
    return None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is answered as it is: not followed


def _fetch(url: str, host: str) -> bytes:
    opener = urllib.request.build_opener(_NoRedirect)
    request = urllib.request.Request(url, headers={"Host": host,
                                                   "User-Agent": "TrustChain-ACME"})
    try:
        with opener.open(request, timeout=HTTP01_TIMEOUT) as answer:
            return bytes(answer.read(HTTP01_MAX))
    except urllib.error.HTTPError as exc:
        raise OSError(f"HTTP {exc.code}") from None
    except urllib.error.URLError as exc:
        raise OSError(str(exc.reason)) from None


def acme_routes(acme: Acme) -> list[Route]:
    async def endpoint(request: Request) -> Response:
        url = f"{request.url.scheme}://{request.url.netloc}{request.url.path}"
        asked = AcmeRequest(request.method, url, request.headers.get("content-type"),
                            client=request.client.host if request.client else None)
        try:
            body = await read_body(request, MAX_BODY) if request.method == "POST" else b""
        except BadRequest as exc:
            answer = acme.server.refuse(asked, AcmeProblem("malformed", str(exc), status=413),
                                        utcnow())
        else:
            answer = await acme.answer(replace(asked, body=body))
        response = Response(answer.body, answer.status, media_type=answer.content_type)
        for name, value in answer.headers:
            response.headers.append(name, value)
        return response

    return [Route("/acme/{rest:path}", endpoint, methods=["GET", "HEAD", "POST"])]


class AccountsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    after: int = Field(default=0, ge=0)
    limit: int = Field(default=100, ge=1, le=1000)


class DeactivateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    account: int = Field(ge=1)


def acme_admin_service(store: SqliteAcmeStore) -> Service:
    """``admin.acme-accounts`` (a page of accounts) and ``admin.acme-deactivate`` (an
    account no longer acts: RFC 8555 7.3.6, as if its key had asked)."""

    def shown(account: Account) -> dict[str, Any]:
        return {"id": account.id, "status": account.status, "contact": account.contact,
                "key_thumbprint": account.thumbprint, "key_type": account.jwk.get("kty"),
                "created_at": account.created_at}

    def accounts(call: Call) -> dict[str, Any]:
        args = call.parse(AccountsRequest)
        return {"accounts": [shown(a) for a in store.accounts(args.after, args.limit)]}

    def deactivate(call: Call) -> dict[str, Any]:
        args = call.parse(DeactivateRequest)
        if store.account(args.account) is None:
            raise NotFound(f"no ACME account {args.account}")
        return shown(store.update_account(args.account, status="deactivated"))

    return Service("admin", (Method(accounts, stoq="acme-accounts"),
                             Method(deactivate, stoq="acme-deactivate")))


class EabRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    network: str = Field(min_length=1, max_length=63)


class EabListRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    network: str | None = Field(default=None, min_length=1, max_length=63)


class EabWithdrawRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kid: str = Field(min_length=1, max_length=64)


def acme_eab_service(store: SqliteAcmeStore, authority: CertificateAuthority,
                     clock: Callable[[], datetime]) -> Service:
    """External Account Binding keys per network, each call by this node's admin or by
    that network's own admin credential: ``ca.acme-eab`` mints one (from the first key
    on, the network's names are ordered only by accounts bound to it with one),
    ``ca.acme-eab-list`` lists them (never their HMAC keys), ``ca.acme-eab-withdraw``
    withdraws one (it binds no account from then on; one it bound stays bound)."""

    def authorised(call: Call, network: str, now: datetime) -> None:
        try:
            authority.authorise(call.peer, network, now)
        except NotAuthorised as exc:
            raise Forbidden(str(exc)) from None

    def mint(call: Call) -> dict[str, Any]:
        args = call.parse(EabRequest)
        now = clock()
        if args.network not in authority.networks():
            raise NotFound(f"no network {args.network!r} is registered")
        authorised(call, args.network, now)
        kid, key = jws.b64url(secrets.token_bytes(12)), secrets.token_bytes(32)
        store.add_eab(kid, key, args.network, now)
        return {"network": args.network, "kid": kid, "hmac_key": jws.b64url(key)}

    def listed(call: Call) -> dict[str, Any]:
        args = call.parse(EabListRequest)
        network = args.network
        if network is None and call.peer is not None and call.peer.role is Role.NETWORK:
            network = call.peer.name  # a network's credential sees its own keys
        if network is not None:
            authorised(call, network, clock())
        elif call.peer is None or call.peer.role is not Role.ADMIN:
            raise Forbidden("name the network (--network) whose keys to list")
        return {"keys": [asdict(key) for key in store.eab_keys(network)]}

    def withdraw(call: Call) -> dict[str, Any]:
        args = call.parse(EabWithdrawRequest)
        now = clock()
        key = next((k for k in store.eab_keys() if k.kid == args.kid), None)
        if key is None:
            raise NotFound(f"no EAB key {args.kid!r}")
        authorised(call, key.network, now)
        withdrawn = store.withdraw_eab(args.kid, now)
        assert withdrawn is not None
        return asdict(withdrawn)

    return Service("ca", (Method(mint, stoq="acme-eab"), Method(listed, stoq="acme-eab-list"),
                          Method(withdraw, stoq="acme-eab-withdraw")))
