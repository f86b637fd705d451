"""The consensus tables: own messages (idempotent, never two different ones for one
height/round/kind), committed blocks with their certificates (idempotent, never a fork),
and what is on disk when a call returns (a process that dies right after still has it)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa

from tests.support import REPO
from trustchain.consensus.messages import NIL, Block, Decision, Proposal, Vote, VoteKind, sign
from trustchain.consensus.proofs.stake import CommitCertificate, ValidatorStake, verify_commit
from trustchain.consensus.tendermint import GENESIS_PREVIOUS
from trustchain.errors import DoubleSignError, ForkError, StorageError
from trustchain.storage.consensus import CONSENSUS_SCHEMA, ConsensusStore
from trustchain.storage.database import Database
from trustchain.storage.migrations import current_version, migrate

CHAIN = "store-test"
KEYS = {f"v{i}": ed25519.Ed25519PrivateKey.from_private_bytes(
    hashlib.sha256(b"store %d" % i).digest()) for i in range(4)}
PQ = mldsa.MLDSA65PrivateKey.from_seed_bytes(hashlib.sha256(b"store pq").digest())


def chain(length: int, fork: bytes = b"") -> list[Block]:
    blocks: list[Block] = []
    previous = GENESIS_PREVIOUS
    for height in range(1, length + 1):
        block = Block(height, previous, f"v{height % 4}", (b"op %d" % height + fork,))
        blocks.append(block)
        previous = block.hash
    return blocks


def decided(block: Block, round_: int = 0) -> Decision:
    """``block`` with precommits of v0 (hybrid), v1 and v2: a real commit certificate."""
    votes = [sign(Vote(VoteKind.PRECOMMIT, block.height, round_, block.hash, n), KEYS[n], CHAIN,
                  PQ if n == "v0" else None) for n in ("v0", "v1", "v2")]
    return Decision(block, round_, tuple((v.sender, v.signature) for v in votes), "v3",
                    (("v0", votes[0].pq_signature),))


@pytest.fixture
def store(tmp_path: Path) -> ConsensusStore:
    db = Database(tmp_path / "node.db")
    migrate(db, CONSENSUS_SCHEMA)
    return ConsensusStore(db)


def test_the_schema_migrates_once_and_owns_its_tables(tmp_path: Path) -> None:
    with Database(tmp_path / "node.db") as db:
        assert migrate(db, CONSENSUS_SCHEMA) == 1
        assert migrate(db, CONSENSUS_SCHEMA) == 0
        assert current_version(db, "consensus") == CONSENSUS_SCHEMA.latest == 1
        tables = {r[0] for r in db.conn.execute("SELECT name FROM sqlite_master WHERE type = "
                                                "'table' AND name LIKE 'consensus%'")}
        assert tables == {"consensus_own_messages", "consensus_own_blocks", "consensus_blocks"}


# --- own messages ------------------------------------------------------------------------------


def test_own_messages_come_back_in_signing_order_with_their_blocks(store: ConsensusStore) -> None:
    b, c = chain(1)[0], chain(1, b"c")[0]
    proposal = sign(Proposal(1, 1, c, -1, "v0"), KEYS["v0"], CHAIN)
    prevote = sign(Vote(VoteKind.PREVOTE, 1, 0, b.hash, "v0"), KEYS["v0"], CHAIN, PQ)
    precommit = sign(Vote(VoteKind.PRECOMMIT, 1, 0, NIL, "v0"), KEYS["v0"], CHAIN)
    later = sign(Vote(VoteKind.PREVOTE, 2, 0, NIL, "v0"), KEYS["v0"], CHAIN)
    for message, block in ((later, None), (proposal, None), (precommit, None), (prevote, b)):
        store.record_own(message, block)
    mine = store.own_messages(1)
    assert mine == [prevote, precommit, proposal]
    assert [(m.signature, m.pq_signature) for m in mine] == \
        [(m.signature, m.pq_signature) for m in (prevote, precommit, proposal)]
    assert store.own_blocks(1) == {b.hash: b, c.hash: c}
    assert store.own_blocks(2) == {}
    assert store.all_own_messages() == [prevote, precommit, proposal, later]
    store.prune_own(2)
    assert store.own_messages(1) == [] and store.own_blocks(1) == {}
    assert store.all_own_messages() == [later]


def test_recording_is_idempotent_and_refuses_a_second_different_message(
        store: ConsensusStore) -> None:
    b, c = chain(1)[0], chain(1, b"c")[0]
    prevote = sign(Vote(VoteKind.PREVOTE, 1, 0, b.hash, "v0"), KEYS["v0"], CHAIN, PQ)
    store.record_own(prevote, b)
    store.record_own(prevote, b)
    resigned = sign(Vote(VoteKind.PREVOTE, 1, 0, b.hash, "v0"), KEYS["v0"], CHAIN, PQ)
    assert resigned.pq_signature != prevote.pq_signature  # ML-DSA signing is randomised
    store.record_own(resigned)  # the same vote: nothing changes, the first signature stays
    assert store.own_messages(1)[0].pq_signature == prevote.pq_signature
    conflicting = sign(Vote(VoteKind.PREVOTE, 1, 0, c.hash, "v0"), KEYS["v0"], CHAIN)
    with pytest.raises(DoubleSignError):
        store.record_own(conflicting, c)
    assert isinstance(DoubleSignError(), StorageError)
    assert store.own_messages(1) == [prevote] and set(store.own_blocks(1)) == {b.hash}


def test_a_block_must_be_the_one_voted_for_and_messages_must_be_signed(
        store: ConsensusStore) -> None:
    b, c = chain(1)[0], chain(1, b"c")[0]
    with pytest.raises(ValueError, match="block"):
        store.record_own(sign(Vote(VoteKind.PREVOTE, 1, 0, b.hash, "v0"), KEYS["v0"], CHAIN), c)
    with pytest.raises(ValueError, match="block"):
        store.record_own(sign(Vote(VoteKind.PREVOTE, 1, 0, NIL, "v0"), KEYS["v0"], CHAIN), b)
    with pytest.raises(ValueError, match="signed"):
        store.record_own(Vote(VoteKind.PREVOTE, 1, 0, NIL, "v0"))
    assert store.all_own_messages() == []


# --- committed blocks ----------------------------------------------------------------------------


def test_blocks_keep_their_certificates_and_times(store: ConsensusStore) -> None:
    blocks = chain(5)
    assert store.height() == 0 and store.block(1) is None and store.last_block_time() is None
    decisions = [decided(block, round_=block.height % 2) for block in blocks]
    for decision in decisions:
        store.add_block(decision, f"2026-11-25T12:00:0{decision.height}Z")
    assert store.height() == 5
    assert store.committed_at(3) == "2026-11-25T12:00:03Z" and store.committed_at(9) is None
    assert store.last_block_time() == "2026-11-25T12:00:05Z"
    assert [d.block for d in store.blocks(2, 2)] == blocks[1:3]
    assert [d.height for d in store.blocks(4, 100)] == [4, 5]
    assert store.blocks(6, 10) == [] and store.blocks(1, 0) == []
    assert store.blocks(1, 5) == decisions  # block, round, signatures, ML-DSA ones, sender
    got = store.block(3)
    assert got == decisions[2] and got.round == 1 and got.sender == "v3"
    validators = {n: ValidatorStake(k.public_key(), 1, PQ.public_key() if n == "v0" else None)
                  for n, k in KEYS.items()}
    certificate = CommitCertificate(CHAIN, got.height, got.round, got.block.hash, got.block.hash,
                                    got.signatures, got.pq_signatures)
    assert verify_commit(certificate, validators, chain_id=CHAIN, block=got.block.hash,
                         subject=got.block.hash) == 3


def test_the_same_block_again_is_a_no_op_and_a_fork_is_refused(store: ConsensusStore) -> None:
    main, other = chain(3), chain(3, b"fork")
    store.add_block(decided(main[0]), "t1")
    store.add_block(decided(main[0], round_=4), "t9")  # another certificate, same block
    assert store.block(1) is not None and store.block(1).round == 0  # type: ignore[union-attr]
    assert store.committed_at(1) == "t1"
    with pytest.raises(ForkError):
        store.add_block(decided(other[0]), "t2")  # another block at height 1
    with pytest.raises(ForkError, match="extend"):
        store.add_block(decided(other[1]), "t2")  # height 2 on another parent
    store.add_block(decided(main[2]), "t3")  # a gap is allowed ...
    with pytest.raises(ForkError, match="after"):
        store.add_block(decided(Block(2, main[0].hash, "v0", (b"x",))), "t2")  # ... a mislink not
    store.add_block(decided(main[1]), "t2")
    assert [d.block for d in store.blocks(1, 10)] == main
    assert isinstance(ForkError(), StorageError)


# --- durability ------------------------------------------------------------------------------------


def test_what_a_call_stored_survives_the_process_dying_right_after(tmp_path: Path) -> None:
    """A child process records a vote and a block, then exits without closing the database
    (no checkpoint, no clean shutdown); a new process reads both."""
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(REPO)!r})
        from pathlib import Path
        from tests.trustchain.storage.test_consensus_store import KEYS, CHAIN, chain, decided
        from trustchain.consensus.messages import Vote, VoteKind, sign
        from trustchain.storage.consensus import CONSENSUS_SCHEMA, ConsensusStore
        from trustchain.storage.database import Database
        from trustchain.storage.migrations import migrate
        db = Database(Path({str(tmp_path / "node.db")!r}))
        migrate(db, CONSENSUS_SCHEMA)
        store = ConsensusStore(db)
        block = chain(1)[0]
        store.record_own(sign(Vote(VoteKind.PRECOMMIT, 1, 0, block.hash, "v0"), KEYS["v0"],
                              CHAIN), block)
        store.add_block(decided(block), "t1")
        os._exit(0)
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO, timeout=60,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    assert (tmp_path / "node.db-wal").exists()  # the writes are in the WAL, not checkpointed
    with Database(tmp_path / "node.db") as db:
        assert migrate(db, CONSENSUS_SCHEMA) == 0
        store = ConsensusStore(db)
        block = chain(1)[0]
        assert [(m.kind, m.block) for m in store.own_messages(1)  # type: ignore[union-attr]
                ] == [(VoteKind.PRECOMMIT, block.hash)]
        assert store.own_blocks(1) == {block.hash: block}
        assert store.height() == 1 and store.committed_at(1) == "t1"
