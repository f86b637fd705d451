"""The rate-limit buckets: one TAT per (limit, key), in the node database.

Contract: :meth:`RateLimiter.check` decides every bucket it is given in one
``BEGIN IMMEDIATE`` transaction and either consumes from all of them or from
none; when it returns, the consumption has committed (``synchronous=FULL``),
so a restart -- or another process on the same database -- never hands out
the same capacity twice.  :meth:`RateLimiter.check_in` does the same inside
the caller's open transaction, committed with it (the CA core's
:class:`trustchain.ca.store.Limits`).  The arithmetic is the pure GCRA core,
:mod:`trustchain.ca.ratelimit`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import cast

from trustchain.ca.ratelimit import Decision, Limit, RateLimited, check
from trustchain.ca.store import Txn
from trustchain.storage.database import Database
from trustchain.storage.migrations import Migration, Schema

RATELIMIT_SCHEMA = Schema(
    "ratelimit",
    (
        Migration(
            1,
            "GCRA buckets",
            """
            CREATE TABLE ratelimit_buckets (
                name TEXT NOT NULL,
                key TEXT NOT NULL,
                tat REAL NOT NULL,
                PRIMARY KEY (name, key)
            ) STRICT, WITHOUT ROWID;
            """,
        ),
    ),
)

#: The buckets of one request: limit name -> key, or (limit name, key) pairs.
Buckets = Mapping[str, str] | Iterable[tuple[str, str]]


def _seconds(now: datetime) -> float:
    if now.tzinfo is None:
        raise ValueError("rate limits need an aware datetime (UTC)")
    return now.timestamp()


class RateLimiter:
    """Checks and consumes rate-limit buckets stored in ``ratelimit_buckets``."""

    def __init__(self, db: Database, limits: Mapping[str, Limit]) -> None:
        self.db = db
        self.limits = dict(limits)

    def check(self, keys: Buckets, now: datetime, cost: int = 1) -> None:
        """Consume ``cost`` from every bucket in ``keys`` (limit name -> key), or from none.

        ``keys`` may also be (name, key) pairs, for a limit that applies to
        several keys of one request (a certificate for names under two
        registered domains); a bucket named twice is charged once.
        Committed when it returns.

        :raises RateLimited: for the refusing bucket that frees up last (nothing
            is consumed).
        :raises ValueError: for a limit name not configured.
        """
        with self.db.transaction() as conn:
            self.check_in(conn, keys, now, cost)

    def check_in(self, txn: Txn, keys: Buckets, now: datetime, cost: int = 1) -> None:
        """:meth:`check` inside the caller's open transaction (committed or rolled back with it).

        A refusal raises before anything is written, so the caller's own
        writes are untouched; it decides whether to roll them back.
        """
        conn = cast(sqlite3.Connection, txn)
        at = _seconds(now)
        pairs = keys.items() if isinstance(keys, Mapping) else keys
        decisions: dict[tuple[str, str], tuple[Limit, Decision]] = {}
        for name, key in pairs:
            if (name, key) in decisions:
                continue
            limit = self.limits.get(name)
            if limit is None:
                raise ValueError(f"no rate limit named {name!r}")
            row = conn.execute("SELECT tat FROM ratelimit_buckets WHERE name = ? AND key = ?",
                               (name, key)).fetchone()
            decisions[name, key] = limit, check(limit, None if row is None else row[0], at, cost)
        refused = [(key, limit, d) for (_, key), (limit, d) in decisions.items() if not d.allowed]
        if refused:
            key, limit, decision = max(refused, key=lambda r: r[2].retry_after)
            raise RateLimited(limit, key, decision.retry_after, now, cost)
        conn.executemany(
            "INSERT INTO ratelimit_buckets (name, key, tat) VALUES (?, ?, ?) "
            "ON CONFLICT (name, key) DO UPDATE SET tat = excluded.tat",
            [(name, key, decision.tat) for (name, key), (_, decision) in decisions.items()],
        )

    def decision(self, name: str, key: str, now: datetime, cost: int = 1) -> Decision:
        """What :meth:`check` would decide for one bucket, consuming nothing (for status displays)."""
        limit = self.limits.get(name)
        if limit is None:
            raise ValueError(f"no rate limit named {name!r}")
        row = self.db.conn.execute("SELECT tat FROM ratelimit_buckets WHERE name = ? AND key = ?",
                                   (name, key)).fetchone()
        return check(limit, None if row is None else row[0], _seconds(now), cost)

    def prune(self, now: datetime) -> int:
        """Delete buckets whose TAT has passed (they hold a full burst, like a new bucket).

        Returns how many were deleted; committed when it returns.
        """
        with self.db.transaction() as conn:
            return conn.execute("DELETE FROM ratelimit_buckets WHERE tat <= ?",
                                (_seconds(now),)).rowcount
