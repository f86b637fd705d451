"""WAL checkpoints off the committing thread (Database.checkpoint_in_background): commits
no longer checkpoint, a thread copies the WAL into the database file, and closing stops it
and leaves nothing in the WAL."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from trustchain.storage.database import Database


def test_the_wal_reaches_the_database_file_from_a_background_thread(tmp_path: Path) -> None:
    db = Database(tmp_path / "node.db")
    db.checkpoint_in_background(interval=0.05)
    assert db.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    db.conn.execute("CREATE TABLE t (x BLOB)")
    for _ in range(300):  # ~1,200 pages: past SQLite's automatic threshold of 1,000
        with db.transaction() as conn:
            conn.execute("INSERT INTO t VALUES (randomblob(16000))")
    deadline = time.monotonic() + 30
    while (tmp_path / "node.db").stat().st_size < 300 * 16000:  # copied by the thread
        assert time.monotonic() < deadline, "no checkpoint within 30 s"
        time.sleep(0.05)  # polling a condition with a bound
    db.close()
    assert not (tmp_path / "node.db-wal").exists() or \
        (tmp_path / "node.db-wal").stat().st_size == 0
    with sqlite3.connect(tmp_path / "node.db") as check:
        assert check.execute("SELECT count(*) FROM t").fetchone()[0] == 300
