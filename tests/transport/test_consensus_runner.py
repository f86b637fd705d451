"""The consensus adapter with one validator, in process: an operation submitted is
committed and its waiter answered with the block's height; what it signs is stored
before anything could be sent; bytes that are not a consensus message are refused; a
second block for a stored height (a fork) halts it rather than carrying on.

(No peers: ``Peers`` with no address connects to nothing, and every node of a
one-validator federation decides alone.  tests/test_federation.py runs four nodes.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.pki import node_pki
from transport.consensus import ConsensusRunner
from transport.peers import Peers
from trustchain.consensus.ledger import Ledger
from trustchain.consensus.messages import Block, Decision
from trustchain.consensus.operations import Entry, Operation, OperationKind
from trustchain.consensus.parameters import ProofParameters
from trustchain.consensus.proofs.stake import ValidatorStake
from trustchain.consensus.signer import SigningGuard
from trustchain.consensus.tendermint import GENESIS_PREVIOUS, Tendermint, Timeouts
from trustchain.errors import BadRequest, Unavailable
from trustchain.storage.consensus import CONSENSUS_SCHEMA, ConsensusStore
from trustchain.storage.database import Database
from trustchain.storage.migrations import migrate

CHAIN = "runner-test"
KEY = ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"runner").digest())
NODE = "00" * 16


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ConsensusStore]:
    db = Database(tmp_path / "node.db")
    migrate(db, CONSENSUS_SCHEMA)
    yield ConsensusStore(db)
    db.close()


def runner_for(store: ConsensusStore,
               timeouts: Timeouts = Timeouts(commit=0.01, idle=60.0)) -> ConsensusRunner:
    validators = {NODE: ValidatorStake(KEY.public_key(), 100)}
    ledger = Ledger(CHAIN, validators, ProofParameters())
    guard = SigningGuard(KEY, None, CHAIN, [])
    engine = Tendermint(NODE, KEY, CHAIN, ledger.validators, ledger, signer=guard.sign,
                        timeouts=timeouts)
    pki = node_pki(now=datetime.now(UTC))
    peers = Peers([], own_id=NODE, identity=pki.identity(NODE, dns_names=["n.example"]),
                  root=pki.root, network=pki.network, server_name="n.example",
                  clock=lambda: datetime.now(UTC))
    return ConsensusRunner(engine, ledger, store, peers, wall=lambda: datetime.now(UTC))


def checkpoint(size: int) -> Entry:
    return Entry(operation=Operation(kind=OperationKind.CT_CHECKPOINT, requester=NODE,
                                     body={"log": "a", "size": size}))


async def test_an_operation_is_committed_and_its_waiter_answered(
        store: ConsensusStore) -> None:
    runner = runner_for(store)
    runner.start()  # idle: nothing to propose, so the first height waits for an operation
    try:
        height = await runner.committed_height(checkpoint(1), timeout=10)
        assert height == store.height() >= 1
        stored = store.block(height)
        assert stored is not None and checkpoint(1).encode() in stored.block.operations
        assert runner.ledger.checkpoints["a"] == {"log": "a", "size": 1}
        # Its own proposal and votes of the current height were stored as they were signed.
        assert all(m.sender == NODE for m in store.all_own_messages())
        status = runner.status()
        assert (status["height"], status["halted"], status["pool"]) == (height, None, 0)
    finally:
        runner.stop()


async def test_bytes_that_are_not_a_consensus_message_are_refused(
        store: ConsensusStore) -> None:
    runner = runner_for(store)
    runner.start()
    try:
        for junk in (b"", b"{}", b'{"type":"vote"}', bytes(range(256))):
            with pytest.raises(BadRequest):
                runner.receive(junk, None)
        with pytest.raises(BadRequest):
            runner.receive_operation(b'{"operation": 1}')
    finally:
        runner.stop()


async def test_a_fork_halts_the_node(store: ConsensusStore) -> None:
    # Another block with a certificate is already stored for height 1 (as if more than a
    # third of the stake had equivocated): deciding a different one must not carry on.
    other = Block(1, GENESIS_PREVIOUS, NODE, (b"another",))
    store.add_block(Decision(other, 0, (), NODE), committed_at="2026-12-02T00:00:00+00:00")
    runner = runner_for(store)
    runner.start()
    try:
        with pytest.raises(Unavailable, match="not committed"):  # halted: never answered
            await runner.committed_height(checkpoint(2), timeout=2)
    finally:
        runner.stop()
    assert runner.halted is not None and runner.halted.startswith("fork at height 1")
    assert runner.status()["halted"] == runner.halted
    assert store.block(1) == Decision(other, 0, (), NODE)  # the stored block is kept


def test_a_batch_of_operations_under_uvloop_is_taken_whole(store: ConsensusStore) -> None:
    """``consensus.operation`` carries one operation a line; every one reaches a block.
    Under uvloop (as the node runs), arming a deadline already past returns a plain Handle:
    the adapter must not ask it when() (it did, and lost the rest of each batch)."""
    import asyncio

    import uvloop

    async def scenario() -> int:
        runner = runner_for(store, Timeouts(commit=0.0, idle=0.0))  # deadlines due at once
        runner.start()
        try:
            runner.receive_operation(b"\n".join(checkpoint(i).encode() for i in range(200)))
            while len(runner.ledger.pool) or not runner.ledger.checkpoints:
                await asyncio.sleep(0.01)  # polls the runner's progress, bounded below
            return runner.ledger.checkpoints["a"]["size"]
        finally:
            runner.stop()

    last = uvloop.run(asyncio.wait_for(scenario(), 30))
    assert last in range(200)
    assert sum(len(store.block(h).block.operations) for h in range(1, store.height() + 1)
               if store.block(h) is not None) == 200


def test_an_operation_canonical_json_cannot_carry_is_refused_before_the_pool(
        store: ConsensusStore) -> None:
    """Proof parts arrive from clients (a nonce of 2**60 passed the models once): an entry
    that cannot be encoded must never reach the pool, where every proposal would fail on
    it.  The models refuse such numbers, and the runner checks again at the door."""
    from pydantic import ValidationError

    from trustchain.consensus.operations import ProofBundle, WorkPart

    with pytest.raises(ValidationError):
        WorkPart(nonce=2**60)
    with pytest.raises(ValidationError):
        ProofBundle(anchor=2**53)
    runner = runner_for(store)
    entry = checkpoint(1).model_copy(update={"proofs": ProofBundle.model_construct(
        work=WorkPart.model_construct(nonce=2**60))})
    with pytest.raises(BadRequest, match="outside the exact JSON range"):
        runner.submit(entry, gossip=False)
    assert runner.ledger.pool == {}
