"""Checkpoint gossip: every node compares the checkpoints it sees of every log of the
federation, from the log's operator and from the other nodes, and turns two signed
checkpoints of one size with two roots into a ``log-fork`` (:mod:`trustchain.ct.federation`).

A log that shows one node a forked view has to show it to that node alone and keep
its witnesses from seeing it; gossip is what makes "alone" fail.  Each node *pulls* the
newest checkpoint of every other node's logs (stoq/1 ``ct.checkpoint``) and *pushes*
each checkpoint it sees for the first time to every connected node (stoq/1
``gossip.checkpoint``, public, also ``POST /gossip/checkpoint``: a checkpoint proves
itself by its log's signature, whoever brings it).  Old CT gossip (RFC 6962-bis drafts)
was abandoned for its privacy cost to browsers; here only the nodes gossip, and only
checkpoints.
"""

from __future__ import annotations

import asyncio
import json
import logging

from transport.methods import Call, Method, Service
from transport.peers import Peers
from trustchain.consensus.operations import OperationKind
from trustchain.ct.federation import FederationLogs
from trustchain.ct.note import NoteError, parse_checkpoint, parse_note, parse_vkey, verify_note
from trustchain.errors import BadRequest
from trustchain.wiring.federation import NodeOperations

log = logging.getLogger("trustchain.gossip")

#: How often a node pulls the other nodes' logs' checkpoints.
PULL_INTERVAL = 2.0
#: Checkpoints remembered per log (by size): enough to catch a fork of a recent size.
KEPT_PER_LOG = 64
MAX_NOTE = 16 * 1024


class Gossip:
    def __init__(self, state: FederationLogs, operations: NodeOperations, peers: Peers) -> None:
        self._state = state
        self._operations = operations
        self._peers = peers
        #: origin -> size -> (root, the signed note).
        self._seen: dict[str, dict[int, tuple[bytes, str]]] = {}
        self._task: asyncio.Task[None] | None = None

    def observe(self, text: str) -> bool:
        """Take a checkpoint note from anywhere: True if it is new here (then it is pushed
        on).  A second root for a size already seen is a split view: sent as evidence.

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
        return True

    async def tell(self, text: str) -> None:
        """Observe ``text`` and, if it is new, push it to every connected node."""
        try:
            fresh = self.observe(text)
        except BadRequest as exc:
            log.debug("a checkpoint not taken: %s", exc)
            return
        if fresh:
            await self.push(text)

    async def push(self, text: str) -> None:
        """``text`` to every connected node (one that does not answer is skipped)."""
        await asyncio.gather(*(self._peers.request(node, "gossip", "checkpoint", text.encode())
                               for node in self._peers.connected()), return_exceptions=True)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while True:
            try:
                await self.pull()
            except Exception:  # one bad round must not stop gossip
                log.exception("gossip round failed")
            await asyncio.sleep(PULL_INTERVAL)  # a periodic job, not a synchronisation

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
                if answer.status == 200:
                    await self.tell(str(json.loads(answer.message)["checkpoint"]))


def gossip_service(gossip: Gossip) -> Service:
    """``gossip.checkpoint``: a checkpoint someone saw (public: it proves itself)."""

    async def checkpoint(call: Call) -> dict[str, bool]:
        text = call.body.decode("utf-8", "replace")
        fresh = gossip.observe(text)
        if fresh:
            asyncio.ensure_future(gossip.push(text))  # on to the others; the caller goes
        return {"new": fresh}

    return Service("gossip", (Method(checkpoint, stoq="checkpoint",
                                     http="POST /gossip/checkpoint", raw=True,
                                     max_body=MAX_NOTE),))
