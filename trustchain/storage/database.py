"""The node database: one SQLite file per node, opened only here.

Every connection is opened with

* ``journal_mode=WAL`` -- readers (``trustchain status``) never block the
  writer (``trustchain serve``);
* ``foreign_keys=ON``;
* ``synchronous=FULL`` -- a transaction that has committed is on disk, so
  anything acknowledged to a client survives a power cut;
* a busy timeout, so a short write by another process is waited for rather
  than reported as an error.

A serving node moves WAL checkpoints off the committing thread
(:meth:`Database.checkpoint_in_background`): SQLite's automatic checkpoint runs
inside whichever commit crosses 1,000 WAL pages and copies them all, a pause of
several milliseconds in the middle of a request (a DNS record change, a CT
sequencing), every hundred commits or so.

Schema changes go through :mod:`trustchain.storage.migrations`.  Each service
owns its tables (named ``<owner>_<table>``) and nothing else writes them.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from trustchain.errors import StorageError
from trustchain.fsutil import FILE_MODE

DATABASE_FILE_NAME = "node.db"
BUSY_TIMEOUT_MS = 5000
#: How often the background checkpointer copies the WAL into the database file.
CHECKPOINT_INTERVAL = 1.0

log = logging.getLogger("trustchain.storage")


class Database:
    """A connection to the node database with TrustChain's settings applied.

    ``db.sqlite`` gives the sqlite-utils view of the same connection for
    convenience (table introspection, upserts).
    """

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        try:
            if readonly:
                if not path.exists():
                    raise StorageError(f"{path}: no node database")
                uri = f"file:{path}?mode=ro"
                self.conn = sqlite3.connect(uri, uri=True, isolation_level=None)
            else:
                if not path.exists():
                    # Create it 0600 before SQLite does (SQLite would use the umask).
                    path.touch(mode=FILE_MODE, exist_ok=True)
                self.conn = sqlite3.connect(path, isolation_level=None)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if not readonly:
                mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode.lower() != "wal":
                    raise StorageError(f"{path}: cannot switch to WAL mode (got {mode})")
            self.conn.execute("PRAGMA foreign_keys = ON")
            self.conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            raise StorageError(f"{path}: cannot open database: {exc}") from None
        self.sqlite = sqlite_utils.Database(self.conn)
        self._checkpointer: threading.Thread | None = None
        self._stop = threading.Event()

    def checkpoint_in_background(self, interval: float = CHECKPOINT_INTERVAL) -> None:
        """Stop checkpointing in commits; a thread with its own connection checkpoints
        every ``interval`` seconds instead (``PASSIVE``: it never blocks a writer or a
        reader, and what it cannot copy yet it copies next time).  Durability is
        unchanged: a commit is on disk in the WAL (``synchronous=FULL``) either way."""
        if self.readonly or self._checkpointer is not None:
            return
        self.conn.execute("PRAGMA wal_autocheckpoint = 0")
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, args=(interval,),
                                              name="sqlite-checkpoint", daemon=True)
        self._checkpointer.start()

    def _checkpoint_loop(self, interval: float) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA synchronous = FULL")
            while not self._stop.wait(interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as exc:  # a busy moment: the next round copies it
                    log.warning("WAL checkpoint failed (retried in %g s): %s", interval, exc)
        finally:
            conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run a block in one ``BEGIN IMMEDIATE`` transaction.

        The write lock is taken at the start, so the block never fails half
        way on a lock conflict.  When the block returns, the transaction is
        committed and (``synchronous=FULL``) durable; if it raises, nothing of
        it is kept.
        """
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def close(self) -> None:
        """Checkpoint the WAL into the main file (when writable) and close."""
        if self._checkpointer is not None:
            self._stop.set()
            self._checkpointer.join()
            self._checkpointer = None
        try:
            if not self.readonly:
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self.conn.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_database(data_dir: Path, *, readonly: bool = False) -> Database:
    """Open the database of the node in ``data_dir``."""
    return Database(data_dir / DATABASE_FILE_NAME, readonly=readonly)
