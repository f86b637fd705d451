"""The consensus of a running node: its engine rebuilt from the stored chain, its
peers, and the ``consensus`` service other nodes and ``federation status`` call.

At start the committed blocks are replayed, in order, into a fresh
:class:`~trustchain.consensus.ledger.Ledger` built from the genesis document
(the blocks are the one place the replicated state is kept; everything else
is derived from them), the engine starts at the next height, and the node's
own signed messages of that height are handed back to it and to its signing
guard, so that it neither signs a conflicting message nor forgets its lock.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.serialization import load_der_public_key
from pydantic import BaseModel, ConfigDict, Field

from bootstrap.genesis import GenesisDocument
from bootstrap.init import CONSENSUS_ED25519_PURPOSE, CONSENSUS_ML_DSA_PURPOSE
from transport.consensus import BLOCKS_PER_REQUEST, ConsensusRunner
from transport.endorsement import EndorsementPolicy, Endorsements
from transport.methods import Call, Method, Service
from transport.peers import Peers
from trustchain.config import NodeConfig
from trustchain.consensus.ledger import Application, Ledger
from trustchain.consensus.operations import OperationKind, decode_entry
from trustchain.consensus.proofs.stake import ValidatorStake
from trustchain.consensus.signer import SigningGuard
from trustchain.consensus.tendermint import GENESIS_PREVIOUS, Committed, Tendermint, Timeouts
from trustchain.storage.consensus import ConsensusStore
from trustchain.wiring.node import OpenNode

#: Blocks read per page while the chain is replayed at start.
REPLAY_PAGE = 512


def genesis_validators(genesis: GenesisDocument) -> dict[str, ValidatorStake]:
    """The founding validator set: Ed25519 and ML-DSA-65 keys (hybrid votes), stakes."""
    out = {}
    for v in genesis.body.validators:
        ed = load_der_public_key(base64.b64decode(v.ed25519_public_key))
        ml = load_der_public_key(base64.b64decode(v.ml_dsa_65_public_key))
        out[v.node_id] = ValidatorStake(ed, v.stake, ml)  # type: ignore[arg-type]
    return out


def replay(store: ConsensusStore, ledger: Ledger) -> tuple[int, bytes]:
    """Apply every stored block to ``ledger``; the last height and its block hash."""
    height, previous = 0, GENESIS_PREVIOUS
    while True:
        page = store.blocks(height + 1, REPLAY_PAGE)
        for decision in page:
            ledger.committed(decision.block)
            height, previous = decision.height, decision.block.hash
        if len(page) < REPLAY_PAGE:
            return height, previous


def node_timeouts(config: NodeConfig) -> Timeouts:
    """Tendermint's round timeouts, and the node's pauses between heights."""
    return Timeouts(commit=config.consensus_commit_pause_ms / 1000,
                    idle=float(config.consensus_idle_seconds))


@dataclass
class NodeConsensus:
    runner: ConsensusRunner
    peers: Peers
    endorsements: Endorsements


def build_consensus(node: OpenNode, *, wall: Callable[[], datetime],
                    monotonic: Callable[[], float] = time.monotonic,
                    application: Application | None = None) -> NodeConsensus:
    """The node's consensus, its chain replayed into a ledger (with ``application``)."""
    identity = node.identity
    timeouts = node_timeouts(node.config)
    chain_id = identity.genesis_sha256
    ledger = Ledger(chain_id, genesis_validators(node.genesis), node.genesis.body.parameters,
                    application=application)
    store = ConsensusStore(node.db)
    height, previous = replay(store, ledger)
    keystore = node.keystore
    ed_key = keystore.private_key(keystore.active(CONSENSUS_ED25519_PURPOSE).id)
    ml_key = keystore.private_key(keystore.active(CONSENSUS_ML_DSA_PURPOSE).id)
    own = store.own_messages(height + 1)
    guard = SigningGuard(ed_key, ml_key, chain_id, own)  # type: ignore[arg-type]
    engine = Tendermint(identity.node_id, ed_key, chain_id, ledger.validators, ledger,  # type: ignore[arg-type]
                        timeouts=timeouts, height=height + 1, previous=previous,
                        pq_key=ml_key, signer=guard.sign)  # type: ignore[arg-type]
    engine.restore(own, store.own_blocks(height + 1))
    runner_box: list[ConsensusRunner] = []
    peers = Peers(node.config.peers, own_id=identity.node_id, identity=node.credentials.node,
                  root=node.credentials.root, network=identity.network_name,
                  server_name=identity.origin.rstrip("."), clock=wall,
                  on_connect=lambda node_id: runner_box[0].peer_connected(node_id))
    runner = ConsensusRunner(engine, ledger, store, peers, wall=wall)
    runner_box.append(runner)
    for member in ledger.members.values():  # admitted by consensus: the ledger has their address
        peers.add(member["address"])
    policy = EndorsementPolicy(admission_max_stake=node.config.admission_max_stake,
                               clock=monotonic)
    endorsements = Endorsements(identity.node_id, ledger, peers, guard.endorse, policy)
    return NodeConsensus(runner, peers, endorsements)


def membership_hook(peers: Peers, policy: EndorsementPolicy) -> Callable[[Committed], None]:
    """A commit hook: connect to each node admitted in the block (its address is in it);
    an operator's consents to changes of a node's stake, or of the configuration, are
    spent once such a change is committed."""

    def committed(committed: Committed) -> None:
        for raw in committed.block.operations:
            operation = decode_entry(raw).operation
            if operation.kind is OperationKind.NODE_ADMISSION:
                peers.add(operation.body["address"])
            else:
                policy.withdraw(operation)

    return committed


class BlocksRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    from_: int = Field(alias="from", ge=1, le=2**62)
    limit: int = Field(BLOCKS_PER_REQUEST, ge=1, le=BLOCKS_PER_REQUEST)


def consensus_service(runner: ConsensusRunner, endorsements: Endorsements,
                      extra: Callable[[], dict[str, object]] = dict) -> Service:
    """``message`` and ``operation`` (pushes from nodes), ``blocks`` (catch-up), ``endorse``
    (a validator's signatures for an operation's stake proof), ``status`` (public: with
    what ``extra`` adds, the federation's zones and intermediates)."""

    def message(call: Call) -> dict[str, object]:
        runner.receive(call.body, call.peer)
        return {}

    def operation(call: Call) -> dict[str, object]:
        runner.receive_operation(call.body)
        return {}

    def blocks(call: Call) -> dict[str, object]:
        req = call.parse(BlocksRequest)
        return runner.blocks(req.from_, req.limit)

    def status(call: Call) -> dict[str, object]:
        return {**runner.status(), **extra()}

    def endorse(call: Call) -> dict[str, object]:
        return endorsements.endorse(call.body)

    return Service(
        "consensus",
        (Method(message, stoq="message", raw=True), Method(operation, stoq="operation", raw=True),
         Method(blocks, stoq="blocks"), Method(endorse, stoq="endorse", raw=True),
         Method(status, stoq="status", http="GET /consensus/status")),
    )
