"""The witness's table: the latest cosigned checkpoint of each log, ``witness_logs``.

Contract: :meth:`WitnessStore.compare_and_swap` has committed
(``synchronous=FULL``) when it returns True, so the state a cosignature
vouches for is on disk before the cosignature leaves the node (tlog-witness,
https://c2sp.org/tlog-witness "add-checkpoint": "The witness MUST persist the
new checkpoint before responding").  It checks the old size and writes the
new one in one statement inside one ``BEGIN IMMEDIATE`` transaction (the
spec's atomicity requirement, as litewitness's ``UPDATE ... WHERE origin = ?
AND tree_size = ?``): of two racing writers with the same old size, one
wins and the other gets False, also across processes and connections.

Sizes never go down and the hash at a size never changes: the swap refuses
both, and a trigger refuses an ``UPDATE`` that would (against bugs, not
against someone who can write the file).  So a witness that stored a
checkpoint and died before replying can never cosign another root at that
size afterwards.
"""

from __future__ import annotations

import sqlite3

from trustchain.ct.witness import LogState
from trustchain.errors import StorageError
from trustchain.storage.database import Database
from trustchain.storage.migrations import Migration, Schema

WITNESS_SCHEMA = Schema(
    "witness",
    (
        Migration(
            1,
            "the latest cosigned checkpoint of each witnessed log",
            """
            CREATE TABLE witness_logs (
                origin TEXT PRIMARY KEY,
                tree_size INTEGER NOT NULL CHECK (tree_size >= 0),
                tree_hash BLOB NOT NULL CHECK (length(tree_hash) = 32)
            ) STRICT;
            CREATE TRIGGER witness_logs_no_rollback BEFORE UPDATE ON witness_logs
            WHEN NEW.origin IS NOT OLD.origin OR NEW.tree_size < OLD.tree_size
              OR (NEW.tree_size = OLD.tree_size AND NEW.tree_hash IS NOT OLD.tree_hash)
            BEGIN
                SELECT RAISE(ABORT, 'witness_logs: a cosigned checkpoint is never rolled back');
            END;
            """,
        ),
    ),
)


class WitnessStore:
    """Reads and compare-and-swaps ``witness_logs`` (apply :data:`WITNESS_SCHEMA` first)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, origin: str) -> LogState | None:
        """The latest cosigned size and root hash of ``origin``; None if never cosigned."""
        row = self.db.conn.execute(
            "SELECT tree_size, tree_hash FROM witness_logs WHERE origin = ?", (origin,)
        ).fetchone()
        return LogState(int(row[0]), bytes(row[1])) if row else None

    def compare_and_swap(self, origin: str, old_size: int, new_size: int, new_hash: bytes) -> bool:
        """Move ``origin`` from ``old_size`` to (``new_size``, ``new_hash``); committed if True.

        False when the stored size is not ``old_size`` (0 means never cosigned,
        or cosigned at size 0), or when ``new_size == old_size`` and the stored
        hash differs.

        :raises ValueError: if ``new_size < old_size`` or the hash is not 32 bytes.
        :raises StorageError: if a transaction is already open on the connection
            (the swap must commit before it returns) or the write fails.
        """
        if not 0 <= old_size <= new_size or len(new_hash) != 32:
            raise ValueError("a swap goes to a size at least the old one, with a 32-byte hash")
        if self.db.conn.in_transaction:
            raise StorageError("compare_and_swap commits on its own: no transaction may be open")
        try:
            with self.db.transaction() as conn:
                # At the same size only the same hash matches: a re-cosign, not a change.
                cursor = conn.execute(
                    "UPDATE witness_logs SET tree_size = ?, tree_hash = ? "
                    "WHERE origin = ? AND tree_size = ? AND (tree_size < ? OR tree_hash = ?)",
                    (new_size, new_hash, origin, old_size, new_size, new_hash),
                )
                if cursor.rowcount == 1:
                    return True
                if old_size != 0:
                    return False
                # First sight: the primary key lets only one insert in, whoever races.
                cursor = conn.execute(
                    "INSERT INTO witness_logs (origin, tree_size, tree_hash) VALUES (?, ?, ?) "
                    "ON CONFLICT (origin) DO NOTHING",
                    (origin, new_size, new_hash),
                )
                return cursor.rowcount == 1
        except sqlite3.Error as exc:
            raise StorageError(f"witness state of {origin!r}: {exc}") from None
