"""The double-sign guard, and a validator that restarts from what it stored.

A validator that prevoted and precommitted block B in round 0 "crashes": a
new Tendermint is built from the messages it stored before sending them
(ConsensusStore, reopened from disk).  After the restart it never sends a
message that differs from one it signed for the same height, round and
kind, keeps its lock on B, and proposes B when its turn comes.  Without
restore and the guard, the same inputs make it equivocate (the control).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa
from hypothesis import given, settings
from hypothesis import strategies as st

from trustchain.consensus.messages import (
    NIL,
    Block,
    Message,
    Proposal,
    Signed,
    Vote,
    VoteKind,
    sign,
)
from trustchain.consensus.proofs.stake import ValidatorStake
from trustchain.consensus.signer import SigningGuard, SigningRefusedError, kind_of
from trustchain.consensus.tendermint import GENESIS_PREVIOUS, Output, Tendermint
from trustchain.storage.consensus import CONSENSUS_SCHEMA, ConsensusStore
from trustchain.storage.database import Database
from trustchain.storage.migrations import migrate

CHAIN = "signer-test"
KEYS = {f"v{i}": ed25519.Ed25519PrivateKey.from_private_bytes(
    hashlib.sha256(b"signer %d" % i).digest()) for i in range(4)}
PQ = {n: mldsa.MLDSA65PrivateKey.from_seed_bytes(hashlib.sha256(b"pq %s" % n.encode()).digest())
      for n in KEYS}
B = Block(1, GENESIS_PREVIOUS, "v1", (b"B",))
C = Block(1, GENESIS_PREVIOUS, "v1", (b"C",))
D = Block(1, GENESIS_PREVIOUS, "v2", (b"D",))


def stakes(hybrid: bool) -> dict[str, ValidatorStake]:
    return {n: ValidatorStake(k.public_key(), 1, PQ[n].public_key() if hybrid else None)
            for n, k in KEYS.items()}


class Accept:
    def pending(self) -> bool:
        return False

    def propose(self, height: int, previous: bytes) -> tuple[bytes, ...]:
        return (b"fresh %d" % height,)

    def valid(self, block: Block) -> bool:
        return True

    def committed(self, block: Block) -> None:
        return None


def signed(message: Signed, hybrid: bool = False) -> Signed:
    return sign(message, KEYS[message.sender], CHAIN, PQ[message.sender] if hybrid else None)


def vote(kind: VoteKind, round_: int, block: Block | None, sender: str,
         hybrid: bool = False) -> Signed:
    return signed(Vote(kind, 1, round_, block.hash if block else NIL, sender), hybrid)


def key_of(message: Signed) -> tuple[int, int, str]:
    return message.height, message.round, kind_of(message)


def identical(a: Signed, b: Signed) -> bool:
    return a == b and (a.signature, a.pq_signature) == (b.signature, b.pq_signature)


# --- the guard alone ----------------------------------------------------------------------------


def test_the_guard_signs_once_per_height_round_and_kind() -> None:
    guard = SigningGuard(KEYS["v0"], PQ["v0"], CHAIN)
    first = guard.sign(Vote(VoteKind.PREVOTE, 5, 0, B.hash, "v0"))
    again = guard.sign(Vote(VoteKind.PREVOTE, 5, 0, B.hash, "v0"))
    other = guard.sign(Vote(VoteKind.PREVOTE, 5, 0, NIL, "v0"))
    assert first.signature and first.pq_signature
    assert again is first and other is first  # ML-DSA signing is randomised: never re-signed
    precommit = guard.sign(Vote(VoteKind.PRECOMMIT, 5, 0, NIL, "v0"))
    assert precommit.block == NIL and guard.height == 5
    with pytest.raises(SigningRefusedError, match="later round or step"):
        guard.sign(Proposal(5, 0, B, -1, "v0"))  # a step back within round 0
    with pytest.raises(SigningRefusedError, match="height 4"):
        guard.sign(Vote(VoteKind.PREVOTE, 4, 7, NIL, "v0"))
    later = guard.sign(Vote(VoteKind.PREVOTE, 5, 2, NIL, "v0"))
    with pytest.raises(SigningRefusedError, match="later round"):
        guard.sign(Vote(VoteKind.PRECOMMIT, 5, 1, NIL, "v0"))
    assert guard.sign(Vote(VoteKind.PREVOTE, 5, 0, NIL, "v0")) is first  # old ones: as signed
    assert guard.sign(Vote(VoteKind.PREVOTE, 5, 2, B.hash, "v0")) is later
    guard.sign(Vote(VoteKind.PREVOTE, 6, 0, NIL, "v0"))
    with pytest.raises(SigningRefusedError):
        guard.sign(Vote(VoteKind.PREVOTE, 5, 0, NIL, "v0"))  # height 5 is behind now


def test_a_guard_rebuilt_from_stored_messages_answers_with_them() -> None:
    before = [vote(VoteKind.PREVOTE, 0, B, "v0", True), vote(VoteKind.PRECOMMIT, 0, B, "v0", True),
              vote(VoteKind.PREVOTE, 9, None, "v0")]  # and one of an older height
    older = signed(Vote(VoteKind.PREVOTE, 0, 0, NIL, "v0"))
    guard = SigningGuard(KEYS["v0"], PQ["v0"], CHAIN, [older, *reversed(before)])
    assert guard.height == 1
    assert identical(guard.sign(Vote(VoteKind.PRECOMMIT, 1, 0, NIL, "v0")), before[1])
    assert identical(guard.sign(Vote(VoteKind.PREVOTE, 1, 0, C.hash, "v0")), before[0])
    with pytest.raises(SigningRefusedError):
        guard.sign(Vote(VoteKind.PRECOMMIT, 1, 3, NIL, "v0"))  # behind round 9's prevote
    with pytest.raises(SigningRefusedError, match="two different"):
        SigningGuard(KEYS["v0"], None, CHAIN, [before[0], vote(VoteKind.PREVOTE, 0, C, "v0")])


# --- crash and restart ----------------------------------------------------------------------------


class Validator:
    """v0 as a node runs it: every newly signed message is stored before it is "sent"."""

    def __init__(self, store: ConsensusStore, hybrid: bool, *, guard: bool = True,
                 restore: bool = True) -> None:
        self.store = store
        own, blocks = store.own_messages(1), store.own_blocks(1)
        signer: Callable[[Signed], Signed] | None = None
        if guard:
            signer = SigningGuard(KEYS["v0"], PQ["v0"] if hybrid else None, CHAIN, own).sign
        self.node = Tendermint("v0", None if guard else KEYS["v0"], CHAIN, stakes(hybrid),
                               Accept(), signer=signer, pq_key=PQ["v0"] if hybrid else None)
        if restore:
            self.node.restore(own, blocks)
        self.sent: list[Signed] = []

    def handle(self, out: Output) -> Output:
        for message in out.broadcast:
            assert isinstance(message, Vote | Proposal)
            block = None
            if isinstance(message, Vote) and message.block != NIL:
                block = self.node.known_block(message.block)
            self.store.record_own(message, block)  # durable before it is sent
            self.sent.append(message)
        return out

    def receive(self, message: Message, now: float) -> Output:
        return self.handle(self.node.receive(message, now))

    def tick(self, now: float) -> Output:
        return self.handle(self.node.tick(now))


def open_store(path: Path) -> tuple[Database, ConsensusStore]:
    db = Database(path)
    migrate(db, CONSENSUS_SCHEMA)
    return db, ConsensusStore(db)


def precommit_b_then_crash(path: Path, hybrid: bool) -> list[Signed]:
    """v0 prevotes and precommits B in round 0 (and locks on it), then its process is gone."""
    db, store = open_store(path)
    v0 = Validator(store, hybrid)
    v0.handle(v0.node.start(0.0))
    v0.receive(signed(Proposal(1, 0, B, -1, "v1"), hybrid), 0.1)
    for sender in ("v1", "v2"):
        v0.receive(vote(VoteKind.PREVOTE, 0, B, sender, hybrid), 0.2)
    assert [(kind_of(m), m.block) for m in v0.sent] == [("prevote", B.hash),
                                                        ("precommit", B.hash)]
    db.conn.close()  # no clean shutdown: what was committed is what there is
    return v0.sent


def after_restart(v0: Validator, hybrid: bool) -> None:
    """Round 0 again with v1 equivocating (C), round 1 proposing D fresh, then round 3."""
    v0.handle(v0.node.start(10.0))
    v0.receive(signed(Proposal(1, 0, C, -1, "v1"), hybrid), 10.1)
    v0.receive(vote(VoteKind.PREVOTE, 0, None, "v3", hybrid), 10.2)
    v0.receive(vote(VoteKind.PREVOTE, 0, B, "v2", hybrid), 10.2)
    v0.tick(20.0)
    v0.receive(vote(VoteKind.PRECOMMIT, 0, None, "v2", hybrid), 20.1)
    v0.receive(vote(VoteKind.PRECOMMIT, 0, None, "v3", hybrid), 20.1)
    v0.tick(30.0)  # round 1: v2 proposes a fresh block D
    assert v0.node.round == 1
    v0.receive(signed(Proposal(1, 1, D, -1, "v2"), hybrid), 30.1)
    for sender in ("v2", "v3"):  # a third of the stake in round 3: skip there (v0 proposes)
        v0.receive(vote(VoteKind.PREVOTE, 3, None, sender, hybrid), 30.2)
    assert v0.node.round == 3


@pytest.mark.parametrize("hybrid", [False, True])
@pytest.mark.parametrize("guard", [True, False], ids=["guard", "key"])
def test_a_restarted_validator_never_contradicts_itself_and_keeps_its_lock(
        tmp_path: Path, hybrid: bool, guard: bool) -> None:
    before = precommit_b_then_crash(tmp_path / "node.db", hybrid)
    db, store = open_store(tmp_path / "node.db")  # the restarted process
    stored = {key_of(m): m for m in store.own_messages(1)}
    assert set(stored) == {(1, 0, "prevote"), (1, 0, "precommit")}
    assert all(identical(stored[key_of(m)], m) for m in before)
    v0 = Validator(store, hybrid, guard=guard)
    after_restart(v0, hybrid)

    for message in v0.sent:  # whatever it signed before is sent again exactly as it was
        if key_of(message) in stored:
            assert identical(message, stored[key_of(message)]), message
    by_key: dict[tuple[int, int, str], Signed] = {}
    for message in before + v0.sent:
        assert by_key.setdefault(key_of(message), message) == message
    assert any(key_of(m) == (1, 0, "prevote") for m in v0.sent)  # it did re-send
    # The lock on B held: nil to D in round 1, and B (valid round 0) as proposer of round 3.
    assert [m.block for m in v0.sent if key_of(m) == (1, 1, "prevote")] == [NIL]
    proposals = [m for m in v0.sent if isinstance(m, Proposal)]
    assert [(p.round, p.block, p.valid_round) for p in proposals] == [(3, B, 0)]
    # The store agrees (it would have refused a second, different message).
    assert {key_of(m) for m in store.all_own_messages()} == set(by_key)
    db.close()


def test_without_restore_or_guard_the_same_inputs_equivocate(tmp_path: Path) -> None:
    """The control: a validator that forgot what it signed prevotes C in round 0."""
    before = precommit_b_then_crash(tmp_path / "node.db", False)
    db = Database(tmp_path / "other.db")
    migrate(db, CONSENSUS_SCHEMA)
    amnesiac = Validator(ConsensusStore(db), False, guard=False, restore=False)
    amnesiac.handle(amnesiac.node.start(10.0))
    amnesiac.receive(signed(Proposal(1, 0, C, -1, "v1")), 10.1)
    assert [(kind_of(m), m.block) for m in amnesiac.sent] == [("prevote", C.hash)]
    assert amnesiac.sent[0] != before[0]  # a second prevote for round 0: equivocation
    db.close()


def test_restore_needs_the_locked_block_and_only_own_messages(tmp_path: Path) -> None:
    node = Tendermint("v0", KEYS["v0"], CHAIN, stakes(False), Accept())
    precommit = vote(VoteKind.PRECOMMIT, 0, B, "v0")
    with pytest.raises(ValueError, match="missing"):
        node.restore([precommit], {})
    with pytest.raises(ValueError, match="own"):
        node.restore([vote(VoteKind.PREVOTE, 0, B, "v1")], {})


# --- any inputs after a restart: still no contradiction ----------------------------------------

POOL: list[Message] = [
    *(signed(Proposal(1, r, block, vr, proposer))
      for r, proposer in ((0, "v1"), (1, "v2"), (2, "v3"))
      for block in (B, C, D) for vr in range(-1, r)),
    *(vote(kind, r, block, sender) for kind in VoteKind for r in range(4)
      for block in (B, C, D, None) for sender in ("v1", "v2", "v3")),
]
STORED: list[Signed] = [signed(Proposal(1, 3, D, -1, "v0")), vote(VoteKind.PREVOTE, 0, B, "v0"),
                        vote(VoteKind.PRECOMMIT, 0, B, "v0"), vote(VoteKind.PREVOTE, 2, None, "v0")]


@settings(max_examples=150, derandomize=True, database=None)
@given(st.integers(1, len(STORED)), st.lists(st.one_of(
    st.integers(0, len(POOL) - 1), st.floats(0.1, 5.0)), max_size=40))
def test_any_inputs_after_a_restart_never_contradict_what_was_signed(
        count: int, script: list[int | float]) -> None:
    own = STORED[:count]
    guard = SigningGuard(KEYS["v0"], None, CHAIN, own)
    node = Tendermint("v0", None, CHAIN, stakes(False), Accept(), signer=guard.sign)
    node.restore(own, {B.hash: B})
    first = {key_of(m): m for m in own}
    now = 0.0
    sent = list(node.start(now).broadcast)
    for step in script:
        if isinstance(step, float):
            now += step
            sent += node.tick(now).broadcast
        else:
            sent += node.receive(POOL[step], now).broadcast
    for message in sent:
        assert isinstance(message, Vote | Proposal)
        known = first.setdefault(key_of(message), message)
        assert identical(known, message) or known is message, (known, message)
