"""The ACME server's tables, ``acme_nonces`` and ``acme_accounts``: the node's
implementation of :class:`trustchain.ca.acme.store.AcmeStore`, whose docstring states
what is durable when a call returns.  A nonce is used by deleting it in one statement,
so of two requests carrying it exactly one succeeds.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from trustchain.ca.acme.store import (
    Account,
    AlreadyReplaced,
    Authorization,
    EabKey,
    KeyInUse,
    NewAuthorization,
    Order,
)
from trustchain.errors import StorageError
from trustchain.storage.database import Database
from trustchain.storage.migrations import Migration, Schema

ACME_SCHEMA = Schema(
    "acme",
    (
        Migration(
            1,
            "ACME nonces and accounts",
            """
            CREATE TABLE acme_nonces (
                nonce TEXT PRIMARY KEY,
                expires INTEGER NOT NULL
            ) STRICT, WITHOUT ROWID;
            CREATE INDEX acme_nonces_expires ON acme_nonces (expires);
            CREATE TABLE acme_accounts (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                thumbprint TEXT NOT NULL UNIQUE,
                jwk TEXT NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('valid', 'deactivated', 'revoked')),
                contact TEXT NOT NULL,
                terms_agreed INTEGER NOT NULL,
                created_at TEXT NOT NULL
            ) STRICT;
            """,
        ),
        Migration(
            2,
            "ACME orders, authorizations and certificates",
            """
            CREATE TABLE acme_orders (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                account_id INTEGER NOT NULL REFERENCES acme_accounts (id),
                status TEXT NOT NULL CHECK (status IN ('open', 'processing', 'valid',
                                                       'invalid')),
                expires TEXT NOT NULL,
                names TEXT NOT NULL,
                authorizations TEXT NOT NULL,
                certificate TEXT,
                error TEXT,
                created_at TEXT NOT NULL
            ) STRICT;
            CREATE INDEX acme_orders_account ON acme_orders (account_id, id);
            CREATE TABLE acme_authorizations (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                account_id INTEGER NOT NULL REFERENCES acme_accounts (id),
                name TEXT NOT NULL,
                wildcard INTEGER NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('pending', 'valid', 'invalid',
                                                       'deactivated')),
                expires TEXT NOT NULL,
                token TEXT NOT NULL,
                challenges TEXT NOT NULL
            ) STRICT;
            CREATE TABLE acme_certificates (
                serial TEXT PRIMARY KEY,
                account_id INTEGER NOT NULL REFERENCES acme_accounts (id),
                chain TEXT NOT NULL
            ) STRICT;
            """,
        ),
        Migration(
            3,
            "ACME orders that replace a certificate (ARI, RFC 9773): each certificate once",
            """
            ALTER TABLE acme_orders ADD COLUMN replaces TEXT;
            CREATE UNIQUE INDEX acme_orders_replaces ON acme_orders (replaces)
                WHERE replaces IS NOT NULL;
            """,
        ),
        Migration(
            4,
            "External Account Binding keys, each binding one account to one network",
            """
            CREATE TABLE acme_eab (
                kid TEXT PRIMARY KEY,
                hmac_key BLOB NOT NULL,
                network TEXT NOT NULL,
                created_at TEXT NOT NULL,
                account_id INTEGER REFERENCES acme_accounts (id)
            ) STRICT;
            CREATE INDEX acme_eab_network ON acme_eab (network);
            ALTER TABLE acme_accounts ADD COLUMN network TEXT;
            """,
        ),
        Migration(
            5,
            "EAB keys can be withdrawn; an invalid order no longer holds the certificate it "
            "was to replace (RFC 9773 5); valid authorizations found for reuse by an index",
            """
            ALTER TABLE acme_eab ADD COLUMN withdrawn_at TEXT;
            DROP INDEX acme_orders_replaces;
            CREATE UNIQUE INDEX acme_orders_replaces ON acme_orders (replaces)
                WHERE replaces IS NOT NULL AND status != 'invalid';
            CREATE INDEX acme_authorizations_reuse ON acme_authorizations
                (account_id, name, wildcard, expires) WHERE status = 'valid';
            """,
        ),
    ),
)


def _account(row: sqlite3.Row | tuple[Any, ...]) -> Account:
    return Account(int(row[0]), str(row[1]), json.loads(row[2]), str(row[3]),
                   json.loads(row[4]), bool(row[5]), str(row[6]))


_COLUMNS = "id, thumbprint, jwk, status, contact, terms_agreed, created_at"
_AUTHZ_COLUMNS = "id, account_id, name, wildcard, status, expires, token, challenges"


def _authorization(row: sqlite3.Row | tuple[Any, ...]) -> Authorization:
    return Authorization(int(row[0]), int(row[1]), str(row[2]), bool(row[3]), str(row[4]),
                         str(row[5]), str(row[6]), json.loads(row[7]))


class SqliteAcmeStore:
    """:class:`~trustchain.ca.acme.store.AcmeStore` over SQLite (apply :data:`ACME_SCHEMA`
    first)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def _write(self, what: str, sql: str, args: tuple[Any, ...]) -> sqlite3.Cursor:
        try:
            with self.db.transaction() as conn:
                return conn.execute(sql, args)
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            raise StorageError(f"acme {what}: {exc}") from None

    # --- nonces --------------------------------------------------------------------

    def add_nonce(self, nonce: str, expires: int, now: int) -> None:
        """Store a nonce given out now, good until ``expires`` (Unix seconds); expired
        ones go in the same transaction."""
        try:
            with self.db.transaction() as conn:
                conn.execute("DELETE FROM acme_nonces WHERE expires <= ?", (now,))
                conn.execute("INSERT INTO acme_nonces (nonce, expires) VALUES (?, ?)",
                             (nonce, expires))
        except sqlite3.Error as exc:
            raise StorageError(f"acme nonce: {exc}") from None

    def use_nonce(self, nonce: str, now: int) -> bool:
        """True once for a nonce given out and not expired; False after (or never given)."""
        cursor = self._write("nonce", "DELETE FROM acme_nonces WHERE nonce = ? AND expires > ?",
                             (nonce, now))
        return cursor.rowcount == 1

    # --- accounts ------------------------------------------------------------------

    def account(self, account_id: int) -> Account | None:
        row = self.db.conn.execute(f"SELECT {_COLUMNS} FROM acme_accounts WHERE id = ?",
                                   (account_id,)).fetchone()
        return _account(row) if row else None

    def accounts(self, after: int = 0, limit: int = 100) -> list[Account]:
        """Accounts by id, from the first after ``after``, at most ``limit``."""
        rows = self.db.conn.execute(
            f"SELECT {_COLUMNS} FROM acme_accounts WHERE id > ? ORDER BY id LIMIT ?",
            (after, limit)).fetchall()
        return [_account(row) for row in rows]

    def account_by_key(self, thumbprint: str) -> Account | None:
        row = self.db.conn.execute(f"SELECT {_COLUMNS} FROM acme_accounts WHERE thumbprint = ?",
                                   (thumbprint,)).fetchone()
        return _account(row) if row else None

    def create_account(self, thumbprint: str, jwk: dict[str, Any], contact: list[str],
                       terms_agreed: bool, now: datetime) -> tuple[Account, bool]:
        """The account of this key: created now (True), or the one it has (False)."""
        try:
            with self.db.transaction() as conn:
                row = conn.execute(f"SELECT {_COLUMNS} FROM acme_accounts WHERE thumbprint = ?",
                                   (thumbprint,)).fetchone()
                if row:
                    return _account(row), False
                cursor = conn.execute(
                    "INSERT INTO acme_accounts (thumbprint, jwk, status, contact, terms_agreed, "
                    "created_at) VALUES (?, ?, 'valid', ?, ?, ?)",
                    (thumbprint, json.dumps(jwk, sort_keys=True), json.dumps(contact),
                     int(terms_agreed), now.isoformat()))
                account_id = cursor.lastrowid
        except sqlite3.Error as exc:
            raise StorageError(f"acme account: {exc}") from None
        created = self.account(int(account_id or 0))
        assert created is not None
        return created, True

    def update_account(self, account_id: int, *, contact: list[str] | None = None,
                       status: str | None = None) -> Account:
        """The account with its contact and/or status replaced."""
        if contact is not None:
            self._write("account", "UPDATE acme_accounts SET contact = ? WHERE id = ?",
                        (json.dumps(contact), account_id))
        if status is not None:
            self._write("account", "UPDATE acme_accounts SET status = ? WHERE id = ?",
                        (status, account_id))
        account = self.account(account_id)
        assert account is not None
        return account

    def change_key(self, account_id: int, thumbprint: str, jwk: dict[str, Any]) -> Account:
        """The account's key replaced.

        :raises KeyInUse: another account has that key.
        """
        try:
            self._write("account", "UPDATE acme_accounts SET thumbprint = ?, jwk = ? WHERE id = ?",
                        (thumbprint, json.dumps(jwk, sort_keys=True), account_id))
        except sqlite3.IntegrityError:
            raise KeyInUse(thumbprint) from None
        account = self.account(account_id)
        assert account is not None
        return account

    # --- orders, authorizations, certificates ---------------------------------------

    def create_order(self, account_id: int, names: list[str],
                     authorizations: Sequence[NewAuthorization | int],
                     expires: datetime, now: datetime, replaces: str | None = None) -> Order:
        """An order and its new authorizations (or the ids of reused ones), in one
        transaction.

        :raises AlreadyReplaced: another order that is not invalid replaces that
            certificate already (an expired one is marked invalid first).
        """
        try:
            with self.db.transaction() as conn:
                if replaces is not None:  # an expired order no longer holds it
                    conn.execute("UPDATE acme_orders SET status = 'invalid' WHERE replaces = ? "
                                 "AND status = 'open' AND expires <= ?",
                                 (replaces, now.isoformat()))
                ids = []
                for item in authorizations:
                    if isinstance(item, int):
                        ids.append(item)
                        continue
                    name, wildcard, token, challenges = item
                    cursor = conn.execute(
                        "INSERT INTO acme_authorizations (account_id, name, wildcard, status, "
                        "expires, token, challenges) VALUES (?, ?, ?, 'pending', ?, ?, ?)",
                        (account_id, name, int(wildcard), expires.isoformat(), token,
                         json.dumps(challenges)))
                    ids.append(int(cursor.lastrowid or 0))
                cursor = conn.execute(
                    "INSERT INTO acme_orders (account_id, status, expires, names, "
                    "authorizations, created_at, replaces) VALUES (?, 'open', ?, ?, ?, ?, ?)",
                    (account_id, expires.isoformat(), json.dumps(names), json.dumps(ids),
                     now.isoformat(), replaces))
                order_id = int(cursor.lastrowid or 0)
        except sqlite3.IntegrityError:
            raise AlreadyReplaced(replaces or "") from None
        except sqlite3.Error as exc:
            raise StorageError(f"acme order: {exc}") from None
        order = self.order(order_id)
        assert order is not None
        return order

    def order(self, order_id: int) -> Order | None:
        row = self.db.conn.execute(
            "SELECT id, account_id, status, expires, names, authorizations, certificate, "
            "error, replaces FROM acme_orders WHERE id = ?", (order_id,)).fetchone()
        if row is None:
            return None
        return Order(int(row[0]), int(row[1]), str(row[2]), str(row[3]), json.loads(row[4]),
                     json.loads(row[5]), row[6], json.loads(row[7]) if row[7] else None,
                     row[8])

    def set_order(self, order_id: int, status: str, *, certificate: str | None = None,
                  error: dict[str, Any] | None = None, expect: str | None = None) -> bool:
        """The order's status (and certificate or error); with ``expect``, only from that
        status (False if it was another: a second finalize loses)."""
        sql = "UPDATE acme_orders SET status = ?, certificate = ?, error = ? WHERE id = ?"
        args: tuple[Any, ...] = (status, certificate, json.dumps(error) if error else None,
                                 order_id)
        if expect is not None:
            sql += " AND status = ?"
            args += (expect,)
        return self._write("order", sql, args).rowcount == 1

    def authorization(self, authz_id: int) -> Authorization | None:
        row = self.db.conn.execute(
            f"SELECT {_AUTHZ_COLUMNS} FROM acme_authorizations WHERE id = ?",
            (authz_id,)).fetchone()
        return _authorization(row) if row else None

    def reusable_authorization(self, account_id: int, name: str, wildcard: bool,
                               valid_after: datetime) -> Authorization | None:
        row = self.db.conn.execute(
            f"SELECT {_AUTHZ_COLUMNS} FROM acme_authorizations WHERE account_id = ? AND "
            "name = ? AND wildcard = ? AND status = 'valid' AND expires > ? "
            "ORDER BY expires DESC LIMIT 1",
            (account_id, name, int(wildcard), valid_after.isoformat())).fetchone()
        return _authorization(row) if row else None

    def set_authorization(self, authz_id: int, status: str, challenges: list[dict[str, Any]],
                          expires: datetime | None = None) -> Authorization:
        sql = "UPDATE acme_authorizations SET status = ?, challenges = ?"
        args: tuple[Any, ...] = (status, json.dumps(challenges))
        if expires is not None:
            sql, args = sql + ", expires = ?", (*args, expires.isoformat())
        self._write("authorization", sql + " WHERE id = ?", (*args, authz_id))
        authz = self.authorization(authz_id)
        assert authz is not None
        return authz

    def add_certificate(self, serial: str, account_id: int, chain: str) -> None:
        self._write("certificate", "INSERT INTO acme_certificates (serial, account_id, chain) "
                    "VALUES (?, ?, ?)", (serial, account_id, chain))

    def certificate(self, serial: str) -> tuple[int, str] | None:
        """(account id, PEM chain) of a certificate issued through ACME."""
        row = self.db.conn.execute("SELECT account_id, chain FROM acme_certificates "
                                   "WHERE serial = ?", (serial,)).fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def order_ids(self, account_id: int, after: int, limit: int) -> list[int]:
        """The account's orders, by id, from the first after ``after``, at most ``limit``."""
        rows = self.db.conn.execute(
            "SELECT id FROM acme_orders WHERE account_id = ? AND id > ? ORDER BY id LIMIT ?",
            (account_id, after, limit)).fetchall()
        return [int(row[0]) for row in rows]

    def add_eab(self, kid: str, hmac_key: bytes, network: str, now: datetime) -> None:
        self._write("eab", "INSERT INTO acme_eab (kid, hmac_key, network, created_at) "
                    "VALUES (?, ?, ?, ?)", (kid, hmac_key, network, now.isoformat()))

    def eab(self, kid: str) -> tuple[bytes, str, int | None] | None:
        """(HMAC key, network, the account it bound or None) of an EAB key id; None when
        unknown or withdrawn."""
        row = self.db.conn.execute("SELECT hmac_key, network, account_id FROM acme_eab "
                                   "WHERE kid = ? AND withdrawn_at IS NULL", (kid,)).fetchone()
        return (bytes(row[0]), str(row[1]), row[2]) if row else None

    def eab_keys(self, network: str | None = None) -> list[EabKey]:
        """The EAB keys minted (of ``network``, or all), oldest first."""
        rows = self.db.conn.execute(
            "SELECT kid, network, created_at, account_id, withdrawn_at FROM acme_eab "
            "WHERE ? IS NULL OR network = ? ORDER BY created_at, kid",
            (network, network)).fetchall()
        return [EabKey(str(r[0]), str(r[1]), str(r[2]), r[3], r[4]) for r in rows]

    def withdraw_eab(self, kid: str, now: datetime) -> EabKey | None:
        """The key binds no account from now on (one it bound stays bound); None if there
        is no such key.  Its network still needs bound accounts."""
        self._write("eab", "UPDATE acme_eab SET withdrawn_at = ? WHERE kid = ? AND "
                    "withdrawn_at IS NULL", (now.isoformat(), kid))
        return next((k for k in self.eab_keys() if k.kid == kid), None)

    def bind_eab(self, kid: str, account_id: int) -> bool:
        """Bind an unused EAB key to the account and the account to its network, in one
        transaction; False if the key bound an account already."""
        try:
            with self.db.transaction() as conn:
                cursor = conn.execute("UPDATE acme_eab SET account_id = ? WHERE kid = ? AND "
                                      "account_id IS NULL AND withdrawn_at IS NULL",
                                      (account_id, kid))
                if cursor.rowcount != 1:
                    return False
                conn.execute("UPDATE acme_accounts SET network = (SELECT network FROM "
                             "acme_eab WHERE kid = ?) WHERE id = ?", (kid, account_id))
                return True
        except sqlite3.Error as exc:
            raise StorageError(f"acme eab: {exc}") from None

    def eab_networks(self) -> set[str]:
        """The networks that have minted EAB keys: their names need a bound account."""
        return {str(r[0]) for r in self.db.conn.execute("SELECT DISTINCT network FROM acme_eab")}

    def account_network(self, account_id: int) -> str | None:
        row = self.db.conn.execute("SELECT network FROM acme_accounts WHERE id = ?",
                                   (account_id,)).fetchone()
        return str(row[0]) if row and row[0] is not None else None
