"""The async client of a TrustChain node over QUIC (``stoq/1`` and ``doq``).

::

    async with connect("::1", 8853, root=root_cert, server_name="trust.example.net") as node:
        status, body = await node.request("admin", "status")

The server is verified against the given genesis root only (never the
system store); a node whose certificate does not chain to that root, or does
not name ``server_name``, fails the handshake with :class:`ConnectError`.
Pass ``identity`` (a certificate issued by this network) for methods that
need a node or admin identity.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aioquic.asyncio.client import connect as quic_connect
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamDataReceived, StreamReset
from cryptography import x509

from transport.tls import client_configuration, peer_certificates
from transport.transmit import CoalescedTransmit
from trustchain.errors import RemoteError
from trustchain.identity import TlsIdentity
from trustchain.stoq import doq
from trustchain.stoq.connection import RequestFailed, ResponseReceived, StoqClient
from trustchain.stoq.framing import ALPN as STOQ_ALPN
from trustchain.stoq.framing import Response


class ConnectError(RemoteError):
    """The QUIC connection could not be established or was lost."""


class StreamError(RemoteError):
    """The server reset the request's stream."""

    def __init__(self, error_code: int, reason: str) -> None:
        super().__init__(f"stream reset by the server (error {error_code:#x}): {reason}")
        self.error_code = error_code


class NodeClientProtocol(CoalescedTransmit):
    def __init__(self, quic: QuicConnection, **kwargs: Any) -> None:
        super().__init__(quic, **kwargs)
        self._stoq = StoqClient(quic)
        self._waiters: dict[int, asyncio.Future[Any]] = {}
        self._doq_buffers: dict[int, bytearray] = {}
        self.terminated: ConnectionTerminated | None = None

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            self.terminated = event
            self._stoq.handle_event(event)
            error = ConnectError(
                f"connection closed by the server (error {event.error_code:#x}): "
                f"{event.reason_phrase}"
            )
            for stream_id in list(self._waiters):
                self._fail(stream_id, error)
            return
        for outcome in self._stoq.handle_event(event):
            if isinstance(outcome, ResponseReceived):
                self._resolve(outcome.stream_id, outcome.response)
            elif isinstance(outcome, RequestFailed):
                self._fail(outcome.stream_id, StreamError(outcome.error_code, outcome.reason))
        if isinstance(event, StreamDataReceived) and event.stream_id in self._doq_buffers:
            buffer = self._doq_buffers[event.stream_id]
            buffer += event.data
            if event.end_stream:
                del self._doq_buffers[event.stream_id]
                size = int.from_bytes(buffer[:2], "big") if len(buffer) >= 2 else -1
                if size != len(buffer) - 2:
                    self._fail(event.stream_id, StreamError(doq.DoqErrorCode.PROTOCOL_ERROR,
                                                            "malformed DoQ response"))
                else:
                    self._resolve(event.stream_id, bytes(buffer[2:]))
        elif isinstance(event, StreamReset) and event.stream_id in self._doq_buffers:
            del self._doq_buffers[event.stream_id]
            self._fail(event.stream_id, StreamError(event.error_code, "query cancelled"))

    def _resolve(self, stream_id: int, value: Any) -> None:
        waiter = self._waiters.pop(stream_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(value)

    def _fail(self, stream_id: int, error: Exception) -> None:
        waiter = self._waiters.pop(stream_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def _wait(self, stream_id: int) -> asyncio.Future[Any]:
        if self.terminated is not None:
            raise ConnectError(f"connection closed: {self.terminated.reason_phrase}")
        waiter = self._loop.create_future()
        self._waiters[stream_id] = waiter
        self.transmit_soon()
        return waiter

    async def request(self, service: str, method: str, message: bytes = b"") -> Response:
        """Send one stoq/1 request and wait for its response."""
        return await self._wait(self._stoq.send_request(service, method, message))

    def push(self, service: str, method: str, message: bytes = b"") -> None:
        """Send one stoq/1 push (a one-way message on a unidirectional stream).

        :raises ConnectError: the connection is closed.
        """
        if self.terminated is not None:
            raise ConnectError(f"connection closed: {self.terminated.reason_phrase}")
        self._stoq.send_push(service, method, message)
        self.transmit_soon()

    def keepalive(self) -> None:
        """Send a PING: the peer acknowledges it, so a live connection is never idle and a
        dead one (the peer's process gone) reaches its idle timeout."""
        if self.terminated is None:
            self._quic.send_ping(0)
            self.transmit_soon()

    def server_certificates(self) -> tuple[x509.Certificate | None, list[x509.Certificate]]:
        """The certificate and chain the server presented (verified at the handshake)."""
        return peer_certificates(self._quic)

    async def doq_query(self, query: bytes) -> bytes:
        """Send one DNS query over DoQ (its ID must be 0) and return the response wire."""
        stream_id = self._quic.get_next_available_stream_id()
        self._doq_buffers[stream_id] = bytearray()
        self._quic.send_stream_data(
            stream_id, len(query).to_bytes(2, "big") + query, end_stream=True
        )
        return await self._wait(stream_id)


@asynccontextmanager
async def connect(
    host: str, port: int, *, root: x509.Certificate, server_name: str,
    alpn: str = STOQ_ALPN, identity: TlsIdentity | None = None, timeout: float = 10.0,
    idle_timeout: float = 30.0,
) -> AsyncIterator[NodeClientProtocol]:
    """Open a verified QUIC connection to a node.

    :raises ConnectError: if the handshake fails or times out.
    """
    configuration = client_configuration(
        root=root, server_name=server_name, alpn=alpn, identity=identity,
        idle_timeout=idle_timeout,
    )
    created: list[NodeClientProtocol] = []

    def create_protocol(*args: Any, **kwargs: Any) -> NodeClientProtocol:
        created.append(NodeClientProtocol(*args, **kwargs))
        return created[-1]

    context = quic_connect(host, port, configuration=configuration,
                           create_protocol=create_protocol)
    try:
        protocol = await asyncio.wait_for(context.__aenter__(), timeout)
    except ConnectionError:
        closed = created[-1].terminated if created else None
        reason = f"{closed.reason_phrase} (error {closed.error_code:#x})" if closed else "refused"
        raise ConnectError(f"cannot connect to {host} port {port}: {reason}") from None
    except TimeoutError:
        raise ConnectError(f"cannot connect to {host} port {port}: no answer in {timeout}s") from None
    try:
        yield protocol  # type: ignore[misc]
    finally:
        await context.__aexit__(None, None, None)
