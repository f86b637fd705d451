"""The asyncio side of the CT logs: the sequencing loop and waiting for SCTs.

An ``add-chain`` waits until its entry is sequenced and durably stored, with
its tree head signed (the log does both before it hands out SCTs); the loop
integrates pending submissions every ``interval`` seconds (at most 500 ms) on
a fixed cadence, as Sunlight does: a submission waits for the next tick, not
for a window opened by the first one, so it waits only until the next tick.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from transport.periodic import cancel
from transport.workers import InlineWork, Work
from trustchain.ct.log import BadSubmission, Issued, Log, check_submission
from trustchain.ct.sequencer import identity
from trustchain.ct.structs import SCT
from trustchain.storage.ct_tiles import TileDirectory, TilePlan

log = logging.getLogger("trustchain.ct")

SEQUENCE_INTERVAL = 0.2

#: Told of each submission to a log here: the log, its outcome (sequenced, duplicate,
#: refused, failed) and, for a new entry, the seconds until it was under a signed head.
SubmissionObserver = Callable[[str, str, float | None], None]


def sct_json(sct: SCT) -> dict[str, object]:
    """RFC 6962 section 4.1's answer to add-chain."""
    signature = sct.to_bytes()[43 + len(sct.extensions):]
    return {"sct_version": 0, "id": base64.b64encode(sct.log_id).decode(),
            "timestamp": sct.timestamp, "extensions": base64.b64encode(sct.extensions).decode(),
            "signature": base64.b64encode(signature).decode()}


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _log_entry(name: str, lg: Log, base: str) -> dict[str, object]:
    entry: dict[str, object] = {
        "description": f"TrustChain log {name}",
        "log_id": base64.b64encode(lg.log_id).decode(),
        "key": base64.b64encode(lg.public_key.public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).decode(),
        "url": f"{base}/logs/{name}/", "mmd": 1, "state": {"usable": {}}}
    if lg.expiry.start is not None or lg.expiry.end is not None:
        # Chrome's list needs both ends; an open end is written as the far past/future.
        start = lg.expiry.start or datetime(1970, 1, 1, tzinfo=UTC)
        end = lg.expiry.end or datetime(9999, 12, 31, tzinfo=UTC)
        entry["temporal_interval"] = {"start_inclusive": _rfc3339(start),
                                      "end_exclusive": _rfc3339(end)}
    return entry


class LogRunner:
    def __init__(self, logs: Sequence[Log], interval: float = SEQUENCE_INTERVAL,
                 tile_root: Path | None = None,
                 clock: Callable[[], float] = time.time, work: Work | None = None) -> None:
        self.logs = {lg.name: lg for lg in logs}
        #: Where submitted chains are verified (worker processes, or inline).
        self.work: Work = work if work is not None else InlineWork()
        self._key_ders = {lg.name: lg.public_key.public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo) for lg in logs}
        #: static-ct-api files, one directory per log, kept up to each new head.
        self.tiles = ({name: TileDirectory(tile_root / name, lg) for name, lg in self.logs.items()}
                      if tile_root is not None else {})
        self._interval = interval
        #: Wall-clock seconds: the timestamps of SCTs and tree heads.
        self._clock = clock
        self._waiting: dict[tuple[str, bytes], list[asyncio.Future[SCT]]] = {}
        self._task: asyncio.Task[None] | None = None
        #: One thread writes tile files, in order (tiles before their checkpoint).
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ct-tiles")
        #: Where the HTTP API is reachable, for log lists served over stoq/1.
        self.base_url = ""
        #: Called after each sequencing that signed a new checkpoint (cosigning wakes).
        self.on_head: Callable[[], None] = lambda: None
        #: Also called then, in order (the web console's search index catches up).
        self.head_listeners: list[Callable[[], None]] = []
        #: Told of each submission's outcome (the node's metrics), when set.
        self.on_submission: SubmissionObserver | None = None

    def log_list(self, base_url: str) -> dict[str, object]:
        """The logs in the shape of Chrome's and Apple's log lists (v3).

        A log sharded by expiry carries ``temporal_interval``, the notAfter
        range it accepts (Chrome's field), so a client can pick shards.
        """
        base = base_url.rstrip("/")
        return {"version": "1.0", "operators": [{"name": "this TrustChain node", "email": [],
                "logs": [_log_entry(name, lg, base) for name, lg in self.logs.items()]}]}

    def start(self) -> None:
        for directory in self.tiles.values():  # catch up after a crash between commit and files
            directory.publish()
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        await cancel(self._task)
        self._sequence_all()  # nothing acknowledged is lost; pending work is finished
        self._writer.shutdown(wait=True)

    async def add_chain(self, name: str, chain: Sequence[str],
                        precert: bool = False) -> dict[str, object]:
        """:raises BadSubmission: for an unknown log or an invalid chain."""
        return sct_json(await self.submit(name, chain, precert=precert))

    async def submit(self, name: str, chain: Sequence[str], *, precert: bool = False) -> SCT:
        """The SCT for ``chain`` (base64 DER, leaf first), once its entry is in the log."""
        target = self.logs.get(name)
        if target is None:
            raise BadSubmission(f"no log {name!r}")
        observe = self.on_submission
        try:
            checked = await self.work.run(check_submission, list(chain), target.roots,
                                          target.expiry, precert)
            submission = target.accept(checked)
        except BadSubmission:
            if observe is not None:
                observe(name, "refused", None)
            raise
        if submission.index is not None:
            if observe is not None:
                observe(name, "duplicate", None)
            return target.sct(submission.index)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[SCT] = loop.create_future()
        self._waiting.setdefault((name, identity(submission.entry)), []).append(waiter)
        if observe is None:
            return await waiter
        accepted = loop.time()
        try:
            sct = await waiter
        except BadSubmission:
            observe(name, "failed", None)
            raise
        observe(name, "sequenced", loop.time() - accepted)
        return sct

    def public_key_der(self, name: str) -> bytes:
        """Log ``name``'s public key, SubjectPublicKeyInfo DER."""
        return self._key_ders[name]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        tick = loop.time()
        while True:
            tick += self._interval
            await asyncio.sleep(max(0.0, tick - loop.time()))
            tick = max(tick, loop.time() - self._interval)  # after a stall, do not race to catch up
            done = self._integrate_all()
            if done:
                self.on_head()
                for listener in self.head_listeners:
                    listener()
            plans = [(name, plan) for name, plan, _ in done if plan is not None]
            try:
                if plans:
                    # Tile files are written (and fsynced) on a thread, so the event loop
                    # keeps serving while the disk works; SCTs go out once the files are there.
                    await loop.run_in_executor(self._writer, self._write, plans)
            finally:  # (stopping mid-write: the entries are stored; answer anyway)
                for name, _, issued in done:
                    self._answer(name, issued)

    def cosigned(self, name: str, text: str) -> None:
        """Log ``name``'s checkpoint file replaced by ``text``, the same checkpoint with
        witnesses' cosignatures (nothing if the log has moved on), on the writer thread,
        after every file already queued there."""
        directory = self.tiles.get(name)
        plan = directory.plan_cosigned(text) if directory is not None else None
        if plan is not None:
            try:
                asyncio.get_running_loop().run_in_executor(self._writer, self._write,
                                                           [(name, plan)])
            except RuntimeError:  # stopping, the writer shut: the file keeps the plain one
                pass

    def _sequence_all(self) -> None:
        """Integrate every pending entry now, files and answers included (at stop)."""
        done = self._integrate_all()
        self._write([(name, plan) for name, plan, _ in done if plan is not None])
        for name, _, issued in done:
            self._answer(name, issued)

    def _integrate_all(self) -> list[tuple[str, TilePlan | None, list[Issued]]]:
        """Sequence each log's pending entries; their tile plans and issued SCTs."""
        now_ms = int(self._clock() * 1000)
        done = []
        for name, target in self.logs.items():
            if not target.pending:
                continue
            try:
                issued = target.integrate(now_ms)
            except Exception as exc:  # storage failed: the waiters get an error, state rolls back
                log.exception("log %s: sequencing failed", name)
                for key in [k for k in self._waiting if k[0] == name]:
                    for waiter in self._waiting.pop(key):
                        if not waiter.done():
                            waiter.set_exception(BadSubmission(f"the log could not store: {exc}"))
                continue
            plan = self.tiles[name].plan() if name in self.tiles else None
            done.append((name, plan, issued))
        return done

    def _write(self, plans: list[tuple[str, TilePlan]]) -> None:
        for name, plan in plans:
            try:
                plan.apply()
            except OSError:  # the log is intact; the files catch up with the next plan
                log.exception("log %s: writing tiles failed", name)
                self.tiles[name].forget()

    def _answer(self, name: str, issued: list[Issued]) -> None:
        for item in issued:
            for waiter in self._waiting.pop((name, item.identity), []):
                if not waiter.done():
                    waiter.set_result(item.sct)
