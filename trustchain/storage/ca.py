"""Tables owned by the CA: its issuers, every serial it used, revocations, CRL numbers.

Implements :class:`trustchain.ca.store.CaStore`, whose docstring is the
contract: a method without a transaction argument has committed
(``synchronous=FULL``) when it returns; one with a transaction writes in the
caller's open transaction (a ``sqlite3.Connection`` inside ``BEGIN
IMMEDIATE``: the node's group commit, or :meth:`SqliteCaStore.write`) and is
durable when that commits.  The serial is the primary key of
``ca_certificates``, so a serial can never be reserved twice (a collision
is 2**-128 a draw, or a bug), whatever became of its first reservation
(``issued``, still a ``precertificate``, or ``abandoned`` at a restart).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar, cast

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from trustchain.ca.store import CertificateRecord, IssuerRecord, Reservation, Txn
from trustchain.errors import StorageError
from trustchain.storage.database import Database
from trustchain.storage.migrations import Migration, Schema

CA_SCHEMA = Schema(
    "ca",
    (
        Migration(
            1,
            "issuers, certificates and CRL numbers",
            """
            CREATE TABLE ca_issuers (
                key_id TEXT PRIMARY KEY,
                network TEXT NOT NULL,
                generation INTEGER NOT NULL,
                der BLOB NOT NULL,
                not_after TEXT NOT NULL,
                created_at TEXT NOT NULL,
                active INTEGER NOT NULL CHECK (active IN (0, 1)),
                UNIQUE (network, generation)
            ) STRICT;
            CREATE TABLE ca_certificates (
                serial TEXT PRIMARY KEY,
                issuer_key_id TEXT NOT NULL REFERENCES ca_issuers (key_id),
                network TEXT NOT NULL,
                profile TEXT NOT NULL,
                names TEXT NOT NULL,
                not_after TEXT NOT NULL,
                requester TEXT NOT NULL,
                issued_at TEXT NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('precertificate', 'issued')),
                der BLOB,
                revoked_at TEXT,
                reason TEXT
            ) STRICT;
            CREATE INDEX ca_certificates_revoked ON ca_certificates (issuer_key_id, revoked_at)
                WHERE revoked_at IS NOT NULL;
            CREATE TABLE ca_crl_numbers (
                issuer TEXT PRIMARY KEY,
                number INTEGER NOT NULL
            ) STRICT;
            """,
        ),
        Migration(
            2,
            "CRL shards: each certificate is listed, once revoked, on one shard of its issuer",
            "ALTER TABLE ca_certificates ADD COLUMN crl_shard INTEGER NOT NULL DEFAULT 0",
        ),
        Migration(
            3,
            "state 'abandoned': a reservation reconciled at start, never to be finished",
            # SQLite cannot alter a CHECK: the table is rebuilt (its rows copied by column
            # name) in this migration's transaction.  Nothing refers to ca_certificates, so
            # dropping and renaming it leaves every foreign key as it was.
            """
            CREATE TABLE ca_certificates_v3 (
                serial TEXT PRIMARY KEY,
                issuer_key_id TEXT NOT NULL REFERENCES ca_issuers (key_id),
                network TEXT NOT NULL, profile TEXT NOT NULL, names TEXT NOT NULL,
                not_after TEXT NOT NULL, requester TEXT NOT NULL, issued_at TEXT NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('precertificate', 'issued', 'abandoned')),
                der BLOB, revoked_at TEXT, reason TEXT,
                crl_shard INTEGER NOT NULL DEFAULT 0
            ) STRICT;
            INSERT INTO ca_certificates_v3 (serial, issuer_key_id, network, profile, names,
                not_after, requester, issued_at, state, der, revoked_at, reason, crl_shard)
            SELECT serial, issuer_key_id, network, profile, names, not_after, requester,
                issued_at, state, der, revoked_at, reason, crl_shard FROM ca_certificates;
            DROP TABLE ca_certificates;
            ALTER TABLE ca_certificates_v3 RENAME TO ca_certificates;
            CREATE INDEX ca_certificates_revoked ON ca_certificates (issuer_key_id, revoked_at)
                WHERE revoked_at IS NOT NULL;
            CREATE INDEX ca_certificates_unfinished ON ca_certificates (issued_at)
                WHERE state = 'precertificate';
            """,
        ),
    ),
)


def _ts(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


T = TypeVar("T")


def _conn(txn: Txn) -> sqlite3.Connection:
    """The open connection behind a transaction handle (this store hands out no other)."""
    return cast(sqlite3.Connection, txn)


class SqliteCaStore:
    """The CA's tables in the node database (:class:`trustchain.ca.store.CaStore`)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        #: The issuers, parsed once (every issuance and OCSP answer needs them; the node is
        #: their only writer, through add_issuer).
        self._issuers: list[IssuerRecord] | None = None

    def write(self, fn: Callable[[Txn], T]) -> T:
        with self.db.transaction() as conn:
            return fn(conn)

    # --- issuers ------------------------------------------------------------------

    def add_issuer(self, txn: Txn, key_id: str, network: str, generation: int,
                   certificate: x509.Certificate, now: datetime) -> IssuerRecord:
        conn = _conn(txn)
        conn.execute("UPDATE ca_issuers SET active = 0 WHERE network = ?", (network,))
        conn.execute(
            "INSERT INTO ca_issuers (key_id, network, generation, der, not_after, created_at, "
            "active) VALUES (?, ?, ?, ?, ?, ?, 1)",
            (key_id, network, generation, certificate.public_bytes(Encoding.DER),
             _ts(certificate.not_valid_after_utc), _ts(now)))
        self._issuers = None
        return IssuerRecord(key_id, network, generation, certificate, True)

    def next_generation(self, network: str) -> int:
        row = self.db.conn.execute("SELECT max(generation) FROM ca_issuers WHERE network = ?",
                                   (network,)).fetchone()
        return int(row[0] or 0) + 1

    def issuers(self, network: str | None = None) -> list[IssuerRecord]:
        if self._issuers is None:
            rows = self.db.conn.execute(
                "SELECT key_id, network, generation, der, active FROM ca_issuers "
                "ORDER BY network, generation").fetchall()
            self._issuers = [IssuerRecord(r[0], r[1], r[2], x509.load_der_x509_certificate(r[3]),
                                          bool(r[4])) for r in rows]
        return [i for i in self._issuers if network is None or i.network == network]

    def active_issuer(self, network: str) -> IssuerRecord | None:
        found = [i for i in self.issuers(network) if i.active]
        return found[0] if found else None

    def issuer(self, key_id: str) -> IssuerRecord | None:
        found = [i for i in self.issuers() if i.key_id == key_id]
        return found[0] if found else None

    # --- certificates ---------------------------------------------------------------

    def reserve(self, txn: Txn, reservation: Reservation) -> bool:
        r = reservation
        try:
            _conn(txn).execute(
                "INSERT INTO ca_certificates (serial, issuer_key_id, network, profile, names, "
                "not_after, requester, issued_at, state, crl_shard) VALUES (?, ?, ?, ?, ?, ?, ?, "
                "?, 'precertificate', ?)",
                (f"{r.serial:x}", r.issuer_key_id, r.network, r.profile, json.dumps(r.names),
                 _ts(r.not_after), r.requester, _ts(r.issued_at), r.crl_shard))
        except sqlite3.IntegrityError:
            return False
        return True

    def release(self, txn: Txn, serial: int) -> None:
        _conn(txn).execute(
            "DELETE FROM ca_certificates WHERE serial = ? AND state = 'precertificate'",
            (f"{serial:x}",))

    def finish(self, txn: Txn, serial: int, der: bytes) -> None:
        updated = _conn(txn).execute(
            "UPDATE ca_certificates SET state = 'issued', der = ? "
            "WHERE serial = ? AND state = 'precertificate'", (der, f"{serial:x}")).rowcount
        if updated != 1:
            raise StorageError(f"no reservation for serial {serial:x}")

    def unfinished(self) -> list[CertificateRecord]:
        rows = self.db.conn.execute(
            "SELECT * FROM ca_certificates WHERE state = 'precertificate' "
            "ORDER BY issued_at, serial").fetchall()
        return [self._record(r) for r in rows]

    def abandon(self, txn: Txn, serial: int) -> bool:
        return _conn(txn).execute(
            "UPDATE ca_certificates SET state = 'abandoned' "
            "WHERE serial = ? AND state = 'precertificate'", (f"{serial:x}",)).rowcount == 1

    def _record(self, row: sqlite3.Row) -> CertificateRecord:
        return CertificateRecord(
            int(row["serial"], 16), row["issuer_key_id"], row["network"], row["profile"],
            json.loads(row["names"]), _dt(row["not_after"]), row["requester"],
            _dt(row["issued_at"]), row["crl_shard"], state=row["state"],
            certificate=x509.load_der_x509_certificate(row["der"])
            if row["der"] is not None else None,
            revoked_at=_dt(row["revoked_at"]) if row["revoked_at"] else None,
            reason=row["reason"])

    def certificate(self, serial: int) -> CertificateRecord | None:
        row = self.db.conn.execute("SELECT * FROM ca_certificates WHERE serial = ?",
                                   (f"{serial:x}",)).fetchone()
        return self._record(row) if row is not None else None

    def certificates(self, network: str | None = None, limit: int = 1000) -> list[CertificateRecord]:
        rows = self.db.conn.execute(
            "SELECT * FROM ca_certificates "
            + ("WHERE network = ? " if network is not None else "")
            + "ORDER BY issued_at DESC LIMIT ?",
            ((network, limit) if network is not None else (limit,))).fetchall()
        return [self._record(r) for r in rows]

    def revoke(self, txn: Txn, serial: int, reason: str, now: datetime) -> bool:
        return _conn(txn).execute(
            "UPDATE ca_certificates SET revoked_at = ?, reason = ? "
            "WHERE serial = ? AND revoked_at IS NULL",
            (_ts(now), reason, f"{serial:x}")).rowcount == 1

    def revoked(self, issuer_key_id: str, now: datetime,
                shard: int = 0) -> list[CertificateRecord]:
        rows = self.db.conn.execute(
            "SELECT * FROM ca_certificates WHERE issuer_key_id = ? AND crl_shard = ? "
            "AND revoked_at IS NOT NULL AND not_after > ? ORDER BY serial",
            (issuer_key_id, shard, _ts(now))).fetchall()
        return [self._record(r) for r in rows]

    def crl_shards(self, issuer_key_id: str) -> set[int]:
        rows = self.db.conn.execute(
            "SELECT DISTINCT crl_shard FROM ca_certificates WHERE issuer_key_id = ?",
            (issuer_key_id,)).fetchall()
        return {int(r[0]) for r in rows}

    def next_crl_number(self, issuer: str) -> int:
        with self.db.transaction() as conn:
            row = conn.execute("SELECT number FROM ca_crl_numbers WHERE issuer = ?",
                               (issuer,)).fetchone()
            number = (row[0] + 1) if row else 1
            conn.execute("INSERT INTO ca_crl_numbers (issuer, number) VALUES (?, ?) "
                         "ON CONFLICT (issuer) DO UPDATE SET number = excluded.number",
                         (issuer, number))
        return number
