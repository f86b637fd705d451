"""The node's QUIC endpoint: one UDP socket per listen address, ALPN picks the protocol.

An asyncio adapter in the style of aioquic's ``asyncio/protocol.py``: each
connection's :class:`NodeQuicProtocol` feeds QUIC events to the sans-I/O
core chosen by ALPN (:class:`~trustchain.stoq.doq.DoqServer` for ``doq``,
:class:`~trustchain.stoq.connection.StoqServer` for ``stoq/1``), calls the
DNS handler or the router for what comes out, and transmits.

Authentication: the server presents its node certificate (chaining to the
genesis root) and asks every client for a certificate, which is optional.
A presented certificate must chain to the genesis root and name an identity
of this network, or the connection is closed with the TLS ``bad_certificate``
alert code; without one the client is anonymous and may use only public
methods (see ``trustchain.stoq.permissions``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from aioquic.asyncio.server import QuicServer
from aioquic.buffer import Buffer
from aioquic.quic.configuration import SMALLEST_MAX_DATAGRAM_SIZE
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import (
    HandshakeCompleted,
    ProtocolNegotiated,
    QuicEvent,
    StreamDataReceived,
)
from aioquic.quic.packet import QuicErrorCode, QuicPacketType, pull_quic_header
from aioquic.quic.retry import QuicRetryTokenHandler
from cryptography import x509

from transport import h3
from transport.fairness import NetworkQueues
from transport.sockets import bind_socket, format_address
from transport.tls import peer_certificates, request_client_certificates, server_configuration
from transport.transmit import CoalescedTransmit
from trustchain.dns.handler import DnsHandler, QueryContext
from trustchain.identity import Peer, PeerCertificateError, Role, TlsIdentity, identify_peer
from trustchain.stoq import doq
from trustchain.stoq.admission import Admission, Decision
from trustchain.stoq.connection import PushReceived, RequestReceived, StoqServer, StreamRejected
from trustchain.stoq.framing import ALPN as STOQ_ALPN
from trustchain.stoq.framing import DEFAULT_MAX_MESSAGE, ErrorCode, Status
from trustchain.stoq.router import Router

log = logging.getLogger("trustchain.quic")

#: ALPNs served (h3 when the node gives the endpoint its ASGI application).
ALPN_PROTOCOLS = [doq.ALPN, STOQ_ALPN, h3.ALPN]
#: TLS alert bad_certificate (42) as a QUIC CRYPTO_ERROR (RFC 9001 section 4.8).
BAD_CERTIFICATE = QuicErrorCode.CRYPTO_ERROR + 42


@dataclass
class QuicStats:
    """What the endpoint's connections did, ever (read by the node's metrics)."""

    #: Connections accepted: a connection state made for a client.
    accepted: int = 0
    #: ALPN -> client-initiated bidirectional streams opened.
    streams: dict[str, int] = field(default_factory=dict)


#: Told of each stoq/1 request or push answered: service, method, status (None: reset).
StoqObserver = Callable[[str, str, int | None], None]


@dataclass
class QuicServices:
    """What a connection needs from the node."""

    dns: DnsHandler
    router: Router
    root: x509.Certificate
    network: str
    clock: Callable[[], datetime]
    max_message: int = DEFAULT_MAX_MESSAGE
    max_queries_in_flight: int = 100
    #: Answers with several messages (zone transfers); DoQ uses it when given (RFC 9250 4.2).
    dns_stream: Callable[[bytes, QueryContext], list[bytes]] | None = None
    #: The REST API, served over HTTP/3 (ALPN h3) when given.
    app: h3.ASGIApp | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    stats: QuicStats = field(default_factory=QuicStats)
    #: Told of each stoq/1 answer (the node's metrics), when set.
    on_stoq: StoqObserver | None = None


class NodeQuicProtocol(CoalescedTransmit):
    def __init__(self, quic: QuicConnection, *, services: QuicServices, **kwargs: Any) -> None:
        super().__init__(quic, **kwargs)
        request_client_certificates(quic)
        self._services = services
        self._doq: doq.DoqServer | None = None
        self._stoq: StoqServer | None = None
        self._h3: h3.H3Server | None = None
        self.peer: Peer | None = None
        self._client: tuple[str, int] | None = None
        self._alpn = ""
        #: Client-initiated bidirectional streams seen so far (their ids are sequential).
        self._streams = 0
        services.stats.accepted += 1

    @property
    def client_host(self) -> str | None:
        return self._client[0] if self._client else None

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        if self._client is None:
            self._client = (str(addr[0]), int(addr[1]))
        super().datagram_received(data, addr)

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived) and event.stream_id % 4 == 0 \
                and event.stream_id // 4 >= self._streams:
            opened = event.stream_id // 4 + 1
            streams = self._services.stats.streams
            streams[self._alpn] = streams.get(self._alpn, 0) + opened - self._streams
            self._streams = opened
        if isinstance(event, ProtocolNegotiated):
            self._alpn = event.alpn_protocol or ""
            if event.alpn_protocol == doq.ALPN:
                self._doq = doq.DoqServer(
                    self._quic, max_streams_in_flight=self._services.max_queries_in_flight
                )
            elif event.alpn_protocol == STOQ_ALPN:
                self._stoq = StoqServer(
                    self._quic, max_message=self._services.max_message,
                    max_in_flight=self._services.max_queries_in_flight,
                )
            elif event.alpn_protocol == h3.ALPN and self._services.app is not None:
                self._h3 = h3.H3Server(
                    self._quic, self._services.app, transmit=self.transmit, client=self._client,
                    peer=lambda: self.peer,
                )
        elif isinstance(event, HandshakeCompleted):
            self._authenticate()
        if self._doq is not None:
            for query in self._doq.handle_event(event):
                self._answer_dns(query)
        elif self._h3 is not None:
            self._h3.handle_event(event)
        elif self._stoq is not None:
            for received in self._stoq.handle_event(event):
                if isinstance(received, RequestReceived):
                    self._dispatch(received)
                elif isinstance(received, PushReceived):
                    self._dispatch_push(received)
                elif isinstance(received, StreamRejected):
                    log.debug("stoq stream %d reset: %s", received.stream_id, received.reason)

    def _authenticate(self) -> None:
        leaf, chain = peer_certificates(self._quic)
        if leaf is None:
            return
        try:
            self.peer = identify_peer(
                leaf, chain, root=self._services.root, network=self._services.network,
                now=self._services.clock(),
            )
        except PeerCertificateError as exc:
            log.info("refused client %s: %s", self._client, exc,
                     extra={"client": self.client_host, "transport": "quic"})
            # A transport-level close (frame type given): a CRYPTO_ERROR, as TLS would send.
            self._quic.close(error_code=BAD_CERTIFICATE, frame_type=0, reason_phrase=str(exc))
            if self._stoq is not None:
                self._stoq.closed = True
            if self._doq is not None:
                self._doq.closed = True

    def _answer_dns(self, query: doq.QueryReceived) -> None:
        assert self._doq is not None
        context = QueryContext("doq", self._client)
        try:
            if self._services.dns_stream is not None:
                responses = self._services.dns_stream(query.query, context)
            else:
                single = self._services.dns(query.query, context)
                responses = [] if single is None else [single]
        except Exception:  # a handler bug must not take the connection down
            log.exception("DNS handler failed")
            self._doq.cancel(query.stream_id, doq.DoqErrorCode.INTERNAL_ERROR)
            return
        if not responses:
            self._doq.cancel(query.stream_id, doq.DoqErrorCode.PROTOCOL_ERROR)
        else:
            self._doq.send_responses(query.stream_id, responses)

    def _dispatch_push(self, received: PushReceived) -> None:
        """A push has no response: its handler runs, and a refusal is only logged."""
        request = received.request
        try:
            outcome = self._services.router.dispatch(request, self.peer)
        except Exception:
            log.exception("stoq push handler %s.%s failed", request.service, request.method)
            self._observe(request.service, request.method, None)
            return
        if isinstance(outcome, tuple):
            self._observe(request.service, request.method, outcome[0])
            if outcome[0] != Status.OK:
                log.debug("stoq push %s.%s from %s refused: %d", request.service,
                          request.method, self._client, outcome[0])
            return

        async def finish() -> None:
            try:
                status, _ = await outcome
            except Exception:
                log.exception("stoq push handler %s.%s failed", request.service,
                              request.method)
                self._observe(request.service, request.method, None)
            else:
                self._observe(request.service, request.method, status)

        task = asyncio.ensure_future(finish())
        self._services.tasks.add(task)
        task.add_done_callback(self._services.tasks.discard)

    def _dispatch(self, received: RequestReceived) -> None:
        assert self._stoq is not None
        stoq = self._stoq
        service, method = received.request.service, received.request.method
        try:
            outcome = self._services.router.dispatch(received.request, self.peer)
        except Exception:
            log.exception("stoq handler %s.%s failed", service, method, extra={
                "client": self.client_host, "transport": "stoq", "method": f"{service}.{method}"})
            stoq.abort(received.stream_id, ErrorCode.INTERNAL_ERROR)
            self._observe(service, method, None)
            return
        if isinstance(outcome, tuple):
            stoq.send_response(received.stream_id, *outcome)
            self._observe(service, method, outcome[0])
            return

        async def finish() -> None:
            try:
                status, message = await outcome
            except Exception:
                log.exception("stoq handler failed", extra={
                    "client": self.client_host, "transport": "stoq", "method": f"{service}.{method}"})
                stoq.abort(received.stream_id, ErrorCode.INTERNAL_ERROR)
                self._observe(service, method, None)
            else:
                stoq.send_response(received.stream_id, status, message)
                self._observe(service, method, status)
            self.transmit_soon()

        task = asyncio.ensure_future(finish())
        self._services.tasks.add(task)
        task.add_done_callback(self._services.tasks.discard)


    def _observe(self, service: str, method: str, status: int | None) -> None:
        if self._services.on_stoq is not None:
            self._services.on_stoq(service, method, status)


class GuardedQuicServer(QuicServer):
    """aioquic's server, with :class:`~trustchain.stoq.admission.Admission` in front.

    aioquic's Retry is all-or-nothing; here it is switched on per Initial
    packet by the admission policy, and connections beyond the per-address
    cap are dropped before any handshake work.
    """

    def __init__(self, *, admission: Admission, sock: socket.socket | None = None,
                 **kwargs: Any) -> None:
        super().__init__(retry=True, **kwargs)
        self._retry_tokens: QuicRetryTokenHandler | None = self._retry
        self._admission = admission
        # Handshakes and packets full of requests are the costly datagrams of a flood: in
        # turn across client networks, so that a flood delays others by a datagram each.
        self._queues = NetworkQueues(self._receive, what="quic", sock=sock)
        self.retries = 0
        self.refused = 0

    @property
    def dropped(self) -> int:
        """Datagrams dropped because their network had too many waiting, ever."""
        return self._queues.dropped

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        data = data.encode() if isinstance(data, str) else data
        self._queues.put(data, addr, trusted=self._of_a_node(data))

    def _of_a_node(self, data: bytes) -> bool:
        """Whether ``data`` is a short-header packet of a connection whose client proved a
        node certificate: the federation's own traffic (a proposal is hundreds of
        datagrams at once) may queue far beyond a stranger's share; QUIC's flow control
        bounds what a node may send."""
        if not data or data[0] & 0x80:  # a long header: a handshake, in the queues
            return False
        protocol = self._protocols.get(data[1:1 + self._configuration.connection_id_length])
        return isinstance(protocol, NodeQuicProtocol) and protocol.peer is not None \
            and protocol.peer.role is Role.NODE

    @property
    def open_connections(self) -> int:
        """Connections open now (aioquic keys each by all its connection ids)."""
        return len(set(self._protocols.values()))

    def close(self) -> None:
        self._queues.close()
        super().close()

    def _receive(self, data: bytes, addr: Any) -> None:
        try:
            header = pull_quic_header(
                Buffer(data=data), host_cid_length=self._configuration.connection_id_length
            )
        except ValueError:
            return
        if (
            header.destination_cid not in self._protocols
            and header.packet_type == QuicPacketType.INITIAL
            and header.version in self._configuration.supported_versions
            and len(data) >= SMALLEST_MAX_DATAGRAM_SIZE
        ):
            host = addr[0]
            live = sum(
                1 for p in set(self._protocols.values())
                if isinstance(p, NodeQuicProtocol) and p.client_host == host
            )
            decision = self._admission.decide(
                now=self._loop.time(), has_token=bool(header.token), connections_from_address=live
            )
            if decision is Decision.REFUSE:
                self.refused += 1
                log.debug("refused a connection from %s: %d already open", host, live)
                return
            # aioquic's own __init__ stores None here when Retry is off.
            retry = self._retry_tokens if decision is Decision.RETRY else None
            self._retry = retry  # type: ignore[assignment]
            if decision is Decision.RETRY and not header.token:
                self.retries += 1
        super().datagram_received(data, addr)


class QuicEndpoint:
    """The node's QUIC listeners (one per listen address)."""

    def __init__(
        self, services: QuicServices, identity: TlsIdentity, addresses: list[str], port: int,
        *, idle_timeout: float = 60.0, retry_above_per_second: int = 100,
        max_connections_per_address: int = 64,
    ) -> None:
        self._services = services
        self._admission = Admission(
            retry_above_per_second=retry_above_per_second,
            max_per_address=max_connections_per_address,
        )
        self._alpns = [a for a in ALPN_PROTOCOLS if a != h3.ALPN or services.app is not None]
        self._configuration = server_configuration(
            identity, root=services.root, alpn_protocols=self._alpns, idle_timeout=idle_timeout,
        )
        self._addresses = addresses
        self._port = port
        self._servers: list[GuardedQuicServer] = []
        self.bound: list[tuple[str, int]] = []

    async def start(self) -> list[tuple[str, int]]:
        loop = asyncio.get_running_loop()
        for address in self._addresses:
            sock = bind_socket(address, self._port, socket.SOCK_DGRAM)
            _, server = await loop.create_datagram_endpoint(
                partial(
                    GuardedQuicServer,
                    admission=self._admission,
                    sock=sock,
                    configuration=self._configuration,
                    create_protocol=partial(NodeQuicProtocol, services=self._services),
                ),
                sock=sock,
            )
            self._servers.append(server)
            bound = sock.getsockname()[:2]
            self.bound.append(bound)
            log.info("listening: quic on %s/udp (%s)", format_address(*bound),
                     ", ".join(self._alpns))
        return self.bound

    @property
    def stats(self) -> QuicStats:
        return self._services.stats

    def observe_stoq(self, observer: StoqObserver) -> None:
        """Tell ``observer`` of each stoq/1 answer from now on."""
        self._services.on_stoq = observer

    def open_connections(self) -> int:
        return sum(server.open_connections for server in self._servers)

    def retries(self) -> int:
        """Retry packets sent, ever."""
        return sum(server.retries for server in self._servers)

    def refused(self) -> int:
        """New connections refused for their address's open ones, ever."""
        return sum(server.refused for server in self._servers)

    def dropped(self) -> int:
        """Datagrams dropped unread (their network had too many waiting), ever."""
        return sum(server.dropped for server in self._servers)

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        pending = list(self._services.tasks)
        if pending:
            await asyncio.wait(pending, timeout=5)
