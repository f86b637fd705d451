"""A job that runs on the event loop every so often, from ``start`` until ``stop``.

One round that fails is logged and the next one runs: a node's background duties
(cosigning its logs' checkpoints, pulling gossip) must outlive one bad peer.  Setting
:attr:`Periodic.wake` runs the next round at once (a new checkpoint to cosign); a
wake during a round is kept, so no event is lost between two rounds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable


async def cancel(task: asyncio.Task[None] | None) -> None:
    """Cancel ``task`` (if any) and wait until it has stopped, also mid-round."""
    if task is not None:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass


class Periodic:
    def __init__(self, job: Callable[[], Awaitable[None]], interval: float, what: str,
                 log: logging.Logger) -> None:
        self._job = job
        self._interval = interval
        self._what = what
        self._log = log
        self.wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Cancel the job, also mid-round; it is not run again."""
        await cancel(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            self.wake.clear()  # (a wake during the round stays set: no wait after it)
            try:
                await self._job()
            except Exception:  # one bad round must not stop the duty
                self._log.exception("%s failed", self._what)
            try:  # an interval, or a wake-up: a periodic duty, not a synchronisation
                await asyncio.wait_for(self.wake.wait(), self._interval)
            except TimeoutError:
                pass
