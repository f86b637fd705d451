"""The soak: random faults on a proxied devnet for a given time, one at a time, with
every invariant checked after each heals, and how long the federation took to commit
again.

Each fault is drawn from a seeded RNG (the seed is printed, so a run can be repeated as
far as timing allows), held for a drawn number of seconds, then healed:

* ``kill``: SIGKILL one node's process group, then ``devnet up`` restarts it;
* ``pause``: SIGSTOP one node, then SIGCONT;
* ``partition``: cut every link across a random split in halves (no side has more than
  2/3 of the stake: nothing commits) or around one node (the other side goes on);
* ``loss``: drop 10-30 % of the datagrams on every link and delay the rest by 0-50 ms;
* ``mute``: drop whatever one node sends (it still hears the others).

Holds stay under :data:`MAX_HOLD`.  A fault that leaves more than 2/3 of the stake
connected must not stop the others committing while it is held.  After the heal every
node must have committed :data:`RECOVERED_HEIGHTS` heights above the highest any held at
the heal, and as many again, within :data:`RECOVERY_BOUND`; otherwise the run stops
there (later faults would say nothing).
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.perturbation.harness import Devnet, LivenessError, create
from tests.perturbation.invariants import SignedHistory, check
from tests.perturbation.proxy import lossy

FAULTS = ("kill", "pause", "partition", "loss", "mute")
#: Seconds a fault is held, drawn uniformly from these ranges.
HOLD = {"kill": (1.0, 8.0), "pause": (1.0, 10.0), "partition": (2.0, 15.0),
        "loss": (3.0, 15.0), "mute": (2.0, 10.0)}
#: No fault is held longer (see docs/federation.md: a cut longer than QUIC's idle
#: timeout is a finding of its own, not something to stumble on at random).
MAX_HOLD = 15.0
#: From the heal (or the restart command) until every node has committed again.
RECOVERY_BOUND = 60.0
#: Recovered: every node has committed this many heights above the highest any held at
#: the heal, and then this many above the highest any held at that moment.  Twice: a
#: restarted node reaches the others' height by asking for blocks as it connects, and
#: only the others' pushes keep it in step after that (they go into the void until the
#: others notice its restart: see docs/federation.md).
RECOVERED_HEIGHTS = 3
#: Held this long, a fault that leaves 3 of 4 validators connected must see them commit.
MAJORITY_WINDOW = 8.0
#: Quiet between two faults (drawn).
QUIET = (1.0, 3.0)


@dataclass
class Fault:
    kind: str
    target: str
    held: float
    #: Heights the nodes still connected (more than 2/3 of the stake; under loss, all)
    #: committed meanwhile.
    majority_progress: int | None = None
    recovery: float | None = None
    height: int = 0

    def line(self) -> str:
        recovered = "not recovered" if self.recovery is None \
            else f"recovered in {self.recovery:.1f} s"
        moved = "" if self.majority_progress is None \
            else f", the others committed {self.majority_progress} meanwhile"
        return f"{self.kind} {self.target}: held {self.held:.1f} s{moved}, {recovered}, " \
            f"height {self.height}"


@dataclass
class Report:
    seed: int
    minutes: float
    started: str = ""
    seconds: float = 0.0
    faults: list[Fault] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    first_height: int = 0
    last_height: int = 0
    observed_own_messages: int = 0

    @property
    def ok(self) -> bool:
        return not self.violations

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "worst_recovery": self.worst()}

    def worst(self) -> dict[str, float]:
        by_kind: dict[str, float] = {}
        for f in self.faults:
            if f.recovery is not None:
                by_kind[f.kind] = max(by_kind.get(f.kind, 0.0), f.recovery)
        return by_kind

    def summary(self) -> str:
        counts = Counter(f.kind for f in self.faults)
        lines = [f"soak: {self.minutes:g} min (ran {self.seconds:.0f} s) from {self.started}, "
                 f"seed {self.seed}",
                 f"heights {self.first_height} -> {self.last_height} "
                 f"({self.last_height - self.first_height} committed), "
                 f"{len(self.faults)} faults, {self.observed_own_messages} own messages "
                 "observed"]
        for kind in FAULTS:
            done = [f for f in self.faults if f.kind == kind and f.recovery is not None]
            if not counts[kind]:
                continue
            times = [f.recovery for f in done if f.recovery is not None]
            held = [f.held for f in self.faults if f.kind == kind]
            lines.append(
                f"  {kind:<10} {counts[kind]:>3}  held {min(held):.1f}-{max(held):.1f} s  "
                + (f"recovery median {statistics.median(times):.1f} s, worst {max(times):.1f} s"
                   if times else "no recovery measured"))
        every = [f.recovery for f in self.faults if f.recovery is not None]
        if every:
            worst = max(self.faults, key=lambda f: f.recovery or 0.0)
            lines.append(f"worst time to recover: {max(every):.1f} s ({worst.kind} "
                         f"{worst.target}, held {worst.held:.1f} s)")
        lines.append("violations: none" if self.ok else f"violations ({len(self.violations)}):")
        lines += [f"  {v}" for v in self.violations]
        return "\n".join(lines)


def run(minutes: float, seed: int, work_dir: Path | None, nodes: int,
        progress: Callable[[str], None]) -> Report:
    """Every process started here is gone when this returns, whatever happened."""
    report = Report(seed, minutes, started=time.strftime("%Y-%m-%d %H:%M:%S %z"))
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="trustchain-soak-") as scratch:
        base = (work_dir or Path(scratch)) / "net"
        devnet = create(base, nodes=nodes, seed=seed)
        begun = time.monotonic()
        history = SignedHistory()
        try:
            devnet.up()
            devnet.recovery(RECOVERY_BOUND, beyond=2)
            report.first_height = min(devnet.heights().values())
            deadline = begun + minutes * 60
            while time.monotonic() < deadline:
                fault = _one_fault(devnet, rng, history, report)
                report.faults.append(fault)
                progress(fault.line())
                if fault.recovery is None:
                    break
                time.sleep(rng.uniform(*QUIET))  # the quiet between faults, not synchronisation
            report.last_height = min(devnet.heights().values())
        except (LivenessError, RuntimeError) as exc:
            report.violations.append(f"the run stopped: {exc}")
        finally:
            report.seconds = time.monotonic() - begun
            report.observed_own_messages = len(history)
            devnet.close()
    return report


def _one_fault(devnet: Devnet, rng: random.Random, history: SignedHistory,
               report: Report) -> Fault:
    kind = rng.choice(FAULTS)
    low, high = HOLD[kind]
    held = min(rng.uniform(low, high), MAX_HOLD)
    names = devnet.names
    victim = rng.choice(names)
    majority = [n for n in names if n != victim]
    report.violations += history.observe(devnet)  # what each node signed, before the fault
    if kind == "kill":
        devnet.kill(victim)
    elif kind == "pause":
        devnet.pause(victim)
    elif kind == "mute":
        devnet.mute(victim)
    elif kind == "loss":
        fraction, delay = rng.uniform(0.1, 0.3), rng.uniform(0.0, 50.0)
        jitter = rng.uniform(0.0, delay)
        devnet.degrade(lossy(fraction, delay_ms=delay, jitter_ms=jitter))
        victim = f"{fraction:.0%}-loss-{delay:.0f}±{jitter:.0f}ms"
        majority = names  # every node is connected, through a lossy network
    else:
        side = rng.sample(names, len(names) // 2) if rng.random() < 0.5 else [victim]
        rest = [n for n in names if n not in side]
        devnet.partition(side, rest)
        majority = next((s for s in (rest, side) if 3 * len(s) > 2 * len(names)), [])
        victim = f"{'+'.join(sorted(side))}|{'+'.join(rest)}"
    fault = Fault(kind, victim, held)
    at_fault = devnet.heights(majority) if majority else {}
    time.sleep(held)  # the fault's duration: time passing under it is the fault itself
    if majority:
        fault.majority_progress = min(devnet.heights(majority).values()) - max(at_fault.values())
        # Under loss, progress is reported, not required: beyond about 20 % with tens of
        # milliseconds of delay, commits stall for longer than a hold (docs/federation.md).
        if kind != "loss" and held >= MAJORITY_WINDOW and fault.majority_progress <= 0:
            report.violations.append(f"{kind} {fault.target}: the other {len(majority)} did "
                                     f"not commit in {held:.1f} s")
    top = max(devnet.heights().values())
    healed = time.monotonic()
    if kind == "kill":
        devnet.up()
    elif kind == "pause":
        devnet.resume(fault.target)
    else:
        devnet.heal()
    try:
        devnet.recovery(RECOVERY_BOUND, above=top, beyond=RECOVERED_HEIGHTS)
        # Again from the highest height now: a node brought level by one request for
        # blocks (as a restarted node is when it connects) must then keep pace.
        devnet.recovery(RECOVERY_BOUND - (time.monotonic() - healed),
                        beyond=RECOVERED_HEIGHTS)
    except LivenessError as exc:
        report.violations.append(f"{kind} {fault.target}, held {held:.1f} s: {exc}")
        return fault
    fault.recovery = time.monotonic() - healed
    fault.height = min(devnet.heights().values())
    report.violations += [f"after {kind} {fault.target}: {p}" for p in check(devnet, history)]
    return fault
