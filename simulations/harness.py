"""Deterministic discrete-event simulation of N validators running the real consensus code.

Each validator is a :class:`trustchain.consensus.tendermint.Tendermint`, the
same class a node runs; the harness only moves its messages and its clock.
The event loop is a heap of (time, sequence) tuples rather than SimPy: the
state machine is driven by callbacks, not processes, so nothing more is
needed.
Everything random (latencies, losses, who is Byzantine, delivery order) comes
from one ``random.Random(seed)``, and events at equal times are ordered by a
sequence number, so a (scenario, seed) pair always replays the same run.

The network is partially synchronous (Dwork, Lynch, Stockmeyer): before the
global stabilisation time (GST) messages between partitions are held back
and lost messages are resent only after GST; from GST on every message
arrives within the latency bounds (a lost one after one resend delay).  It
also gossips, as Tendermint's network layer does: a message from a
Byzantine validator that reaches one honest validator is relayed to the
others (honest validators already send theirs to everyone), so what one
honest validator saw, all eventually see.

Blocks carry one operation with a real proof of work (trustchain.consensus.
proofs.work, a few bits) bound to the previous block; validators check it
before voting, so a Byzantine proposer with an invalid proof is refused by
the same code that checks real operations.

After each run :func:`run` checks safety (no two honest validators decide
different blocks at one height), liveness (every honest validator decides
the target number of blocks by the deadline; required only when the
Byzantine stake is below a third), and that every equivocation that honest
validators received produced evidence that verifies.
"""

from __future__ import annotations

import hashlib
import heapq
import random
import statistics
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trustchain.consensus.evidence import (
    DuplicateVote,
    Evidence,
    EvidenceError,
    InvalidProposal,
    evidence_body,
)
from trustchain.consensus.ledger import Ledger
from trustchain.consensus.messages import (
    NIL,
    Block,
    Message,
    Proposal,
    SignatureCache,
    Vote,
    sign,
)
from trustchain.consensus.operations import Entry, Operation, OperationKind, ProofBundle, WorkPart
from trustchain.consensus.parameters import ProofParameters
from trustchain.consensus.proofs import Challenge, ProofError
from trustchain.consensus.proofs.space import plot_id_for
from trustchain.consensus.proofs.stake import ValidatorStake, verify_commit
from trustchain.consensus.proofs.work import WorkProof, solve_work, verify_work
from trustchain.consensus.tendermint import Output, Tendermint, Timeouts

CHAIN = "simnet"
WORK_BITS = 8
BEHAVIOURS = ("silent", "equivocate", "twins", "invalid-proof", "delay", "collude")


class Scenario(BaseModel):
    """One simulated network and what it must survive (a scenario file is these fields in TOML)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "scenario"
    description: str = ""
    validators: int = Field(4, ge=1, le=1000)
    #: Byzantine behaviour -> how many validators behave so.
    byzantine: dict[str, int] = Field(default_factory=dict)
    heights: int = Field(5, ge=1, le=100_000)
    latency: tuple[float, float] = (0.01, 0.1)
    loss: float = Field(0.0, ge=0.0, lt=1.0)
    #: Before GST the validators are split into this many groups (1: no partition).
    partitions: int = Field(1, ge=1, le=100)
    gst: float = Field(0.0, ge=0.0)
    deadline: float = Field(120.0, gt=0.0)
    timeout: float = Field(1.0, gt=0.0)
    #: A negative control: Byzantine stake >= 1/3, expected to break safety.
    expect_violation: bool = False
    #: Validators also sign with ML-DSA-65, and votes count only if both signatures verify.
    hybrid: bool = False

    @field_validator("byzantine")
    @classmethod
    def _known(cls, value: dict[str, int]) -> dict[str, int]:
        for kind, count in value.items():
            if kind not in BEHAVIOURS:
                raise ValueError(f"unknown behaviour {kind!r}; known: {', '.join(BEHAVIOURS)}")
            if count < 0:
                raise ValueError(f"{kind}: a count is not negative")
        return value

    @model_validator(mode="after")
    def _fits(self) -> Scenario:
        if sum(self.byzantine.values()) > self.validators:
            raise ValueError("more Byzantine validators than validators")
        low, high = self.latency
        if not 0 <= low <= high:
            raise ValueError("latency is (low, high) seconds with 0 <= low <= high")
        return self


def load_scenario(path: Path) -> Scenario:
    """:raises ValueError: naming the file and what is wrong in it."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    data.setdefault("name", path.stem)
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "scenario"
        raise ValueError(f"{path}: {where}: {first['msg']}") from None


SCENARIO_DIR = Path(__file__).parent / "scenarios"


def find_scenario(name_or_path: str) -> Path:
    """A scenario file: a path, or the name of one in simulations/scenarios."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        return path
    return SCENARIO_DIR / f"{name_or_path}.toml"


@dataclass
class Result:
    scenario: str
    seed: int
    decided: dict[str, list[bytes]]
    latencies: list[float]
    #: (time of a decision, time since the validator's previous one), every honest validator.
    timeline: list[tuple[float, float]]
    messages: int
    safety_violations: list[str]
    live: bool
    #: Validators seen to equivocate (votes both ways delivered to honest validators) ...
    equivocators: set[str]
    #: ... and those that evidence found.
    caught: set[str]
    bad_evidence: int
    finish_time: float
    #: Validators removed by committed evidence, as each honest validator's ledger says.
    slashed: dict[str, set[str]]
    byzantine: set[str]

    @property
    def ok(self) -> bool:
        """Safe, live (when it must be), every visible equivocator caught, no honest one slashed."""
        return (not self.safety_violations and self.live and self.bad_evidence == 0
                and self.equivocators <= self.caught
                and all(s <= self.byzantine for s in self.slashed.values()))


#: The simulated chain's proof parameters (the genesis minimum of work, to keep runs quick).
PARAMETERS = ProofParameters(work_difficulty_bits=WORK_BITS, time_vdf_iterations=1_000,
                             space_plot_k=19)


class SimApp(Ledger):
    """The simulated chain: the node's :class:`Ledger` plus, in every proposal, one plot
    registration carrying a real proof of work bound to the block it extends (an
    ``invalid-proof`` validator proposes a nonce that fails it)."""

    def __init__(self, requester: bytes, validators: Mapping[str, ValidatorStake],
                 invalid: bool = False, salt: bytes = b"") -> None:
        super().__init__(CHAIN, validators, PARAMETERS, maker=self.make_entries)
        self.requester = requester
        self.invalid = invalid
        self.salt = salt

    def make_entries(self, height: int, previous: bytes) -> list[Entry]:
        seed = hashlib.sha256(self.salt + b"seed %d" % height).digest()
        operation = Operation(kind=OperationKind.PLOT_REGISTRATION, requester=self.requester.hex(),
                              body={"plot_id": plot_id_for(self.requester, seed).hex(),
                                    "seed": seed.hex()})
        challenge = Challenge(operation.digest, previous)
        nonce = solve_work(challenge, self.requester, WORK_BITS).nonce
        if self.invalid:  # the next nonce that fails (the search found the first that passes)
            while True:
                nonce += 1
                try:
                    verify_work(WorkProof(nonce), challenge, self.requester, WORK_BITS)
                except ProofError:
                    break
        return [Entry(operation=operation, proofs=ProofBundle(work=WorkPart(nonce=nonce)))]


#: (time, sequence, kind, target validator index, message): tuples order by time, then sequence.
_Event = tuple[float, int, str, int, Message | None]


class _Sim:
    def __init__(self, scenario: Scenario, seed: int) -> None:
        self.s = scenario
        self.rng = random.Random(seed)
        self.seed = seed
        n = scenario.validators
        self.ids = [f"v{i:02d}" for i in range(n)]
        # Keys from the seed too (Ed25519 signing is deterministic), so a run replays bit for bit.
        self.keys = {i: ed25519.Ed25519PrivateKey.from_private_bytes(
            hashlib.sha256(b"simulated key %d %s" % (seed, i.encode())).digest()) for i in self.ids}
        self.pq_keys = {i: mldsa.MLDSA65PrivateKey.from_seed_bytes(hashlib.sha256(
            b"simulated ml-dsa key %d %s" % (seed, i.encode())).digest())
            for i in self.ids} if scenario.hybrid else {}
        self.stakes = {i: ValidatorStake(self.keys[i].public_key(), 1,
                                         self.pq_keys[i].public_key() if self.pq_keys else None)
                       for i in self.ids}
        order = list(self.ids)
        self.rng.shuffle(order)
        self.behaviour: dict[str, str] = {}
        for kind, count in scenario.byzantine.items():
            for _ in range(count):
                self.behaviour[order.pop()] = kind
        self.honest = [i for i in self.ids if i not in self.behaviour]
        groups = max(1, scenario.partitions)
        self.group = {i: self.rng.randrange(groups) for i in self.ids}
        cache = self.cache = SignatureCache()
        self.check = cache.checker()
        self.nodes: list[tuple[str, Tendermint]] = []  # (identity, instance); twins: two per id
        self.apps: list[SimApp] = []
        for ident in self.ids:
            role = self.behaviour.get(ident)
            if role == "silent":
                continue
            copies = 2 if role == "twins" else 1
            for _ in range(copies):
                app = SimApp(bytes.fromhex(hashlib.sha256(ident.encode()).hexdigest()[:32]),
                             self.stakes, invalid=role == "invalid-proof")
                self.apps.append(app)
                self.nodes.append((ident, Tendermint(
                    ident, self.keys[ident], CHAIN, self.stakes, app,
                    timeouts=Timeouts(scenario.timeout, scenario.timeout, scenario.timeout,
                                      scenario.timeout / 2), cache=cache,
                    pq_key=self.pq_keys.get(ident))))
        if "twins" in scenario.byzantine and groups == 1:
            # Twins are dangerous when each sees a different part of the network.
            for position, (ident, _) in enumerate(self.nodes):
                if self.behaviour.get(ident) == "twins":
                    self.group[f"{ident}#{position}"] = position % 2
        self.queue: list[_Event] = []
        self.seq = 0
        self.timer_at: dict[int, float] = {}
        self.decided: dict[str, list[bytes]] = {i: [] for i in self.honest}
        self.decided_at: dict[str, list[float]] = {i: [] for i in self.honest}
        self.messages = 0
        self.evidence: list[Evidence] = []
        self.equivocators: set[str] = set()
        #: (height, round, block shown to side 0) -> block shown to side 1, by colluders.
        self.forks: dict[tuple[int, int, bytes], bytes] = {}
        self.relayed: set[tuple[object, ...]] = set()
        self.bad_certificates: list[str] = []
        self.checked: set[tuple[bytes, tuple[tuple[str, bytes], ...]]] = set()

    # --- events ----------------------------------------------------------------------

    def push(self, at: float, kind: str, target: int, message: Message | None = None) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (at, self.seq, kind, target, message))

    def delay(self, now: float, src: int, dst: int) -> float:
        low, high = self.s.latency
        at = now + self.rng.uniform(low, high)
        src_id, dst_id = self.nodes[src][0], self.nodes[dst][0]
        gsrc = self.group.get(f"{src_id}#{src}", self.group[src_id])
        gdst = self.group.get(f"{dst_id}#{dst}", self.group[dst_id])
        if at < self.s.gst and gsrc != gdst:
            at = self.s.gst + self.rng.uniform(low, high)  # held by the partition until it heals
        if self.rng.random() < self.s.loss:
            resend = max(at, self.s.gst) + self.rng.uniform(low, high) * 4
            at = resend  # lost once, resent
        return at

    def targets(self, src: int) -> list[int]:
        return [dst for dst in range(len(self.nodes)) if dst != src]

    def deliver(self, now: float, src: int, dst: int, message: Message, extra: float = 0.0) -> None:
        at = self.delay(now, src, dst) + extra
        if self.behaviour.get(self.nodes[src][0]) == "delay":
            at += self.s.timeout * 3
        self.push(at, "deliver", dst, message)
        self.messages += 1

    def side(self, dst: int) -> int:
        """Which side of a colluders' split a validator is on."""
        return self.group[self.nodes[dst][0]] % 2

    def send(self, now: float, src: int, messages: list[Message]) -> None:
        ident = self.nodes[src][0]
        kind = self.behaviour.get(ident)
        for message in messages:
            if kind == "collude" and isinstance(message, Proposal):
                self.fork_proposal(now, src, message)
                continue
            if kind == "collude" and isinstance(message, Vote) \
                    and (message.height, message.round, message.block) in self.forks:
                other = self.forks[(message.height, message.round, message.block)]
                twin = sign(Vote(message.kind, message.height, message.round, other, ident),
                            self.keys[ident], CHAIN, self.pq_keys.get(ident))
                self.split_reaches_honest(src, ident)
                for dst in self.targets(src):
                    colluder = self.behaviour.get(self.nodes[dst][0]) == "collude"
                    self.deliver(now, src, dst,
                                 message if colluder or self.side(dst) == 0 else twin)
                continue
            variants: list[Message] = [message]
            if kind == "equivocate" and isinstance(message, Vote) and message.block != NIL:
                other_vote = Vote(message.kind, message.height, message.round,
                                  hashlib.sha256(b"conflict" + message.block).digest(), ident)
                variants.append(sign(other_vote, self.keys[ident], CHAIN, self.pq_keys.get(ident)))
                self.equivocators.add(ident)
            for dst in self.targets(src):
                order = variants if self.rng.random() < 0.5 else list(reversed(variants))
                for offset, variant in enumerate(order):
                    self.deliver(now, src, dst, variant, offset * 1e-3)

    def fork_proposal(self, now: float, src: int, proposal: Proposal) -> None:
        """A colluding proposer shows one valid block to one side and another to the other."""
        ident = self.nodes[src][0]
        block = proposal.block
        app = SimApp(bytes.fromhex(hashlib.sha256(ident.encode()).hexdigest()[:32]), self.stakes,
                     salt=b"fork")
        alternative = Block(block.height, block.previous, block.proposer,
                            tuple(e.encode() for e in app.make_entries(block.height, block.previous)))
        twin = sign(Proposal(proposal.height, proposal.round, alternative, proposal.valid_round,
                             ident), self.keys[ident], CHAIN, self.pq_keys.get(ident))
        self.forks[(proposal.height, proposal.round, block.hash)] = alternative.hash
        self.split_reaches_honest(src, ident)
        for dst in self.targets(src):
            colluder = self.behaviour.get(self.nodes[dst][0]) == "collude"
            self.deliver(now, src, dst, proposal if colluder or self.side(dst) == 0 else twin)

    def gossip(self, now: float, at: int, message: Message) -> None:
        """Relay a Byzantine validator's message the first time an honest one receives it."""
        if message.sender not in self.behaviour or self.nodes[at][0] in self.behaviour:
            return
        key = (type(message).__name__, message.sender, message.height,
               getattr(message, "round", 0), getattr(message, "signature", b""))
        if key in self.relayed:
            return
        self.relayed.add(key)
        for dst, (ident, _) in enumerate(self.nodes):
            if dst != at and ident not in self.behaviour:
                self.push(self.delay(now, at, dst), "deliver", dst, message)
                self.messages += 1

    def split_reaches_honest(self, src: int, ident: str) -> None:
        """A colluder equivocates visibly when honest validators on both sides get a version."""
        sides = {self.side(dst) for dst in self.targets(src)
                 if self.nodes[dst][0] not in self.behaviour}
        if len(sides) == 2:
            self.equivocators.add(ident)

    def send_to(self, now: float, src: int, messages: list[tuple[str, Message]]) -> None:
        for ident, message in messages:
            for dst, (other, _) in enumerate(self.nodes):
                if other == ident and dst != src:
                    self.deliver(now, src, dst, message)

    def handle(self, now: float, index: int, out: Output) -> None:
        ident, node = self.nodes[index]
        self.send(now, index, out.broadcast)
        self.send_to(now, index, out.send)
        self.evidence += out.evidence
        if ident not in self.behaviour:  # honest validators put what they caught in a block
            for item in out.evidence:
                if isinstance(item, DuplicateVote):
                    self.apps[index].submit(Entry(operation=Operation(
                        kind=OperationKind.EVIDENCE, requester=self.apps[index].requester.hex(),
                        body=evidence_body(item))))
        if ident in self.decided:
            for committed in out.committed:
                block = committed.block
                certificate = committed.certificate
                if (block.hash, certificate.signatures) not in self.checked:
                    self.checked.add((block.hash, certificate.signatures))
                    try:  # the precommits that decided it are a stake proof anyone can check
                        verify_commit(certificate, committed.validators, chain_id=CHAIN,
                                      block=block.hash, subject=block.hash, check=self.check,
                                      pq_check=self.cache.verify_pq)
                    except ProofError as exc:
                        self.bad_certificates.append(f"{ident} height {block.height}: {exc}")
                self.decided[ident].append(block.hash)
                self.decided_at[ident].append(now)
        deadline = node.next_deadline()
        if deadline is not None and (index not in self.timer_at
                                     or deadline < self.timer_at[index]):
            self.timer_at[index] = deadline
            self.push(deadline, "tick", index)

    def done(self) -> bool:
        return all(len(v) >= self.s.heights for v in self.decided.values())

    def run(self) -> float:
        """Until every honest validator decided ``heights`` blocks (or the deadline), then
        a little longer so that messages in flight (and the evidence in them) arrive."""
        for index, (_, node) in enumerate(self.nodes):
            self.handle(0.0, index, node.start(0.0))
        now = 0.0
        settle = self.s.latency[1] * 10 + self.s.timeout
        stop = self.s.deadline
        while self.queue:
            now, _, kind, target, message = heapq.heappop(self.queue)
            if now > stop:
                break
            if stop == self.s.deadline and self.done():
                stop = min(stop, now + settle)
            _, node = self.nodes[target]
            if kind == "tick":
                if self.timer_at.get(target) != now:
                    continue  # superseded by an earlier timer
                del self.timer_at[target]
                out = node.tick(now)
            else:
                assert message is not None
                out = node.receive(message, now)
                self.gossip(now, target, message)
            self.handle(now, target, out)
        return now


def run(scenario: Scenario, seed: int) -> Result:
    sim = _Sim(scenario, seed)
    finish = sim.run()
    violations = list(sim.bad_certificates)
    for height in range(max((len(v) for v in sim.decided.values()), default=0)):
        seen = {v[height] for v in sim.decided.values() if len(v) > height}
        if len(seen) > 1:
            violations.append(f"height {height + 1}: {len(seen)} different blocks decided")
    byzantine_stake = sum(1 for i in sim.behaviour)  # equal stakes
    live = all(len(v) >= scenario.heights for v in sim.decided.values()) \
        or 3 * byzantine_stake >= scenario.validators
    bad = 0
    rules = Ledger(CHAIN, sim.stakes, PARAMETERS)  # the simulated operations need no state
    for item in sim.evidence:
        try:
            if isinstance(item, InvalidProposal):
                item.verify(CHAIN, sim.stakes, rules.valid)
            else:
                item.verify(CHAIN, sim.stakes)
        except EvidenceError:
            bad += 1
    timeline = sorted((b, b - a) for times in sim.decided_at.values()
                      for a, b in zip([0.0, *times], times, strict=False))
    latencies = [gap for _, gap in timeline]
    visible = sim.equivocators
    return Result(scenario.name, seed, sim.decided, latencies, timeline, sim.messages,
                  violations, live,
                  visible, {e.offender for e in sim.evidence}, bad, finish,
                  {ident: set(sim.apps[i].slashed) for i, (ident, _) in enumerate(sim.nodes)
                   if ident not in sim.behaviour}, set(sim.behaviour))


def passed(scenario: Scenario, results: list[Result]) -> bool:
    """Every run safe, live and with every equivocator caught; for a negative control,
    at least one run in which the checker saw safety broken."""
    if scenario.expect_violation:
        return any(r.safety_violations for r in results)
    return all(r.ok for r in results)


def plot(results: list[Result], path: Path, title: str) -> None:
    """Commit latency over simulated time (matplotlib, written to ``path``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4))
    for result in results:
        if result.timeline:
            times, gaps = zip(*result.timeline, strict=True)
            axes.scatter(times, gaps, s=6, label=f"seed {result.seed}")
    axes.set_xlabel("simulated time (s)")
    axes.set_ylabel("time since previous decision (s)")
    axes.set_title(title)
    if len(results) <= 10:
        axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def summary(results: list[Result]) -> dict[str, object]:
    latencies = sorted(x for r in results for x in r.latencies)

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else 0.0

    return {
        "runs": len(results),
        "decisions": sum(len(v) for r in results for v in r.decided.values()),
        "latency_p50_s": round(pct(0.5), 3), "latency_p99_s": round(pct(0.99), 3),
        "latency_mean_s": round(statistics.fmean(latencies), 3) if latencies else 0.0,
        "messages": sum(r.messages for r in results),
        "safety_violations": sum(len(r.safety_violations) for r in results),
        "live": sum(r.live for r in results),
        "equivocators": sum(len(r.equivocators) for r in results),
        "caught": sum(len(r.caught & r.equivocators) for r in results),
        "bad_evidence": sum(r.bad_evidence for r in results),
    }
