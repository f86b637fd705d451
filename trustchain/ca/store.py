"""What the CA core needs of the world outside it: its storage, rate limits, audit log and keys.

Contracts only (Protocols); the node implements them over SQLite
(:mod:`trustchain.storage.ca`, :mod:`trustchain.storage.ratelimit`,
:mod:`trustchain.storage.audit`) and its key store (:mod:`trustchain.wiring.keys`).

Durability.  A method that takes no :class:`Txn` has committed
(``synchronous=FULL``) before it returns.  A method that takes a
:class:`Txn` writes inside that open transaction: its writes are durable
when the transaction commits and undone if it rolls back.  That is how one
issuance step's writes (rate limits, serial reservation, certificate, audit
record) share a durable commit with other requests' steps (the adapter's
group commit), and how a revocation and its audit record commit together
(:meth:`CaStore.write`).

Serials.  A serial is reserved (:meth:`CaStore.reserve`) before its
precertificate is signed, so nothing leaves the CA under a serial that is
not recorded; a serial is never reserved twice, whatever happened to its
first use.

Unfinished issuances.  A serial is in one of three states: ``precertificate``
(reserved; its precertificate may have been signed and logged, the final
certificate not yet stored), ``issued`` (the final certificate stored over
it) or ``abandoned``.  A node that stops mid-issuance (a crash, a kill)
leaves ``precertificate`` reservations that no request will ever finish: their
requester got no answer.  At start, before the CA issues anything,
:meth:`~trustchain.ca.authority.CertificateAuthority.reconcile` marks every
one ``abandoned``, each with a ``cert.reconcile`` audit record, rather than
finishing it: a final certificate signed then would reach nobody (the client
retries under a new serial), and the request's CSR is not kept to lay it out
again.  The precertificate may be public in CT logs, and the CA/Browser
Forum treats a precertificate as proof that its certificate exists (BR
7.1.2.9, 4.9): so in every state the serial counts as issued for revocation,
OCSP and CRLs.  OCSP answers ``good`` until it is revoked, ``ca revoke``
takes its serial, and revocation by the certificate's key accepts its
precertificate (:mod:`trustchain.ca.revoking`).  Only ``issued`` serials are
credentials (a network-admin certificate that was never delivered acts for
nobody).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

T = TypeVar("T")


class Txn(Protocol):
    """An open transaction of the store's database, opaque to the core (only passed on)."""


@dataclass(frozen=True)
class IssuerRecord:
    """A network's intermediate: the key that signs for it, and its certificate."""

    key_id: str
    network: str
    generation: int
    certificate: x509.Certificate
    active: bool


@dataclass(frozen=True)
class Reservation:
    """A serial taken for a certificate about to be signed, and what it will certify."""

    serial: int
    issuer_key_id: str
    network: str
    profile: str
    names: list[str]
    not_after: datetime
    requester: str
    issued_at: datetime
    crl_shard: int


@dataclass(frozen=True)
class CertificateRecord(Reservation):
    """A serial as stored: its reservation, then its final certificate and its revocation."""

    #: "precertificate" (reserved, its precertificate maybe logged), "issued" or "abandoned"
    #: (never finished, reconciled at start: still issued for revocation status).
    state: str = "precertificate"
    certificate: x509.Certificate | None = None
    revoked_at: datetime | None = None
    reason: str | None = None


class CaStore(Protocol):
    """The CA's issuers, every serial it used, revocations and CRL numbers."""

    def write(self, fn: Callable[[Txn], T]) -> T:
        """``fn`` in a transaction of its own: committed when this returns, undone if it raises."""
        ...

    def issuers(self, network: str | None = None) -> list[IssuerRecord]: ...
    def active_issuer(self, network: str) -> IssuerRecord | None: ...
    def issuer(self, key_id: str) -> IssuerRecord | None: ...

    def next_generation(self, network: str) -> int:
        """One more than the network's last intermediate generation (1 for its first)."""
        ...

    def add_issuer(self, txn: Txn, key_id: str, network: str, generation: int,
                   certificate: x509.Certificate, now: datetime) -> IssuerRecord:
        """Store a new intermediate of ``network``; it becomes the active one."""
        ...

    def reserve(self, txn: Txn, reservation: Reservation) -> bool:
        """Record the serial as used (state ``precertificate``); False, writing nothing, if
        it was ever used before."""
        ...

    def release(self, txn: Txn, serial: int) -> None:
        """Drop the reservation of a serial whose precertificate never left the CA."""
        ...

    def finish(self, txn: Txn, serial: int, der: bytes) -> None:
        """Store the final certificate (DER) over its reservation (state ``issued``).

        :raises StorageError: there is no reservation (a bug: callers reserve first).
        """
        ...

    def unfinished(self) -> list[CertificateRecord]:
        """Every reservation still in state ``precertificate``, oldest first."""
        ...

    def abandon(self, txn: Txn, serial: int) -> bool:
        """Mark a ``precertificate`` reservation ``abandoned`` (never to be finished; still
        revocable); False, writing nothing, if it is in another state or unknown."""
        ...

    def certificate(self, serial: int) -> CertificateRecord | None: ...
    def certificates(self, network: str | None = None,
                     limit: int = 1000) -> list[CertificateRecord]: ...

    def revoke(self, txn: Txn, serial: int, reason: str, now: datetime) -> bool:
        """Mark ``serial`` revoked; False, writing nothing, if it is unknown or already revoked."""
        ...

    def revoked(self, issuer_key_id: str, now: datetime,
                shard: int = 0) -> list[CertificateRecord]:
        """Revoked, unexpired certificates of one CRL shard of an issuer (what that CRL lists)."""
        ...

    def crl_shards(self, issuer_key_id: str) -> set[int]:
        """The CRL shards that this issuer's certificates name (the shard count may change)."""
        ...

    def next_crl_number(self, issuer: str) -> int:
        """A CRL number larger than every one used before for ``issuer``."""
        ...


class Limits(Protocol):
    """Rate-limit buckets (the arithmetic is :mod:`trustchain.ca.ratelimit`)."""

    def check_in(self, txn: Txn, keys: Mapping[str, str], now: datetime) -> None:
        """Charge one unit to every bucket in ``keys`` (limit name -> key), or to none.

        :raises RateLimited: for the bucket that frees up last; nothing written.
        """
        ...


class AuditTrail(Protocol):
    """The append-only, hash-chained audit log (:mod:`trustchain.ca.audit`)."""

    def append_in(self, txn: Txn, now: datetime, kind: str, actor: str,
                  details: dict[str, Any]) -> object: ...


class CaKeys(Protocol):
    """The key store, as far as the CA creates and looks up keys (signing is the Signer's)."""

    def key_id(self, purpose: str) -> str | None:
        """The active key of ``purpose``; None if the store has none (the root kept offline)."""
        ...

    def generate(self, purpose: str, now: datetime) -> tuple[str, ec.EllipticCurvePublicKey]:
        """A new ECDSA P-256 key for ``purpose``, stored before this returns: its id, its
        public key."""
        ...
