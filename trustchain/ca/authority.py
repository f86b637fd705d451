"""The certificate authority of one node: its issuers, issuance steps, revocation, CRLs, OCSP.

Synchronous; time is passed in.  Issuance is a sequence of steps that the
caller (:mod:`transport.ca`) drives: :meth:`CertificateAuthority.order`
(authorise, pick profile and issuer), the CSR check
(:func:`trustchain.ca.work.check_request`), :meth:`~CertificateAuthority.pending`
(serial and layout), :meth:`~CertificateAuthority.admit` (rate limits, serial
reserved), the precertificate (:func:`trustchain.ca.work.precertificate`),
the logs' SCTs, the final certificate
(:func:`trustchain.ca.work.final_certificate`) and
:meth:`~CertificateAuthority.record` (stored with its audit record).  The
cryptographic steps are pure functions, so the caller may run them in worker
processes; :meth:`~CertificateAuthority.request` does the first three inline.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from trustchain.ca import revocation
from trustchain.ca.audit import KIND_CERT_ISSUE
from trustchain.ca.policy import (
    NotAuthorised,
    PolicyError,
    load_csr,
    may_request,
    normalise_dns_name,
    within,
)
from trustchain.ca.profiles import (
    DEFAULT_PROFILE,
    NETWORK_ADMIN_PROFILE,
    PROFILES,
    CaUrls,
    Profile,
    intermediate_builder,
    leaf_validity,
    random_serial,
)
from trustchain.ca.ratelimit import address_key, names_key
from trustchain.ca.signer import Signer
from trustchain.ca.work import Layout, RequestedNames, check_request
from trustchain.errors import KeyNotFoundError, RemoteError
from trustchain.identity import Peer, Role, identity_uri
from trustchain.keystore import KeyStore, KeyType
from trustchain.storage.audit import AuditLog
from trustchain.storage.ca import CaStore, IssuerRecord
from trustchain.storage.ratelimit import RateLimiter

#: CRLs are re-signed this often even when nothing changed, and valid for twice as long
#: (BR 4.9.7: nextUpdate at most 10 days after thisUpdate for subscriber CRLs).
CRL_REFRESH = timedelta(days=1)
CRL_VALIDITY = timedelta(days=7)
ROOT_CRL_VALIDITY = timedelta(days=365)
OCSP_VALIDITY = timedelta(days=4)


@dataclass(frozen=True)
class NetworkInfo:
    """What the CA needs of a registered network: its DNS subtree and address blocks."""

    zone: str
    prefixes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Order:
    """An authorised request, before its CSR is checked: who, for which network, how."""

    csr: bytes
    network: str
    info: NetworkInfo
    profile: Profile
    issuer: IssuerRecord
    requester: str
    client_address: str | None


@dataclass(frozen=True)
class Pending:
    """A request that passed policy, laid out as its certificate but not yet signed."""

    layout: Layout
    issuer: IssuerRecord
    network: str
    profile: str
    names: list[str]
    requester: str
    limit_keys: dict[str, str]
    serial: int
    not_after: datetime
    crl_shard: int = 0


def revocation_message(certificate_der: bytes, reason: revocation.RevocationReason) -> bytes:
    """What a certificate's key signs to revoke it: text, so shell tools can make it."""
    return f"trustchain-revoke/1 {hashlib.sha256(certificate_der).hexdigest()} {reason.value}" \
        .encode()


class CaError(RemoteError):
    """A CA operation was refused or failed (the message says why)."""


@dataclass
class _CachedCrl:
    der: bytes
    this_update: datetime


@dataclass
class CertificateAuthority:
    keystore: KeyStore
    signer: Signer
    store: CaStore
    audit: AuditLog
    limiter: RateLimiter
    root: x509.Certificate
    root_key_purpose: str
    #: This TrustChain network's name (whose admin certificates may act for networks).
    own_network: str
    organisation: str
    #: Public base URL (http://host[:port]) for CRL, OCSP and issuer URLs.
    base_url: str
    #: The registered networks, and one of them by name (read at each use:
    #: registrations are live).
    networks: Callable[[], dict[str, NetworkInfo]]
    network: Callable[[str], NetworkInfo | None]
    #: Run pkilint on each precertificate before it is logged (trustchain/ca/lint.py).
    lint: bool = False
    #: CRL shards per issuer for new certificates (Boulder-style partitioned CRLs).
    crl_shards: int = 1
    _crls: dict[tuple[str, int], _CachedCrl] = field(default_factory=dict)
    _issuer_ders: dict[str, bytes] = field(default_factory=dict)

    # --- URLs ---------------------------------------------------------------------

    def urls(self, key_id: str, shard: int = 0) -> CaUrls:
        base = self.base_url.rstrip("/")
        return CaUrls(crl=self.crl_url(key_id, shard), ocsp=f"{base}/ocsp",
                      issuer=f"{base}/ca/issuers/{key_id}.der")

    def crl_url(self, key_id: str, shard: int) -> str:
        return f"{self.base_url.rstrip('/')}/ca/crl/{key_id}/{shard}.crl"

    def root_key_id(self) -> str:
        key_id = self.root_key_id_or_none()
        if key_id is None:
            raise CaError("this needs the genesis root key, which is not in the key store "
                          "(kept offline?): import it first")
        return key_id

    # --- issuers ------------------------------------------------------------------

    def issuer_for(self, network: str, now: datetime) -> IssuerRecord:
        """The network's active intermediate, created (root key needed) if it has none."""
        current = self.store.active_issuer(network)
        if current is not None and current.certificate.not_valid_after_utc > now + timedelta(days=90):
            return current
        return self.rotate(network, now, actor="ca")

    def rotate(self, network: str, now: datetime, *, actor: str) -> IssuerRecord:
        """A new intermediate for ``network``; the old one keeps signing CRLs and OCSP."""
        info = self._network(network)
        root_key_id = self.root_key_id()
        record = self.keystore.generate(KeyType.ECDSA_P256, f"ca-issuer:{network}", now)
        public = record.load_public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        generation = self.store.next_generation(network)
        builder = intermediate_builder(
            root=self.root, public_key=public, network=network, organisation=self.organisation,
            zone=info.zone, prefixes=info.prefixes, generation=generation,
            root_urls=self.urls(root_key_id), now=now)
        certificate = self.signer.sign_certificate(builder, root_key_id)
        issued = self.store.add_issuer(record.id, network, certificate, now)
        self.audit.append(now, "ca.rotate", actor, {
            "network": network, "key_id": record.id, "generation": generation,
            "serial": f"{certificate.serial_number:x}"})
        self._crls.pop((root_key_id, 0), None)
        return issued

    def _network(self, network: str) -> NetworkInfo:
        info = self.network(network)
        if info is None:
            raise CaError(f"no network {network!r} is registered (trustchain network register)")
        return info

    # --- issuance -----------------------------------------------------------------

    def network_for(self, csr: bytes) -> str:
        """The registered network whose subtree holds every DNS name the CSR asks for."""
        try:
            names = [normalise_dns_name(n) for n in load_csr(csr).extensions.get_extension_for_class(
                x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)]
        except (x509.ExtensionNotFound, ValueError):
            raise PolicyError("the CSR asks for no DNS names") from None
        found = [name for name, info in self.networks().items()
                 if names and all(within(n, info.zone) for n in names)]
        if len(found) != 1:
            raise PolicyError("the names are not all inside one registered network: "
                              "give --network")
        return found[0]

    def authorise(self, peer: Peer | None, network: str, now: datetime) -> Peer:
        """The requester may act for ``network``: this network's admin, or that network's
        own admin credential, issued by this CA for it, not revoked, not expired.

        :raises NotAuthorised: for anyone else.
        """
        may_request(peer, network=network, own_network=self.own_network)
        assert peer is not None
        if peer.role is Role.NETWORK:
            record = self.store.certificate(peer.serial) if peer.serial is not None else None
            if (record is None or record.network != peer.name or record.state != "issued"
                    or record.profile != NETWORK_ADMIN_PROFILE):
                raise NotAuthorised(f"this CA issued no credential of network {peer.name} "
                                    "with that serial")
            if record.revoked_at is not None:
                raise NotAuthorised(f"the credential of network {peer.name} was revoked")
            if record.not_after <= now:
                raise NotAuthorised(f"the credential of network {peer.name} has expired")
        return peer

    def order(self, csr: bytes, *, network: str | None, profile: str | None,
              peer: Peer | None, client_address: str | None, now: datetime) -> Order:
        """Authorise a request and choose its profile and issuer (the CSR is checked next).

        :raises PolicyError: the requester may not, or the profile does not exist.
        """
        chosen = PROFILES.get(profile or DEFAULT_PROFILE)
        if chosen is None:
            raise PolicyError(f"no profile {profile!r}; profiles: {', '.join(PROFILES)}")
        if network is None:
            if peer is not None and peer.role is Role.NETWORK:
                network = peer.name
            elif chosen.network_identity:
                raise PolicyError(f"name the network whose {chosen.name} credential this is")
            else:
                network = self.network_for(csr)
        requester = self.authorise(peer, network, now)
        info = self._network(network)
        return Order(csr, network, info, chosen, self.issuer_for(network, now),
                     f"{requester.role.value}:{requester.name}", client_address)

    def pending(self, order: Order, names: RequestedNames, now: datetime) -> Pending:
        """Lay out the certificate of a checked request: serial, CRL shard, URLs, limits."""
        uris = ((identity_uri(self.own_network, Role.NETWORK, order.network),)
                if order.profile.network_identity else ())
        every_name = [*names.dns_names, *names.addresses, *uris]
        keys = {"identity": order.requester, "network": order.network,
                "domain": order.info.zone.rstrip("."), "names": names_key(every_name)}
        if order.client_address:
            keys["address"] = address_key(order.client_address)
        issuer = order.issuer
        serial = random_serial()
        shard = serial % self.crl_shards
        layout = Layout(order.csr, order.profile.name, self._issuer_der(issuer), issuer.key_id,
                        self.urls(issuer.key_id, shard), now, serial, names.dns_names,
                        names.addresses, uris)
        return Pending(layout, issuer, order.network, order.profile.name, every_name,
                       order.requester, keys, serial,
                       leaf_validity(order.profile, issuer.certificate, now)[1], shard)

    def _issuer_der(self, issuer: IssuerRecord) -> bytes:
        der = self._issuer_ders.get(issuer.key_id)
        if der is None:
            der = self._issuer_ders[issuer.key_id] = issuer.certificate.public_bytes(Encoding.DER)
        return der

    def request(self, csr: bytes, *, network: str | None, profile: str | None,
                peer: Peer | None, client_address: str | None, now: datetime) -> Pending:
        """:meth:`order`, the CSR check and :meth:`pending`, inline (nothing signed or stored).

        :raises PolicyError: the request breaks policy.
        """
        order = self.order(csr, network=network, profile=profile, peer=peer,
                           client_address=client_address, now=now)
        return self.pending(order, check_request(csr, order.info.zone, order.info.prefixes,
                                                 order.profile.name), now)

    def admit(self, conn: sqlite3.Connection, pending: Pending, now: datetime) -> None:
        """Charge the rate limits and reserve the serial, in the caller's transaction.

        :raises RateLimited: a limit is exceeded (nothing charged or reserved).
        :raises StorageError: the serial was used before.
        """
        self.limiter.check_in(conn, pending.limit_keys, now)
        self.store.reserve_in(conn, pending.serial, pending.issuer.key_id, pending.network,
                              pending.profile, pending.names, pending.not_after,
                              pending.requester, now, pending.crl_shard)

    def refused(self, conn: sqlite3.Connection, pending: Pending, why: Exception,
                now: datetime) -> None:
        """Audit a rate-limit refusal (in the caller's transaction)."""
        self.audit.append_in(conn, now, "ratelimit.refuse", pending.requester, {
            "network": pending.network, "names": pending.names, "detail": str(why)})

    def release(self, conn: sqlite3.Connection, pending: Pending, why: Exception,
                now: datetime) -> None:
        """Give back the serial of a precertificate that was refused before it was logged."""
        self.store.release_in(conn, pending.serial)
        self.audit.append_in(conn, now, "lint.refuse", pending.requester, {
            "network": pending.network, "names": pending.names,
            "serial": f"{pending.serial:x}", "detail": str(why)})

    def record(self, conn: sqlite3.Connection, pending: Pending, final: bytes,
               log_ids: Sequence[bytes], now: datetime) -> None:
        """Store the certificate (DER) over its reservation with its audit record
        (caller's transaction)."""
        self.store.finish(conn, pending.serial, final)
        self.audit.append_in(conn, now, KIND_CERT_ISSUE, pending.requester, {
            "serial": f"{pending.serial:x}", "network": pending.network,
            "profile": pending.profile, "names": pending.names, "issuer": pending.issuer.key_id,
            "logs": [log_id.hex() for log_id in log_ids],
            "sha256": hashlib.sha256(final).hexdigest()})

    # --- revocation ---------------------------------------------------------------

    def revoke(self, serial: int, reason: revocation.RevocationReason, *, actor: str,
               now: datetime, network: str | None = None) -> None:
        """Revoke by serial; with ``network``, only a certificate of that network."""
        record = self.store.certificate(serial)
        if record is None or (network is not None and record.network != network):
            raise CaError(f"no certificate with serial {serial:x}"
                          + (f" in network {network}" if network is not None else ""))
        with self.store.db.transaction() as conn:
            self.store.revoke(conn, serial, reason.value, now)
            self.audit.append_in(conn, now, "cert.revoke", actor, {
                "serial": f"{serial:x}", "reason": reason.value, "network": record.network})
        self._crls.pop((record.issuer_key_id, record.crl_shard), None)

    def revoke_by_key(self, certificate_der: bytes, reason: revocation.RevocationReason,
                      signature: bytes, now: datetime) -> int:
        """Revoke a certificate on proof of its private key; return its serial.

        The key signs :func:`revocation_message` (ECDSA with the curve's hash,
        Ed25519, or RSA PKCS#1 v1.5 with SHA-256): ``openssl dgst -sign`` makes it.

        :raises CaError: not our certificate, or the signature does not verify.
        """
        try:
            cert = x509.load_der_x509_certificate(certificate_der)
        except ValueError:
            raise CaError("the certificate does not parse") from None
        record = self.store.certificate(cert.serial_number)
        if record is None or record.certificate is None or record.certificate != cert:
            raise CaError("this CA did not issue that certificate")
        message = revocation_message(certificate_der, reason)
        key = cert.public_key()
        try:
            if isinstance(key, ec.EllipticCurvePublicKey):
                digest = hashes.SHA384() if key.curve.key_size >= 384 else hashes.SHA256()
                key.verify(signature, message, ec.ECDSA(digest))
            elif isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(signature, message)
            elif isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
            else:
                raise CaError("unsupported key type")
        except InvalidSignature:
            raise CaError("the signature does not verify with the certificate's key") from None
        self.revoke(cert.serial_number, reason, actor="certificate-key", now=now)
        return cert.serial_number

    def crl(self, key_id: str, now: datetime, shard: int = 0) -> bytes:
        """The current CRL (one shard) of issuer ``key_id`` (the root or an intermediate), DER.

        Re-signed when a revocation changed it and at least every CRL_REFRESH.
        Each names its own URL in a critical issuing distribution point, so a
        relying party cannot take one shard for another.
        """
        if shard < 0 or (shard >= self.crl_shards and shard not in self._issued_shards(key_id)):
            raise CaError(f"no CRL shard {shard} for issuer {key_id}")
        cached = self._crls.get((key_id, shard))
        if cached is not None and now - cached.this_update < CRL_REFRESH:
            return cached.der
        if key_id == self.root_key_id_or_none():
            issuer, validity = self.root, ROOT_CRL_VALIDITY
            revoked: list[revocation.Revoked] = []  # intermediates are retired, not revoked, today
        else:
            record = self.store.issuer(key_id)
            if record is None:
                raise CaError(f"no issuer {key_id}")
            issuer, validity = record.certificate, CRL_VALIDITY
            revoked = [revocation.Revoked(r.serial, r.revoked_at,
                                          revocation.RevocationReason(r.reason))
                       for r in self.store.revoked(key_id, now, shard)
                       if r.revoked_at and r.reason]
        this_update = now
        crl = revocation.build_crl(
            issuer=issuer, issuer_key_id=key_id, signer=self.signer, revoked=revoked,
            number=self.store.next_crl_number(f"{key_id}/{shard}"), this_update=this_update,
            next_update=this_update + validity, distribution_point=self.crl_url(key_id, shard))
        der = crl.public_bytes(Encoding.DER)
        self._crls[(key_id, shard)] = _CachedCrl(der, now)
        return der

    def _issued_shards(self, key_id: str) -> set[int]:
        """Shards that certificates of this issuer name (the shard count may have changed)."""
        rows = self.store.db.conn.execute(
            "SELECT DISTINCT crl_shard FROM ca_certificates WHERE issuer_key_id = ?",
            (key_id,)).fetchall()
        return {int(r[0]) for r in rows}

    def root_key_id_or_none(self) -> str | None:
        try:
            return self.keystore.active(self.root_key_purpose).id
        except KeyNotFoundError:
            return None

    def ocsp(self, request: bytes, now: datetime) -> bytes:
        issuers = [revocation.OcspIssuer(i.certificate, i.key_id) for i in self.store.issuers()]

        def lookup(issuer: revocation.OcspIssuer, serial: int) -> revocation.CertStatusInfo:
            record = self.store.certificate(serial)
            if record is None or record.issuer_key_id != issuer.key_id:
                return revocation.CertStatusInfo.unknown()
            if record.revoked_at is not None:
                return revocation.CertStatusInfo.revoked(
                    record.revoked_at, revocation.RevocationReason(record.reason or "unspecified"))
            return revocation.CertStatusInfo.good()

        return revocation.respond_ocsp(request, issuers=issuers, lookup=lookup,
                                       signer=self.signer, now=now, validity=OCSP_VALIDITY)
