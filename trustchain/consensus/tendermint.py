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

A validator signs with its key, or through a ``signer`` such as
:class:`~trustchain.consensus.signer.SigningGuard` (a node's double-sign
guard), and never signs two messages of one kind for one round of a height:
a repeated one is re-sent as first signed.  A restarted validator takes back
its own messages and its lock with :meth:`Tendermint.restore` before
:meth:`Tendermint.start`.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping, Sequence
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
from trustchain.consensus.signer import STEPS, kind_of

GENESIS_PREVIOUS = bytes(32)
#: The step between a decision and round 0 of the next height (``Timeouts.commit``, ``idle``).
NEW_HEIGHT = "new-height"
#: Messages for later heights kept until this node gets there (per height).
MAX_FUTURE = 10_000
#: Decisions kept to help validators that fall behind.
KEPT_DECISIONS = 64


class BlockSource(Protocol):
    """The application: what to propose, what is a valid block, and what a decision changes."""

    def propose(self, height: int, previous: bytes) -> tuple[bytes, ...]: ...

    def valid(self, block: Block) -> bool: ...

    def pending(self) -> bool:
        """Whether operations wait to be proposed (asked only when ``Timeouts.idle`` > 0)."""
        ...

    def committed(self, block: Block) -> Mapping[str, ValidatorStake] | None:
        """Apply a decided block; return the validator set from the next height if it changed."""
        ...


@dataclass(frozen=True)
class Timeouts:
    propose: float = 1.0
    prevote: float = 1.0
    precommit: float = 1.0
    delta: float = 0.5  # added per round
    #: After a decision, the pause before the next height starts (CometBFT's timeout_commit):
    #: late precommits still arrive, and blocks are not made faster than this.
    commit: float = 0.0
    #: With nothing to propose, how long after a decision a validator waits for an
    #: operation (:meth:`Tendermint.wake`) or for another validator to start the height,
    #: before starting it with an empty block (0: never waits; a network of nodes waits,
    #: so that an idle federation does not store a block a second).
    idle: float = 0.0

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

    def decision(self, sender: str) -> Decision:
        """The block with its commit certificate, as sent to others (and stored)."""
        return Decision(self.block, self.round, self.certificate.signatures, sender,
                        self.certificate.pq_signatures)


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
                 pq_key: mldsa.MLDSA65PrivateKey | None = None,
                 signer: Callable[[Signed], Signed] | None = None) -> None:
        """``signer``, when given, signs this validator's messages instead of ``key``
        (and ``pq_key``); a validator with neither only follows."""
        self.node_id = node_id
        self._key = key
        self._pq_key = pq_key
        self._signer = signer
        self._can_sign = key is not None or signer is not None
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
        self._height_from = 0.0  # when a validator in NEW_HEIGHT may start the height
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
        #: (round, kind) -> what this validator signed: re-sent as is, never signed anew.
        self._own: dict[tuple[int, str], Signed] = {}

    def start(self, now: float) -> Output:
        """Begin height ``self.height`` at round 0, or at the round :meth:`restore` set
        (a validator that is the round's proposer proposes)."""
        return self._start_round(self.round, now)

    def restore(self, own: Sequence[Signed], blocks: Mapping[bytes, Block]) -> None:
        """Take back what this validator signed at its height before a restart; call before
        :meth:`start`.

        ``own`` is its stored messages (others' heights are ignored), ``blocks`` the blocks
        its votes were for, by hash (its own proposals' blocks are taken from them).
        Restored, so that it cannot contradict what it may have sent:

        * each message, recorded as if just sent (it counts in the tallies) and re-sent
          as is whenever the state machine would sign that round and kind again;
        * the round: the latest it signed in (rounds never go back);
        * the lock and the valid value: the block of its latest non-nil precommit, with
          that precommit's round (Tendermint's lock, which its safety rests on).

        Not restored: others' messages (re-sent by them, or the round moves on), timers
        (:meth:`start` sets them), and a valid value learned later than the lock from
        others' prevotes (it serves liveness only).

        :raises ValueError: for another sender's message, or a precommit whose block is
            not given.
        """
        mine = [m for m in own if m.height == self.height]
        for message in mine:
            if message.sender != self.node_id:
                raise ValueError(f"a message of {message.sender} is not this validator's own")
            if message.sender not in self.validators:
                raise ValueError(f"{message.sender} is not a validator at height {self.height}")
        known = dict(blocks)
        for message in sorted(mine, key=lambda m: (m.round, STEPS[kind_of(m)])):
            if isinstance(message, Proposal):
                known.setdefault(message.block.hash, message.block)
            if self._own.setdefault((message.round, kind_of(message)), message) is message:
                self._record(message, Output())
        precommits = [m for m in mine if isinstance(m, Vote)
                      and m.kind is VoteKind.PRECOMMIT and m.block != NIL]
        if precommits:
            last = max(precommits, key=lambda v: v.round)
            block = known.get(last.block)
            if block is None or block.hash != last.block:
                raise ValueError(f"the block of the precommit in round {last.round} is missing")
            self._locked, self._locked_round = block, last.round
            self._valid, self._valid_round = block, last.round
        if mine:
            self.round = max(m.round for m in mine)

    def own_messages(self) -> list[Signed]:
        """What this validator has signed at its current height, to be sent again: the
        algorithm assumes every message reaches every correct validator eventually, and
        a network drops some (a connection that died, a peer restarting)."""
        return list(self._own.values())

    def known_block(self, block_hash: bytes) -> Block | None:
        """The block with this hash, if proposed at this height or locked on (a node stores
        it with its vote for it, for :meth:`restore`)."""
        for candidate in (*(p.block for p in self._proposals.values()), self._locked,
                          self._valid):
            if candidate is not None and candidate.hash == block_hash:
                return candidate
        return None

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
        if self.step == NEW_HEIGHT:  # another validator has started this height: so do we
            out.extend(self._start_round(0, now))
            return out
        out.extend(self._progress(now))
        return out

    def wake(self, now: float) -> Output:
        """An operation arrived: a validator waiting with nothing to propose starts the
        next height once the commit pause is over."""
        if self.step != NEW_HEIGHT or now < self._height_from:
            return Output()
        return self._start_round(0, now)

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
            elif step == "commit" and self.step == NEW_HEIGHT:
                idle = self._timeouts.idle - self._timeouts.commit
                if idle > 0 and not self._source.pending():
                    self._timer_seq += 1
                    heapq.heappush(self._timers, (now + idle, self._timer_seq, "idle",
                                                  self.height, 0))
                else:
                    out.extend(self._start_round(0, now))
            elif step == "idle" and self.step == NEW_HEIGHT:
                out.extend(self._start_round(0, now))
            out.extend(self._progress(now))
        return out

    def _help(self, peer: str, height: int, out: Output) -> None:
        """Send a validator that is behind the decision of its height (once per height)."""
        decided = self._decisions.get(height)
        if decided is None or peer == self.node_id or (peer, height) in self._helped:
            return
        self._helped.add((peer, height))
        out.send.append((peer, decided.decision(self.node_id)))

    def _check_past(self, message: Signed, out: Output) -> None:
        seen = self._past.get(message.height)
        if seen is None:
            return
        kind = kind_of(message)
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
        own = (message.round, kind_of(message))
        signed = self._own.get(own)
        if signed is not None:  # signed before (restored): the same message again
            out.broadcast.append(signed)
            return
        if self._signer is not None:
            signed = self._signer(message)
        else:
            assert self._key is not None
            signed = sign(message, self._key, self.chain_id, self._pq_key)
        self._own[own] = signed
        out.broadcast.append(signed)
        self._record(signed, out)

    def _vote(self, kind: VoteKind, block: bytes, now: float) -> Output:
        out = Output()
        if self._can_sign and self.node_id in self.validators:
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
        if proposer_of(self._order, self.height, round_) == self.node_id and self._can_sign:
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
        # Always by the "commit" timer, even of 0 s: a validator that decides alone (one
        # validator, or one with more than 2/3 of the stake) would otherwise start and
        # decide the next height within this call, and the next, without end.
        self.step = NEW_HEIGHT  # until the "commit" timer, and maybe "idle"
        self._height_from = now + self._timeouts.commit
        self._timer_seq += 1
        heapq.heappush(self._timers, (self._height_from, self._timer_seq, "commit",
                                      self.height, 0))
        for message in self._future.pop(self.height, []):
            out.extend(self.receive(message, now))
        for stale in [h for h in self._future if h < self.height]:
            del self._future[stale]
        return out
