"""Classic DNS transports on the DNS port: UDP, and TCP with pipelining.

Thin adapters: each query goes to the one DNS handler with its transport in
the context (UDP answers are truncated to the client's buffer; TCP answers
are not).  TCP (RFC 7766): a 2-octet length prefix per message, any number
of queries per connection answered as they are read (pipelining), the
connection closed after ``idle_timeout`` seconds without a complete query or
when the client sends a length of 0.  UDP: queries are read ahead into one queue
per client network and answered in turn across networks, so that a flood from a few
networks delays nobody else by more than an answer per flooding network, and what the
node cannot answer is the flood's; then response rate limiting (``dns_rate_limit``)
decides whether each answer goes out, slips (TC) or is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.tsig

from transport.fairness import NetworkQueues
from transport.sockets import bind_socket, format_address
from trustchain.dns.handler import DnsHandler, QueryContext
from trustchain.dns.rrl import Action, ResponseRateLimiter, truncated
from trustchain.dns.zone import Secondary, Zone
from trustchain.errors import ListenError

log = logging.getLogger("trustchain.dns")

#: Receive buffer asked for on each UDP DNS socket, as busy DNS servers are configured
#: (NSD's and Unbound's so-rcvbuf): room for a few thousand queries, so that a pause of
#: the event loop (a garbage collection, a busy CPU) under a flood delays queries instead
#: of dropping them, legitimate ones among them.  The kernel caps it at net.core.rmem_max.
UDP_RECEIVE_BUFFER = 4 << 20


@dataclass
class RrlCounts:
    """What response rate limiting withheld, ever (read by the node's metrics)."""

    dropped: int = 0
    slipped: int = 0


class UdpDnsProtocol(asyncio.DatagramProtocol):
    """Queries go through :class:`NetworkQueues` (``sock``: the transport's socket, read
    ahead of the event loop), then the handler, then rate limiting."""

    def __init__(self, handler: DnsHandler, limiter: ResponseRateLimiter | None = None,
                 sock: socket.socket | None = None, counts: RrlCounts | None = None) -> None:
        self._handler = handler
        self._limiter = limiter
        self._counts = counts if counts is not None else RrlCounts()
        self._transport: asyncio.DatagramTransport | None = None
        self._queues = NetworkQueues(self._answer, what="dns/udp", sock=sock)

    @property
    def dropped(self) -> int:
        """Queries dropped because their network had too many waiting, ever."""
        return self._queues.dropped

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._queues.put(data, addr)

    def _answer(self, data: bytes, addr: Any) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("udp query from %s: %s", addr[:2], data.hex())
        try:
            response = self._handler(data, QueryContext("udp", (str(addr[0]), int(addr[1]))))
        except Exception:  # a handler bug must not stop the server
            log.exception("DNS handler failed on a UDP query")
            return
        if response is None or self._transport is None:
            return
        if self._limiter is not None:
            action = self._limiter.decide(addr[0], data, response,
                                          asyncio.get_running_loop().time())
            if action is Action.DROP:
                self._counts.dropped += 1
                return
            if action is Action.SLIP:
                self._counts.slipped += 1
                slipped = truncated(data)
                if slipped is None:
                    return
                response = slipped
        self._transport.sendto(response, addr)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._queues.close()

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)


#: On streams a query may have several response messages (zone transfers).
StreamDnsHandler = Callable[[bytes, QueryContext], list[bytes]]


class TcpDnsProtocol(asyncio.Protocol):
    def __init__(self, handler: StreamDnsHandler, idle_timeout: float) -> None:
        self._handler = handler
        self._idle_timeout = idle_timeout
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._client: tuple[str, int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self._client = (str(peer[0]), int(peer[1])) if peer else None
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._idle_timeout, self._idle)

    def _idle(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= 2:
            size = int.from_bytes(self._buffer[:2], "big")
            if size == 0:
                self._idle()
                return
            if len(self._buffer) < 2 + size:
                return
            query = bytes(self._buffer[2 : 2 + size])
            del self._buffer[: 2 + size]
            self._arm()
            try:
                responses = self._handler(query, QueryContext("tcp", self._client))
            except Exception:
                log.exception("DNS handler failed on a TCP query")
                self._idle()
                return
            if not responses:
                self._idle()  # nothing sensible to say: close, as NSD does
                return
            assert self._transport is not None
            self._transport.write(b"".join(len(r).to_bytes(2, "big") + r for r in responses))

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()


class DnsListener:
    """UDP and TCP on the same port for every listen address."""

    def __init__(self, handler: DnsHandler, stream_handler: StreamDnsHandler,
                 addresses: list[str], port: int, *, idle_timeout: float = 10.0,
                 rate_limit: int = 0, slip: int = 2) -> None:
        self._handler = handler
        self._limiter = (ResponseRateLimiter(responses_per_second=rate_limit, slip=slip)
                         if rate_limit else None)
        self._stream_handler = stream_handler
        self._addresses = addresses
        self._port = port
        self._idle_timeout = idle_timeout
        self._closers: list[Any] = []
        #: What rate limiting withheld on every address, ever.
        self.rrl = RrlCounts()
        self._udp: list[UdpDnsProtocol] = []

    @property
    def udp_dropped(self) -> int:
        """UDP queries dropped unread (their network had too many waiting), ever."""
        return sum(protocol.dropped for protocol in self._udp)

    async def start(self) -> list[tuple[str, int]]:
        loop = asyncio.get_running_loop()
        bound = []
        for address in self._addresses:
            udp, tcp, port = self._bind_pair(address)
            transport, protocol = await loop.create_datagram_endpoint(
                partial(UdpDnsProtocol, self._handler, self._limiter, udp, self.rrl), sock=udp)
            self._udp.append(protocol)
            server = await loop.create_server(
                lambda: TcpDnsProtocol(self._stream_handler, self._idle_timeout), sock=tcp,
                backlog=1024)
            self._closers += [transport, server]
            for proto in ("udp", "tcp"):
                log.info("listening: dns on %s/%s", format_address(address, port), proto)
            bound.append((address, port))
        return bound

    def _bind_pair(self, address: str) -> tuple[socket.socket, socket.socket, int]:
        """UDP and TCP on one port.  With port 0, TCP takes the port UDP got; if
        that TCP port is busy (an outgoing connection may hold it), try another."""
        attempts = 1 if self._port else 20
        while True:
            attempts -= 1
            udp = bind_socket(address, self._port, socket.SOCK_DGRAM)
            with contextlib.suppress(OSError):  # a smaller buffer is no reason not to serve
                udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
            port = udp.getsockname()[1]
            try:
                return udp, bind_socket(address, port, socket.SOCK_STREAM), port
            except ListenError:
                udp.close()
                if attempts == 0:
                    raise

    async def stop(self) -> None:
        for closer in self._closers:
            closer.close()


class Notifier:
    """Sends NOTIFY (RFC 1996) to secondaries after a change, TSIG-signed, with retries."""

    def __init__(self, *, attempts: int = 3, timeout: float = 2.0) -> None:
        self._attempts = attempts
        self._timeout = timeout
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, zone: Zone, secondaries: list[Secondary],
                 keyring: Mapping[dns.name.Name, dns.tsig.Key]) -> None:
        for secondary in secondaries:
            task = asyncio.ensure_future(self._notify(zone, secondary, keyring))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _notify(self, zone: Zone, secondary: Secondary,
                      keyring: Mapping[dns.name.Name, dns.tsig.Key]) -> None:
        message = dns.message.make_query(zone.origin, dns.rdatatype.SOA)
        message.flags = dns.flags.AA  # (the opcode lives in the flags: set it after them)
        message.set_opcode(dns.opcode.NOTIFY)
        message.answer.append(zone.soa)  # the new serial, so the secondary can skip its SOA query
        key_name = dns.name.from_text(secondary.key_name)
        if key_name in keyring:
            message.use_tsig(keyring, keyname=key_name, algorithm=dns.tsig.HMAC_SHA256)
        for attempt in range(1, self._attempts + 1):
            try:
                reply = await dns.asyncquery.udp(message, secondary.address, port=secondary.port,
                                                 timeout=self._timeout, ignore_unexpected=True)
            except (dns.exception.DNSException, OSError) as exc:
                log.info("NOTIFY %s to %s port %d, attempt %d: %s", zone.origin,
                         secondary.address, secondary.port, attempt, exc)
                continue
            if reply.rcode() != dns.rcode.NOERROR:
                log.warning("NOTIFY %s refused by %s port %d: %s", zone.origin,
                            secondary.address, secondary.port, dns.rcode.to_text(reply.rcode()))
                return
            log.info("NOTIFY %s serial %d acknowledged by %s port %d", zone.origin, zone.serial,
                     secondary.address, secondary.port)
            return
        log.warning("NOTIFY %s to %s port %d: no answer after %d attempts", zone.origin,
                    secondary.address, secondary.port, self._attempts)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
