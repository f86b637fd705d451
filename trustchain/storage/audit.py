"""The CA's audit log in the node database: ``audit_log``, append-only and hash-chained.

Contract: :meth:`AuditLog.append` has committed (``synchronous=FULL``) when it
returns, unless the caller already had a transaction open on the database's
connection, in which case the record commits or rolls back with the
caller's transaction; :meth:`AuditLog.append_in` takes that connection
explicitly (the CA core's :class:`trustchain.ca.store.AuditTrail`), so that
issuance writes its certificate row and its audit record in one transaction.
An append is one ``INSERT``: the head is kept in memory after it is first read.

Triggers refuse ``UPDATE`` and ``DELETE`` on ``audit_log``, and refuse an
``INSERT`` that does not extend the current head (wrong ``prev_hash``, or a
``seq`` that is not the next one).  They stop accidents and bugs, not an
attacker who can write the database file: such an attacker can drop the
triggers.  What catches the attacker is the hash chain (:meth:`AuditLog.verify`),
and only relative to a head hash kept somewhere the attacker cannot reach;
records cut off the end of the log are not detectable from the log alone.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from typing import Any, cast

from trustchain.ca.audit import (
    PROBLEM_MALFORMED,
    AuditRecord,
    AuditReport,
    ChainVerifier,
    format_time,
    next_record,
    parse_time,
)
from trustchain.ca.store import Txn
from trustchain.canonical import canonical_json
from trustchain.errors import CanonicalJSONError, StorageError
from trustchain.storage.database import Database
from trustchain.storage.migrations import Migration, Schema

AUDIT_SCHEMA = Schema(
    "audit",
    (
        Migration(
            1,
            "hash-chained audit log",
            """
            CREATE TABLE audit_log (
                seq INTEGER PRIMARY KEY CHECK (seq >= 0),
                time TEXT NOT NULL,
                kind TEXT NOT NULL,
                actor TEXT NOT NULL,
                details TEXT NOT NULL,
                prev_hash BLOB NOT NULL,
                hash BLOB NOT NULL
            ) STRICT;
            CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
            BEGIN
                SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused');
            END;
            CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
            BEGIN
                SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused');
            END;
            CREATE TRIGGER audit_log_extends_head BEFORE INSERT ON audit_log
            WHEN (NEW.seq = 0 AND NEW.prev_hash IS NOT zeroblob(32))
              OR (NEW.seq > 0 AND NOT EXISTS (
                    SELECT 1 FROM audit_log WHERE seq = NEW.seq - 1 AND hash = NEW.prev_hash))
            BEGIN
                SELECT RAISE(ABORT, 'audit_log: record does not extend the head');
            END;
            """,
        ),
    ),
)

# Text columns are read as bytes, so that a damaged row (invalid UTF-8 written
# behind SQLite's back) is reported by verify() instead of failing the read.
_COLUMNS = ("seq, CAST(time AS BLOB), CAST(kind AS BLOB), CAST(actor AS BLOB), "
            "CAST(details AS BLOB), prev_hash, hash")
_PAGE = 512


def _decode(row: sqlite3.Row | tuple[Any, ...]) -> AuditRecord:
    """A stored row as a record.

    :raises ValueError: if the row is not exactly what :meth:`AuditLog.append`
        writes (text not UTF-8, time or details not in canonical form).
    """
    seq, time, kind, actor, details, prev_hash, digest = tuple(row)
    if not isinstance(prev_hash, bytes) or not isinstance(digest, bytes):
        raise ValueError("hashes are not BLOBs")
    try:
        text = details.decode("utf-8")
        parsed = json.loads(text)
        if not isinstance(parsed, dict) or canonical_json(parsed) != details:
            raise ValueError("details are not a canonical JSON object")
        return AuditRecord(seq, parse_time(time.decode("utf-8")), kind.decode("utf-8"),
                           actor.decode("utf-8"), parsed, prev_hash, digest)
    except (ValueError, CanonicalJSONError, TypeError, AttributeError, RecursionError) as exc:
        raise ValueError(str(exc)) from None


class AuditLog:
    """Appends to, reads and verifies ``audit_log``."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._head: AuditRecord | None = None
        self._head_known = False

    def append(self, now: datetime, kind: str, actor: str, details: dict[str, Any]) -> AuditRecord:
        """Append one record; in the open transaction of ``db.conn`` if there is one.

        :raises ValueError: for an invalid kind, actor, time or details.
        """
        if self.db.conn.in_transaction:
            return self.append_in(self.db.conn, now, kind, actor, details)
        try:
            with self.db.transaction() as conn:
                return self.append_in(conn, now, kind, actor, details)
        except BaseException:
            self._head_known = False  # rolled back: the cached head may not exist
            raise

    def append_in(self, txn: Txn, now: datetime, kind: str, actor: str,
                  details: dict[str, Any]) -> AuditRecord:
        """Append one record inside the caller's open transaction (a ``sqlite3.Connection``).

        The record is final only when that transaction commits.  If it rolls
        back, the head kept in memory is stale; the next append notices (the
        insert trigger refuses it), re-reads the head and retries.
        """
        conn = cast(sqlite3.Connection, txn)
        for attempt in range(2):
            if not self._head_known or attempt:
                self._head = self._read_head(conn)
                self._head_known = True
            record = next_record(self._head, now, kind, actor, details)
            try:
                conn.execute(
                    "INSERT INTO audit_log (seq, time, kind, actor, details, prev_hash, hash) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (record.seq, format_time(record.time), record.kind, record.actor,
                     record.details_json.decode("utf-8"), record.prev_hash, record.hash),
                )
            except sqlite3.IntegrityError as exc:
                if attempt:
                    raise StorageError(f"cannot append to the audit log: {exc}") from None
                continue
            self._head = record
            return record
        raise AssertionError("unreachable")

    def _read_head(self, conn: sqlite3.Connection) -> AuditRecord | None:
        row = conn.execute(f"SELECT {_COLUMNS} FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            return None
        try:
            return _decode(row)
        except ValueError as exc:
            raise StorageError(f"the audit log's last record ({row[0]}) is damaged: {exc}; "
                               "run verify") from None

    def head(self) -> AuditRecord | None:
        """The last record (read from the database)."""
        head = self._read_head(self.db.conn)
        if not self.db.conn.in_transaction:
            self._head, self._head_known = head, True
        return head

    def _rows(self, start: int) -> Iterator[tuple[Any, ...]]:
        """Rows from ``start`` on, a page at a time (no read transaction held between pages)."""
        while True:
            rows = self.db.conn.execute(
                f"SELECT {_COLUMNS} FROM audit_log WHERE seq >= ? ORDER BY seq LIMIT ?",
                (start, _PAGE),
            ).fetchall()
            yield from (tuple(row) for row in rows)
            if len(rows) < _PAGE:
                return
            start = rows[-1][0] + 1

    def records(self, start: int = 0) -> Iterator[AuditRecord]:
        """The records with ``seq >= start``, in order, streamed.

        :raises StorageError: at a row that cannot be read back (see :meth:`verify`).
        """
        for row in self._rows(start):
            try:
                yield _decode(row)
            except ValueError as exc:
                raise StorageError(f"audit record {row[0]} is damaged: {exc}") from None

    def verify(self) -> AuditReport:
        """Verify the whole chain, streamed; the report names the first problem."""
        verifier = ChainVerifier()
        for row in self._rows(0):
            try:
                record = _decode(row)
            except ValueError as exc:
                verifier.fail(row[0], PROBLEM_MALFORMED, f"record {row[0]} cannot be read back: {exc}")
                continue
            verifier.feed(record)
        return verifier.report()
