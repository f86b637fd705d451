from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from trustchain.errors import SchemaTooNewError, StorageError
from trustchain.storage.database import Database, open_database
from trustchain.storage.migrations import Migration, Schema, current_version, migrate


def test_connection_settings(tmp_path: Path) -> None:
    with open_database(tmp_path) as db:
        assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert db.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert stat.S_IMODE((tmp_path / "node.db").stat().st_mode) == 0o600


def test_transaction_rolls_back_on_error(tmp_path: Path) -> None:
    with Database(tmp_path / "t.db") as db:
        db.conn.execute("CREATE TABLE t (x INTEGER)")
        with pytest.raises(RuntimeError), db.transaction() as conn:
            conn.execute("INSERT INTO t VALUES (1)")
            raise RuntimeError("boom")
        assert db.conn.execute("SELECT count(*) FROM t").fetchone()[0] == 0


SCHEMA = Schema(
    "demo",
    (
        Migration(1, "items", "CREATE TABLE demo_items (id INTEGER PRIMARY KEY, name TEXT);"),
        Migration(
            2, "tags",
            "CREATE TABLE demo_tags (item INTEGER REFERENCES demo_items(id), tag TEXT);\n"
            "INSERT INTO demo_items (name) VALUES ('a;b');",
        ),
    ),
)


def test_migrations_apply_once_in_order(tmp_path: Path) -> None:
    with Database(tmp_path / "t.db") as db:
        assert migrate(db, SCHEMA) == 2
        assert migrate(db, SCHEMA) == 0
        assert current_version(db, "demo") == 2
        assert db.conn.execute("SELECT name FROM demo_items").fetchone()[0] == "a;b"
        with pytest.raises(sqlite3.IntegrityError):  # foreign keys are enforced
            db.conn.execute("INSERT INTO demo_tags VALUES (99, 'x')")


def test_failed_migration_leaves_previous_version(tmp_path: Path) -> None:
    broken = Schema("demo", (SCHEMA.migrations[0], Migration(2, "bad", "CREATE TABLE demo_x (;")))
    with Database(tmp_path / "t.db") as db:
        with pytest.raises(StorageError, match="migration demo 2"):
            migrate(db, broken)
        assert current_version(db, "demo") == 1
        assert migrate(db, SCHEMA) == 1


def test_newer_database_is_refused(tmp_path: Path) -> None:
    with Database(tmp_path / "t.db") as db:
        migrate(db, SCHEMA)
        with pytest.raises(SchemaTooNewError, match="upgrade TrustChain"):
            migrate(db, Schema("demo", SCHEMA.migrations[:1]))


def test_schema_tables_must_carry_the_owner_prefix() -> None:
    with pytest.raises(ValueError, match="must be named demo_"):
        Schema("demo", (Migration(1, "x", "CREATE TABLE other (x);"),))
    with pytest.raises(ValueError, match="out of order"):
        Schema("demo", (Migration(2, "x", "CREATE TABLE demo_a (x);"),))


def test_readonly_open_of_missing_database_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no node database"):
        open_database(tmp_path, readonly=True)
