"""Classic DNS transports on the DNS port: UDP, and TCP with pipelining.

Thin adapters: each query goes to the one DNS handler with its transport in
the context (UDP answers are truncated to the client's buffer; TCP answers
are not).  TCP (RFC 7766): a 2-octet length prefix per message, any number
of queries per connection answered as they are read (pipelining), the
connection closed after ``idle_timeout`` seconds without a complete query or
when the client sends a length of 0.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from transport.sockets import bind_socket, format_address
from trustchain.dns.handler import DnsHandler, QueryContext

log = logging.getLogger("trustchain.dns")


class UdpDnsProtocol(asyncio.DatagramProtocol):
    def __init__(self, handler: DnsHandler) -> None:
        self._handler = handler
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            response = self._handler(data, QueryContext("udp", (str(addr[0]), int(addr[1]))))
        except Exception:  # a handler bug must not stop the server
            log.exception("DNS handler failed on a UDP query")
            return
        if response is not None and self._transport is not None:
            self._transport.sendto(response, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)


class TcpDnsProtocol(asyncio.Protocol):
    def __init__(self, handler: DnsHandler, idle_timeout: float) -> None:
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
                response = self._handler(query, QueryContext("tcp", self._client))
            except Exception:
                log.exception("DNS handler failed on a TCP query")
                self._idle()
                return
            if response is None:
                self._idle()  # nothing sensible to say: close, as NSD does
                return
            assert self._transport is not None
            self._transport.write(len(response).to_bytes(2, "big") + response)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()


class DnsListener:
    """UDP and TCP on the same port for every listen address."""

    def __init__(self, handler: DnsHandler, addresses: list[str], port: int, *,
                 idle_timeout: float = 10.0) -> None:
        self._handler = handler
        self._addresses = addresses
        self._port = port
        self._idle_timeout = idle_timeout
        self._closers: list[Any] = []

    async def start(self) -> list[tuple[str, int]]:
        loop = asyncio.get_running_loop()
        bound = []
        for address in self._addresses:
            udp = bind_socket(address, self._port, socket.SOCK_DGRAM)
            port = udp.getsockname()[1]  # with port 0, TCP takes the port UDP got
            tcp = bind_socket(address, port, socket.SOCK_STREAM)
            transport, _ = await loop.create_datagram_endpoint(
                lambda: UdpDnsProtocol(self._handler), sock=udp)
            server = await loop.create_server(
                lambda: TcpDnsProtocol(self._handler, self._idle_timeout), sock=tcp, backlog=1024)
            self._closers += [transport, server]
            for proto in ("udp", "tcp"):
                log.info("listening: dns on %s/%s", format_address(address, port), proto)
            bound.append((address, port))
        return bound

    async def stop(self) -> None:
        for closer in self._closers:
            closer.close()
