"""The crash loop: start the node, load it, SIGKILL it at a random point, restart, check.

One data directory lives through every kill.  Each life of the node: it starts
(reconciling what the last one left unfinished before its listeners open), the checks
of :mod:`tests.crash.checks` hold it to everything acknowledged so far, mixed load runs
(:mod:`tests.crash.load`), and a seeded RNG picks when SIGKILL lands.  After the last
kill the node is checked once more and stopped cleanly.  Every process started is gone
when :func:`run` returns, whatever happened.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.crash.checks import Checker, Verdict
from tests.crash.load import Acks, HttpError, Load
from tests.crash.node import NETWORK, Node, initialise
from transport.client import ConnectError, StreamError

#: What a node that does not answer as it should makes its clients raise.
UNREACHABLE = (OSError, TimeoutError, HttpError, ConnectError, StreamError, ValueError, KeyError)
#: When the kill lands, in seconds after the load starts (uniform, from the seeded RNG).
KILL_WINDOW = (0.4, 2.4)


@dataclass
class Report:
    """What a run did and found (``--json`` prints it as it is)."""

    kills: int
    seed: int
    seconds: float = 0.0
    acknowledged: dict[str, int] = field(default_factory=dict)
    #: Reservations left unfinished by a kill and reconciled (abandoned) at the next start.
    reconciled: int = 0
    checks_passed: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    #: Refusals and client failures while the node lived (load, not violations).
    load_errors: dict[str, int] = field(default_factory=dict)
    orphans_killed: int = 0
    #: The node's last log lines, when something went wrong.
    log_tail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        acked = ", ".join(f"{count} {kind.replace('_', ' ')}"
                          for kind, count in self.acknowledged.items())
        lines = [f"{self.kills} kills in {self.seconds:.0f} s (seed {self.seed})",
                 f"acknowledged before the kills: {acked}",
                 f"precertificates reconciled at restart: {self.reconciled}",
                 f"checks passed: {sum(self.checks_passed.values())} "
                 f"({len(self.checks_passed)} kinds)",
                 f"violations: {len(self.violations)}"]
        lines += [f"  {v}" for v in self.violations]
        if self.orphans_killed:
            lines.append(f"orphaned workers that had to be killed: {self.orphans_killed}")
        if self.violations and self.log_tail:
            lines += ["node log (last lines):", *(f"  {line}" for line in self.log_tail)]
        return "\n".join(lines)


def run(kills: int, seed: int, work_dir: Path | None = None,
        progress: Callable[[str], None] = lambda _line: None) -> Report:
    """``kills`` SIGKILLs under load, in ``work_dir`` (else a temporary directory)."""
    if work_dir is not None:
        return asyncio.run(_run(kills, seed, work_dir / "data", progress))
    with tempfile.TemporaryDirectory(prefix="trustchain-crash-") as temporary:
        return asyncio.run(_run(kills, seed, Path(temporary) / "data", progress))


async def _run(kills: int, seed: int, data_dir: Path,
               progress: Callable[[str], None]) -> Report:
    rng = random.Random(seed)
    report = Report(kills, seed)
    started = time.monotonic()
    credentials = initialise(data_dir)
    node = Node(data_dir)
    checker, verdict, every = Checker(node, credentials), Verdict(), Acks()
    numbers, errors = itertools.count(1), Counter[str]()
    try:
        node.start()
        result = node.cli("network", "register", NETWORK, *node.admin_options())
        verdict.check("set-up", result.returncode == 0, result.stderr)
        for kill in range(1, kills + 1):
            if verdict.violations:
                break
            load = Load(credentials, node.address("http"), node.address("quic"), numbers)
            load.heads = dict(checker.heads)
            delay = rng.uniform(*KILL_WINDOW)
            await load.run(delay, node.crash)
            every.extend(load.acks)
            errors.update(load.errors)
            verdict.violations += load.violations
            checker.heads = load.heads
            try:
                node.start()
                reconciled = await checker.after_restart(every, load.acks, verdict)
            except (AssertionError, *UNREACHABLE) as exc:
                verdict.check("restarted and answering", False, f"after kill {kill}: {exc!r}")
                break
            report.reconciled += reconciled
            counts = " ".join(f"{n}" for n in load.acks.counts().values())
            progress(f"kill {kill}/{kills} at {delay:.2f}s: acknowledged ct/certs/records "
                     f"{counts}, {reconciled} reconciled, "
                     + ("ok" if not verdict.violations else f"{len(verdict.violations)} "
                        "VIOLATION(S)"))
        for kind, count in every.counts().items():
            verdict.check("load reached the node", count > 0, f"no {kind} acknowledged")
        verdict.check("clean stop at the end", node.stop() == 0)
    finally:
        if verdict.violations:
            report.log_tail = node.log_tail()
        node.crash()
    report.seconds = time.monotonic() - started
    report.acknowledged = every.counts()
    report.checks_passed = dict(verdict.passed)
    report.violations = verdict.violations
    report.load_errors = dict(errors)
    report.orphans_killed = node.orphans_killed
    return report
