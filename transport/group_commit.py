"""Group commit: many small transactions from concurrent requests share one durable commit.

With ``synchronous=FULL`` every SQLite commit waits for the disk; a CA that
committed each issuance step on its own would spend its time in fsync, with
the event loop blocked.  :meth:`GroupCommit.run` queues a unit of work; all
units queued while the event loop is busy run in one ``BEGIN IMMEDIATE``
transaction, each inside its own ``SAVEPOINT`` so that one unit's failure
rolls back only its own writes and reaches only its own caller.  Nobody's
result is returned before the shared ``COMMIT`` has returned, so every caller
still sees its work durable when ``run`` returns, exactly as with a
transaction of its own.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from transport.batching import TurnBatch
from trustchain.storage.database import Database

T = TypeVar("T")

_Unit = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]"]


class GroupCommit:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._batch: TurnBatch[Callable[[sqlite3.Connection], Any]] = TurnBatch(self._flush)

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work(conn)`` in the next shared transaction; its result once committed."""
        result: T = await self._batch.submit(work)
        return result

    def _flush(self, units: list[_Unit]) -> None:
        outcomes: list[tuple[asyncio.Future[Any], bool, Any]] = []
        try:
            with self._db.transaction() as conn:
                for work, future in units:
                    conn.execute("SAVEPOINT unit")
                    try:
                        result = work(conn)
                    except Exception as exc:  # this unit only: its writes are undone
                        conn.execute("ROLLBACK TO unit")
                        conn.execute("RELEASE unit")
                        outcomes.append((future, False, exc))
                    else:
                        conn.execute("RELEASE unit")
                        outcomes.append((future, True, result))
        except Exception as exc:  # the commit itself failed: nothing of the batch is kept
            for _, future in units:
                if not future.done():
                    future.set_exception(exc)
            return
        for future, ok, value in outcomes:
            if future.done():  # the caller went away (cancelled); its work is committed anyway
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
