"""The certificate authority of one node: its network intermediates and issuance.

Revocation, CRLs and OCSP are the other half of the same object
(:mod:`trustchain.ca.revoking`).

Synchronous and pure in the sans-I/O sense: the time and the serials are
arguments, storage, rate limits, the audit log and key creation are reached
through the contracts of :mod:`trustchain.ca.store`, and signing through
:class:`~trustchain.ca.signer.Signer`.  Issuance is a generator of steps
(:mod:`trustchain.ca.steps`), so that its driver can run the CPU-heavy ones
in worker processes and share its writes' commits with other requests':

1. authorise the requester, choose the profile and the network's
   intermediate (created on first use: :meth:`CertificateAuthority.rotate`);
2. :class:`~trustchain.ca.steps.CheckCsr`; lay the certificate out, and
   choose at least two logs that accept its expiry;
3. :class:`~trustchain.ca.steps.Write`: charge the rate limits and reserve
   the serial (a refusal is audited instead); a renewal inside its
   predecessor's renewal window is not charged to the ``domain`` and ``names``
   limits (:data:`RENEWAL_EXEMPT`);
4. :class:`~trustchain.ca.steps.SignPrecertificate` (linted when ``lint``;
   a lint refusal gives the serial back, audited);
5. :class:`~trustchain.ca.steps.NeedScts` from the chosen logs;
6. :class:`~trustchain.ca.steps.SignFinal`, which verifies the SCTs;
7. :class:`~trustchain.ca.steps.Write`: the certificate over its
   reservation, with its audit record.

An issuance cut short by a stop between steps 3 and 7 leaves its serial
reserved; :meth:`CertificateAuthority.reconcile` settles those at start
(the reasons are in :mod:`trustchain.ca.store`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from trustchain.ca.audit import (
    KIND_CA_ROTATE,
    KIND_CA_SIGN_INTERMEDIATE,
    KIND_CERT_ISSUE,
    KIND_LINT_REFUSE,
    KIND_RATELIMIT_REFUSE,
)
from trustchain.ca.errors import CaError
from trustchain.ca.lint import LintError
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
    renewal_window,
)
from trustchain.ca.ratelimit import DOMAIN, NAMES, RateLimited, address_key, names_key
from trustchain.ca.revoking import CachedCrl, Revocations
from trustchain.ca.signer import Signer
from trustchain.ca.steps import (
    CheckCsr,
    CtLog,
    Issuance,
    IssuedChain,
    NeedScts,
    SignFinal,
    SignPrecertificate,
    Write,
)
from trustchain.ca.store import AuditTrail, CaKeys, CaStore, IssuerRecord, Limits, Reservation, Txn
from trustchain.ca.work import Layout, RequestedNames
from trustchain.ct.log import BadSubmission
from trustchain.identity import Peer, Role, identity_uri

#: A network's intermediate is replaced when it would expire within this.
ISSUER_RENEWAL = timedelta(days=90)
#: The limits a renewal inside its predecessor's window is not charged to: it replaces a
#: certificate rather than adding one (the others, per requester and network, still apply).
RENEWAL_EXEMPT = frozenset({DOMAIN, NAMES})
#: Serials are positive and fit a DER INTEGER of 20 octets (RFC 5280 4.1.2.2).
MAX_SERIAL = 2**159
#: The audit kind of a reservation settled at start, and the one outcome it has today.
KIND_CERT_RECONCILE = "cert.reconcile"
ABANDONED = "abandoned"


@dataclass(frozen=True)
class NetworkInfo:
    """What the CA needs of a registered network: its DNS subtree and address blocks."""

    zone: str
    prefixes: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Order:
    """An authorised request, before its CSR is checked: who, for which network, how."""

    network: str
    info: NetworkInfo
    profile: Profile
    issuer: IssuerRecord
    requester: str


@dataclass(frozen=True)
class _Pending:
    """A request that passed policy, laid out as its certificate but not yet signed."""

    layout: Layout
    reservation: Reservation
    limit_keys: dict[str, str]
    #: The serial of the certificate this one renews, when that exempted it from limits.
    renews: int | None = None


def derived_serial(serial: int) -> int:
    """A second serial from a random one, for an intermediate created during an issuance:
    as unpredictable as ``serial``, and not equal to it."""
    digest = hashlib.sha256(b"trustchain intermediate serial " + serial.to_bytes(20, "big"))
    return int.from_bytes(digest.digest()[:16], "big") or 1


#: SCTs come from logs of this many distinct other operators (Chrome's CT policy).
SCT_OPERATORS = 2


def _choose_logs(logs: Sequence[CtLog], not_after: datetime, serial: int
                 ) -> tuple[list[CtLog], int]:
    """The logs to ask for SCTs, in order, and how many distinct operators must answer
    (0: every one).  Other nodes' logs when the federation has them: ``SCT_OPERATORS``
    operators of them, tried from an offset the serial picks (so issuance spreads over the
    logs); with no other operator (one node), this node's own logs, every one."""
    covering = [lg for lg in logs if not_after in lg.expiry]
    if any(lg.operator for lg in logs):
        others = [lg for lg in covering if lg.operator]
        if len({lg.operator for lg in others}) < SCT_OPERATORS:
            raise CaError(f"fewer than {SCT_OPERATORS} other operators' logs accept "
                          f"certificates expiring {not_after.isoformat()} (see trustchain ct "
                          "logs)")
        start = serial % len(others)
        return others[start:] + others[:start], SCT_OPERATORS
    if len(covering) < 2:
        raise CaError(f"fewer than two logs of this node accept certificates expiring "
                      f"{not_after.isoformat()} (see ct_logs)")
    return covering, 0


@dataclass
class CertificateAuthority(Revocations):
    """One node's CA: its network intermediates and issuance here, revocation, CRLs and
    OCSP in :class:`~trustchain.ca.revoking.Revocations`."""

    keys: CaKeys
    signer: Signer
    store: CaStore
    audit: AuditTrail
    limiter: Limits
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
    #: Set by the federation: why a network credential issued at another node is not
    #: good here (None: it is), from the committed intermediates and revocations.
    credential_elsewhere: Callable[[Peer], str | None] | None = None
    _crls: dict[tuple[str, int], CachedCrl] = field(default_factory=dict)
    _issuer_ders: dict[str, bytes] = field(default_factory=dict)

    # --- URLs and keys --------------------------------------------------------------

    def urls(self, key_id: str, shard: int = 0) -> CaUrls:
        base = self.base_url.rstrip("/")
        return CaUrls(crl=self.crl_url(key_id, shard), ocsp=f"{base}/ocsp",
                      issuer=f"{base}/ca/issuers/{key_id}.der")

    def root_key_id(self) -> str:
        key_id = self.root_key_id_or_none()
        if key_id is None:
            raise CaError("this needs the genesis root key, which is not in the key store "
                          "(kept offline?): import it first")
        return key_id

    # --- issuers ------------------------------------------------------------------

    def issuer_for(self, network: str, now: datetime, serial: int) -> IssuerRecord:
        """The network's active intermediate; a new one (serial ``serial``; the root key
        needed) if it has none or its own expires soon."""
        current = self.store.active_issuer(network)
        if current is not None and current.certificate.not_valid_after_utc > now + ISSUER_RENEWAL:
            return current
        if current is not None and self.root_key_id_or_none() is None and \
                current.certificate.not_valid_after_utc > now:
            return current  # only the root holder renews it (not built: docs/federation.md)
        if current is None and self.root_key_id_or_none() is None:
            raise CaError(f"this node has no intermediate for network {network} yet: it asks "
                          "the node that holds the genesis root key to sign one (retry soon)")
        return self.rotate(network, now, actor="ca", serial=serial)

    def rotate(self, network: str, now: datetime, *, actor: str, serial: int) -> IssuerRecord:
        """A new intermediate for ``network``; the old one keeps signing CRLs and OCSP."""
        info = self._network(network)
        root_key_id = self.root_key_id()
        key_id, public = self.keys.generate(f"ca-issuer:{network}", now)
        generation = self.store.next_generation(network)
        certificate = self.signer.sign_certificate(intermediate_builder(
            root=self.root, public_key=public, network=network, organisation=self.organisation,
            zone=info.zone, prefixes=info.prefixes, generation=generation,
            root_urls=self.urls(root_key_id), now=now, serial=serial), root_key_id)

        issued = self._add_issuer(network, key_id, generation, certificate, now, actor)
        self._crls.pop((root_key_id, 0), None)
        return issued

    def _add_issuer(self, network: str, key_id: str, generation: int,
                    certificate: x509.Certificate, now: datetime, actor: str) -> IssuerRecord:
        """Store ``certificate`` as the network's active intermediate here, with its audit
        record in the same transaction."""

        def write(txn: Txn) -> IssuerRecord:
            issued = self.store.add_issuer(txn, key_id, network, generation, certificate, now)
            self.audit.append_in(txn, now, KIND_CA_ROTATE, actor, {
                "network": network, "key_id": key_id, "generation": generation,
                "serial": f"{certificate.serial_number:x}"})
            return issued

        return self.store.write(write)

    def sign_intermediate(self, network: str, public_key: ec.EllipticCurvePublicKey,
                          now: datetime, *, generation: int, serial: int, actor: str
                          ) -> x509.Certificate:
        """The root holder signs another node's intermediate for ``network`` (the node made
        the key and keeps it); audit-logged, not stored as an issuer of this node.

        :raises CaError: no root key here, or no such network.
        """
        info = self._network(network)
        root_key_id = self.root_key_id()
        certificate = self.signer.sign_certificate(intermediate_builder(
            root=self.root, public_key=public_key, network=network,
            organisation=self.organisation, zone=info.zone, prefixes=info.prefixes,
            generation=generation, root_urls=self.urls(root_key_id), now=now,
            serial=serial), root_key_id)

        def write(txn: Txn) -> None:
            self.audit.append_in(txn, now, KIND_CA_SIGN_INTERMEDIATE, actor, {
                "network": network, "generation": generation,
                "serial": f"{certificate.serial_number:x}"})

        self.store.write(write)
        return certificate

    def adopt(self, network: str, key_id: str, public_key: ec.EllipticCurvePublicKey,
              certificate: x509.Certificate, now: datetime, *, actor: str) -> IssuerRecord:
        """Make an intermediate the root holder signed for this node's key ``key_id`` (whose
        public key is ``public_key``) the network's active one here.

        :raises CaError: the certificate is not the root's, or not for that key.
        """
        try:
            certificate.verify_directly_issued_by(self.root)
        except (ValueError, TypeError, InvalidSignature):
            raise CaError("the intermediate is not signed by the genesis root") from None
        if certificate.public_key() != public_key:
            raise CaError("the intermediate certifies another key than this node's")
        return self._add_issuer(network, key_id, self.store.next_generation(network),
                                certificate, now, actor)

    def _network(self, network: str) -> NetworkInfo:
        info = self.network(network)
        if info is None:
            raise CaError(f"no network {network!r} is registered (trustchain network register)")
        return info

    def _issuer_der(self, issuer: IssuerRecord) -> bytes:
        der = self._issuer_ders.get(issuer.key_id)
        if der is None:
            der = self._issuer_ders[issuer.key_id] = issuer.certificate.public_bytes(Encoding.DER)
        return der

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
        own admin credential, issued by this CA for it, not revoked, not expired (or, in
        a federation, issued by another node's committed intermediate for that network
        and not revoked by a committed ``ca-revocation``).

        :raises NotAuthorised: for anyone else.
        """
        may_request(peer, network=network, own_network=self.own_network)
        assert peer is not None
        if peer.role is Role.NETWORK:
            record = self.store.certificate(peer.serial) if peer.serial is not None else None
            if record is None and self.credential_elsewhere is not None:
                # Issued at another node: its chain verified to the root at ``now``, so
                # what is left is whose intermediate signed it and whether it was revoked.
                refusal = self.credential_elsewhere(peer)
                if refusal is not None:
                    raise NotAuthorised(refusal)
                return peer
            if (record is None or record.network != peer.name or record.state != "issued"
                    or record.profile != NETWORK_ADMIN_PROFILE):
                raise NotAuthorised(f"this CA issued no credential of network {peer.name} "
                                    "with that serial")
            if record.revoked_at is not None:
                raise NotAuthorised(f"the credential of network {peer.name} was revoked")
            if record.not_after <= now:
                raise NotAuthorised(f"the credential of network {peer.name} has expired")
        return peer

    def issuance(self, csr: bytes, *, network: str | None, profile: str | None,
                 peer: Peer | None, client_address: str | None, logs: Sequence[CtLog],
                 now: datetime, serial: int, renews: int | None = None) -> Issuance:
        """Issue a certificate for ``csr``, one step at a time (module docstring).

        ``serial`` is the certificate's, drawn by the caller from a CSPRNG
        (at least 64 random bits, BR 7.1); ``logs`` are those it may submit
        the precertificate to; ``now`` is the request's time (authorisation,
        the certificate's validity).  ``renews`` is the serial of a certificate
        this one replaces (ACME ARI's ``replaces``): when that certificate is of
        the same network, shares a name and is inside its renewal window (or
        revoked), the ``domain`` and ``names`` limits are not charged (Let's
        Encrypt exempts such renewals likewise); otherwise it is charged as
        any request.  The generator returns the issued chain.

        :raises PolicyError, NotAuthorised, RateLimited, CaError: refused, with the reason.
        """
        if not 0 < serial < MAX_SERIAL:
            raise ValueError("a serial is positive and below 2**159")
        order = self._order(csr, network, profile, peer, now, derived_serial(serial))
        names: RequestedNames = yield CheckCsr(csr, order.info.zone, order.info.prefixes,
                                               order.profile.name)
        pending = self._pending(csr, order, names, client_address, now, serial, renews)
        chosen, operators = _choose_logs(logs, pending.reservation.not_after, serial)
        refusal = yield Write(lambda txn, at: self._admit(txn, pending, at))
        if refusal is not None:
            raise refusal
        try:
            pre: bytes = yield SignPrecertificate(pending.layout, self.lint)
        except LintError as exc:
            refused = exc
            yield Write(lambda txn, at: self._release(txn, pending, refused, at))
            raise CaError(str(refused)) from None
        try:
            scts: list[tuple[str, bytes]] = yield NeedScts(
                (pre, pending.layout.issuer), tuple(lg.ref for lg in chosen), operators)
        except BadSubmission as exc:
            raise CaError(f"a log refused the precertificate: {exc}") from None
        by_ref = {lg.ref: lg for lg in chosen}
        used = [by_ref[ref] for ref, _ in scts]
        final: bytes = yield SignFinal(pending.layout, pre, tuple(
            (sct, lg.key) for (_, sct), lg in zip(scts, used, strict=True)))
        yield Write(lambda txn, at: self._record(txn, pending, final, used, at))
        return IssuedChain(serial, [final, pending.layout.issuer], tuple(lg.ref for lg in used),
                           order.network, order.profile.name)

    def reconcile(self, now: datetime, actor: str = "ca") -> list[int]:
        """Mark every unfinished reservation ``abandoned``, each with a ``cert.reconcile``
        audit record, in one transaction; return their serials.

        For the start of a node, before it issues: a reservation still in state
        ``precertificate`` then belongs to a request that died with the last
        process (an issuance in flight would find its serial abandoned).
        """
        unfinished = self.store.unfinished()

        def write(txn: Txn) -> list[int]:
            done = []
            for record in unfinished:
                if not self.store.abandon(txn, record.serial):
                    continue
                self.audit.append_in(txn, now, KIND_CERT_RECONCILE, actor, {
                    "serial": f"{record.serial:x}", "outcome": ABANDONED,
                    "network": record.network, "profile": record.profile,
                    "names": record.names, "issuer": record.issuer_key_id,
                    "reserved_at": record.issued_at.isoformat(),
                    "detail": "the final certificate was never stored; the serial stays "
                              "issued for revocation, OCSP and CRLs"})
                done.append(record.serial)
            return done

        return self.store.write(write) if unfinished else []

    def _order(self, csr: bytes, network: str | None, profile: str | None, peer: Peer | None,
               now: datetime, issuer_serial: int) -> _Order:
        """Authorise a request and choose its profile and issuer (the CSR is checked next)."""
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
        return _Order(network, info, chosen, self.issuer_for(network, now, issuer_serial),
                      f"{requester.role.value}:{requester.name}")

    def _pending(self, csr: bytes, order: _Order, names: RequestedNames,
                 client_address: str | None, now: datetime, serial: int,
                 renews: int | None) -> _Pending:
        """Lay out the certificate of a checked request: CRL shard, URLs, limits."""
        uris = ((identity_uri(self.own_network, Role.NETWORK, order.network),)
                if order.profile.network_identity else ())
        every_name = [*names.dns_names, *names.addresses, *uris]
        keys = {"identity": order.requester, "network": order.network,
                "domain": order.info.zone.rstrip("."), "names": names_key(every_name)}
        if client_address:
            keys["address"] = address_key(client_address)
        if renews is not None and self._renewal(renews, order.network, every_name, now):
            keys = {kind: key for kind, key in keys.items() if kind not in RENEWAL_EXEMPT}
        else:
            renews = None
        issuer = order.issuer
        shard = serial % self.crl_shards
        layout = Layout(csr, order.profile.name, self._issuer_der(issuer), issuer.key_id,
                        self.urls(issuer.key_id, shard), now, serial, names.dns_names,
                        names.addresses, uris)
        not_after = leaf_validity(order.profile, issuer.certificate, now)[1]
        return _Pending(layout, Reservation(serial, issuer.key_id, order.network,
                                            order.profile.name, every_name, not_after,
                                            order.requester, now, shard), keys, renews)

    def _renewal(self, serial: int, network: str, names: list[str], now: datetime) -> bool:
        """Whether a certificate for ``names`` renews the one of ``serial`` inside its window."""
        record = self.store.certificate(serial)
        if record is None or record.certificate is None or record.network != network or \
                not set(record.names) & set(names):
            return False
        start, _end = renewal_window(record.certificate.not_valid_before_utc,
                                     record.certificate.not_valid_after_utc)
        return record.revoked_at is not None or now >= start

    def _admit(self, txn: Txn, pending: _Pending, now: datetime) -> RateLimited | None:
        """Charge the rate limits and reserve the serial; a rate-limit refusal is audited and
        returned (so that its record commits).

        :raises CaError: the serial was used before (the limits' charge is undone with it).
        """
        reservation = pending.reservation
        try:
            self.limiter.check_in(txn, pending.limit_keys, now)
        except RateLimited as exc:
            self.audit.append_in(txn, now, KIND_RATELIMIT_REFUSE, reservation.requester, {
                "network": reservation.network, "names": reservation.names,
                "detail": str(exc), **exc.audit_details()})
            return exc
        if not self.store.reserve(txn, reservation):
            raise CaError(f"serial {reservation.serial:x} was used before")
        return None

    def _release(self, txn: Txn, pending: _Pending, why: Exception, now: datetime) -> None:
        """Give back the serial of a precertificate that was refused before it was logged."""
        reservation = pending.reservation
        self.store.release(txn, reservation.serial)
        self.audit.append_in(txn, now, KIND_LINT_REFUSE, reservation.requester, {
            "network": reservation.network, "names": reservation.names,
            "serial": f"{reservation.serial:x}", "detail": str(why)})

    def _record(self, txn: Txn, pending: _Pending, final: bytes, logs: list[CtLog],
                now: datetime) -> None:
        """Store the certificate over its reservation, with its audit record."""
        reservation = pending.reservation
        self.store.finish(txn, reservation.serial, final)
        self.audit.append_in(txn, now, KIND_CERT_ISSUE, reservation.requester, {
            "serial": f"{reservation.serial:x}", "network": reservation.network,
            "profile": reservation.profile, "names": reservation.names,
            "issuer": reservation.issuer_key_id, "logs": [lg.log_id.hex() for lg in logs],
            "sha256": hashlib.sha256(final).hexdigest(),
            **({"renews": f"{pending.renews:x}"} if pending.renews is not None else {})})
