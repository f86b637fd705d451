"""Datagrams handled in turn across client networks, in bounded turns of the event loop.

One node, one event loop: whatever a UDP socket hands over is handled before the loop
reads its other sockets.  A flood on one socket (DNS queries, QUIC handshakes, QUIC
packets carrying hundreds of stoq/1 requests) would then delay every client of every
listener by the flood's backlog.  :class:`NetworkQueues` bounds that: the flood waits in
its own network's queue, and the loop moves on after a short turn.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from trustchain.dns.rrl import MAX_TRACKED, client_network

log = logging.getLogger("trustchain.udp")

#: Datagrams from one client network (the prefix rate limiting counts by: IPv4 /24, IPv6
#: /56) waiting to be answered; more from that network are dropped until it has fewer.
UDP_QUEUE_PER_NETWORK = 64
#: Datagrams a network may have waiting when they belong to a trusted peer (a QUIC
#: connection whose client proved a node certificate): a proposal is hundreds of
#: datagrams at once, and the federation's nodes may share one network.
UDP_QUEUE_TRUSTED = 4096
#: Longest run of UDP answers in one turn of the event loop, in seconds: then the loop
#: reads its other sockets (and more queries) before answering on.
UDP_TURN = 0.001
#: Datagrams read from the socket at the start of each turn, besides those the event loop
#: hands over (uvloop: 32 a turn), so that a flood's backlog in the kernel's buffer,
#: first come first served, moves into the queues of its networks, where it waits its
#: turn or is dropped.
UDP_READ_AHEAD = 256
#: At most one warning a minute about dropped datagrams.
DROP_WARNING_INTERVAL = 60.0


class NetworkQueues:
    """Datagrams handled in turn across client networks, in bounded turns of the loop.

    :meth:`put` queues a datagram under its client's network (IPv4 /24, IPv6 /56, as
    rate limiting counts them); each turn of the event loop first reads up to
    ``read_ahead`` more datagrams waiting in ``sock``, then calls ``handle`` on one
    datagram of each network in turn (round robin: a network served goes to the back of
    the line) for at most ``turn`` seconds.  A flood from a few networks, however much
    it sends, then delays the others by one datagram per flooding network, not by the
    flood's backlog, and never keeps the loop from its other sockets for more than a
    turn; when there is more than the node can handle, what it drops is the flood's:
    a network keeps at most ``per_network`` datagrams waiting.  Nothing here is DNS: a
    QUIC endpoint could put its datagrams through the same.
    """

    def __init__(self, handle: Callable[[bytes, Any], None], *, what: str,
                 sock: socket.socket | None = None, per_network: int = UDP_QUEUE_PER_NETWORK,
                 turn: float = UDP_TURN, read_ahead: int = UDP_READ_AHEAD) -> None:
        self._handle = handle
        self._what = what
        self._sock = sock
        self._per_network = per_network
        self._turn = turn
        self._read_ahead = read_ahead if sock is not None else 0
        self._waiting: dict[bytes, deque[tuple[bytes, Any]]] = {}
        self._networks: dict[str, bytes] = {}  # client address -> its network
        self._scheduled = False
        self._closed = False
        #: Datagrams dropped because their network had too many waiting, ever.
        self.dropped = 0
        self._warned_at: float | None = None
        self._dropped_since_warning = 0

    def put(self, data: bytes, addr: Any, *, trusted: bool = False) -> None:
        """Queue ``data`` from ``addr``; ``trusted`` datagrams (a node's) may fill their
        network's queue up to :data:`UDP_QUEUE_TRUSTED`, the others up to ``per_network``.
        Either way they wait in one queue, in the order they came: a connection's packets
        are never reordered (one that overtook its own earlier packets could close the
        connection before they were read)."""
        host = addr[0]
        network = self._networks.get(host)
        if network is None:
            if len(self._networks) >= MAX_TRACKED:
                self._networks.clear()  # a flood of addresses: start over rather than grow
            network = self._networks[host] = client_network(host)
        waiting = self._waiting.get(network)
        if waiting is None:
            waiting = self._waiting[network] = deque()
        elif len(waiting) >= (UDP_QUEUE_TRUSTED if trusted else self._per_network):
            self._drop(host)
            return
        waiting.append((data, addr))
        if not self._scheduled and not self._closed:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._run_turn)

    def close(self) -> None:
        self._closed = True
        self._waiting.clear()

    def _run_turn(self) -> None:
        try:
            if not self._closed:
                self._read_waiting()
                self._handle_waiting()
        finally:  # (a handler that raised loses its datagram, not the queues)
            if self._waiting and not self._closed:
                asyncio.get_running_loop().call_soon(self._run_turn)
            else:
                self._scheduled = False

    def _read_waiting(self) -> None:
        sock = self._sock
        for _ in range(self._read_ahead):
            try:
                data, addr = sock.recvfrom(65535)  # type: ignore[union-attr]
            except OSError:  # nothing more now (EAGAIN), or the socket is closing
                return
            self.put(data, addr)

    def _handle_waiting(self) -> None:
        until = time.monotonic() + self._turn
        waiting, handle, clock = self._waiting, self._handle, time.monotonic
        while waiting and not self._closed:
            if len(waiting) == 1:  # one network waiting (the common case): its queue in order
                ((network, queue),) = waiting.items()
                while queue and clock() < until:
                    data, addr = queue.popleft()
                    if not queue:
                        del waiting[network]
                    handle(data, addr)
                return
            network = next(iter(waiting))
            queue = waiting.pop(network)
            data, addr = queue.popleft()
            if queue:
                waiting[network] = queue
            handle(data, addr)
            if clock() >= until:
                return

    def _drop(self, host: str) -> None:
        self.dropped += 1
        self._dropped_since_warning += 1
        now = time.monotonic()
        if self._warned_at is None or now - self._warned_at >= DROP_WARNING_INTERVAL:
            log.warning("%s: more datagrams than the node handles: %d dropped from the "
                        "busiest client networks (the last from %s)", self._what,
                        self._dropped_since_warning, host)
            self._warned_at, self._dropped_since_warning = now, 0
