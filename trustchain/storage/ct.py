"""Tables owned by the CT logs: entries, and the latest signed tree head of each log.

Contract: ``append`` stores a batch and ``save_tree_head`` the head that
covers it, each committed (``synchronous=FULL``) before it returns; the log
hands out SCTs only after both.  ``save_tree_head`` refuses a head that would
roll the log back (a smaller size, or another root at the same size), so a
restarted log can never sign a tree that contradicts one it signed before.
"""

from __future__ import annotations

import json
from base64 import b64decode, b64encode

from trustchain.ct.sequencer import Batch, Sequenced, identity
from trustchain.ct.structs import Entry, EntryType, TreeHead
from trustchain.errors import StorageError
from trustchain.storage.database import Database
from trustchain.storage.migrations import Migration, Schema

CT_SCHEMA = Schema(
    "ct",
    (
        Migration(
            1,
            "log entries and signed tree heads",
            """
            CREATE TABLE ct_entries (
                log TEXT NOT NULL,
                idx INTEGER NOT NULL CHECK (idx >= 0),
                identity BLOB NOT NULL,
                leaf_hash BLOB NOT NULL,
                entry_type INTEGER NOT NULL,
                body BLOB NOT NULL,
                issuer_key_hash BLOB NOT NULL,
                timestamp INTEGER NOT NULL,
                chain TEXT NOT NULL,
                sct BLOB NOT NULL,
                PRIMARY KEY (log, idx),
                UNIQUE (log, identity)
            ) STRICT;
            CREATE TABLE ct_tree_heads (
                log TEXT PRIMARY KEY,
                size INTEGER NOT NULL,
                timestamp INTEGER NOT NULL,
                root BLOB NOT NULL,
                signature BLOB NOT NULL
            ) STRICT;
            """,
        ),
    ),
)


class SqliteLogStore:
    def __init__(self, db: Database, log: str) -> None:
        self.db = db
        self.log = log

    def append(self, batch: Batch, chains: dict[int, list[bytes]], scts: dict[int, bytes]) -> None:
        with self.db.transaction() as conn:
            conn.executemany(
                "INSERT INTO ct_entries (log, idx, identity, leaf_hash, entry_type, body, "
                "issuer_key_hash, timestamp, chain, sct) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(self.log, s.index, identity(s.entry), s.leaf_hash, int(s.entry.entry_type),
                  s.entry.body, s.entry.issuer_key_hash, s.timestamp,
                  json.dumps([b64encode(c).decode() for c in chains.get(s.index, [])]),
                  scts[s.index])
                 for s in batch.entries],
            )

    def sct(self, index: int) -> bytes | None:
        row = self.db.conn.execute("SELECT sct FROM ct_entries WHERE log = ? AND idx = ?",
                                   (self.log, index)).fetchone()
        return row[0] if row else None

    def entries(self, start: int = 0, end: int | None = None) -> list[tuple[Sequenced, list[bytes]]]:
        rows = self.db.conn.execute(
            "SELECT idx, entry_type, body, issuer_key_hash, timestamp, leaf_hash, chain "
            "FROM ct_entries WHERE log = ? AND idx >= ? AND idx <= ? ORDER BY idx",
            (self.log, start, 2**62 if end is None else end),
        ).fetchall()
        return [(Sequenced(idx, ts, Entry(EntryType(kind), body, issuer), leaf),
                 [b64decode(c) for c in json.loads(chain)])
                for idx, kind, body, issuer, ts, leaf, chain in rows]

    def tree_head(self) -> TreeHead | None:
        row = self.db.conn.execute(
            "SELECT size, timestamp, root, signature FROM ct_tree_heads WHERE log = ?",
            (self.log,),
        ).fetchone()
        return TreeHead(row[0], row[1], row[2], row[3]) if row else None

    def save_tree_head(self, head: TreeHead) -> None:
        with self.db.transaction() as conn:
            row = conn.execute("SELECT size, root FROM ct_tree_heads WHERE log = ?",
                               (self.log,)).fetchone()
            if row is not None and (head.size < row[0] or (head.size == row[0]
                                                           and head.root != row[1])):
                raise StorageError(
                    f"log {self.log}: refusing to sign size {head.size} after size {row[0]}")
            conn.execute(
                "INSERT INTO ct_tree_heads (log, size, timestamp, root, signature) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (log) DO UPDATE SET size = excluded.size, "
                "timestamp = excluded.timestamp, root = excluded.root, "
                "signature = excluded.signature",
                (self.log, head.size, head.timestamp, head.root, head.signature),
            )

    def size(self) -> int:
        return int(self.db.conn.execute(
            "SELECT count(*) FROM ct_entries WHERE log = ?", (self.log,)).fetchone()[0])
