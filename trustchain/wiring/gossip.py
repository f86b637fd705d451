"""Checkpoint gossip: every node compares the checkpoints it sees of every log of the
federation, from the log's operator and from the other nodes, and turns two signed
checkpoints that cannot both be true into a ``log-fork`` (:mod:`trustchain.ct.federation`).

A log that shows one node a forked view has to show it to that node alone and keep
its witnesses from seeing it; gossip is what makes "alone" fail.  Each node *pulls* the
newest checkpoint of every other node's logs (stoq/1 ``ct.checkpoint``) and *pushes*
each checkpoint it sees for the first time to every connected node (stoq/1
``gossip.checkpoint``, public, also ``POST /gossip/checkpoint``: a checkpoint proves
itself by its log's signature, whoever brings it).  Old CT gossip (RFC 6962-bis drafts)
was abandoned for its privacy cost to browsers; here only the nodes gossip, and only
checkpoints.

Two roots for one size are evidence at once.  A checkpoint of another size that did
not come from the operator itself is checked against the operator's newest once that
is larger: the operator's consistency proof between the two, and if it fails, the
root of the operator's tree at the smaller size (from the inclusion proof of the leaf
at that index).  A different root there, joined to the operator's newest by its own
proof, is the evidence across sizes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging

from transport.methods import Call, Method, Service
from transport.peers import Peers
from transport.periodic import Periodic
from trustchain.consensus.operations import OperationKind
from trustchain.ct.federation import FederationLogs
from trustchain.ct.merkle import ProofError, leaf_hash, prefix_from_inclusion, verify_consistency
from trustchain.ct.note import (
    Checkpoint,
    NoteError,
    parse_checkpoint,
    parse_note,
    parse_vkey,
    verify_note,
)
from trustchain.errors import BadRequest
from trustchain.wiring.federation import NodeOperations

log = logging.getLogger("trustchain.gossip")

#: How often a node pulls the other nodes' logs' checkpoints.
PULL_INTERVAL = 2.0
#: Checkpoints remembered per log (by size): enough to catch a fork of a recent size.
KEPT_PER_LOG = 64
MAX_NOTE = 16 * 1024
#: Checkpoints of other sizes checked against a log's tree per pull (each costs one or two
#: requests to its operator; the rest wait for the next round).
CHECKS_PER_PULL = 4


class Gossip:
    def __init__(self, state: FederationLogs, operations: NodeOperations, peers: Peers) -> None:
        self._state = state
        self._operations = operations
        self._peers = peers
        #: origin -> size -> (root, the signed note).
        self._seen: dict[str, dict[int, tuple[bytes, str]]] = {}
        #: origin -> (size, root) -> (checkpoint, note): seen, not from the operator, not
        #: yet checked against the operator's tree (which must first grow beyond it).
        self._unchecked: dict[str, dict[tuple[int, bytes], tuple[Checkpoint, str]]] = {}
        self._rounds = Periodic(self.pull, PULL_INTERVAL, "gossip round", log)
        self._background: set[asyncio.Future[None]] = set()

    def observe(self, text: str, from_operator: bool = False) -> bool:
        """Take a checkpoint note from anywhere: True if it is new here (then it is pushed
        on).  A second root for a size already seen is a split view: sent as evidence; a
        checkpoint not ``from_operator`` waits to be checked against the operator's tree.

        :raises BadRequest: not a checkpoint the named log signed.
        """
        if len(text) > MAX_NOTE:
            raise BadRequest("a checkpoint note is at most 16 KiB")
        try:
            note = parse_note(text)
            checkpoint = parse_checkpoint(note.text)
        except NoteError as exc:
            raise BadRequest(f"not a checkpoint note: {exc}") from None
        known = next((lg for operator in self._state.logs.values() for lg in operator.values()
                      if lg.origin == checkpoint.origin), None)
        if known is None:
            raise BadRequest(f"no log of the federation is {checkpoint.origin[:100]!r}")
        try:
            verify_note(note, [parse_vkey(known.note_key)])
        except NoteError as exc:
            raise BadRequest(f"the log did not sign it: {exc}") from None
        seen = self._seen.setdefault(checkpoint.origin, {})
        before = seen.get(checkpoint.size)
        if before is not None:
            if before[0] != checkpoint.root_hash and known.log_id.hex() not in self._state.forks:
                log.warning("log %s showed two roots for size %d: evidence sent",
                            checkpoint.origin, checkpoint.size)
                self._operations.send(OperationKind.LOG_FORK, {
                    "log": checkpoint.origin, "operator": known.operator,
                    "checkpoints": [before[1], note.encode()]},
                    what=note.encode(), subject=checkpoint.origin)
            return False
        seen[checkpoint.size] = (checkpoint.root_hash, note.encode())
        while len(seen) > KEPT_PER_LOG:
            del seen[min(seen)]
        if not from_operator and checkpoint.size > 0:
            unchecked = self._unchecked.setdefault(checkpoint.origin, {})
            unchecked[(checkpoint.size, checkpoint.root_hash)] = (checkpoint, note.encode())
            while len(unchecked) > KEPT_PER_LOG:
                del unchecked[min(unchecked)]
        return True

    async def tell(self, text: str, from_operator: bool = False) -> None:
        """Observe ``text`` and, if it is new, push it to every connected node."""
        try:
            fresh = self.observe(text, from_operator)
        except BadRequest as exc:
            log.debug("a checkpoint not taken: %s", exc)
            return
        if fresh:
            await self.push(text)

    def pushing(self, text: str) -> None:
        """``push`` in the background."""
        self._hold(asyncio.ensure_future(self.push(text)))

    def _hold(self, task: asyncio.Future[None]) -> None:
        self._background.add(task)  # until done: the loop keeps only a weak reference
        task.add_done_callback(self._background.discard)

    def suspect(self, text: str) -> None:
        """``tell`` a checkpoint in the background (one a witness refused without evidence:
        checked against the log's tree here, and by every node it is pushed to)."""
        self._hold(asyncio.ensure_future(self.tell(text)))

    async def push(self, text: str) -> None:
        """``text`` to every connected node (one that does not answer is skipped)."""
        await asyncio.gather(*(self._peers.request(node, "gossip", "checkpoint", text.encode())
                               for node in self._peers.connected()), return_exceptions=True)

    def start(self) -> None:
        self._rounds.start()

    async def stop(self) -> None:
        await self._rounds.stop()

    async def pull(self) -> None:
        """The newest checkpoint of every connected node's logs, each told on."""
        connected = set(self._peers.connected())
        for operator, logs in sorted(self._state.logs.items()):
            if operator not in connected:
                continue
            for name in sorted(logs):
                try:
                    answer = await self._peers.request(
                        operator, "ct", "checkpoint", json.dumps({"log": name}).encode())
                except Exception as exc:  # a closing connection: next round
                    log.debug("checkpoint of %s/%s not pulled: %s", operator, name, exc)
                    continue
                if answer.status != 200:
                    continue
                text = str(json.loads(answer.message)["checkpoint"])
                await self.tell(text, from_operator=True)
                try:
                    newest = parse_checkpoint(parse_note(text).text)
                except NoteError:
                    continue
                await self.check(operator, name, newest, text)

    async def check(self, operator: str, name: str, newest: Checkpoint, note: str) -> None:
        """The checkpoints of log ``name`` seen elsewhere, smaller than its operator's
        ``newest`` (signed ``note``), against the operator's tree: each consistent, or
        evidence sent (a few per call; the rest next time)."""
        unchecked = self._unchecked.get(newest.origin, {})
        due = sorted(k for k in unchecked if k[0] <= newest.size)[:CHECKS_PER_PULL]
        for key in due:
            checkpoint, text = unchecked.pop(key)
            if checkpoint.size == newest.size:
                continue  # one size: observe compared the roots
            try:
                evidence = await self._evidence(operator, name, checkpoint, newest)
            except (ProofError, ValueError, KeyError, TypeError, binascii.Error) as exc:
                log.warning("log %s: no proof to check a checkpoint of %d against %d: %s",
                            newest.origin, checkpoint.size, newest.size, exc)
                continue
            known = self._state.logs.get(operator, {}).get(name)
            if evidence is None or known is None or known.log_id.hex() in self._state.forks:
                continue
            proof, prefix = evidence
            log.warning("log %s: its checkpoint of %d does not extend the one of %d: "
                        "evidence sent", newest.origin, newest.size, checkpoint.size)
            self._operations.send(OperationKind.LOG_FORK, {
                "log": newest.origin, "operator": operator, "checkpoints": [text, note],
                "proof": [base64.b64encode(p).decode() for p in proof],
                "prefix": base64.b64encode(prefix).decode()}, what=text, subject=newest.origin)

    async def _evidence(self, operator: str, name: str, checkpoint: Checkpoint,
                        newest: Checkpoint) -> tuple[list[bytes], bytes] | None:
        """None if the operator's tree of ``newest`` extends ``checkpoint``; else its
        consistency proof and its root at ``checkpoint``'s size (which is not the one
        signed there).

        :raises ProofError: the operator's proofs do not verify against its own root.
        """
        answer = await self._peers.request(operator, "ct", "get-sth-consistency", json.dumps(
            {"log": name, "first": checkpoint.size, "second": newest.size}).encode())
        if answer.status != 200:
            raise ValueError(f"get-sth-consistency answered {answer.status}")
        proof = [base64.b64decode(p, validate=True)
                 for p in json.loads(answer.message)["consistency"]]
        try:
            verify_consistency(checkpoint.size, newest.size, proof, checkpoint.root_hash,
                               newest.root_hash)
            return None
        except ProofError:
            pass
        answer = await self._peers.request(operator, "ct", "get-entry-and-proof", json.dumps(
            {"log": name, "leaf_index": checkpoint.size, "tree_size": newest.size}).encode())
        if answer.status != 200:
            raise ValueError(f"get-entry-and-proof answered {answer.status}")
        entry = json.loads(answer.message)
        prefix = prefix_from_inclusion(
            leaf_hash(base64.b64decode(entry["leaf_input"], validate=True)), checkpoint.size,
            newest.size, [base64.b64decode(p, validate=True) for p in entry["audit_path"]],
            newest.root_hash)
        verify_consistency(checkpoint.size, newest.size, proof, prefix, newest.root_hash)
        return (proof, prefix) if prefix != checkpoint.root_hash else None


def gossip_service(gossip: Gossip) -> Service:
    """``gossip.checkpoint``: a checkpoint someone saw (public: it proves itself)."""

    async def checkpoint(call: Call) -> dict[str, bool]:
        text = call.body.decode("utf-8", "replace")
        fresh = gossip.observe(text)
        if fresh:
            gossip.pushing(text)  # on to the others; the caller goes
        return {"new": fresh}

    return Service("gossip", (Method(checkpoint, stoq="checkpoint",
                                     http="POST /gossip/checkpoint", raw=True,
                                     max_body=MAX_NOTE),))
