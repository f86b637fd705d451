"""DNS over dedicated QUIC connections (RFC 9250), server side, sans-I/O.

:class:`DoqServer` sits on an aioquic ``QuicConnection`` (itself sans-I/O),
as aioquic's ``H3Connection`` does: feed it every QUIC event, it returns the
queries that are complete, and :meth:`DoqServer.send_response` queues the
answer on the query's stream.  The adapter then transmits.

Rules enforced (RFC 9250 section 4):

* one query per client-initiated bidirectional stream, 2-octet length
  prefix, buffered until the client's STREAM FIN;
* the DNS Message ID must be 0 in queries and is 0 in responses;
* any protocol error (non-zero ID, a length that does not match the stream,
  data after the query, a client-opened unidirectional stream, a message
  too short to be DNS) closes the connection with DOQ_PROTOCOL_ERROR;
* the response is sent on the same stream, followed by FIN.

0-RTT is never accepted: the node issues no session tickets, so no client
can send early data.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from aioquic.quic.connection import (
    QuicConnection,
    stream_is_client_initiated,
    stream_is_unidirectional,
)
from aioquic.quic.events import (
    ConnectionTerminated,
    QuicEvent,
    StreamDataReceived,
    StreamReset,
)

ALPN = "doq"
DNS_HEADER_SIZE = 12


class DoqErrorCode(IntEnum):
    """RFC 9250 section 4.3."""

    NO_ERROR = 0x0
    INTERNAL_ERROR = 0x1
    PROTOCOL_ERROR = 0x2
    REQUEST_CANCELLED = 0x3
    EXCESSIVE_LOAD = 0x4
    UNSPECIFIED_ERROR = 0x5
    ERROR_RESERVED = 0xD098EA5E


@dataclass(frozen=True)
class QueryReceived:
    """A complete DNS query (wire format, Message ID 0) arrived on ``stream_id``."""

    stream_id: int
    query: bytes


class DoqServer:
    def __init__(self, quic: QuicConnection, *, max_streams_in_flight: int = 100) -> None:
        self._quic = quic
        self._buffers: dict[int, bytearray] = {}
        self._answering: set[int] = set()
        self._max_in_flight = max_streams_in_flight
        self.closed = False

    def handle_event(self, event: QuicEvent) -> list[QueryReceived]:
        if self.closed:
            return []
        if isinstance(event, StreamDataReceived):
            return self._data(event)
        if isinstance(event, StreamReset):
            self._buffers.pop(event.stream_id, None)
            self._answering.discard(event.stream_id)
        elif isinstance(event, ConnectionTerminated):
            self.closed = True
        return []

    def _data(self, event: StreamDataReceived) -> list[QueryReceived]:
        sid = event.stream_id
        if stream_is_unidirectional(sid) or not stream_is_client_initiated(sid):
            return self._protocol_error("DoQ uses client-initiated bidirectional streams only")
        if sid in self._answering:
            return self._protocol_error("more than one query on a stream")
        buffer = self._buffers.setdefault(sid, bytearray())
        buffer += event.data
        if len(buffer) >= 2 and len(buffer) > 2 + int.from_bytes(buffer[:2], "big"):
            return self._protocol_error("data after the query on a stream")
        if not event.end_stream:
            return []
        del self._buffers[sid]
        if len(buffer) < 2 or len(buffer) != 2 + int.from_bytes(buffer[:2], "big"):
            return self._protocol_error("stream ended before the whole query arrived")
        query = bytes(buffer[2:])
        if len(query) < DNS_HEADER_SIZE:
            return self._protocol_error("query is too short to be a DNS message")
        if query[:2] != b"\0\0":
            return self._protocol_error("DNS Message ID is not 0")
        if len(self._answering) >= self._max_in_flight:
            self._quic.reset_stream(sid, DoqErrorCode.EXCESSIVE_LOAD)
            return []
        self._answering.add(sid)
        return [QueryReceived(sid, query)]

    def send_response(self, stream_id: int, response: bytes) -> None:
        """Send ``response`` (its ID forced to 0) on ``stream_id`` and end the stream."""
        self.send_responses(stream_id, [response])

    def send_responses(self, stream_id: int, responses: list[bytes]) -> None:
        """Send one or more responses (zone transfers send several), then FIN."""
        if self.closed or stream_id not in self._answering:
            return
        self._answering.discard(stream_id)
        if not responses or any(len(r) < DNS_HEADER_SIZE or len(r) > 0xFFFF for r in responses):
            self._quic.reset_stream(stream_id, DoqErrorCode.INTERNAL_ERROR)
            return
        data = b"".join(len(r).to_bytes(2, "big") + b"\0\0" + r[2:] for r in responses)
        self._quic.send_stream_data(stream_id, data, end_stream=True)

    def cancel(self, stream_id: int, code: DoqErrorCode = DoqErrorCode.INTERNAL_ERROR) -> None:
        """Abandon a query (the handler failed or chose not to answer)."""
        if self.closed or stream_id not in self._answering:
            return
        self._answering.discard(stream_id)
        self._quic.reset_stream(stream_id, code)

    def _protocol_error(self, reason: str) -> list[QueryReceived]:
        self._quic.close(error_code=DoqErrorCode.PROTOCOL_ERROR, reason_phrase=reason)
        self.closed = True
        self._buffers.clear()
        self._answering.clear()
        return []
