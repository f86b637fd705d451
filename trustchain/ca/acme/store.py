"""What the ACME core needs of its storage (a Protocol; the node's SQLite implementation
is :class:`trustchain.storage.acme.SqliteAcmeStore`).

Durability: every method has committed (``synchronous=FULL``) when it returns.
:meth:`AcmeStore.add_nonce` stores a nonce before the client can see it, so a nonce given
out before a crash is good after it (until it expires); :meth:`AcmeStore.use_nonce` is
true once per nonce, across connections, processes and restarts (RFC 8555 section 6.5).
One account per key: its RFC 7638 thumbprint is unique.
"""

from __future__ import annotations

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


class KeyInUse(Exception):
    """Another account has that key already."""


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
