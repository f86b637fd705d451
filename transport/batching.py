"""Gathering the requests of one event-loop turn into one batch.

Under load, many coroutines are resumed by the same event and each asks for
a costly shared step (a durable commit, a message to a worker process).
:class:`TurnBatch` queues each request with a future and hands the whole
queue to a flush function once, after every callback already ready has had
its turn to add to it; the flush settles each future.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")

class TurnBatch(Generic[Item]):
    def __init__(self, flush: Callable[[list[tuple[Item, asyncio.Future[Any]]]], None]) -> None:
        self._flush = flush
        self._queue: list[tuple[Item, asyncio.Future[Any]]] = []
        self._scheduled = False

    async def submit(self, item: Item) -> Any:
        """Queue ``item``; its future's result once the batch holding it is flushed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((item, future))
        if not self._scheduled:
            self._scheduled = True
            # After every callback already ready (the other requests resumed by the same
            # event) has had its chance to queue its item too.
            loop.call_soon(self._run)
        return await future

    def _run(self) -> None:
        self._scheduled = False
        queued, self._queue = self._queue, []
        self._flush(queued)
