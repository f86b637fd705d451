"""Tables owned by the CA: its issuers, every serial it used, revocations, CRL numbers.

A serial is reserved (``reserve``) when its precertificate is signed, before
anything leaves the CA, and the primary key makes it unique: a collision
(2**-128 a draw, or a bug) fails the insert instead of issuing a duplicate.
The final certificate is written over the reservation together with its
audit record in one transaction (``finish`` takes the open connection).  A
serial whose precertificate was logged but whose certificate was never
finished stays ``precertificate``: for revocation and OCSP it counts as
issued, as the CA/Browser Forum requires.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

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
    ),
)


def _ts(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


@dataclass(frozen=True)
class IssuerRecord:
    key_id: str
    network: str
    generation: int
    certificate: x509.Certificate
    active: bool


@dataclass(frozen=True)
class CertificateRecord:
    serial: int
    issuer_key_id: str
    network: str
    profile: str
    names: list[str]
    not_after: datetime
    requester: str
    issued_at: datetime
    state: str
    certificate: x509.Certificate | None
    revoked_at: datetime | None
    reason: str | None
    crl_shard: int = 0


class CaStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        #: The issuers, parsed once (every issuance and OCSP answer needs them; the node is
        #: their only writer, through add_issuer).
        self._issuers: list[IssuerRecord] | None = None

    # --- issuers ------------------------------------------------------------------

    def add_issuer(self, key_id: str, network: str, certificate: x509.Certificate,
                   now: datetime) -> IssuerRecord:
        """Store a new intermediate for ``network``; it becomes the active one."""
        with self.db.transaction() as conn:
            row = conn.execute("SELECT max(generation) FROM ca_issuers WHERE network = ?",
                               (network,)).fetchone()
            generation = (row[0] or 0) + 1
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

    def reserve_in(self, conn: sqlite3.Connection, serial: int, issuer_key_id: str,
                   network: str, profile: str, names: list[str], not_after: datetime,
                   requester: str, now: datetime, crl_shard: int = 0) -> None:
        """Record a serial as used by a precertificate, in the caller's transaction.

        :raises StorageError: if the serial was ever used before.
        """
        try:
            conn.execute(
                "INSERT INTO ca_certificates (serial, issuer_key_id, network, profile, names, "
                "not_after, requester, issued_at, state, crl_shard) VALUES (?, ?, ?, ?, ?, ?, ?, "
                "?, 'precertificate', ?)",
                (f"{serial:x}", issuer_key_id, network, profile, json.dumps(names),
                 _ts(not_after), requester, _ts(now), crl_shard))
        except sqlite3.IntegrityError:
            raise StorageError(f"serial {serial:x} was used before") from None

    def release_in(self, conn: sqlite3.Connection, serial: int) -> None:
        """Drop the reservation of a serial whose precertificate never left the CA."""
        conn.execute("DELETE FROM ca_certificates WHERE serial = ? AND state = 'precertificate'",
                     (f"{serial:x}",))

    def finish(self, conn: sqlite3.Connection, serial: int, der: bytes) -> None:
        """Store the final certificate (DER, of ``serial``) over its reservation, in the
        caller's transaction."""
        updated = conn.execute(
            "UPDATE ca_certificates SET state = 'issued', der = ? "
            "WHERE serial = ? AND state = 'precertificate'", (der, f"{serial:x}")).rowcount
        if updated != 1:
            raise StorageError(f"no reservation for serial {serial:x}")

    def _record(self, row: sqlite3.Row) -> CertificateRecord:
        return CertificateRecord(
            int(row["serial"], 16), row["issuer_key_id"], row["network"], row["profile"],
            json.loads(row["names"]), _dt(row["not_after"]), row["requester"],
            _dt(row["issued_at"]), row["state"],
            x509.load_der_x509_certificate(row["der"]) if row["der"] is not None else None,
            _dt(row["revoked_at"]) if row["revoked_at"] else None, row["reason"],
            row["crl_shard"])

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

    def revoke(self, conn: sqlite3.Connection, serial: int, reason: str, now: datetime) -> None:
        """Mark ``serial`` revoked, in the caller's transaction.

        :raises StorageError: if it is unknown or already revoked.
        """
        row = conn.execute("SELECT revoked_at FROM ca_certificates WHERE serial = ?",
                           (f"{serial:x}",)).fetchone()
        if row is None:
            raise StorageError(f"no certificate with serial {serial:x}")
        if row[0] is not None:
            raise StorageError(f"serial {serial:x} was already revoked at {row[0]}")
        conn.execute("UPDATE ca_certificates SET revoked_at = ?, reason = ? WHERE serial = ?",
                     (_ts(now), reason, f"{serial:x}"))

    def revoked(self, issuer_key_id: str, now: datetime,
                shard: int = 0) -> list[CertificateRecord]:
        """Revoked, unexpired certificates of one CRL shard of an issuer (what that CRL lists)."""
        rows = self.db.conn.execute(
            "SELECT * FROM ca_certificates WHERE issuer_key_id = ? AND crl_shard = ? "
            "AND revoked_at IS NOT NULL AND not_after > ? ORDER BY serial",
            (issuer_key_id, shard, _ts(now))).fetchall()
        return [self._record(r) for r in rows]

    def next_crl_number(self, issuer: str) -> int:
        """A CRL number larger than every one used before for ``issuer`` (committed first)."""
        with self.db.transaction() as conn:
            row = conn.execute("SELECT number FROM ca_crl_numbers WHERE issuer = ?",
                               (issuer,)).fetchone()
            number = (row[0] + 1) if row else 1
            conn.execute("INSERT INTO ca_crl_numbers (issuer, number) VALUES (?, ?) "
                         "ON CONFLICT (issuer) DO UPDATE SET number = excluded.number",
                         (issuer, number))
        return number
