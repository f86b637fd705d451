"""The flood run: a node, legitimate clients timing their answers, one flood after another.

A fresh node serves a zone (:mod:`tests.flood.node`).  Three legitimate clients run
throughout, from 127.0.0.1, each asking one thing, waiting for the answer, then 10 ms
(:mod:`tests.edge_clients` probes): a DNS query over UDP, a DNS query over QUIC (DoQ,
anonymous, the node pinned to its genesis root, one kept connection) and CT ``get-sth``
over HTTP (one kept connection).  The floods come one after another, each in a process
of its own (:mod:`tests.flood.attacks`), from a /24 of its own, for ``seconds``, each
after a quiet period as long (the same process, idle), so that the quiet p99 it is
judged against was measured just before it, on the machine as loaded as it then was.
After each flood every listener must answer again (:meth:`FloodNode.listeners_up`).

The target, per flood and legitimate client: the p99 latency during the flood at most
:data:`TARGET` times the quiet p99, the quiet p99 counted as at least :data:`FLOOR` (a
sub-millisecond quiet figure would make scheduler noise on a loaded 2-core machine look
like a slowdown).  A request that fails, or is not answered within a second, counts as a
second.  Every process started is gone when :func:`run` returns, whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from tests.edge_clients import DnsProbe, DoqProbe, HttpProbe, Probe, p99
from tests.flood.node import HOSTS, SERVER_NAME, ZONE, FloodNode, attacker_addresses
from tests.support import REPO

#: Legitimate p99 during a flood: at most this many times the quiet p99 ...
TARGET = 5.0
#: ... where the quiet p99 counts as at least this (seconds).
FLOOR = 0.005
#: How long a flood process may take to set up, and to wind down (bounds, not sleeps).
SET_UP = 60.0
WIND_DOWN = 60.0

#: Each flood: how many source addresses it has, and its parameters besides its duration
#: (see :mod:`tests.flood.attacks`; every count there is bounded).
FLOODS: dict[str, tuple[int, dict[str, Any]]] = {
    # 5,000 queries/s: the largest signed answers (EDNS 4096), ANY, DNSKEY and a new random
    # name each time (NXDOMAIN with its denial proof: no answer cache helps), from one /24.
    "udp-dns": (4, {"rate": 5000}),
    # 300 first flights/s of handshakes never finished (4 addresses), and 8 clients
    # completing handshakes back to back, answering Retry (4 more addresses).
    "quic-handshakes": (8, {"initials": 3000, "initials_per_second": 300, "handshakers": 8}),
    # 8 anonymous stoq/1 connections, each with 100 requests in flight at all times and
    # 20 requests never finished.
    "stoq-streams": (4, {"connections": 8, "workers": 100, "held": 20}),
    # Slowloris on HTTP and HTTPS, 70 connections per address and listener (over the cap
    # of 64) from 3 addresses, and 2 clients sending 64 MiB heads back to back from 2 more.
    "http-slow": (5, {"slowloris_sources": 3, "slots": 70, "oversized": 2}),
    # ca.issue with the admin identity: 2 connections, 16 requests in flight each.
    "issuance": (2, {"connections": 2, "workers": 16, "limit": 20000}),
}


@dataclass
class Row:
    flood: str
    legitimate: str
    quiet_p99_ms: float
    flood_p99_ms: float
    ratio: float
    #: Requests without a good answer in time (counted at the timeout) during the flood.
    failed: int
    samples: int
    listeners_up: str


@dataclass
class Report:
    seconds: float
    target: float = TARGET
    floor_ms: float = FLOOR * 1000
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    #: Node settings other than the defaults (``--set``).
    settings: dict[str, str] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    #: Each flood's own figures (what it sent, what came back, the node's CPU).
    floods: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Why legitimate requests failed during a flood (the commonest reasons).
    failures: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    #: Listeners that did not answer after a flood, and why.
    down: dict[str, dict[str, str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    log_tail: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return (not self.errors and not self.down and bool(self.rows)
                and all(row.ratio <= self.target for row in self.rows))

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def summary(self) -> str:
        settings = ", ".join(f"{k}={v}" for k, v in self.settings.items()) or "defaults"
        lines = [f"flood test: {self.seconds:g} s per flood and quiet period, {self.elapsed:.0f} s "
                 f"in all; load average {_load(self.load_before)} before, "
                 f"{_load(self.load_after)} after ({os.cpu_count()} CPUs); node settings: "
                 f"{settings}",
                 f"target: legitimate p99 during a flood <= {self.target:g} x the quiet p99 "
                 f"just before it, the quiet p99 counted as at least {self.floor_ms:g} ms; "
                 "no listener down after a flood",
                 "",
                 f"{'flood':<16} {'legitimate':<11} {'quiet p99':>10} {'flood p99':>10} "
                 f"{'ratio':>7} {'failed':>8}  listeners up"]
        for row in self.rows:
            mark = "" if row.ratio <= self.target else "  OVER TARGET"
            lines.append(f"{row.flood:<16} {row.legitimate:<11} {row.quiet_p99_ms:>7.1f} ms "
                         f"{row.flood_p99_ms:>7.1f} ms {row.ratio:>6.1f}x "
                         f"{row.failed:>3}/{row.samples:<4} {row.listeners_up}{mark}")
        lines.append("")
        for name, figures in self.floods.items():
            lines.append(f"{name}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
        for name, kinds in self.failures.items():
            for kind, reasons in kinds.items():
                lines.append(f"{name}: {kind} failures: "
                             + "; ".join(f"{n} x {why}" for why, n in reasons.items()))
        for name, down in self.down.items():
            lines += [f"DOWN after {name}: {listener}: {why}" for listener, why in down.items()]
        lines += [f"ERROR: {error}" for error in self.errors]
        if self.log_tail and (self.errors or self.down):
            lines += ["node log (last lines):", *(f"  {line}" for line in self.log_tail)]
        lines.append("result: " + ("within the target" if self.ok else "NOT within the target"))
        return "\n".join(lines)


def _load(load: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.2f}" for x in load)


class AttackProcess:
    """``python -m tests.flood.attacks KIND CONFIG``, its lines read as they come."""

    def __init__(self, kind: str, config: dict[str, Any]) -> None:
        self.kind = kind
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.flood.attacks", kind, json.dumps(config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd=REPO)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self._collect_stderr, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _collect_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip("\n"))

    def expect(self, word: str, timeout: float) -> str:
        """The next line, which must be ``word`` (for ``word`` "result": any, its JSON)."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"{self.kind}: no {word!r} within {timeout:g} s") from None
        if line is None:
            self.proc.wait(timeout=5)
            raise RuntimeError(f"{self.kind} exited ({self.proc.returncode}) before {word!r}: "
                               + " | ".join(self.stderr[-5:]))
        if word != "result" and line != word:
            raise RuntimeError(f"{self.kind}: {line!r} instead of {word!r}")
        return line

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


@dataclass
class Window:
    """What the legitimate clients saw while one flood (or none) ran, and its figures."""

    latencies: dict[str, list[float]]
    failures: dict[str, list[str]]
    figures: dict[str, Any]


def run(seconds: float, only: list[str] | None = None, settings: dict[str, str] | None = None,
        progress: Callable[[str], None] = lambda _line: None,
        floods: dict[str, tuple[int, dict[str, Any]]] | None = None) -> Report:
    """Each flood of ``floods`` (default :data:`FLOODS`; ``only`` these, if given) for
    ``seconds``, each after a quiet period as long, against a node with ``settings``."""
    chosen = {name: spec for name, spec in (floods or FLOODS).items()
              if only is None or name in only}
    report = Report(seconds, load_before=os.getloadavg(), settings=dict(settings or {}))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="trustchain-flood-") as temporary:
        node = FloodNode(Path(temporary) / "data", settings)
        runner = _Runner(node, seconds)
        try:
            node.start()
            progress(f"node started (pid {node.pid}), zone served")
            down = {k: v for k, v in node.listeners_up().items() if v is not None}
            if down:
                report.down["start"] = down
                return report
            with contextlib.ExitStack() as stack:
                runner.probes = [stack.enter_context(probe) for probe in _probes(node)]
                for number, (name, (sources, params)) in enumerate(chosen.items(), start=1):
                    quiet = runner.window("none", {}, [])
                    during = runner.window(name, params, attacker_addresses(number, sources))
                    _judge(report, name, quiet, during, node.listeners_up())
                    progress(f"{name}: " + ", ".join(
                        f"{r.legitimate} p99 {r.quiet_p99_ms:.1f} -> {r.flood_p99_ms:.1f} ms"
                        for r in report.rows if r.flood == name)
                        + f"; listeners up {report.rows[-1].listeners_up}")
        except (RuntimeError, AssertionError, OSError, ValueError) as exc:
            report.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            runner.stop()
            report.log_tail = node.log_tail()
            node.stop()
    report.load_after = os.getloadavg()
    report.elapsed = time.monotonic() - started
    return report


def _judge(report: Report, name: str, quiet: Window, during: Window,
           listeners: dict[str, str | None]) -> None:
    report.floods[name] = during.figures
    down = {k: v for k, v in listeners.items() if v is not None}
    if down:
        report.down[name] = down
    up = f"{len(listeners) - len(down)}/{len(listeners)}"
    for kind, latencies in during.latencies.items():
        quiet_p99 = p99(quiet.latencies[kind]) if quiet.latencies[kind] else float("inf")
        flood_p99 = p99(latencies) if latencies else float("inf")
        report.rows.append(Row(
            name, kind, round(quiet_p99 * 1000, 2), round(flood_p99 * 1000, 2),
            round(flood_p99 / max(quiet_p99, FLOOR), 2), len(during.failures[kind]),
            len(latencies), up))
        if during.failures[kind]:
            report.failures.setdefault(name, {})[kind] = dict(
                Counter(during.failures[kind]).most_common(3))


class _Runner:
    """Runs one flood process at a time, measuring while it floods."""

    def __init__(self, node: FloodNode, seconds: float) -> None:
        self.node, self.seconds = node, seconds
        self.probes: list[Probe] = []
        self.attack: AttackProcess | None = None

    def window(self, kind: str, params: dict[str, Any], sources: list[str]) -> Window:
        """Flood ``kind`` (``none``: a quiet period) from ``sources``, and what the
        legitimate clients saw meanwhile."""
        config = {"seconds": self.seconds, "zone": ZONE, **self.node.attack_config(),
                  "root": self.node.credentials.root.public_bytes(Encoding.PEM).decode(),
                  **params, "sources": sources}
        self.attack = AttackProcess(kind, config)
        self.attack.expect("ready", SET_UP)
        start, cpu, drops = time.monotonic(), self.node.cpu_seconds(), self.node.udp_drops()
        self.attack.expect("stopping", self.seconds + SET_UP)
        end, cpu, after = time.monotonic(), self.node.cpu_seconds() - cpu, self.node.udp_drops()
        figures = json.loads(self.attack.expect("result", WIND_DOWN))
        self.stop()
        figures["node CPU %"] = round(100 * cpu / (end - start))
        for service, count in after.items():
            figures[f"dropped at the node's full {service} socket"] = count - drops[service]
        for probe in self.probes:
            probe.settle(end)
        return Window({p.kind: p.between(start, end) for p in self.probes},
                      {p.kind: p.failed_between(start, end) for p in self.probes}, figures)

    def stop(self) -> None:
        if self.attack is not None:
            self.attack.kill()
            self.attack = None


def _probes(node: FloodNode) -> list[Probe]:
    """The legitimate clients: a resolver asking for 20 names in turn over UDP (none of
    them near the rate limit's 20 a second) and over DoQ, and a CT monitor."""
    return [
        DnsProbe(*node.address("dns"), names=HOSTS, expect_rcode=0),
        DoqProbe(*node.address("quic"), root=node.credentials.root, server_name=SERVER_NAME,
                 names=HOSTS),
        HttpProbe(*node.address("http"), "/logs/a/ct/v1/get-sth", kind="ct get-sth"),
    ]
