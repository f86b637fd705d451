"""Outgoing QUIC connections to the other nodes of the federation.

One :class:`Peers` keeps a stoq/1 connection open to each configured address,
with this node's certificate (mutual TLS), and learns who is at the other end
from the certificate the server presents: a node of this network, by its node
id.  A connection that fails or closes is opened again after a back-off that
doubles up to :data:`MAX_BACKOFF`.  Pushes to a peer that is not connected
are dropped: the consensus tolerates lost messages (timeouts, and catch-up
from stored blocks), and a queue would only deliver stale votes late.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from transport.client import ConnectError, NodeClientProtocol, connect
from trustchain.identity import PeerCertificateError, Role, TlsIdentity, identify_peer
from trustchain.stoq.framing import Response

log = logging.getLogger("trustchain.peers")

MIN_BACKOFF = 0.25
MAX_BACKOFF = 5.0
CONNECT_TIMEOUT = 5.0
#: A connection that hears nothing for this long is closed and opened again: a peer
#: whose process died (and perhaps restarted) is noticed in seconds, not at QUIC's 30 s
#: (not fewer: on a lossy link a shorter one closed live connections, losing their queue).
IDLE_TIMEOUT = 10.0
#: A PING this often keeps a live connection from being idle.
KEEPALIVE = 1.0


def parse_address(text: str) -> tuple[str, int]:
    """``[ADDR]:PORT`` or ``HOST:PORT`` as (host, port)."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


@dataclass
class Link:
    address: str
    node_id: str | None = None
    protocol: NodeClientProtocol | None = None
    connected_at: datetime | None = None


class Peers:
    def __init__(self, addresses: list[str], *, own_id: str, identity: TlsIdentity,
                 root: x509.Certificate, network: str, server_name: str,
                 clock: Callable[[], datetime],
                 on_connect: Callable[[str], None] = lambda _node: None) -> None:
        self._links = [Link(a) for a in addresses]
        self._own_id = own_id
        self._identity = identity
        self._root = root
        self._network = network
        self._server_name = server_name
        self._clock = clock
        self._on_connect = on_connect
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False

    def start(self) -> None:
        self._started = True
        self._tasks = [asyncio.ensure_future(self._keep(link)) for link in self._links]

    def add(self, address: str) -> bool:
        """Connect to ``address`` too (a node admitted by consensus), unless a link to it
        exists already; whether it was new.  A link to this node itself ends once its
        certificate names this node."""
        if any(link.address == address for link in self._links):
            return False
        link = Link(address)
        self._links.append(link)
        if self._started:
            self._tasks.append(asyncio.ensure_future(self._keep(link)))
        return True

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._started = False

    def connected(self) -> dict[str, Link]:
        """Node id -> its link, for the peers connected now."""
        return {link.node_id: link for link in self._links
                if link.node_id is not None and link.protocol is not None}

    def links(self) -> list[Link]:
        return list(self._links)

    def push(self, service: str, method: str, message: bytes, to: str | None = None) -> int:
        """Push to one node (``to``) or to every connected node; how many it went to."""
        sent = 0
        for node_id, link in self.connected().items():
            if to is not None and node_id != to:
                continue
            assert link.protocol is not None
            try:
                link.protocol.push(service, method, message)
                sent += 1
            except ConnectError:
                pass  # closing: _keep reconnects
        return sent

    async def request(self, node_id: str, service: str, method: str,
                      message: bytes = b"") -> Response:
        """:raises ConnectError: the node is not connected or the connection closed."""
        link = self.connected().get(node_id)
        if link is None or link.protocol is None:
            raise ConnectError(f"node {node_id} is not connected")
        return await link.protocol.request(service, method, message)

    async def _keep(self, link: Link) -> None:
        host, port = parse_address(link.address)
        backoff = MIN_BACKOFF
        while True:
            try:
                async with connect(host, port, root=self._root, server_name=self._server_name,
                                   identity=self._identity, timeout=CONNECT_TIMEOUT,
                                   idle_timeout=IDLE_TIMEOUT) as protocol:
                    node_id = self._identify(protocol)
                    if node_id == self._own_id:
                        log.warning("peer %s is this node itself; not using it", link.address)
                        return
                    if node_id is None:
                        log.warning("peer %s is not another node of this network; not using it",
                                    link.address)
                    else:
                        link.node_id, link.protocol = node_id, protocol
                        link.connected_at = self._clock()
                        backoff = MIN_BACKOFF
                        log.info("connected to node %s at %s", node_id, link.address)
                        self._on_connect(node_id)
                        pinging = asyncio.ensure_future(_keep_alive(protocol))
                        try:
                            await protocol.wait_closed()
                        finally:
                            pinging.cancel()
                        log.info("connection to node %s at %s closed", node_id, link.address)
            except ConnectError as exc:
                log.debug("peer %s: %s", link.address, exc)
            finally:
                link.protocol = None
            await asyncio.sleep(backoff)  # back-off before reconnecting, not synchronisation
            backoff = min(2 * backoff, MAX_BACKOFF)

    def _identify(self, protocol: NodeClientProtocol) -> str | None:
        leaf, chain = protocol.server_certificates()
        if leaf is None:
            return None
        try:
            peer = identify_peer(leaf, chain, root=self._root, network=self._network,
                                 now=self._clock())
        except PeerCertificateError as exc:
            log.warning("peer certificate refused: %s", exc)
            return None
        return peer.name if peer.role is Role.NODE else None


async def _keep_alive(protocol: NodeClientProtocol) -> None:
    while True:
        protocol.keepalive()
        await asyncio.sleep(KEEPALIVE)  # a keep-alive period, not synchronisation
