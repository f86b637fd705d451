"""What the ACME core needs of its storage (a Protocol; the node's SQLite implementation
is :class:`trustchain.storage.acme.SqliteAcmeStore`).

Durability: every method has committed (``synchronous=FULL``) when it returns.
:meth:`AcmeStore.add_nonce` stores a nonce before the client can see it, so a nonce given
out before a crash is good after it (until it expires); :meth:`AcmeStore.use_nonce` is
true once per nonce, across connections, processes and restarts (RFC 8555 section 6.5).
One account per key: its RFC 7638 thumbprint is unique.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class Account:
    id: int
    thumbprint: str
    jwk: dict[str, Any]
    status: str  # valid, deactivated or revoked
    contact: list[str]
    terms_agreed: bool
    created_at: str  # RFC 3339


@dataclass(frozen=True)
class Order:
    id: int
    account_id: int
    #: open (pending or ready: decided by its authorizations), processing, valid, invalid
    status: str
    expires: str
    names: list[str]  # as asked, "*." kept
    authorizations: list[int]
    certificate: str | None  # serial (hex) once valid
    error: dict[str, Any] | None
    replaces: str | None = None  # the serial (hex) of the certificate it replaces (ARI)


@dataclass(frozen=True)
class Authorization:
    id: int
    account_id: int
    name: str  # without "*."
    wildcard: bool
    status: str  # pending, valid, invalid, deactivated
    expires: str
    token: str
    challenges: list[dict[str, Any]]  # {"type", "status", "validated"?, "error"?}


@dataclass(frozen=True)
class EabKey:
    """An External Account Binding key as the operator sees it (never its HMAC key)."""

    kid: str
    network: str
    created_at: str  # RFC 3339
    account_id: int | None  # the account it bound, once used
    withdrawn_at: str | None  # when withdrawn: it binds no account from then on


#: A new authorization of an order: (name without "*.", wildcard, token, challenges).
NewAuthorization = tuple[str, bool, str, list[dict[str, Any]]]


class KeyInUse(Exception):
    """Another account has that key already."""


class AlreadyReplaced(Exception):
    """An order replaces that certificate already (ARI, RFC 9773)."""


class AcmeStore(Protocol):
    def add_nonce(self, nonce: str, expires: int, now: int) -> None:
        """Store a nonce given out now, good until ``expires`` (Unix seconds)."""

    def use_nonce(self, nonce: str, now: int) -> bool:
        """True once for a nonce given out and not expired; False after (or never given)."""

    def account(self, account_id: int) -> Account | None: ...

    def account_by_key(self, thumbprint: str) -> Account | None: ...

    def accounts(self, after: int = 0, limit: int = 100) -> list[Account]:
        """Accounts by id, from the first after ``after``, at most ``limit``."""

    def create_account(self, thumbprint: str, jwk: dict[str, Any], contact: list[str],
                       terms_agreed: bool, now: datetime) -> tuple[Account, bool]:
        """The account of this key: created now (True), or the one it has (False)."""

    def update_account(self, account_id: int, *, contact: list[str] | None = None,
                       status: str | None = None) -> Account:
        """The account with its contact and/or status replaced."""

    def change_key(self, account_id: int, thumbprint: str, jwk: dict[str, Any]) -> Account:
        """The account's key replaced.

        :raises KeyInUse: another account has that key.
        """

    def create_order(self, account_id: int, names: list[str],
                     authorizations: Sequence[NewAuthorization | int],
                     expires: datetime, now: datetime, replaces: str | None = None) -> Order:
        """An order and its authorizations: new ones, or the ids of the account's valid
        ones it reuses.

        :raises AlreadyReplaced: another order that is not invalid (nor expired) replaces
            that certificate (serial) already (RFC 9773 section 5).
        """

    def order(self, order_id: int) -> Order | None: ...

    def set_order(self, order_id: int, status: str, *, certificate: str | None = None,
                  error: dict[str, Any] | None = None, expect: str | None = None) -> bool:
        """The order's status (and certificate or error); with ``expect``, only from that
        status (False if it was another)."""

    def authorization(self, authz_id: int) -> Authorization | None: ...

    def set_authorization(self, authz_id: int, status: str, challenges: list[dict[str, Any]],
                          expires: datetime | None = None) -> Authorization:
        """The authorization's status and challenges (and expiry, when given)."""

    def reusable_authorization(self, account_id: int, name: str, wildcard: bool,
                               valid_after: datetime) -> Authorization | None:
        """The account's valid authorization of ``name`` (and ``wildcard``) that is still
        valid at ``valid_after``, the latest to expire; None if there is none."""

    def add_certificate(self, serial: str, account_id: int, chain: str) -> None: ...

    def certificate(self, serial: str) -> tuple[int, str] | None:
        """(account id, PEM chain) of a certificate issued through ACME."""

    def order_ids(self, account_id: int, after: int, limit: int) -> list[int]:
        """The account's orders, by id, from the first after ``after``, at most ``limit``."""

    def eab(self, kid: str) -> tuple[bytes, str, int | None] | None:
        """(HMAC key, network, the account it bound or None) of an EAB key id; None when
        unknown or withdrawn."""

    def bind_eab(self, kid: str, account_id: int) -> bool:
        """Bind an unused EAB key to the account and the account to its network; False if
        the key bound an account already or was withdrawn meanwhile."""

    def eab_networks(self) -> set[str]:
        """The networks that have minted EAB keys (withdrawn ones included): their names
        need a bound account."""

    def account_network(self, account_id: int) -> str | None: ...
