"""Tables owned by the node itself: identity facts and the record of its runs.

Contract: every method commits before it returns (``synchronous=FULL``), so
what it wrote survives a crash from then on.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from trustchain.storage.database import Database
from trustchain.storage.migrations import Migration, Schema

NODE_SCHEMA = Schema(
    "node",
    (
        Migration(
            1,
            "node identity and runs",
            """
            CREATE TABLE node_meta (
                key TEXT PRIMARY KEY,
                value TEXT NOT NULL
            ) STRICT;
            CREATE TABLE node_runs (
                id INTEGER PRIMARY KEY,
                pid INTEGER NOT NULL,
                started_at TEXT NOT NULL,
                stopped_at TEXT
            ) STRICT;
            """,
        ),
        Migration(
            2,
            "transport certificates",
            """
            CREATE TABLE node_certificates (
                id INTEGER PRIMARY KEY,
                purpose TEXT NOT NULL,
                serial TEXT NOT NULL UNIQUE,
                not_after TEXT NOT NULL,
                der BLOB NOT NULL
            ) STRICT;
            CREATE INDEX node_certificates_by_purpose ON node_certificates (purpose, id);
            """,
        ),
        Migration(
            3,
            "enrolment of joining nodes",
            """
            CREATE TABLE node_enrolments (
                node_id TEXT PRIMARY KEY,
                status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
                csr_der BLOB NOT NULL,
                ed25519_spki BLOB NOT NULL,
                ml_dsa_65_spki BLOB NOT NULL,
                requested_at TEXT NOT NULL,
                decided_at TEXT,
                chain_json TEXT NOT NULL DEFAULT '[]'
            ) STRICT;
            """,
        ),
    ),
)


@dataclass(frozen=True)
class NodeIdentity:
    """What ``init`` recorded about this node."""

    genesis_sha256: str
    node_id: str
    network_name: str
    origin: str
    initialised_at: str


@dataclass(frozen=True)
class Enrolment:
    """A joining node's request, and the certificate chain once approved."""

    node_id: str
    status: str
    csr_der: bytes
    ed25519_spki: bytes
    ml_dsa_65_spki: bytes
    requested_at: str
    decided_at: str | None
    chain_der: list[bytes]


@dataclass(frozen=True)
class Run:
    id: int
    pid: int
    started_at: str
    stopped_at: str | None


class NodeStore:
    """Access to the ``node_*`` tables."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def set_identity(self, identity: NodeIdentity) -> None:
        with self.db.transaction() as conn:
            conn.executemany(
                "INSERT INTO node_meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                list(vars(identity).items()),
            )

    def identity(self) -> NodeIdentity | None:
        rows = dict(self.db.conn.execute("SELECT key, value FROM node_meta").fetchall())
        try:
            return NodeIdentity(**{f: rows[f] for f in NodeIdentity.__dataclass_fields__})
        except KeyError:
            return None

    def start_run(self, pid: int, now: datetime) -> tuple[int, Run | None]:
        """Record the start of a run; return its id and the previous run."""
        with self.db.transaction() as conn:
            previous = conn.execute(
                "SELECT id, pid, started_at, stopped_at FROM node_runs ORDER BY id DESC LIMIT 1"
            ).fetchone()
            cursor = conn.execute(
                "INSERT INTO node_runs (pid, started_at) VALUES (?, ?)", (pid, now.isoformat())
            )
        return int(cursor.lastrowid or 0), Run(*previous) if previous else None

    def stop_run(self, run_id: int, now: datetime) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE node_runs SET stopped_at = ? WHERE id = ?", (now.isoformat(), run_id)
            )

    def last_run(self) -> Run | None:
        row = self.db.conn.execute(
            "SELECT id, pid, started_at, stopped_at FROM node_runs ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return Run(*row) if row else None

    def add_certificate(self, purpose: str, certificate: x509.Certificate) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO node_certificates (purpose, serial, not_after, der) VALUES (?, ?, ?, ?)",
                (
                    purpose,
                    format(certificate.serial_number, "x"),
                    certificate.not_valid_after_utc.isoformat(),
                    certificate.public_bytes(Encoding.DER),
                ),
            )

    def latest_certificate(self, purpose: str) -> x509.Certificate | None:
        """The most recently stored certificate for ``purpose``."""
        row = self.db.conn.execute(
            "SELECT der FROM node_certificates WHERE purpose = ? ORDER BY id DESC LIMIT 1",
            (purpose,),
        ).fetchone()
        return x509.load_der_x509_certificate(row[0]) if row else None

    def put_enrolment(self, enrolment: Enrolment) -> None:
        """Insert or replace the enrolment of ``enrolment.node_id``."""
        chain = json.dumps([base64.b64encode(d).decode() for d in enrolment.chain_der])
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO node_enrolments (node_id, status, csr_der, ed25519_spki, "
                "ml_dsa_65_spki, requested_at, decided_at, chain_json) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(node_id) DO UPDATE SET "
                "status = excluded.status, csr_der = excluded.csr_der, "
                "ed25519_spki = excluded.ed25519_spki, ml_dsa_65_spki = excluded.ml_dsa_65_spki, "
                "requested_at = excluded.requested_at, decided_at = excluded.decided_at, "
                "chain_json = excluded.chain_json",
                (enrolment.node_id, enrolment.status, enrolment.csr_der, enrolment.ed25519_spki,
                 enrolment.ml_dsa_65_spki, enrolment.requested_at, enrolment.decided_at, chain),
            )

    def enrolment(self, node_id: str) -> Enrolment | None:
        row = self.db.conn.execute(
            "SELECT * FROM node_enrolments WHERE node_id = ?", (node_id,)
        ).fetchone()
        return self._enrolment(row) if row else None

    def enrolments(self) -> list[Enrolment]:
        rows = self.db.conn.execute("SELECT * FROM node_enrolments ORDER BY requested_at")
        return [self._enrolment(row) for row in rows]

    def count_enrolments(self, status: str) -> int:
        return int(self.db.conn.execute(
            "SELECT count(*) FROM node_enrolments WHERE status = ?", (status,)
        ).fetchone()[0])

    @staticmethod
    def _enrolment(row: object) -> Enrolment:
        r = dict(row)  # type: ignore[call-overload]
        return Enrolment(
            node_id=r["node_id"], status=r["status"], csr_der=r["csr_der"],
            ed25519_spki=r["ed25519_spki"], ml_dsa_65_spki=r["ml_dsa_65_spki"],
            requested_at=r["requested_at"], decided_at=r["decided_at"],
            chain_der=[base64.b64decode(d) for d in json.loads(r["chain_json"])],
        )
