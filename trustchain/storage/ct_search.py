"""The certificate search index over the node's CT logs: ``ctsearch_certificates`` (what
each logged entry certifies: serial, names, issuer, validity), ``ctsearch_names`` (each
DNS name of each entry, label-reversed: :mod:`trustchain.ct.search`) and
``ctsearch_watermarks`` (per log, the first index not yet indexed).

The index is derived: the CT tables (:mod:`trustchain.storage.ct`) stay the one source
of truth, only read here (each log's signed size from ``ct_tree_heads``, its entries
through :class:`~trustchain.storage.ct.SqliteLogStore`).  Only entries covered by a
log's signed tree head are indexed (what the log has published).

Durability.  :meth:`CtSearchIndex.catch_up` writes the rows of the entries it indexed
and the advanced watermark in one transaction, committed (``synchronous=FULL``) before
it returns: a crash leaves the index at a whole batch, and the next ``catch_up``
carries on from the watermark, so nothing is lost or indexed twice, and a log that
existed before the index (or entries sequenced while the node stopped) is indexed from
its start.  Reads never write.

Searches are index lookups: a name is one equality and one range on the primary key of
``ctsearch_names``; a serial is one equality on ``ctsearch_certificates_serial``; each
bounded by ``limit`` rows, whatever the size of the logs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from trustchain.ct.search import Described, describe, reverse_name, under_range
from trustchain.storage.ct import SqliteLogStore
from trustchain.storage.database import Database
from trustchain.storage.migrations import Migration, Schema

CTSEARCH_SCHEMA = Schema(
    "ctsearch",
    (
        Migration(
            1,
            "certificate search index over the CT logs",
            """
            CREATE TABLE ctsearch_certificates (
                log TEXT NOT NULL,
                idx INTEGER NOT NULL CHECK (idx >= 0),
                serial TEXT NOT NULL,
                precert INTEGER NOT NULL,
                issuer TEXT NOT NULL,
                not_before INTEGER NOT NULL,
                not_after INTEGER NOT NULL,
                timestamp INTEGER NOT NULL,
                names TEXT NOT NULL,
                PRIMARY KEY (log, idx)
            ) STRICT;
            CREATE INDEX ctsearch_certificates_serial ON ctsearch_certificates (serial);
            CREATE TABLE ctsearch_names (
                reversed TEXT NOT NULL,
                log TEXT NOT NULL,
                idx INTEGER NOT NULL,
                PRIMARY KEY (reversed, log, idx)
            ) STRICT, WITHOUT ROWID;
            CREATE TABLE ctsearch_watermarks (
                log TEXT PRIMARY KEY,
                next_idx INTEGER NOT NULL CHECK (next_idx >= 0)
            ) STRICT;
            """,
        ),
    ),
)

#: Entries indexed per transaction by default.
BATCH = 256


@dataclass(frozen=True)
class Hit:
    """One indexed log entry and what it certifies."""

    log: str
    index: int
    #: The entry's timestamp, milliseconds since the epoch.
    timestamp: int
    serial: int
    precert: bool
    issuer: str
    not_before: datetime
    not_after: datetime
    names: tuple[str, ...]


@dataclass(frozen=True)
class Progress:
    """How far one log is indexed: ``indexed`` of the ``size`` its signed head covers."""

    log: str
    indexed: int
    size: int


def serial_text(serial: int) -> str:
    """How serials are kept and shown: lower-case hex, no leading zeros."""
    return f"{serial:x}"


def _seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def _hit(row: tuple[str, int, int, str, int, str, int, int, str]) -> Hit:
    log, idx, timestamp, serial, precert, issuer, not_before, not_after, names = row
    return Hit(log, idx, timestamp, int(serial, 16), bool(precert), issuer,
               datetime.fromtimestamp(not_before, UTC), datetime.fromtimestamp(not_after, UTC),
               tuple(json.loads(names)))


_COLUMNS = ("c.log, c.idx, c.timestamp, c.serial, c.precert, c.issuer, c.not_before, "
            "c.not_after, c.names")


class CtSearchIndex:
    """The search index (apply :data:`CTSEARCH_SCHEMA` after the CT schema first)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def _logs(self) -> dict[str, int]:
        """Each log with a signed tree head: its size."""
        return {log: size for log, size in self.db.conn.execute(
            "SELECT log, size FROM ct_tree_heads ORDER BY log").fetchall()}

    def _watermarks(self) -> dict[str, int]:
        return {log: next_idx for log, next_idx in self.db.conn.execute(
            "SELECT log, next_idx FROM ctsearch_watermarks").fetchall()}

    def progress(self) -> list[Progress]:
        """Each log's indexed entries against its signed size."""
        marks = self._watermarks()
        return [Progress(log, marks.get(log, 0), size) for log, size in self._logs().items()]

    def behind(self) -> bool:
        """Whether some log has signed entries not indexed yet."""
        return any(p.indexed < p.size for p in self.progress())

    def catch_up(self, limit: int = BATCH) -> int:
        """Index up to ``limit`` signed entries past the watermarks (the first log behind
        first); how many were read.  Durable when it returns (see the module)."""
        for progress in self.progress():
            if progress.indexed >= progress.size:
                continue
            end = min(progress.size, progress.indexed + limit) - 1
            store = SqliteLogStore(self.db, progress.log)
            rows: list[tuple[int, int, Described]] = []
            read = 0
            for sequenced, chain in store.entries(progress.indexed, end):
                read += 1
                described = describe(sequenced.entry.entry_type, sequenced.entry.body, chain)
                if described is not None:
                    rows.append((sequenced.index, sequenced.timestamp, described))
            if read != end - progress.indexed + 1:
                return 0  # entries missing under a signed head: nothing to index from
            self._write(progress.log, rows, end + 1)
            return read
        return 0

    def _write(self, log: str, rows: list[tuple[int, int, Described]], watermark: int) -> None:
        with self.db.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO ctsearch_certificates (log, idx, serial, precert, "
                "issuer, not_before, not_after, timestamp, names) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(log, idx, serial_text(d.serial), int(d.precert), d.issuer,
                  _seconds(d.not_before), _seconds(d.not_after), timestamp,
                  json.dumps(list(d.names))) for idx, timestamp, d in rows])
            conn.executemany(
                "INSERT OR IGNORE INTO ctsearch_names (reversed, log, idx) VALUES (?, ?, ?)",
                [(reverse_name(name), log, idx) for idx, _, d in rows for name in d.names])
            conn.execute(
                "INSERT INTO ctsearch_watermarks (log, next_idx) VALUES (?, ?) "
                "ON CONFLICT (log) DO UPDATE SET next_idx = excluded.next_idx", (log, watermark))

    def by_name(self, name: str, *, strict: bool = False, limit: int = 1000) -> list[Hit]:
        """Entries for ``name`` (normalised: :func:`trustchain.ct.search.normalise_name`)
        and every name under it (``strict``: only under it), at most ``limit``, in name
        order."""
        low, high = under_range(name)
        exact = [] if strict else self.db.conn.execute(
            f"SELECT {_COLUMNS} FROM ctsearch_names n JOIN ctsearch_certificates c "
            "ON c.log = n.log AND c.idx = n.idx WHERE n.reversed = ? LIMIT ?",
            (reverse_name(name), limit)).fetchall()
        under = self.db.conn.execute(
            f"SELECT {_COLUMNS} FROM ctsearch_names n JOIN ctsearch_certificates c "
            "ON c.log = n.log AND c.idx = n.idx WHERE n.reversed >= ? AND n.reversed < ? "
            "ORDER BY n.reversed LIMIT ?", (low, high, limit - len(exact))).fetchall()
        seen: set[tuple[str, int]] = set()
        hits = []
        for row in [*exact, *under]:
            if (row[0], row[1]) not in seen:  # two names of one entry match: one hit
                seen.add((row[0], row[1]))
                hits.append(_hit(row))
        return hits

    def by_serial(self, serial: int, *, limit: int = 1000) -> list[Hit]:
        """Entries of certificates and precertificates with ``serial``, at most ``limit``."""
        return [_hit(row) for row in self.db.conn.execute(
            f"SELECT {_COLUMNS} FROM ctsearch_certificates c WHERE c.serial = ? "
            "ORDER BY c.log, c.idx LIMIT ?", (serial_text(serial), limit)).fetchall()]
