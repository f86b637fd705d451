"""The BFT state machine: Tendermint (Buchman, Kwon, Milosevic, "The latest gossip on
BFT consensus", 2018, Algorithm 1), sans-I/O.

:meth:`Tendermint.receive` takes a signed message and the time,
:meth:`Tendermint.tick` takes the time; both return an :class:`Output`: the
messages to broadcast (the node's own are already applied), the blocks
decided, and evidence of equivocation found.  Nothing here reads a clock,
touches a socket or picks a random number, so the node and the simulation
(:mod:`simulations`) run exactly this code.

Rules, with "2/3" meaning *strictly more than two thirds of the stake* and
"1/3" *strictly more than one third*:

* the proposer of (height, round) is the validators sorted by id, rotated by
  height + round; it proposes its valid value if it has one, else a new block;
* a validator prevotes a proposal if the block is valid and it is not locked
  on another (or the proposal carries a valid round at or after its lock
  with 2/3 prevotes), else nil; after 2/3 prevotes for the proposal it locks
  on it and precommits it; after 2/3 prevotes for nil it precommits nil;
* a block is decided when its proposal and 2/3 precommits for it are known;
  the precommits form the block's commit certificate;
* timeouts for propose, prevote and precommit grow by ``delta`` per round;
  1/3 of the stake seen in a later round moves a validator to that round;
* a validator that hears from one still at an earlier height sends it that
  height's :class:`Decision` (block and precommits), which the laggard
  accepts only if the precommits verify as 2/3 of the stake (the role of
  Tendermint's block sync: without it a validator that missed the deciding
  precommits would wait forever).
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from trustchain.consensus.evidence import (
    DuplicateProposal,
    DuplicateVote,
    Evidence,
    InvalidProposal,
)
from trustchain.consensus.messages import (
    NIL,
    Block,
    Decision,
    Message,
    Proposal,
    SignatureCache,
    Signed,
    Vote,
    VoteKind,
    sign,
)
from trustchain.consensus.proofs import ProofError
from trustchain.consensus.proofs.stake import CommitCertificate, ValidatorStake, verify_commit

GENESIS_PREVIOUS = bytes(32)
#: Messages for later heights kept until this node gets there (per height).
MAX_FUTURE = 10_000
#: Decisions kept to help validators that fall behind.
KEPT_DECISIONS = 64


class BlockSource(Protocol):
    """The application: what to propose, what is a valid block, and what a decision changes."""

    def propose(self, height: int, previous: bytes) -> tuple[bytes, ...]: ...

    def valid(self, block: Block) -> bool: ...

    def committed(self, block: Block) -> Mapping[str, ValidatorStake] | None:
        """Apply a decided block; return the validator set from the next height if it changed."""
        ...


@dataclass(frozen=True)
class Timeouts:
    propose: float = 1.0
    prevote: float = 1.0
    precommit: float = 1.0
    delta: float = 0.5  # added per round

    def of(self, step: str, round_: int) -> float:
        base: float = getattr(self, step)
        return base + round_ * self.delta


@dataclass(frozen=True)
class Committed:
    block: Block
    round: int
    certificate: CommitCertificate
    #: The validator set of that height (the certificate is checked against it).
    validators: Mapping[str, ValidatorStake] = field(default_factory=dict, compare=False)


@dataclass
class Output:
    broadcast: list[Message] = field(default_factory=list)
    #: (validator id, message): to one validator only.
    send: list[tuple[str, Message]] = field(default_factory=list)
    committed: list[Committed] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)

    def extend(self, other: Output) -> None:
        self.broadcast += other.broadcast
        self.send += other.send
        self.committed += other.committed
        self.evidence += other.evidence


def quorum(weight: int, total: int) -> bool:
    """Strictly more than two thirds."""
    return 3 * weight > 2 * total


def third(weight: int, total: int) -> bool:
    """Strictly more than one third."""
    return 3 * weight > total


def proposer_of(validators: list[str], height: int, round_: int) -> str:
    return validators[(height + round_) % len(validators)]


class Tendermint:
    def __init__(self, node_id: str, key: ed25519.Ed25519PrivateKey | None, chain_id: str,
                 validators: Mapping[str, ValidatorStake], source: BlockSource, *,
                 timeouts: Timeouts = Timeouts(), cache: SignatureCache | None = None,
                 height: int = 1, previous: bytes = GENESIS_PREVIOUS,
                 pq_key: mldsa.MLDSA65PrivateKey | None = None) -> None:
        self.node_id = node_id
        self._key = key
        self._pq_key = pq_key
        self.chain_id = chain_id
        self._set_validators(validators)
        self._source = source
        self._timeouts = timeouts
        self._cache = cache or SignatureCache()
        self._check = self._cache.checker()
        self.height = height
        self.previous = previous
        self._future: dict[int, list[Signed]] = {}
        self._evidence_seen: set[tuple[str, int, int, str]] = set()
        self._timers: list[tuple[float, int, str, int, int]] = []  # (at, seq, step, height, round)
        self._timer_seq = 0
        self._decisions: dict[int, Committed] = {}
        #: First message per (round, kind, sender) of recent heights, to catch late equivocation.
        self._past: dict[int, dict[tuple[int, str, str], Signed]] = {}
        self._helped: set[tuple[str, int]] = set()
        self._reset_height()

    def _set_validators(self, validators: Mapping[str, ValidatorStake]) -> None:
        self.validators = dict(validators)
        self._order = sorted(self.validators)
        self._raw = {n: v.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
                     for n, v in self.validators.items()}
        self._total = sum(v.stake for v in self.validators.values())

    # --- state of one height -----------------------------------------------------

    def _reset_height(self) -> None:
        self.round = 0
        self.step = "propose"
        self._locked: Block | None = None
        self._locked_round = -1
        self._valid: Block | None = None
        self._valid_round = -1
        self._proposals: dict[int, Proposal] = {}
        #: (round, kind) -> sender -> block -> vote.  An equivocator's votes are all kept:
        #: its stake counts once towards "2/3 of any" and once for each block it voted
        #: for, which is what other validators may have seen of it anyway; without
        #: this, validators that saw its votes in different orders can stay split.
        self._votes: dict[tuple[int, VoteKind], dict[str, dict[bytes, Vote]]] = {}
        self._round_senders: dict[int, set[str]] = {}
        #: Running tallies (stake), so every rule is checked in constant time:
        #: (round, kind) -> distinct senders' stake; (round, kind, block) -> its voters' stake;
        #: round -> stake of everyone heard from in that round.
        self._any: dict[tuple[int, VoteKind], int] = {}
        self._for: dict[tuple[int, VoteKind, bytes], int] = {}
        self._heard: dict[int, int] = {}
        self._done: set[tuple[str, int]] = set()  # "first time" rules already fired

    def start(self, now: float) -> Output:
        """Begin height ``self.height`` at round 0 (a validator that is the proposer proposes)."""
        return self._start_round(0, now)

    def next_deadline(self) -> float | None:
        return self._timers[0][0] if self._timers else None

    # --- inputs -------------------------------------------------------------------

    def receive(self, message: Message, now: float) -> Output:
        out = Output()
        if isinstance(message, Decision):
            return self._catch_up(message, now)
        if message.height < self.height:
            self._help(message.sender, message.height, out)
            if self._authentic(message):
                self._check_past(message, out)
            return out
        if message.height > self.height:
            pending = self._future.setdefault(message.height, [])
            if len(pending) < MAX_FUTURE and self._authentic(message):
                pending.append(message)
            return out
        if message.height < self.height or not self._authentic(message):
            return out
        if not self._record(message, out):
            return out
        out.extend(self._progress(now))
        return out

    def tick(self, now: float) -> Output:
        out = Output()
        while self._timers and self._timers[0][0] <= now:
            _, _, step, height, round_ = heapq.heappop(self._timers)
            if height != self.height:
                continue
            if step == "propose" and round_ == self.round and self.step == "propose":
                out.extend(self._vote(VoteKind.PREVOTE, NIL, now))
                self.step = "prevote"
            elif step == "prevote" and round_ == self.round and self.step == "prevote":
                out.extend(self._vote(VoteKind.PRECOMMIT, NIL, now))
                self.step = "precommit"
            elif step == "precommit" and round_ == self.round:
                out.extend(self._start_round(self.round + 1, now))
            out.extend(self._progress(now))
        return out

    def _help(self, peer: str, height: int, out: Output) -> None:
        """Send a validator that is behind the decision of its height (once per height)."""
        decided = self._decisions.get(height)
        if decided is None or peer == self.node_id or (peer, height) in self._helped:
            return
        self._helped.add((peer, height))
        out.send.append((peer, Decision(decided.block, decided.round,
                                        decided.certificate.signatures, self.node_id,
                                        decided.certificate.pq_signatures)))

    def _check_past(self, message: Signed, out: Output) -> None:
        seen = self._past.get(message.height)
        if seen is None:
            return
        kind = "proposal" if isinstance(message, Proposal) else message.kind.value
        first = seen.setdefault((message.round, kind, message.sender), message)
        if isinstance(first, Proposal) and isinstance(message, Proposal) \
                and first.block.hash != message.block.hash:
            self._report(DuplicateProposal(first, message), kind, out)
        elif isinstance(first, Vote) and isinstance(message, Vote) and first.block != message.block:
            self._report(DuplicateVote(first, message), kind, out)

    def _catch_up(self, decision: Decision, now: float) -> Output:
        block = decision.block
        if block.height != self.height or not self._valid_block(block):
            return Output()
        certificate = CommitCertificate(self.chain_id, block.height, decision.round, block.hash,
                                        block.hash, decision.signatures, decision.pq_signatures)
        try:
            verify_commit(certificate, self.validators, chain_id=self.chain_id,
                          block=block.hash, subject=block.hash, check=self._check,
                          pq_check=self._cache.verify_pq)
        except ProofError:
            return Output()
        return self._finish_height(Committed(block, decision.round, certificate,
                                             self.validators), now)

    # --- bookkeeping -----------------------------------------------------------------

    def _authentic(self, message: Signed) -> bool:
        validator = self.validators.get(message.sender)
        if validator is None or message.round < 0:
            return False
        if isinstance(message, Proposal):
            if message.sender != proposer_of(self._order, message.height, message.round):
                return False
            if not -1 <= message.valid_round < message.round:
                return False
        data = message.message(self.chain_id)
        if not self._cache.verify(validator.public_key, self._raw[message.sender], data,
                                  message.signature):
            return False
        return validator.pq_key is None or self._cache.verify_pq(validator.pq_key, data,
                                                                 message.pq_signature)

    def _record(self, message: Signed, out: Output) -> bool:
        """Store a message of this height; False if it adds nothing (or is an equivocation)."""
        senders = self._round_senders.setdefault(message.round, set())
        if message.sender not in senders:
            senders.add(message.sender)
            self._heard[message.round] = self._heard.get(message.round, 0) \
                + self.validators[message.sender].stake
        if isinstance(message, Proposal):
            known = self._proposals.get(message.round)
            if known is not None:
                if known.block.hash != message.block.hash:
                    self._report(DuplicateProposal(known, message), "proposal", out)
                return False
            self._proposals[message.round] = message
            return True
        by_block = self._votes.setdefault((message.round, message.kind), {}) \
            .setdefault(message.sender, {})
        if message.block in by_block:
            return False
        stake = self.validators[message.sender].stake
        if by_block:
            first = next(iter(by_block.values()))
            self._report(DuplicateVote(first, message), message.kind.value, out)
        else:
            key = (message.round, message.kind)
            self._any[key] = self._any.get(key, 0) + stake
        by_block[message.block] = message
        tally = (message.round, message.kind, message.block)
        self._for[tally] = self._for.get(tally, 0) + stake
        return True

    def _report(self, evidence: Evidence, kind: str, out: Output) -> None:
        first = evidence.first
        key = (evidence.offender, first.height, first.round, kind)
        if key not in self._evidence_seen:
            self._evidence_seen.add(key)
            out.evidence.append(evidence)

    def _weight(self, round_: int, kind: VoteKind, block: bytes | None = None) -> int:
        if block is None:
            return self._any.get((round_, kind), 0)
        return self._for.get((round_, kind, block), 0)

    def _schedule(self, step: str, round_: int, now: float) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, (now + self._timeouts.of(step, round_), self._timer_seq,
                                      step, self.height, round_))

    def _broadcast(self, message: Signed, out: Output) -> None:
        assert self._key is not None
        signed = sign(message, self._key, self.chain_id, self._pq_key)
        out.broadcast.append(signed)
        self._record(signed, out)

    def _vote(self, kind: VoteKind, block: bytes, now: float) -> Output:
        out = Output()
        if self._key is not None and self.node_id in self.validators:
            self._broadcast(Vote(kind, self.height, self.round, block, self.node_id), out)
        return out

    def _valid_block(self, block: Block) -> bool:
        """Extends this node's chain and the application accepts it.  Its ``proposer``
        field names who built it, which need not be who proposes it now (a locked
        value is proposed again in later rounds by their proposers)."""
        return (block.height == self.height and block.previous == self.previous
                and block.proposer in self.validators and self._source.valid(block))

    # --- the algorithm ------------------------------------------------------------------

    def _start_round(self, round_: int, now: float) -> Output:
        out = Output()
        self.round = round_
        self.step = "propose"
        if proposer_of(self._order, self.height, round_) == self.node_id and self._key is not None:
            block = self._valid or Block(self.height, self.previous, self.node_id,
                                         self._source.propose(self.height, self.previous))
            self._broadcast(Proposal(self.height, round_, block, self._valid_round,
                                     self.node_id), out)
        else:
            self._schedule("propose", round_, now)
        out.extend(self._progress(now))
        return out

    def _progress(self, now: float) -> Output:
        """Apply every rule that fires until none does."""
        out = Output()
        while True:
            step = self._step_once(now)
            if step is None:
                return out
            out.extend(step)

    def _step_once(self, now: float) -> Output | None:  # noqa: C901 - one rule per branch
        r = self.round
        proposal = self._proposals.get(r)

        # Decision (any round): a proposal with 2/3 precommits for its block.
        for round_, prop in self._proposals.items():
            block_hash = prop.block.hash
            if quorum(self._weight(round_, VoteKind.PRECOMMIT, block_hash), self._total) \
                    and self._valid_block(prop.block):
                return self._decide(prop.block, round_, now)

        # f+1 of a later round: skip ahead.
        for round_, heard in self._heard.items():
            if round_ > r and third(heard, self._total):
                return self._start_round(round_, now)

        if self.step == "propose" and proposal is not None:
            block = proposal.block
            valid = self._valid_block(block)
            if not valid:
                out = Output()
                self._report(InvalidProposal(proposal), "invalid-proposal", out)
                out.extend(self._vote(VoteKind.PREVOTE, NIL, now))
                self.step = "prevote"
                return out
            vr = proposal.valid_round
            if vr == -1:
                ok = valid and (self._locked_round == -1 or self._locked == block)
                out = self._vote(VoteKind.PREVOTE, block.hash if ok else NIL, now)
                self.step = "prevote"
                return out
            if vr < r and quorum(self._weight(vr, VoteKind.PREVOTE, block.hash), self._total):
                ok = valid and (self._locked_round <= vr or self._locked == block)
                out = self._vote(VoteKind.PREVOTE, block.hash if ok else NIL, now)
                self.step = "prevote"
                return out

        if self.step == "prevote" and ("prevote-timer", r) not in self._done \
                and quorum(self._weight(r, VoteKind.PREVOTE), self._total):
            self._done.add(("prevote-timer", r))
            self._schedule("prevote", r, now)
            return Output()

        if proposal is not None and self.step in ("prevote", "precommit") \
                and ("lock", r) not in self._done \
                and quorum(self._weight(r, VoteKind.PREVOTE, proposal.block.hash), self._total) \
                and self._valid_block(proposal.block):
            self._done.add(("lock", r))
            out = Output()
            if self.step == "prevote":
                self._locked, self._locked_round = proposal.block, r
                out = self._vote(VoteKind.PRECOMMIT, proposal.block.hash, now)
                self.step = "precommit"
            self._valid, self._valid_round = proposal.block, r
            return out

        if self.step == "prevote" and quorum(self._weight(r, VoteKind.PREVOTE, NIL), self._total):
            out = self._vote(VoteKind.PRECOMMIT, NIL, now)
            self.step = "precommit"
            return out

        if ("precommit-timer", r) not in self._done \
                and quorum(self._weight(r, VoteKind.PRECOMMIT), self._total):
            self._done.add(("precommit-timer", r))
            self._schedule("precommit", r, now)
            return Output()
        return None

    def _decide(self, block: Block, round_: int, now: float) -> Output:
        precommits = self._votes[(round_, VoteKind.PRECOMMIT)]
        certificate = CommitCertificate(
            self.chain_id, self.height, round_, block.hash, block.hash,
            tuple(sorted((s, by_block[block.hash].signature) for s, by_block in precommits.items()
                         if block.hash in by_block)),
            tuple(sorted((s, by_block[block.hash].pq_signature)
                         for s, by_block in precommits.items()
                         if block.hash in by_block and by_block[block.hash].pq_signature)))
        return self._finish_height(Committed(block, round_, certificate, self.validators), now)

    def _finish_height(self, committed: Committed, now: float) -> Output:
        block = committed.block
        out = Output(committed=[committed])
        self._decisions[self.height] = committed
        self._decisions.pop(self.height - KEPT_DECISIONS, None)
        past: dict[tuple[int, str, str], Signed] = {
            (r, "proposal", p.sender): p for r, p in self._proposals.items()}
        for (r, kind), senders in self._votes.items():
            for sender, by_block in senders.items():
                past[(r, kind.value, sender)] = next(iter(by_block.values()))
        self._past[self.height] = past
        self._past.pop(self.height - KEPT_DECISIONS, None)
        changed = self._source.committed(block)
        if changed is not None:  # from the next height on (evidence slashed, stakes moved)
            self._set_validators(changed)
        self.height += 1
        self.previous = block.hash
        self._timers = [t for t in self._timers if t[3] >= self.height]
        heapq.heapify(self._timers)
        self._reset_height()
        out.extend(self._start_round(0, now))
        for message in self._future.pop(self.height, []):
            out.extend(self.receive(message, now))
        for stale in [h for h in self._future if h < self.height]:
            del self._future[stale]
        return out
