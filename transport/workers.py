"""Worker processes for the node's per-request cryptography, so every core works.

The event loop runs in one process, on one core.  The expensive, pure steps
of a request (checking a CSR, signing a precertificate and a certificate,
verifying SCTs, verifying a submitted chain for a CT log) are functions of
bytes (:mod:`trustchain.ca.work`, :func:`trustchain.ct.log.check_submission`),
so :class:`WorkerPool` runs them in child processes instead:

* Each worker is ``python -m transport.workers FD``, connected to the node by
  a private socket pair (no listening socket, nothing on disk).  Messages
  are length-prefixed pickles; only the node and its own children speak on
  that socket.
* Calls are batched: every call made while the event loop is busy goes out
  in one message, and the answers come back in one, so the cost per call
  of crossing processes stays small under load.
* :meth:`WorkerPool.sign` gives the function a detached
  :class:`~trustchain.ca.signer.Signer` that holds only the keys the node
  has handed it.  A worker asked for a key it lacks answers
  :class:`~trustchain.ca.signer.KeyNotLoaded`; the pool sends the key
  (:meth:`Signer.key_material`) and the call again.  Keys therefore reach a
  worker only when it first signs with them, and only over that socket.
* A worker that dies fails the calls it held (:class:`WorkerStopped`) and is
  started again for the next call; the node keeps serving.

:class:`InlineWork` has the same interface and calls the function in the
event loop's process (``ca_workers = 0``, or a one-core machine).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from transport.batching import TurnBatch
from trustchain.ca.signer import KeyNotLoaded, Signer
from trustchain.errors import LocalError
from trustchain.passphrase import ENV_VAR as PASSPHRASE_ENV

log = logging.getLogger(__name__)

T = TypeVar("T")
_HEADER = struct.Struct(">I")
#: A message larger than this is refused (a sign of a bug, not of load).
MAX_MESSAGE = 256 * 1024 * 1024
#: A worker answers a long message of calls in parts of this many, so the node can
#: carry on with the first answers while the worker computes the rest.
ANSWER_CHUNK = 16


class WorkerStopped(LocalError):
    """The worker process running a call stopped before it answered."""


class Work(Protocol):
    async def run(self, fn: Callable[..., T], *args: Any) -> T: ...
    async def sign(self, fn: Callable[..., T], *args: Any) -> T: ...
    async def close(self) -> None: ...


class InlineWork:
    """Calls the function here and now (no worker processes)."""

    def __init__(self, signer: Signer | None = None) -> None:
        self._signer = signer

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(*args)

    async def sign(self, fn: Callable[..., T], *args: Any) -> T:
        if self._signer is None:
            raise LocalError("this node has no signer for signing work")
        return fn(self._signer, *args)

    async def close(self) -> None:
        return None


# A call: (id, function, arguments, whether it takes the signer first).
_Call = tuple[int, Callable[..., Any], tuple[Any, ...], bool]


@dataclass
class _Worker:
    process: subprocess.Popen[bytes]
    writer: asyncio.StreamWriter
    reader_task: asyncio.Task[None] | None = None
    inflight: dict[int, tuple[_Call, asyncio.Future[Any]]] = field(default_factory=dict)
    alive: bool = True


def _frame(message: object) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


class WorkerPool:
    """``size`` worker processes, started at the first call."""

    def __init__(self, size: int, signer: Signer | None = None) -> None:
        if size < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.size = size
        self._signer = signer
        self._workers: list[_Worker] = []
        self._ids = itertools.count()
        self._batch: TurnBatch[_Call] = TurnBatch(self._flush)
        self._starting: asyncio.Lock | None = None
        self._closed = False

    # --- calls ----------------------------------------------------------------

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a worker (``fn`` a module-level function, arguments picklable)."""
        return await self._call(fn, args, signed=False)

    async def sign(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(signer, *args)`` in a worker, with the worker's detached signer."""
        if self._signer is None:
            raise LocalError("this pool has no signer to hand keys from")
        return await self._call(fn, args, signed=True)

    async def _call(self, fn: Callable[..., T], args: tuple[Any, ...], *, signed: bool) -> T:
        if self._closed:
            raise WorkerStopped("the worker pool is closed")
        await self._ensure_workers()
        result: T = await self._batch.submit((next(self._ids), fn, args, signed))
        return result

    def _flush(self, calls: list[tuple[_Call, asyncio.Future[Any]]]) -> None:
        """Send the calls of one loop turn, spread over the live workers, one message each."""
        live = [w for w in self._workers if w.alive]
        if not live:
            for _, future in calls:
                if not future.done():
                    future.set_exception(WorkerStopped("no worker process is running"))
            return
        batches: dict[int, list[_Call]] = {}
        for call, future in calls:
            if future.done():  # cancelled while queued
                continue
            worker = min(live, key=lambda w: len(w.inflight))
            worker.inflight[call[0]] = (call, future)
            batches.setdefault(id(worker), []).append(call)
        for worker in live:
            batch = batches.get(id(worker))
            if batch:
                worker.writer.write(_frame(("calls", batch)))

    # --- answers --------------------------------------------------------------

    async def _read(self, worker: _Worker, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                size = _HEADER.unpack(await reader.readexactly(_HEADER.size))[0]
                answers = pickle.loads(await reader.readexactly(size))
                for call_id, ok, value in answers:
                    self._answer(worker, call_id, ok, value)
        except (asyncio.IncompleteReadError, ConnectionError, pickle.UnpicklingError) as exc:
            if not self._closed:
                log.error("signing worker %d stopped (%s); its %d calls fail",
                          worker.process.pid, type(exc).__name__, len(worker.inflight))
        finally:
            self._retire(worker)

    def _answer(self, worker: _Worker, call_id: int, ok: bool | None, value: Any) -> None:
        held = worker.inflight.pop(call_id, None)
        if held is None:
            return
        call, future = held
        if ok is None:  # KeyNotLoaded: hand over the key, then the call again
            try:
                assert self._signer is not None
                material = self._signer.key_material(value)
            except Exception as exc:  # the key is gone from the store: the call fails
                if not future.done():
                    future.set_exception(exc)
                return
            worker.inflight[call_id] = held
            worker.writer.write(_frame(("key", value, material)))
            worker.writer.write(_frame(("calls", [call])))
            return
        if future.done():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def _retire(self, worker: _Worker) -> None:
        worker.alive = False
        for _, future in worker.inflight.values():
            if not future.done():
                future.set_exception(WorkerStopped("the signing worker stopped before answering"))
        worker.inflight.clear()
        worker.writer.close()
        if worker.process.poll() is None:
            worker.process.kill()
        worker.process.wait()

    # --- processes ------------------------------------------------------------

    async def _ensure_workers(self) -> None:
        if len(self._workers) == self.size and all(w.alive for w in self._workers):
            return
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            self._workers = [w for w in self._workers if w.alive]
            while len(self._workers) < self.size and not self._closed:
                self._workers.append(await self._start())

    async def _start(self) -> _Worker:
        ours, theirs = socket.socketpair()
        root = str(Path(__file__).resolve().parent.parent)
        # A worker needs no secret but the keys it is handed: not the key store's passphrase.
        env = {name: value for name, value in os.environ.items() if name != PASSPHRASE_ENV}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", ""))
                                            if p)
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "transport.workers", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=env)
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours, limit=MAX_MESSAGE)
        worker = _Worker(process, writer)
        worker.reader_task = asyncio.ensure_future(self._read(worker, reader))
        log.info("started signing worker %d", process.pid)
        return worker

    async def close(self) -> None:
        """Stop the workers (each finishes what it holds, then sees the socket close)."""
        self._closed = True
        for worker in self._workers:
            if worker.alive:
                worker.writer.write_eof()
        loop = asyncio.get_running_loop()
        for worker in self._workers:
            try:
                await asyncio.wait_for(loop.run_in_executor(None, worker.process.wait), 10)
            except TimeoutError:
                worker.process.kill()
            if worker.reader_task is not None:
                await asyncio.gather(worker.reader_task, return_exceptions=True)
        self._workers = []


# --- the worker process ---------------------------------------------------------


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a RuntimeError that says what it was."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def serve(sock: socket.socket) -> None:
    """The worker's loop: answer each message of calls with one message of answers."""
    signer = Signer.detached()
    while True:
        header = _read_exactly(sock, _HEADER.size)
        if header is None:
            return  # the node closed its end: stop
        body = _read_exactly(sock, _HEADER.unpack(header)[0])
        if body is None:
            return
        message = pickle.loads(body)
        if message[0] == "key":
            signer.install(message[1], message[2])
            continue
        answers: list[tuple[int, bool | None, Any]] = []
        for call_id, fn, args, signed in message[1]:
            try:
                answers.append((call_id, True, fn(signer, *args) if signed else fn(*args)))
            except KeyNotLoaded as exc:
                answers.append((call_id, None, exc.key_id))
            except Exception as exc:
                answers.append((call_id, False, _portable(exc)))
            if len(answers) == ANSWER_CHUNK:  # the node goes on with these meanwhile
                sock.sendall(_frame(answers))
                answers = []
        if answers:
            sock.sendall(_frame(answers))


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the node stops us by closing the socket
    with socket.socket(fileno=int(argv[1])) as sock:
        try:
            serve(sock)
        except (ConnectionResetError, BrokenPipeError):
            pass  # the node died (killed) with work in flight: nobody is left to answer
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
