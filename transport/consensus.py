"""The consensus on the wire: one :class:`~trustchain.consensus.tendermint.Tendermint`
driven over stoq/1, the same class the simulation drives.

The adapter feeds the core what arrives and the time, arms its timer, and
carries out what it returns, in this order for each output:

1. every decided block is stored with its commit certificate, and every
   message this node signed is stored (``synchronous=FULL``: on disk when
   the call returns) -- *before* anything is sent, so a validator that
   crashes and restarts knows every vote it may have sent and its
   :class:`~trustchain.consensus.signer.SigningGuard` never signs another
   for the same height, round and step (CometBFT's last-sign state);
2. then messages go out as stoq/1 pushes (``consensus.message``): broadcasts
   to every connected node, ``send`` entries to the one node named.

Catch-up: a message from a later height means this node is behind; it asks
that node for the committed blocks it lacks (``consensus.blocks``) and feeds
each to the core as a :class:`~trustchain.consensus.messages.Decision`, which
the core accepts only if its commit certificate verifies as more than 2/3 of
the stake of the validator set of that height.  A node that sends a block
that does not verify is logged and not asked again until it reconnects.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from transport.client import ConnectError, StreamError
from transport.peers import Peers
from trustchain.consensus.codec import decode_message, encode_message
from trustchain.consensus.evidence import DuplicateVote, Evidence, evidence_body
from trustchain.consensus.ledger import Ledger
from trustchain.consensus.messages import Decision, Proposal, Vote
from trustchain.consensus.operations import Entry, Operation, OperationKind, decode_entry
from trustchain.consensus.proofs import ProofError
from trustchain.consensus.tendermint import Committed, Output, Tendermint
from trustchain.errors import (
    BadRequest,
    CanonicalJSONError,
    ConsensusCodecError,
    ForkError,
    Unavailable,
)
from trustchain.identity import Peer
from trustchain.stoq.framing import Status
from trustchain.storage.consensus import ConsensusStore

log = logging.getLogger("trustchain.consensus")

SERVICE = "consensus"
#: Blocks asked for, and answered, per catch-up request.
BLOCKS_PER_REQUEST = 32
#: Bytes of blocks in one catch-up answer, at most (a stoq/1 message is 1 MiB by default;
#: the node that catches up asks again until it has them all).
MAX_ANSWER_BYTES = 512 * 1024
#: How often a validator sends its messages of the current height again (see resend).
RESEND_SECONDS = 1.0
#: Operations waiting for a block, at most (more are refused with 503).
MAX_POOL = 10_000
#: Evidence kept for ``federation status``.
KEPT_EVIDENCE = 100


class ConsensusRunner:
    def __init__(self, engine: Tendermint, ledger: Ledger, store: ConsensusStore, peers: Peers,
                 *, wall: Callable[[], datetime],
                 on_commit: Callable[[Committed], None] = lambda _c: None) -> None:
        self.engine = engine
        self.ledger = ledger
        self._store = store
        self._peers = peers
        self._wall = wall
        #: Called with each committed block, after it is stored (the application's hook).
        self.on_commit = on_commit
        self._timer: asyncio.Handle | None = None
        self._timer_at = 0.0
        self._resending: asyncio.TimerHandle | None = None
        self._last_resend: tuple[int, int, str] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._catching_up: asyncio.Task[None] | None = None
        self._distrusted: set[str] = set()
        self.evidence: list[Evidence] = []
        #: Evidence found since start (``evidence`` keeps only the latest).
        self.evidence_found = 0
        #: Told, for each operation committed, the seconds since it joined this node's
        #: pool (the node's metrics), when set.
        self.on_commit_latency: Callable[[float], None] | None = None
        #: Operation digest -> loop time it joined the pool (only while observed).
        self._pooled_at: dict[bytes, float] = {}
        #: Operation digest -> who waits for its block (:meth:`committed_height`).
        self._waiting: dict[bytes, list[asyncio.Future[int]]] = {}
        #: Operations submitted here that the other nodes have not been told of yet.
        self._outbox: list[bytes] = []
        self.last_commit: datetime | None = None
        #: Why this node stopped taking part (a fork: two blocks for one height), if it did.
        self.halted: str | None = None

    # --- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._carry_out(self.engine.start(self._loop.time()))
        self._resending = self._loop.call_later(RESEND_SECONDS, self._resend)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._resending is not None:
            self._resending.cancel()
        if self._catching_up is not None:
            self._catching_up.cancel()

    # --- inputs -----------------------------------------------------------------------

    def receive(self, data: bytes, peer: Peer | None) -> None:
        """A ``consensus.message`` push from ``peer``.

        :raises BadRequest: the message is not a consensus message.
        """
        try:
            message = decode_message(data)
        except ConsensusCodecError as exc:
            raise BadRequest(f"not a consensus message: {exc}") from None
        assert self._loop is not None
        behind = message.height > self.engine.height and not isinstance(message, Decision)
        self._carry_out(self.engine.receive(message, self._loop.time()))
        if behind and peer is not None:
            self.catch_up(peer.name)

    def submit(self, entry: Entry, *, gossip: bool = True) -> bool:
        """Queue an operation for a block (False: it already waits), tell every connected
        node (a node proposes only from its own pool), and start an idle federation.

        :raises Unavailable: the pool is full.
        """
        if entry.operation.digest in self.ledger.pool:
            return False
        if len(self.ledger.pool) >= MAX_POOL:
            raise Unavailable(f"{MAX_POOL} operations already wait for a block")
        try:  # before the pool: one that cannot be encoded would break every proposal
            raw = entry.encode()
        except CanonicalJSONError as exc:
            raise BadRequest(f"not an operation: {exc}") from None
        self.ledger.submit(entry)
        if self.on_commit_latency is not None and self._loop is not None:
            self._pooled_at[entry.operation.digest] = self._loop.time()
        if gossip:
            if not self._outbox:
                assert self._loop is not None
                self._loop.call_soon(self._gossip)
            self._outbox.append(raw)
        self.wake()
        return True

    def _gossip(self) -> None:
        """Tell every connected node of the operations submitted since the last time, many
        to a push (one stream each would cost more than checking them)."""
        outbox, self._outbox = self._outbox, []
        batch: list[bytes] = []
        size = 0
        for raw in outbox:
            if batch and size + len(raw) + 1 > MAX_ANSWER_BYTES:
                self._peers.push(SERVICE, "operation", b"\n".join(batch))
                batch, size = [], 0
            batch.append(raw)
            size += len(raw) + 1
        if batch:
            self._peers.push(SERVICE, "operation", b"\n".join(batch))

    async def committed_height(self, entry: Entry, timeout: float) -> int:
        """Submit ``entry`` (checked first) and wait for the height of the block that
        carries it.

        :raises BadRequest: the entry would not be accepted in a block.
        :raises Unavailable: not committed within ``timeout`` seconds (it may still be).
        """
        try:
            self.ledger.check(entry)
        except ProofError as exc:
            raise BadRequest(str(exc)) from None
        digest = entry.operation.digest
        assert self._loop is not None
        waiter: asyncio.Future[int] = self._loop.create_future()
        self._waiting.setdefault(digest, []).append(waiter)
        try:
            self.submit(entry)
            return await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            raise Unavailable(f"not committed within {timeout:.0f} s; it may still be "
                              "(see federation status)") from None
        finally:
            waiters = self._waiting.get(digest, [])
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters:
                self._waiting.pop(digest, None)

    def receive_operation(self, data: bytes) -> None:
        """A ``consensus.operation`` push: another node's pool gained these operations
        (one or more, in canonical JSON, one a line: canonical JSON holds no newline).

        :raises BadRequest: a line that is not an operation in canonical form (the lines
            before it are taken).
        """
        for line in data.split(b"\n"):
            try:
                entry = decode_entry(line)
            except ProofError as exc:
                raise BadRequest(str(exc)) from None
            self.submit(entry, gossip=False)

    def wake(self) -> None:
        """An operation joined the pool: an idle federation starts the next height."""
        assert self._loop is not None
        self._carry_out(self.engine.wake(self._loop.time()))

    def peer_connected(self, node_id: str) -> None:
        """A new connection: send that node this height's messages, and ask it for blocks
        this node may lack."""
        for message in self.engine.own_messages():
            self._peers.push(SERVICE, "message", encode_message(message), to=node_id)
        self.catch_up(node_id)

    def _resend(self) -> None:
        """Send this round's own messages again when a whole RESEND_SECONDS passed without
        progress (only then: under loss, copies sent regardless queue ahead of new votes).  Tendermint assumes
        every message of a correct validator reaches every other eventually (CometBFT's
        reactors gossip until peers have them); pushes on a connection that just died
        are lost, and without this the validators can wait for each other for ever
        (found by the perturbation harness: a 2|2 partition longer than the idle timeout,
        and two restarts in a row)."""
        if self.halted is not None:
            return
        engine = self.engine
        where = (engine.height, engine.round, engine.step)
        if where == self._last_resend:  # no progress for a whole period: send again
            for message in engine.own_messages():
                if message.round == engine.round:  # earlier rounds' votes cannot help now
                    self._peers.push(SERVICE, "message", encode_message(message))
        self._last_resend = where
        assert self._loop is not None
        self._resending = self._loop.call_later(RESEND_SECONDS, self._resend)

    def _tick(self) -> None:
        self._timer = None
        assert self._loop is not None
        try:
            self._carry_out(self.engine.tick(self._loop.time()))
        finally:  # a failure is logged by the loop; the rounds must go on regardless
            self._arm()

    # --- outputs ----------------------------------------------------------------------

    def _carry_out(self, out: Output) -> None:
        if self.halted is not None:
            return
        height_before = self.engine.height
        own = [m for m in out.broadcast
               if isinstance(m, (Vote, Proposal)) and m.sender == self.engine.node_id]
        for committed in out.committed:  # first: the blocks, with their certificates
            try:
                self._store_block(committed)
            except ForkError as exc:
                # Two blocks with valid certificates for one height: more than a third of
                # the stake equivocated.  Nothing this node does next can be trusted.
                self.halted = f"fork at height {committed.block.height}: {exc}"
                log.critical("consensus halted: %s", self.halted)
                self.stop()
                return
        for message in own:
            if isinstance(message, Proposal):
                self._store.record_own(message, message.block)
            else:
                self._store.record_own(message, self.engine.known_block(message.block))
        if self.engine.height != height_before:
            self._store.prune_own(self.engine.height - 1)
        for outgoing in out.broadcast:  # then, durable, they may leave the node
            self._peers.push(SERVICE, "message", encode_message(outgoing))
        for node_id, addressed in out.send:
            self._peers.push(SERVICE, "message", encode_message(addressed), to=node_id)
        for evidence in out.evidence:
            self._report(evidence)
        for committed in out.committed:
            self.on_commit(committed)
            if self._waiting:
                self._wake_waiters(committed)
            if self._pooled_at:
                self._observe_latency(committed)
        self._arm()

    def _report(self, evidence: Evidence) -> None:
        """Keep it for ``status``; a duplicate vote becomes an ``evidence`` operation, which
        removes its offender from the validator set once committed."""
        first = evidence.first
        log.warning("evidence: %s by %s at height %d round %d", type(evidence).__name__,
                    evidence.offender, first.height, first.round)
        self.evidence = [*self.evidence, evidence][-KEPT_EVIDENCE:]
        self.evidence_found += 1
        if isinstance(evidence, DuplicateVote):
            try:
                self.submit(Entry(operation=Operation(
                    kind=OperationKind.EVIDENCE, requester=self.engine.node_id,
                    body=evidence_body(evidence))))
            except Unavailable:
                log.warning("evidence not submitted: the operation pool is full")

    def _observe_latency(self, committed: Committed) -> None:
        assert self._loop is not None
        now = self._loop.time()
        for raw in committed.block.operations:
            since = self._pooled_at.pop(decode_entry(raw).operation.digest, None)
            if since is not None and self.on_commit_latency is not None:
                self.on_commit_latency(now - since)
        if len(self._pooled_at) > len(self.ledger.pool):  # some left the pool uncommitted
            self._pooled_at = {d: t for d, t in self._pooled_at.items() if d in self.ledger.pool}

    def _wake_waiters(self, committed: Committed) -> None:
        for raw in committed.block.operations:
            digest = decode_entry(raw).operation.digest
            for waiter in self._waiting.pop(digest, []):
                if not waiter.done():
                    waiter.set_result(committed.block.height)

    def _store_block(self, committed: Committed) -> None:
        self.last_commit = self._wall()
        self._store.add_block(committed.decision(self.engine.node_id),
                              committed_at=self.last_commit.isoformat())

    def _arm(self) -> None:
        if self.halted is not None:
            return
        deadline = self.engine.next_deadline()
        if self._timer is not None:
            if deadline is not None and self._timer_at == deadline:
                return
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            assert self._loop is not None
            # The deadline is kept here: for one already past, uvloop's call_at returns a
            # plain Handle, without when() (found under load: every push handler failed).
            self._timer_at = deadline
            self._timer = self._loop.call_at(deadline, self._tick)

    # --- catch-up ---------------------------------------------------------------------

    def catch_up(self, node_id: str) -> None:
        if node_id in self._distrusted:
            return
        if self._catching_up is None or self._catching_up.done():
            self._catching_up = asyncio.ensure_future(self._fetch_from(node_id))

    async def _fetch_from(self, node_id: str) -> None:
        while True:
            start = self.engine.height
            try:
                response = await self._peers.request(
                    node_id, SERVICE, "blocks",
                    json.dumps({"from": start, "limit": BLOCKS_PER_REQUEST}).encode())
            except (ConnectError, StreamError) as exc:
                log.debug("catch-up from %s: %s", node_id, exc)
                return
            if response.status != Status.OK:
                log.info("catch-up from %s refused: %d", node_id, response.status)
                return
            try:
                blocks = [decode_message(base64.b64decode(b, validate=True))
                          for b in json.loads(response.message)["blocks"]]
            except (ValueError, KeyError, TypeError, ConsensusCodecError) as exc:
                self._distrust(node_id, f"an unreadable blocks answer ({exc})")
                return
            if not blocks:
                return
            for block in blocks:
                if not isinstance(block, Decision) or block.height != self.engine.height:
                    if isinstance(block, Decision) and block.height < self.engine.height:
                        continue  # committed meanwhile
                    self._distrust(node_id, "a block out of order")
                    return
                before = self.engine.height
                assert self._loop is not None
                self._carry_out(self.engine.receive(block, self._loop.time()))
                if self.engine.height == before:
                    self._distrust(node_id, f"block {block.height} whose commit certificate "
                                            "does not verify")
                    return
            log.info("caught up from node %s: heights %d to %d", node_id, start,
                     self.engine.height - 1)

    def _distrust(self, node_id: str, what: str) -> None:
        log.warning("node %s sent %s; not asking it for blocks again until it reconnects",
                    node_id, what)
        self._distrusted.add(node_id)

    def forgive(self, node_id: str) -> None:
        self._distrusted.discard(node_id)

    # --- what other nodes ask ---------------------------------------------------------

    def blocks(self, start: int, limit: int) -> dict[str, Any]:
        """Up to ``limit`` committed blocks from ``start``, and fewer where they would not
        fit in one answer (at least one: a block always fits, see ``MAX_BLOCK_BYTES``)."""
        limit = max(0, min(limit, BLOCKS_PER_REQUEST))
        out: list[str] = []
        size = 0
        for decision in self._store.blocks(start, limit):
            encoded = base64.b64encode(encode_message(decision)).decode()
            if out and size + len(encoded) > MAX_ANSWER_BYTES:
                break
            size += len(encoded)
            out.append(encoded)
        return {"blocks": out}

    def status(self) -> dict[str, Any]:
        engine = self.engine
        committed = engine.height - 1
        connected = self._peers.connected()
        return {
            "node_id": engine.node_id,
            "chain_id": engine.chain_id,
            "height": committed,
            "hash": engine.previous.hex() if committed else None,
            "last_block_time": self._store.committed_at(committed) if committed else None,
            "round": engine.round,
            "halted": self.halted,
            "step": engine.step,
            "validators": [{"node_id": node_id, "stake": v.stake,
                            "connected": node_id in connected or node_id == engine.node_id}
                           for node_id, v in sorted(engine.validators.items())],
            "total_stake": sum(v.stake for v in engine.validators.values()),
            "peers": [{"address": link.address, "node_id": link.node_id,
                       "connected": link.protocol is not None}
                      for link in self._peers.links()],
            "evidence": [{"kind": type(e).__name__, "offender": e.offender,
                          "height": e.first.height, "round": e.first.round}
                         for e in self.evidence],
            "members": [{"node_id": node_id, "address": body["address"], "stake": body["stake"]}
                        for node_id, body in sorted(self.ledger.members.items())],
            "slashed": sorted(self.ledger.slashed),
            "networks": len(self.ledger.networks),
            "parameters": self.ledger.parameters.model_dump(),
            "pool": len(self.ledger.pool),
        }
