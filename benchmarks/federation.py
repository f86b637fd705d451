#!/usr/bin/env python3
"""Federation commit latency and throughput on a 4-node devnet, beside the simulation.

Why: consensus is useful only if operations are committed on every node promptly and
enough fit through; the same validators simulated in the same run show what network
and storage cost.  ``trustchain devnet up --nodes 4`` in a temporary directory,
default settings (``--commit-pause-ms`` sets TRUSTCHAIN_CONSENSUS_COMMIT_PAUSE_MS for
the nodes), always torn down.  Operations without proofs: ``ct-checkpoint`` entries
with unique bodies, pushed over stoq/1 (``consensus.operation``, node-1's node
certificate).  Committed = stored on *every* node (``committed_at`` in each node.db).

(a) latency at 20/s, pushed to every node (as a node gossips what it is given) or to
    one node in turn.  Target: p50 <= 1 s.
(b) throughput: as fast as the nodes take them, spread over the four, at most
    ``--backlog`` waiting, 100 to a push; blocks/s x operations a block.  Target: >= 500/s.
(c) ``network-registration`` with proofs made beforehand (anchored at the current
    height), all at once through node-1's ``admin.network-register``.
(d) baseline: the node's Tendermint and Ledger for four validators in this process
    (hybrid Ed25519 + ML-DSA-65, same timeouts, block size and operations); messages
    arrive at once, nothing is stored, each call takes its real time on one of this
    machine's cores.
(e) CPU: each node's and this process's user + system time per phase (/proc).

    python benchmarks/federation.py [--seconds 20] [--registrations 30] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import heapq
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa  # noqa: E402

import trustchain.consensus.ledger as ledger_module  # noqa: E402
from bootstrap.genesis import parse_genesis  # noqa: E402
from bootstrap.transport_certs import ADMIN_TLS_PURPOSE, NODE_TLS_PURPOSE  # noqa: E402
from tests.support import kill_processes_naming, stored_identity  # noqa: E402
from transport.client import NodeClientProtocol, connect  # noqa: E402
from trustchain.config import NodeConfig  # noqa: E402
from trustchain.consensus.codec import decode_bare_block  # noqa: E402
from trustchain.consensus.ledger import Ledger  # noqa: E402
from trustchain.consensus.operations import Entry, Operation, OperationKind  # noqa: E402
from trustchain.consensus.parameters import ProofParameters  # noqa: E402
from trustchain.consensus.proofs.stake import ValidatorStake  # noqa: E402
from trustchain.consensus.tendermint import Output, Tendermint, Timeouts  # noqa: E402
from trustchain.wiring.dns import NetworkRegister  # noqa: E402
from trustchain.wiring.registry import registration_proofs  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
from node_process import cpu_seconds, percentile  # noqa: E402

NODES = 4
NAMES = [f"node-{i}" for i in range(1, NODES + 1)]
RATE = 20.0  # latency phases: submissions per second
REQUESTER = "be" * 16
BOUND = 90.0  # seconds any wait for commits may take (polling, bounded)
TARGET_P50, TARGET_RATE = 1.0, 500.0
#: Operations a client push carries in (b) (``consensus.operation`` takes one a line).
BATCH = 100
CORES = os.cpu_count() or 1


def checkpoint(n: int) -> Entry:
    """Operation ``n``: a ``ct-checkpoint`` (no proofs) with a unique body."""
    return Entry(operation=Operation(kind=OperationKind.CT_CHECKPOINT, requester=REQUESTER,
                                     body={"log": "bench", "size": n}))


def op_key(raw: bytes) -> str:
    """What a block's operation is here: ``op<n>``, ``net:<name>``, or its kind."""
    kind, body = (json.loads(raw)["operation"][k] for k in ("kind", "body"))
    if kind == OperationKind.CT_CHECKPOINT and body.get("log") == "bench":
        return f"op{body['size']}"
    return f"net:{body['name']}" if kind == OperationKind.NETWORK_REGISTRATION else str(kind)


def stored_operations(raw: bytes) -> Sequence[bytes]:
    return decode_bare_block(raw).operations  # the node's codec


def pcts(seconds: list[float]) -> dict[str, float]:
    return {"p50_ms": percentile(seconds, .5) * 1000, "p99_ms": percentile(seconds, .99) * 1000}


@dataclass
class Commits:
    """Blocks and operations committed on every node, at the time the last node did: fed
    by the devnet's databases or by the simulation, so that both are measured alike."""

    seen: dict[int, dict[str, float]] = field(default_factory=dict)  # height -> node -> time
    keys: dict[int, list[str]] = field(default_factory=dict)
    everywhere: dict[str, float] = field(default_factory=dict)  # op key -> time
    blocks: dict[int, float] = field(default_factory=dict)  # height -> time

    def add(self, node: str, height: int, operations: Callable[[], Sequence[bytes]],
            at: float) -> None:
        if height not in self.keys:  # read once, from the first node that stored it
            self.keys[height] = [op_key(op) for op in operations()]
        seen = self.seen.setdefault(height, {})
        seen[node] = at
        if len(seen) == NODES:
            self.blocks[height] = last = max(seen.values())
            for key in self.keys[height]:
                self.everywhere[key] = last

    def rate(self, prefix: str, start: float, end: float) -> dict[str, float]:
        """Operations (keys starting ``prefix``) a second in blocks committed everywhere
        between ``start`` and ``end``, from the first such block to the last (the first
        block's operations waited for the phase to start: not counted)."""
        window = sorted((t, h) for h, t in self.blocks.items() if start <= t <= end
                        and any(k.startswith(prefix) for k in self.keys[h]))
        counts = [sum(k.startswith(prefix) for k in self.keys[h]) for _, h in window]
        span = window[-1][0] - window[0][0] if len(window) > 1 else 0.0
        if not span:
            return {"ops_per_s": sum(counts) / (end - start), "blocks_per_s": 0.0,
                    "ops_per_block": float(sum(counts))}
        return {"ops_per_s": sum(counts[1:]) / span, "blocks_per_s": (len(window) - 1) / span,
                "ops_per_block": sum(counts) / len(counts)}


class Chains(Commits):
    """The devnet's commits, polled from each node's ``node.db`` (read-only)."""

    def __init__(self, base: Path) -> None:
        super().__init__()
        self.rounds: dict[int, int] = {}  # height -> the round that decided it
        self._dbs = {n: sqlite3.connect(f"file:{base / n / 'node.db'}?mode=ro", uri=True)
                     for n in NAMES}
        self._last = dict.fromkeys(NAMES, 0)

    def poll(self) -> None:
        """Read what each node stored since the last poll."""
        for name, db in self._dbs.items():
            try:
                rows = db.execute("SELECT height, block, committed_at, round FROM "
                                  "consensus_blocks WHERE height > ? ORDER BY height",
                                  (self._last[name],)).fetchall()
            except sqlite3.OperationalError:
                continue  # busy a moment: the next poll reads it
            for height, raw, at, round_ in rows:
                self._last[name] = height
                self.rounds[height] = round_
                when = datetime.fromisoformat(at)
                when = when if when.tzinfo else when.replace(tzinfo=UTC)
                self.add(name, height, functools.partial(stored_operations, bytes(raw)),
                         when.timestamp())

    def close(self) -> None:
        for db in self._dbs.values():
            db.close()

    async def until(self, what: str, done: Callable[[], bool]) -> None:
        """Poll until ``done()``, for at most BOUND seconds."""
        deadline = time.monotonic() + BOUND
        self.poll()
        while not done():
            if time.monotonic() > deadline:
                raise RuntimeError(f"not within {BOUND:.0f} s: {what}")
            await asyncio.sleep(0.05)  # polling with a bound
            self.poll()


def system_cpu() -> tuple[float, float]:
    """All cores' busy and total seconds so far (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(fields) - fields[3] - fields[4]) / tick, sum(fields) / tick  # less idle, iowait


@contextlib.contextmanager
def cpu_split(pids: dict[str, int], into: dict[str, float]) -> Iterator[None]:
    """Fill ``into`` with each node's (its worker included), this benchmark's, other
    processes' and the idle share of all cores while the block runs."""
    before = {n: cpu_seconds(p) for n, p in pids.items()}
    own, (busy, total) = time.process_time(), system_cpu()
    yield
    busy, total = (a - b for a, b in zip(system_cpu(), (busy, total), strict=True))
    for name, pid in pids.items():
        into[name] = (cpu_seconds(pid) - before[name]) / total
    into["benchmark"] = (time.process_time() - own) / total
    into["other processes"] = max(0.0, busy / total - sum(into.values()))
    into["idle"] = 1 - busy / total


def cli(env: dict[str, str], *args: str | Path) -> str:
    result = subprocess.run([sys.executable, "-m", "trustchain", *map(str, args)], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=180)
    if result.returncode != 0:
        raise RuntimeError(f"trustchain {args[0]} {args[1]}: {result.stderr[-2000:]}")
    return result.stdout


@dataclass
class Devnet:
    base: Path
    status: dict[str, Any]  # ``devnet status --json``

    @contextlib.asynccontextmanager
    async def clients(self, purpose: str, names: Sequence[str]) -> Any:
        """One stoq/1 connection per node named, with node-1's certificate of ``purpose``."""
        genesis = parse_genesis((self.base / "node-1" / "genesis.json").read_bytes())
        identity = stored_identity(self.base / "node-1", purpose,
                                   (self.base / "passphrase").read_text().strip())
        ports = {n["name"]: n["ports"]["quic"] for n in self.status["nodes"]}
        async with contextlib.AsyncExitStack() as stack:
            yield [await stack.enter_async_context(connect(
                "::1", ports[n], root=genesis.root_certificate, identity=identity,
                server_name=genesis.body.origin.rstrip("."))) for n in names]


async def latency(chains: Chains, clients: list[NodeClientProtocol], first: int, count: int,
                  to_every: bool) -> list[float]:
    """(a): ``count`` operations at RATE a second; seconds from each submission to its
    block stored on every node."""
    submitted: dict[str, float] = {}
    start = time.monotonic()
    for i in range(count):
        await asyncio.sleep(max(0.0, start + i / RATE - time.monotonic()))  # the arrival pace
        data = checkpoint(first + i).encode()
        submitted[f"op{first + i}"] = time.time()
        for client in (clients[i % NODES:] + clients[:i % NODES]) if to_every \
                else [clients[i % NODES]]:
            client.push("consensus", "operation", data)
    await chains.until(f"{count} operations committed on every node",
                       lambda: all(k in chains.everywhere for k in submitted))
    return [chains.everywhere[k] - t for k, t in submitted.items()]


async def throughput(chains: Chains, clients: list[NodeClientProtocol], first: int,
                     seconds: float, backlog: int) -> dict[str, float]:
    """(b): for ``seconds``, as fast as blocks take them (at most ``backlog`` waiting, to
    one node each in turn); then wait until every one is committed everywhere."""
    n, pushes, wall, start = first, 0, time.time(), time.monotonic()
    committed, next_poll = len(chains.everywhere), 0.0
    while (now := time.monotonic()) < start + seconds:
        if now >= next_poll:
            chains.poll()
            next_poll = now + 0.05
        waiting = (n - first) - (len(chains.everywhere) - committed)
        if waiting >= backlog:
            await asyncio.sleep(0.02)  # polling, bounded by the phase's end
            continue
        batch = min(BATCH, backlog - waiting)  # one push: the node's gossip batches too
        clients[pushes % NODES].push("consensus", "operation", b"\n".join(
            checkpoint(i).encode() for i in range(n, n + batch)))
        n, pushes = n + batch, pushes + 1
        await asyncio.sleep(0)  # let the pushes go out
    end = time.time()
    await chains.until("the phase's operations committed on every node",
                       lambda: all(f"op{i}" in chains.everywhere for i in range(first, n)))
    late = sum(chains.rounds[h] > 0 for h, t in chains.blocks.items() if wall <= t <= end)
    return {**chains.rate("op", wall, end), "submitted": n - first, "later_rounds": late}


async def registrations(devnet: Devnet, chains: Chains,
                        requests: list[dict[str, Any]]) -> dict[str, float]:
    """(c): every registration at once through node-1's ``admin.network-register``."""
    async with devnet.clients(ADMIN_TLS_PURPOSE, ["node-1"]) as (client,):
        start = time.time()
        answers = await asyncio.gather(*(client.request(
            "admin", "network-register", json.dumps(r).encode()) for r in requests))
    if bad := [a.message[:300] for a in answers if a.status != 200]:
        raise RuntimeError(f"{len(bad)} registrations refused: {bad[0]!r}")
    keys = [f"net:{r['name']}" for r in requests]
    await chains.until("every registration on every node",
                       lambda: all(k in chains.everywhere for k in keys))
    done = max(chains.everywhere[k] for k in keys)
    return {"count": len(keys), "seconds": done - start, "per_s": len(keys) / (done - start),
            "blocks": len({h for h, ks in chains.keys.items() if set(ks) & set(keys)}),
            **pcts([chains.everywhere[k] - start for k in keys])}


def make_registrations(devnet: Devnet, count: int) -> tuple[list[dict[str, Any]], int, float]:
    """``count`` registration requests with their proofs, anchored at node-1's latest block
    (as ``network register`` makes them) on every core; the anchor and the seconds taken."""
    with contextlib.closing(sqlite3.connect(
            f"file:{devnet.base / 'node-1' / 'node.db'}?mode=ro", uri=True)) as db:
        row = db.execute("SELECT height, hash FROM consensus_blocks "
                         "ORDER BY height DESC LIMIT 1").fetchone()
    anchor, anchor_hash = (row[0], bytes(row[1]).hex()) if row else (0, None)
    parameters = parse_genesis((devnet.base / "node-1" / "genesis.json").read_bytes()) \
        .body.parameters
    bodies = [NetworkRegister(name=f"bench{i}", prefixes=[f"10.{i // 256}.{i % 256}.0/24"])
              .model_dump() for i in range(count)]
    prove = functools.partial(registration_proofs, requester=devnet.status["nodes"][0]["node_id"],
                              anchor=anchor, anchor_hash=anchor_hash,
                              parameters=parameters.model_dump())
    started = time.perf_counter()
    with ProcessPoolExecutor(CORES) as pool:
        proofs = list(pool.map(prove, bodies))
    return ([{**b, "proofs": p} for b, p in zip(bodies, proofs, strict=True)], anchor,
            time.perf_counter() - started)


class Simulation(Commits):
    """(d): four hybrid-signing validators (the node's Tendermint and Ledger) in this process.

    Messages arrive as soon as they are sent and nothing is stored.  A call on a validator
    starts when its input is due, the validator is free and one of CORES simulated cores
    is, and takes as long as it really takes here.
    """

    def __init__(self, pause: float, idle: float) -> None:
        super().__init__()
        self.ids = [f"{i:032x}" for i in range(NODES)]
        keys = {n: (ed25519.Ed25519PrivateKey.generate(), mldsa.MLDSA65PrivateKey.generate())
                for n in self.ids}
        stakes = {n: ValidatorStake(ed.public_key(), 100, ml.public_key())
                  for n, (ed, ml) in keys.items()}
        self.ledgers = {n: Ledger("bench", stakes, ProofParameters()) for n in self.ids}
        self.nodes = {n: Tendermint(n, ed, "bench", stakes, self.ledgers[n], pq_key=ml,
                                    timeouts=Timeouts(commit=pause, idle=idle))
                      for n, (ed, ml) in keys.items()}
        self.busy = dict.fromkeys(self.ids, 0.0)
        self.cores = [0.0] * CORES
        self.events: list[tuple[float, int, str, Any]] = []
        self.seq, self.cpu = 0, 0.0
        self.timer: dict[str, float] = {}
        for name in self.ids:
            self.push(0.0, name, "start")

    def push(self, at: float, target: str, what: Any) -> None:
        self.seq += 1
        heapq.heappush(self.events, (at, self.seq, target, what))

    def call(self, name: str, at: float, what: Any) -> None:
        node, core = self.nodes[name], self.cores.index(min(self.cores))
        now = max(at, self.busy[name], self.cores[core])
        began = time.perf_counter()
        if what == "tick":
            out: Output = node.tick(now)
        elif what == "start":
            out = node.start(now)
        elif isinstance(what, Entry):  # an operation arrives
            self.ledgers[name].submit(what)
            out = node.wake(now)
        else:
            out = node.receive(what, now)
        spent = time.perf_counter() - began
        self.cpu += spent
        self.busy[name] = self.cores[core] = done = now + spent
        for message in out.broadcast:
            for other in self.ids:
                if other != name:
                    self.push(done, other, message)
        for other, message in out.send:
            self.push(done, other, message)
        for c in out.committed:
            self.add(name, c.block.height, functools.partial(tuple, c.block.operations), done)
        deadline = node.next_deadline()
        if deadline is not None and self.timer.get(name) != deadline:
            self.timer[name] = deadline
            self.push(deadline, name, "tick")

    def run(self, until: Callable[[float], bool],
            refill: Callable[[float], None] = lambda _at: None) -> None:
        while self.events:
            at, _, name, what = heapq.heappop(self.events)
            if until(at):
                return
            if what == "tick":
                if self.timer.get(name) != at:
                    continue  # superseded by an earlier deadline
                del self.timer[name]
            self.call(name, at, what)
            refill(at)


def simulate_latency(pause: float, idle: float, count: int, to_every: bool) -> list[float]:
    sim = Simulation(pause, idle)
    arrivals = {f"op{i}": 1.0 + i / RATE for i in range(count)}  # after the first height
    for i in range(count):
        for name in sim.ids if to_every else [sim.ids[i % NODES]]:
            sim.push(arrivals[f"op{i}"], name, checkpoint(i))
    sim.run(lambda _at: all(k in sim.everywhere for k in arrivals))
    return [sim.everywhere[k] - t for k, t in arrivals.items()]


def simulate_throughput(pause: float, idle: float, seconds: float, backlog: int,
                        block_size: int | None = None) -> dict[str, float]:
    """(b) in the simulation; ``block_size`` other than the ledger's is a what-if (it is
    changed in this process only, for the run)."""
    saved = ledger_module.MAX_OPERATIONS
    ledger_module.MAX_OPERATIONS = block_size or saved
    try:
        sim = Simulation(pause, idle)
        sent = [0]

        def refill(_at: float) -> None:
            while sent[0] - len(sim.everywhere) < backlog:
                sim.ledgers[sim.ids[sent[0] % NODES]].submit(checkpoint(sent[0]))
                sent[0] += 1

        refill(0.0)
        sim.run(lambda at: at > seconds, refill)
        return {**sim.rate("op", 0.0, seconds),
                "cpu_ms_per_block": sim.cpu / max(1, len(sim.blocks)) * 1000}
    finally:
        ledger_module.MAX_OPERATIONS = saved


async def run_devnet(args: argparse.Namespace, devnet: Devnet, chains: Chains, count: int,
                     requests: list[dict[str, Any]], out: dict[str, Any]) -> None:
    cpu, pids = out["cpu"], {n["name"]: n["pid"] for n in devnet.status["nodes"]}
    async with devnet.clients(NODE_TLS_PURPOSE, NAMES) as clients:
        for first, mode in ((0, "every"), (count, "one")):
            with cpu_split(pids, cpu.setdefault(f"latency {mode}", {})):
                waits = await latency(chains, clients, first, count, mode == "every")
            out["latency"][mode] = {"devnet": pcts(waits)}
        with cpu_split(pids, cpu.setdefault("throughput", {})):
            out["throughput"]["devnet"] = await throughput(chains, clients, 2 * count,
                                                           args.seconds, args.backlog)
    if requests:
        with cpu_split(pids, cpu.setdefault("registrations", {})):
            out["registrations"]["devnet"] = await registrations(devnet, chains, requests)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="of each phase")
    parser.add_argument("--backlog", type=int, default=3000, help="waiting, at most")
    parser.add_argument("--registrations", type=int, default=30)
    parser.add_argument("--commit-pause-ms", type=int, help="default: the node's")
    parser.add_argument("--quick", action="store_true", help="no registrations, no what-if")
    parser.add_argument("--json", action="store_true", help="the figures as JSON on stdout")
    args = parser.parse_args()
    config = NodeConfig() if args.commit_pause_ms is None \
        else NodeConfig(consensus_commit_pause_ms=args.commit_pause_ms)
    pause, idle = config.consensus_commit_pause_ms / 1000, float(config.consensus_idle_seconds)
    out: dict[str, Any] = {
        "date": datetime.now(UTC).date().isoformat(), "cpus": CORES, "load": os.getloadavg()[0],
        "commit_pause_ms": config.consensus_commit_pause_ms, "idle_s": idle,
        "block_size": ledger_module.MAX_OPERATIONS, "latency": {}, "throughput": {},
        "registrations": {}, "cpu": {}}
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRUSTCHAIN_")}
    if args.commit_pause_ms is not None:
        env["TRUSTCHAIN_CONSENSUS_COMMIT_PAUSE_MS"] = str(args.commit_pause_ms)
    count, requests = max(4, int(args.seconds * RATE)), list[dict[str, Any]]()
    with tempfile.TemporaryDirectory(prefix="federation-bench-") as tmp:
        base = Path(tmp) / "net"
        try:
            cli(env, "devnet", "up", "--nodes", str(NODES), "--base-dir", base)
            devnet = Devnet(base, json.loads(cli(env, "devnet", "status", "--json",
                                                 "--base-dir", base)))
            if not args.quick and args.registrations:
                requests, anchor, made = make_registrations(devnet, args.registrations)
                out["registrations"].update(proofs_s=made, anchor=anchor)
            with contextlib.closing(Chains(base)) as chains:
                asyncio.run(run_devnet(args, devnet, chains, count, requests, out))
        finally:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                cli(env, "devnet", "down", "--base-dir", base)
            kill_processes_naming(base)
    # The baseline once the devnet is down, so that it has the cores to itself.
    for mode in ("every", "one"):
        out["latency"][mode]["simulation"] = pcts(
            simulate_latency(pause, idle, count, mode == "every"))
    tp = out["throughput"]
    tp["simulation"] = simulate_throughput(pause, idle, args.seconds, args.backlog)
    tp["ratio"] = tp["devnet"]["ops_per_s"] / tp["simulation"]["ops_per_s"]
    report(args, out, pause, idle)
    return 0


def report(args: argparse.Namespace, out: dict[str, Any], pause: float, idle: float) -> None:
    """Every figure beside its baseline and target (and JSON on stdout with ``--json``)."""
    say = functools.partial(print, file=sys.stderr if args.json else sys.stdout)
    lat, (d, s) = out["latency"], (out["throughput"][k] for k in ("devnet", "simulation"))
    out["targets"] = {"latency_p50": lat["every"]["devnet"]["p50_ms"] <= TARGET_P50 * 1000,
                      "throughput": d["ops_per_s"] >= TARGET_RATE}
    met = {k: "met" if v else "NOT met" for k, v in out["targets"].items()}
    say(f"4-node devnet over QUIC on [::1], {CORES} cores shared with this client (load "
        f"{out['load']:.1f}); commit pause {pause * 1000:.0f} ms, idle {idle:.0f} s, at most "
        f"{out['block_size']} operations a block; simulation: the same validators in-process")
    for mode, what in (("every", "to every node"), ("one", "to one node in turn")):
        say(f"(a) latency at {RATE:.0f}/s, {what}: " + "; ".join(
            f"{k} p50 {v['p50_ms']:.0f} ms, p99 {v['p99_ms']:.0f} ms" for k, v in lat[mode].items()))
    say(f"    target p50 <= {TARGET_P50 * 1000:.0f} ms (to every node): {met['latency_p50']}")
    say(f"(b) committed everywhere, {args.seconds:.0f} s, at most {args.backlog} waiting: devnet "
        f"{d['ops_per_s']:.0f}/s = {d['blocks_per_s']:.2f} blocks/s x {d['ops_per_block']:.0f} "
        f"({d['later_rounds']} blocks after round 0); simulation {s['ops_per_s']:.0f}/s = "
        f"{s['blocks_per_s']:.2f} x {s['ops_per_block']:.0f} ({s['cpu_ms_per_block']:.0f} ms CPU "
        f"a block); devnet / simulation {out['throughput']['ratio']:.2f} x")
    say(f"    target >= {TARGET_RATE:.0f}/s: {met['throughput']}")
    if not out["targets"]["throughput"] and d["blocks_per_s"]:
        height, block = 1 / d["blocks_per_s"], out["block_size"]
        out["limit"] = {"height_ms": height * 1000, "block_needed": TARGET_RATE * height}
        say(f"    a height takes {height * 1000:.0f} ms (pause {pause * 1000:.0f} ms + rounds "
            f"{(height - pause) * 1000:.0f} ms): {block} a block allow {block / height:.0f}/s; "
            f"500/s needs {TARGET_RATE * height:.0f} a block at this pace, or heights of "
            f"{block / TARGET_RATE * 1000:.0f} ms")
        if not args.quick:
            size = int(TARGET_RATE * height * 1.5)
            bigger = simulate_throughput(pause, idle, args.seconds, max(args.backlog, 8 * size),
                                         size)
            out["what_if"] = {"block_size": size, **bigger}
            say(f"    simulation with blocks of {size} (a what-if): {bigger['ops_per_s']:.0f}/s "
                f"({bigger['cpu_ms_per_block']:.0f} ms CPU a block)")
    if made := out["registrations"]:
        r = made["devnet"]
        say(f"(c) {r['count']} registrations, proofs made beforehand ({made['proofs_s']:.0f} s), "
            f"all at once through node-1: {r['per_s']:.1f}/s ({r['seconds']:.1f} s from the "
            f"first request to the last on every node, {r['blocks']} blocks, p50 "
            f"{r['p50_ms']:.0f} ms)")
    for phase, split in out["cpu"].items():
        say(f"(e) CPU, {phase}, share of {CORES} cores: "
            + ", ".join(f"{n} {v * 100:.0f}%" for n, v in split.items()))
    if args.json:
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    sys.exit(main())
