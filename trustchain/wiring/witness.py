"""Witnessing on a running node: its witness (C2SP tlog-witness) for the federation's logs,
and its own logs' checkpoints taken to every node's witness.

:class:`WitnessNode` answers ``add-checkpoint`` (``POST /witness/add-checkpoint`` over
HTTP, ``witness.add-checkpoint`` over stoq/1) for every log of the committed log list,
by its note key: :mod:`trustchain.ct.witness` decides, and a 200's new size and hash
are committed by compare-and-swap (:class:`~trustchain.storage.witness.WitnessStore`)
*before* the cosignature leaves, so a witness that dies between the two never cosigns
two hashes for one size.

:class:`Cosigning` takes each new checkpoint of this node's logs to the witnesses of
every node of the log list (its own included, called directly), with the consistency
proof from the size each one last cosigned (learnt from its 409 when unknown), and
keeps the cosignatures; the log then serves the checkpoint with them at its
monitoring prefix (``/logs/<log>/checkpoint``).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric import ed25519

from bootstrap.transport_certs import node_dns_names
from transport.ct import LogRunner
from transport.methods import Call, Method, Reply, Service
from transport.peers import Peers
from transport.periodic import Periodic
from trustchain.consensus.operations import OperationKind
from trustchain.ct.federation import FederationLogs
from trustchain.ct.log import Log
from trustchain.ct.merkle import prefix_root
from trustchain.ct.note import (
    Checkpoint,
    CosignatureV1Signer,
    NoteError,
    parse_checkpoint,
    parse_note,
    parse_vkey,
)
from trustchain.ct.witness import (
    CONFLICT,
    OK,
    UNPROCESSABLE,
    Outcome,
    Witness,
    conflict,
    parse_add_checkpoint,
)
from trustchain.errors import StatusAnswer
from trustchain.keystore import KeyType
from trustchain.storage.witness import WitnessStore
from trustchain.wiring.federation import NodeOperations
from trustchain.wiring.node import OpenNode, utcnow

log = logging.getLogger("trustchain.witness")

#: The key store purpose of this node's witness cosigning key.
WITNESS_PURPOSE = "ct-witness"
#: How often this node looks for checkpoints of its logs still to be cosigned (a new
#: checkpoint starts a round at once).
COSIGN_INTERVAL = 0.5
#: A log's checkpoint is made final through the consensus at most this often.
FINAL_INTERVAL = 5.0
#: How long a witness may take to answer before its cosignature is sought next round.
WITNESS_TIMEOUT = 10.0


class WitnessNode:
    def __init__(self, state: FederationLogs, store: WitnessStore,
                 signer: CosignatureV1Signer, clock: Callable[[], datetime],
                 operations: NodeOperations) -> None:
        self._state = state
        self._store = store
        self.signer = signer
        self._clock = clock
        self._operations = operations
        #: origin -> the checkpoint note last cosigned here (in memory: after a restart,
        #: the final checkpoint committed is the evidence to hold a fork against).
        self._notes: dict[str, str] = {}
        #: Where a refused checkpoint goes when it is no evidence by itself (gossip).
        self.suspect: Callable[[str], None] | None = None

    def add_checkpoint(self, body: bytes) -> Outcome:
        """tlog-witness ``add-checkpoint``: the outcome, its state committed if a 200."""
        logs = {}
        for origin, known in self._state.by_origin().items():
            try:
                logs[origin] = [parse_vkey(known.note_key)]
            except NoteError:  # checked when committed; never expected here
                continue
        witness = Witness(logs, [self.signer])
        now = int(self._clock().timestamp())
        outcome = witness.add_checkpoint(body, self._store.get, now)
        update = outcome.update
        if outcome.status == UNPROCESSABLE and outcome.checkpoint is not None:
            self._fork(body, outcome.checkpoint)
        if outcome.status != OK or update is None:
            return outcome
        if not self._store.compare_and_swap(update.origin, update.old_size, update.new_size,
                                            update.new_hash):
            # Another request moved this log on meanwhile: answer from what is stored.
            stored = self._store.get(update.origin)
            return conflict(stored.size if stored is not None else 0, outcome.checkpoint)
        self._notes[update.origin] = parse_add_checkpoint(body).note.encode()
        return outcome

    def _operator(self, origin: str) -> str:
        log = self._state.by_origin().get(origin)
        return log.operator if log is not None else ""

    def _fork(self, body: bytes, checkpoint: Checkpoint) -> None:
        """A log signed a checkpoint this witness refused as inconsistent (422) with one it
        cosigned (or the federation made final).  One size, two roots: both signed notes
        are the evidence.  Two sizes: the proof the log sent, if it leads to the new root
        from another old root, is the evidence with it; otherwise (the proof leads
        nowhere, or the old size is a power of two and the proof holds no old root) the
        checkpoint goes to gossip, to be checked against the log's own tree."""
        origin = checkpoint.origin
        request = parse_add_checkpoint(body)
        forked = request.note.encode()
        known: dict[int, str] = {}
        for text in (self._notes.get(origin), self._state.final_notes.get(origin)):
            if text is not None:
                try:
                    known.setdefault(parse_checkpoint(parse_note(text).text).size, text)
                except NoteError:  # ours or committed: never expected
                    continue
        same, older = known.get(checkpoint.size), known.get(request.old_size)
        evidence: dict[str, object] | None = None
        if same is not None:
            evidence = {"checkpoints": [same, forked]}
            log.warning("log %s signed two checkpoints of size %d with different roots: "
                        "evidence sent", origin, checkpoint.size)
        elif older is not None:
            prefix = prefix_root(request.old_size, checkpoint.size, request.proof,
                                 checkpoint.root_hash)
            if prefix is not None and prefix != parse_checkpoint(parse_note(older).text
                                                                 ).root_hash:
                evidence = {"checkpoints": [older, forked],
                            "proof": [base64.b64encode(p).decode() for p in request.proof],
                            "prefix": base64.b64encode(prefix).decode()}
                log.warning("log %s: its checkpoint of %d does not extend the one of %d "
                            "cosigned: evidence sent", origin, checkpoint.size,
                            request.old_size)
        if evidence is None:
            if self.suspect is not None:
                self.suspect(forked)
            return
        self._operations.send(OperationKind.LOG_FORK,
                              {"log": origin, "operator": self._operator(origin), **evidence},
                              what=forked, subject=origin)


def witness_service(witness: WitnessNode) -> Service:
    """``witness.add-checkpoint``: public, as tlog-witness is (it cosigns only the logs of
    the committed log list, by their keys)."""

    def add(call: Call) -> Reply:
        outcome = witness.add_checkpoint(call.body)
        if outcome.status != OK:
            raise StatusAnswer(outcome.status, outcome.body, outcome.content_type)
        return Reply(outcome.body, outcome.content_type)

    return Service("witness", (Method(add, stoq="add-checkpoint",
                                      http="POST /witness/add-checkpoint", raw=True,
                                      max_body=64 * 1024),))


class Cosigning:
    def __init__(self, runner: LogRunner, state: FederationLogs, own: WitnessNode,
                 node: str, peers: Peers, operations: NodeOperations) -> None:
        self._runner = runner
        self._state = state
        self._own = own
        self._node = node
        self._peers = peers
        self._operations = operations
        #: log -> when this node last asked for one of its checkpoints to be made final.
        self._finalised: dict[str, float] = {}
        #: (log, witness node) -> the size that witness last cosigned (as far as known).
        self._sizes: dict[tuple[str, str], int] = {}
        #: log -> (the checkpoint being cosigned, witness node -> its cosignature line).
        self._cosigned: dict[str, tuple[str, dict[str, str]]] = {}
        #: A round at once when the log runner signs a checkpoint, else every 0.5 s.
        self._rounds = Periodic(self.round, COSIGN_INTERVAL, "cosigning round", log)

    def checkpoint(self, name: str) -> str:
        """Log ``name``'s newest checkpoint, with the cosignatures gathered for it so far
        (freshness first: a monitor reading tiles needs the newest tree; a log at rest has
        its checkpoint cosigned within a round trip to the witnesses)."""
        text = self._runner.logs[name].checkpoint()
        held = self._cosigned.get(name)
        if held is None or held[0] != text:
            return text
        return text + "".join(line for _, line in sorted(held[1].items()))

    def cosignatures(self, name: str) -> int:
        """How many witnesses cosigned log ``name``'s current checkpoint so far."""
        held = self._cosigned.get(name)
        return len(held[1]) if held is not None and \
            held[0] == self._runner.logs[name].checkpoint() else 0

    def start(self) -> None:
        self._runner.on_head = self._rounds.wake.set
        self._rounds.start()

    async def stop(self) -> None:
        await self._rounds.stop()

    async def round(self) -> None:
        """Each log's current checkpoint to each witness that has not cosigned it yet."""
        jobs = []
        for name, target in self._runner.logs.items():
            text = target.checkpoint()
            held = self._cosigned.get(name)
            if held is None or held[0] != text:
                held = self._cosigned[name] = (text, {})
            for witness in sorted(self._state.witnesses):
                if witness not in held[1]:
                    jobs.append(self._ask(name, target, text, witness, held[1]))
        if jobs:
            await asyncio.gather(*jobs)
        for name, target in self._runner.logs.items():
            held = self._cosigned.get(name)
            if held is not None and held[0] == target.checkpoint() and \
                    self._state.quorum(set(held[1])):
                self._runner.cosigned(name, self.checkpoint(name))  # the static file too
            self._finalise(name, target)

    def _finalise(self, name: str, target: Log) -> None:
        """Make the log's checkpoint final through the consensus (``log-final``) once
        witnesses of more than 2/3 of the stake cosigned it, at most every
        :data:`FINAL_INTERVAL` seconds a log."""
        held = self._cosigned.get(name)
        if held is None or held[0] != target.checkpoint() or \
                not self._state.quorum(set(held[1])):
            return
        text = self.checkpoint(name)
        size = int(held[0].split("\n", 2)[1])
        final = self._state.final.get(target.origin)
        now = asyncio.get_running_loop().time()
        if (final is not None and final[0] >= size) or \
                now - self._finalised.get(name, -FINAL_INTERVAL) < FINAL_INTERVAL:
            return
        proof: list[str] = []
        if final is not None and 0 < final[0] < size:
            hashes = target.get_sth_consistency(final[0], size)["consistency"]
            assert isinstance(hashes, list)
            proof = [str(p) for p in hashes]
        self._finalised[name] = now
        self._operations.send(OperationKind.LOG_FINAL,
                              {"log": target.origin, "checkpoint": text, "proof": proof},
                              what=str(size), subject=target.origin)

    async def _ask(self, name: str, target: Log, text: str, witness: str,
                   into: dict[str, str]) -> None:
        size = int(text.split("\n", 2)[1])  # the checkpoint's (the log may have moved on)
        for _ in range(2):  # the second time with the size a 409 named
            old = min(self._sizes.get((name, witness), 0), size)
            proof: list[str] = []
            if 0 < old < size:
                hashes = target.get_sth_consistency(old, size)["consistency"]
                assert isinstance(hashes, list)
                proof = [str(p) for p in hashes]
            body = (f"old {old}\n" + "".join(f"{p}\n" for p in proof) + "\n" + text).encode()
            try:
                status, answer = await asyncio.wait_for(self._send(witness, body),
                                                        WITNESS_TIMEOUT)
            except Exception as exc:  # not connected, closing, slow: next round
                log.debug("witness %s for %s: %s", witness, name, exc)
                return
            if status == OK:
                self._sizes[(name, witness)] = size
                into[witness] = answer.decode()
                return
            if status != CONFLICT:
                log.log(logging.INFO if status == 404 else logging.WARNING,  # 404: not yet
                        "witness %s refused %s at size %d (%d): %s", witness, name, size,
                        status, answer[:200].decode("utf-8", "replace").strip())
                return
            try:
                self._sizes[(name, witness)] = int(answer.decode().strip())
            except ValueError:
                return

    async def _send(self, witness: str, body: bytes) -> tuple[int, bytes]:
        if witness == self._node:
            outcome = self._own.add_checkpoint(body)
            return outcome.status, outcome.body
        answer = await self._peers.request(witness, "witness", "add-checkpoint", body)
        return answer.status, answer.message


def build_witnessing(node: OpenNode, runner: LogRunner, state: FederationLogs,
                     peers: Peers, operations: NodeOperations) -> tuple[WitnessNode, Cosigning]:
    """This node's witness (its cosigning key named after the node's name in the
    federation's zone, made on first use) and the cosigning of its logs."""
    record = node.keystore.active_or_generate(KeyType.ED25519, WITNESS_PURPOSE, utcnow())
    key = node.keystore.private_key(record.id)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    name = node_dns_names(node.identity.origin, node.identity.node_id)[1]
    witness = WitnessNode(state, WitnessStore(node.db), CosignatureV1Signer(name, key), utcnow,
                          operations)
    return witness, Cosigning(runner, state, witness, node.identity.node_id, peers,
                              operations)
