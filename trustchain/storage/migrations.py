"""Versioned schema migrations, one numbered sequence per owning service.

A service declares its schema once::

    SCHEMA = Schema("node", (
        Migration(1, "node metadata", "CREATE TABLE node_meta (...)"),
    ))

and the node applies it at start with :func:`migrate`.  Versions are applied
in order, each in its own transaction together with the version bump, so a
crash leaves the schema at a whole version.  A database written by a newer
TrustChain (a version this code does not know) is refused rather than
guessed at.  Every table a schema creates must be named ``<owner>_...``: the
name says who may write it.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass

from trustchain.errors import SchemaTooNewError, StorageError
from trustchain.storage.database import Database

_VERSIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_versions (
    owner TEXT PRIMARY KEY,
    version INTEGER NOT NULL CHECK (version >= 0)
) STRICT
"""

_CREATE_TABLE = re.compile(
    r"CREATE\s+(?:TEMP\s+|TEMPORARY\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?[\"`]?(\w+)", re.I
)


@dataclass(frozen=True)
class Migration:
    """One step of a schema: ``sql`` (one or more statements) takes it to ``version``."""

    version: int
    description: str
    sql: str


@dataclass(frozen=True)
class Schema:
    """The tables one service owns, as an ordered list of migrations."""

    owner: str
    migrations: tuple[Migration, ...]

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9]*", self.owner):
            raise ValueError(f"schema owner {self.owner!r} must be a lower-case identifier")
        for expected, migration in enumerate(self.migrations, start=1):
            if migration.version != expected:
                raise ValueError(
                    f"{self.owner}: migration {migration.version} out of order (want {expected})"
                )
            for table in _CREATE_TABLE.findall(migration.sql):
                if not table.startswith(self.owner + "_"):
                    raise ValueError(
                        f"{self.owner}: table {table!r} must be named {self.owner}_..."
                    )

    @property
    def latest(self) -> int:
        return len(self.migrations)


def current_version(db: Database, owner: str) -> int:
    """The applied version of ``owner``'s schema (0 when none)."""
    try:
        row = db.conn.execute(
            "SELECT version FROM schema_versions WHERE owner = ?", (owner,)
        ).fetchone()
    except sqlite3.OperationalError:
        return 0  # no schema_versions table yet
    return int(row[0]) if row else 0


def migrate(db: Database, schema: Schema) -> int:
    """Bring ``schema`` up to its latest version; return the number of steps applied.

    :raises SchemaTooNewError: if the database holds a newer version.
    :raises StorageError: if a migration fails (that step is rolled back).
    """
    db.conn.execute(_VERSIONS_TABLE)
    have = current_version(db, schema.owner)
    if have > schema.latest:
        raise SchemaTooNewError(
            f"the {schema.owner!r} tables are at schema version {have}, but this TrustChain "
            f"knows only up to {schema.latest}: upgrade TrustChain"
        )
    applied = 0
    for migration in schema.migrations[have:]:
        try:
            with db.transaction() as conn:
                for statement in _statements(migration.sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_versions (owner, version) VALUES (?, ?) "
                    "ON CONFLICT(owner) DO UPDATE SET version = excluded.version",
                    (schema.owner, migration.version),
                )
        except sqlite3.Error as exc:
            raise StorageError(
                f"migration {schema.owner} {migration.version} ({migration.description}) "
                f"failed: {exc}"
            ) from None
        applied += 1
    return applied


def _statements(sql: str) -> list[str]:
    """Split a migration script into complete statements (``;`` inside literals is kept)."""
    statements: list[str] = []
    current = ""
    for line in sql.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements
