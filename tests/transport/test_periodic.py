"""The periodic job helper: a failing round does not stop it, a wake runs the next round
at once (also one set during a round), and stop cancels it."""

from __future__ import annotations

import asyncio
import logging

from transport.periodic import Periodic


def test_rounds_survive_a_failure_wake_at_once_and_stop() -> None:
    async def scenario() -> list[str]:
        seen: list[str] = []
        rounds = asyncio.Queue[int]()

        async def job() -> None:
            seen.append("round")
            await rounds.put(len(seen))
            if len(seen) == 1:
                raise RuntimeError("the first round fails")
            if len(seen) == 2:
                periodic.wake.set()  # a checkpoint signed during the round

        periodic = Periodic(job, 3600.0, "test round", logging.getLogger("test"))
        periodic.start()
        assert await rounds.get() == 1
        periodic.wake.set()  # without it the next round would be an hour away
        assert await asyncio.wait_for(rounds.get(), 5) == 2
        assert await asyncio.wait_for(rounds.get(), 5) == 3  # the wake kept from round 2
        await periodic.stop()
        periodic.wake.set()
        await asyncio.sleep(0)  # nothing runs any more: one loop turn to show it
        assert rounds.empty()
        return seen

    assert asyncio.run(scenario()) == ["round"] * 3
