"""Split views across sizes, found by a node: its witness (the proof a log sent leads to the
log's new root from another old root) and its gossip (a checkpoint seen elsewhere, checked
against the operator's own tree).  The edge faked is the network: the operator's answers
come from a Merkle tree the test holds, and what the node sends to the consensus is
recorded; the evidence is then checked as every validator checks it."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.trustchain.ct.test_federation_logs import federation
from tests.trustchain.ct.test_log import CA_B64, LOG_KEY, PKI, leaf
from trustchain.consensus.operations import OperationKind
from trustchain.ct.federation import FederatedLog, FederationLogs
from trustchain.ct.log import Log
from trustchain.ct.merkle import consistency_proof, leaf_hash, root
from trustchain.ct.note import Checkpoint, CosignatureV1Signer, Ed25519Signer, sign_note
from trustchain.ct.witness import OK, UNPROCESSABLE
from trustchain.storage.ct import CT_SCHEMA, SqliteLogStore
from trustchain.storage.database import Database, open_database
from trustchain.storage.migrations import migrate
from trustchain.storage.witness import WITNESS_SCHEMA, WitnessStore
from trustchain.wiring.gossip import Gossip
from trustchain.wiring.witness import WitnessNode

OPERATOR, NAME = "n2", "l0"
FORKED = [f"forged {i}".encode() for i in range(20)]


@dataclass
class Answer:
    status: int
    message: bytes


class Operator:
    """The log's operator as the network shows it: a real log's RFC 6962 answers."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.asked: list[str] = []

    def grow(self, size: int) -> list[bytes]:
        """The log grown to ``size`` entries: their leaf inputs."""
        while self.log.tree_size < size:
            self.log.check([leaf(f"n{self.log.tree_size}-{self.log.pending}"), CA_B64])
            if self.log.tree_size + self.log.pending == size:
                self.log.sequence(1_700_000_000_000)
        entries = self.log.get_entries(0, size - 1)["entries"]
        return [base64.b64decode(e["leaf_input"]) for e in entries]  # type: ignore[attr-defined]

    def connected(self) -> dict[str, object]:
        return {OPERATOR: object()}

    async def request(self, node: str, service: str, method: str, message: bytes) -> Answer:
        assert (node, service) == (OPERATOR, "ct")
        self.asked.append(method)
        args = json.loads(message)
        if method == "get-sth-consistency":
            body = self.log.get_sth_consistency(args["first"], args["second"])
        elif method == "get-entry-and-proof":
            body = self.log.get_entry_and_proof(args["leaf_index"], args["tree_size"])
        else:
            return Answer(404, b"{}")
        return Answer(200, json.dumps(body).encode())


@pytest.fixture
def operator(tmp_path: Path) -> Iterator[Operator]:
    database = open_database(tmp_path)
    migrate(database, CT_SCHEMA)
    yield Operator(Log("a", LOG_KEY, SqliteLogStore(database, "a"), [PKI.root]))
    database.close()


class Operations:
    """What the node sends to the consensus."""

    def __init__(self) -> None:
        self.sent: list[tuple[OperationKind, dict[str, Any]]] = []

    def send(self, kind: OperationKind, body: dict[str, Any], what: str | None = None,
             subject: str = "") -> None:
        self.sent.append((kind, body))


def b64(items: list[bytes]) -> list[str]:
    return [base64.b64encode(i).decode() for i in items]


@pytest.fixture
def state() -> tuple[FederationLogs, Ed25519Signer]:
    logs = federation()
    log = logs.logs[OPERATOR][NAME]
    signer = Ed25519Signer(log.origin, ed25519.Ed25519PrivateKey.generate())
    logs.logs[OPERATOR][NAME] = FederatedLog(log.operator, log.name, log.key, log.url,
                                             log.mmd, log.expiry, signer.verifier().vkey())
    return logs, signer


def note(signer: Ed25519Signer, inputs: list[bytes]) -> str:
    checkpoint = Checkpoint(signer.name, len(inputs), root([leaf_hash(x) for x in inputs]))
    return sign_note(checkpoint.text(), [signer])


def evidence_checks(logs: FederationLogs, operations: Operations) -> dict[str, Any]:
    """The one ``log-fork`` sent, checked as every validator checks it."""
    ((kind, body),) = operations.sent
    assert kind == OperationKind.LOG_FORK
    logs.check(kind.value, "n3", body)
    return body


def checkpoint(signer: Ed25519Signer, inputs: list[bytes]) -> Checkpoint:
    return Checkpoint(signer.name, len(inputs), root([leaf_hash(x) for x in inputs]))


@pytest.mark.parametrize("size", [3, 6])  # the fork's size a power of two (4), or not (7)
def test_gossip_checks_a_smaller_checkpoint_against_the_operators_tree(
        state: tuple[FederationLogs, Ed25519Signer], operator: Operator, size: int) -> None:
    logs, signer = state
    operations = Operations()
    gossip = Gossip(logs, operations, operator)  # type: ignore[arg-type]
    honest = operator.grow(10)
    newest = note(signer, honest)
    assert gossip.observe(note(signer, honest[:size]))  # honest, seen elsewhere
    assert gossip.observe(note(signer, FORKED[:size + 1]))  # a fork, seen elsewhere
    gossip.observe(newest, from_operator=True)
    asyncio.run(gossip.check(OPERATOR, NAME, checkpoint(signer, honest), newest))
    body = evidence_checks(logs, operations)
    assert body["checkpoints"] == [note(signer, FORKED[:size + 1]), newest]
    assert base64.b64decode(body["prefix"]) == root([leaf_hash(x) for x in honest[:size + 1]])


def test_gossip_waits_until_the_operators_tree_is_larger(
        state: tuple[FederationLogs, Ed25519Signer], operator: Operator) -> None:
    logs, signer = state
    operations = Operations()
    gossip = Gossip(logs, operations, operator)  # type: ignore[arg-type]
    gossip.observe(note(signer, FORKED[:12]))
    honest = operator.grow(10)
    asyncio.run(gossip.check(OPERATOR, NAME, checkpoint(signer, honest), note(signer, honest)))
    assert operations.sent == [] and operator.asked == []  # not yet: 12 > 10
    honest = operator.grow(16)
    for _ in range(2):
        asyncio.run(gossip.check(OPERATOR, NAME, checkpoint(signer, honest),
                                 note(signer, honest)))
    evidence_checks(logs, operations)  # sent once


def test_gossip_sends_one_size_two_roots_at_once(
        state: tuple[FederationLogs, Ed25519Signer], operator: Operator) -> None:
    logs, signer = state
    operations = Operations()
    gossip = Gossip(logs, operations, operator)  # type: ignore[arg-type]
    gossip.observe(note(signer, operator.grow(5)), from_operator=True)
    assert not gossip.observe(note(signer, FORKED[:5]))
    assert "proof" not in evidence_checks(logs, operations)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[WitnessStore]:
    db = Database(tmp_path / "node.db")
    migrate(db, WITNESS_SCHEMA)
    yield WitnessStore(db)
    db.close()


def add(witness: WitnessNode, old: int, new: str, new_inputs: list[bytes]) -> int:
    """add-checkpoint from ``old`` with the proof of the tree ``new_inputs``."""
    proof = consistency_proof(old, [leaf_hash(x) for x in new_inputs]) if old else []
    body = "\n".join([f"old {old}", *b64(proof)]) + "\n\n" + new
    return witness.add_checkpoint(body.encode()).status


@pytest.mark.parametrize("old", [5, 4])
def test_a_witness_turns_a_proof_from_another_old_root_into_evidence(
        state: tuple[FederationLogs, Ed25519Signer], store: WitnessStore, old: int) -> None:
    """Old size 5: the log's own proof shows its tree's other root at 5, the evidence.  Old
    size 4 (a power of two): the proof holds no root of 4, so the checkpoint goes to
    gossip, which checks it against the operator's tree."""
    logs, signer = state
    operations, suspects = Operations(), list[str]()
    witness = WitnessNode(logs, store, CosignatureV1Signer(
        "w.example", ed25519.Ed25519PrivateKey.generate()),
        lambda: datetime(2027, 1, 1, tzinfo=UTC), operations)  # type: ignore[arg-type]
    witness.suspect = suspects.append
    honest = [f"entry {i}".encode() for i in range(9)]
    assert add(witness, 0, note(signer, honest[:old]), honest[:old]) == OK
    forked = note(signer, FORKED[:9])
    assert add(witness, old, forked, FORKED[:9]) == UNPROCESSABLE
    if old == 5:
        body = evidence_checks(logs, operations)
        assert body["checkpoints"] == [note(signer, honest[:5]), forked]
        assert suspects == []
    else:
        assert operations.sent == [] and suspects == [forked]
    assert add(witness, old, note(signer, honest), honest) == OK


def test_a_witness_sends_one_size_two_roots(
        state: tuple[FederationLogs, Ed25519Signer], store: WitnessStore) -> None:
    logs, signer = state
    operations = Operations()
    witness = WitnessNode(logs, store, CosignatureV1Signer(
        "w.example", ed25519.Ed25519PrivateKey.generate()),
        lambda: datetime(2027, 1, 1, tzinfo=UTC), operations)  # type: ignore[arg-type]
    honest = [f"entry {i}".encode() for i in range(6)]
    assert add(witness, 0, note(signer, honest), honest) == OK
    forked = note(signer, FORKED[:6])
    assert add(witness, 6, forked, FORKED[:6]) == UNPROCESSABLE
    body = evidence_checks(logs, operations)
    assert body["checkpoints"] == [note(signer, honest), forked] and "proof" not in body
