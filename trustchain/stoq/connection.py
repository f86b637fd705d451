"""``stoq/1`` over an aioquic ``QuicConnection``, both ends, sans-I/O.

Like aioquic's ``H3Connection``: feed QUIC events to ``handle_event``, act on
the events it returns, and call the send methods, which only queue stream
data on the ``QuicConnection``; the asyncio adapter transmits.

A framing violation on one stream resets that stream (RESET_STREAM and
STOP_SENDING with the stoq error code) and never touches other streams or
the connection.
"""

from __future__ import annotations

from dataclasses import dataclass

from aioquic.quic.connection import (
    QuicConnection,
    stream_is_client_initiated,
    stream_is_unidirectional,
)
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamDataReceived, StreamReset

from trustchain.problem import Problem
from trustchain.stoq.framing import (
    DEFAULT_MAX_MESSAGE,
    ErrorCode,
    FrameType,
    MessageReader,
    Request,
    Response,
    Status,
    StoqError,
    encode_request,
    encode_response,
)


@dataclass(frozen=True)
class RequestReceived:
    """A complete request on a bidirectional stream; answer with ``send_response``."""

    stream_id: int
    request: Request


@dataclass(frozen=True)
class PushReceived:
    """A complete one-way message on a unidirectional stream (gossip)."""

    stream_id: int
    request: Request


@dataclass(frozen=True)
class StreamRejected:
    """A stream was reset because the peer broke the framing rules."""

    stream_id: int
    error_code: int
    reason: str


@dataclass(frozen=True)
class ResponseReceived:
    stream_id: int
    response: Response


@dataclass(frozen=True)
class RequestFailed:
    """The server reset the request's stream (or the connection ended)."""

    stream_id: int
    error_code: int
    reason: str


ServerEvent = RequestReceived | PushReceived | StreamRejected
ClientEvent = ResponseReceived | RequestFailed


class _Streams:
    def __init__(self, quic: QuicConnection, max_message: int) -> None:
        self._quic = quic
        self._max_message = max_message
        self._readers: dict[int, MessageReader] = {}
        self.closed = False

    def _reader(self, stream_id: int, expect: FrameType) -> MessageReader:
        reader = self._readers.get(stream_id)
        if reader is None:
            reader = self._readers[stream_id] = MessageReader(
                expect=expect, max_message=self._max_message
            )
        return reader

    def _reset(self, stream_id: int, code: int) -> None:
        """Abort a stream in both directions that exist for it."""
        self._readers.pop(stream_id, None)
        ours = stream_is_client_initiated(stream_id) == self._quic.configuration.is_client
        one_way = stream_is_unidirectional(stream_id)
        if not one_way or ours:
            self._quic.reset_stream(stream_id, code)
        if not one_way or not ours:
            self._quic.stop_stream(stream_id, code)


class StoqServer(_Streams):
    """The server end: requests in, responses out."""

    def __init__(
        self, quic: QuicConnection, *, max_message: int = DEFAULT_MAX_MESSAGE,
        max_in_flight: int = 100,
    ) -> None:
        super().__init__(quic, max_message)
        self._open: set[int] = set()
        self._max_in_flight = max_in_flight

    def handle_event(self, event: QuicEvent) -> list[ServerEvent]:
        if self.closed:
            return []
        if isinstance(event, StreamDataReceived):
            sid = event.stream_id
            if not stream_is_client_initiated(sid) or sid in self._open:
                # Our own unidirectional streams never receive; a second request
                # on an answered stream is a framing error.
                return self._reject(sid, StoqError(ErrorCode.PROTOCOL_ERROR, "unexpected data"))
            try:
                reader = self._reader(sid, FrameType.REQUEST)
                reader.feed(event.data)
                if not event.end_stream:
                    return []
                result = reader.finish()
            except StoqError as exc:
                return self._reject(sid, exc)
            del self._readers[sid]
            assert isinstance(result, Request)
            if stream_is_unidirectional(sid):
                return [PushReceived(sid, result)]
            if len(self._open) >= self._max_in_flight:
                self._quic.send_stream_data(sid, encode_response(
                    Status.TOO_MANY_REQUESTS, Problem(
                        Status.TOO_MANY_REQUESTS,
                        f"more than {self._max_in_flight} requests in flight on this connection",
                        retry_after=1,
                    ).to_json()), end_stream=True)
                return []
            self._open.add(sid)
            return [RequestReceived(sid, result)]
        if isinstance(event, StreamReset):
            self._readers.pop(event.stream_id, None)
            self._open.discard(event.stream_id)
        elif isinstance(event, ConnectionTerminated):
            self.closed = True
        return []

    def _reject(self, stream_id: int, exc: StoqError) -> list[ServerEvent]:
        self._open.discard(stream_id)
        self._reset(stream_id, exc.error_code)
        return [StreamRejected(stream_id, exc.error_code, str(exc))]

    def send_response(self, stream_id: int, status: int, message: bytes = b"") -> None:
        """Queue the response on ``stream_id`` and end the stream."""
        if self.closed or stream_id not in self._open:
            return  # the client reset the stream meanwhile
        self._open.discard(stream_id)
        self._quic.send_stream_data(stream_id, encode_response(status, message), end_stream=True)

    def abort(self, stream_id: int, code: ErrorCode = ErrorCode.INTERNAL_ERROR) -> None:
        if stream_id in self._open:
            self._open.discard(stream_id)
            self._reset(stream_id, code)


class StoqClient(_Streams):
    """The client end: requests out, responses in."""

    def __init__(self, quic: QuicConnection, *, max_message: int = DEFAULT_MAX_MESSAGE) -> None:
        super().__init__(quic, max_message)
        self._waiting: set[int] = set()

    def send_request(self, service: str, method: str, message: bytes = b"") -> int:
        stream_id = self._quic.get_next_available_stream_id()
        self._quic.send_stream_data(
            stream_id, encode_request(service, method, message), end_stream=True
        )
        self._waiting.add(stream_id)
        return stream_id

    def send_push(self, service: str, method: str, message: bytes = b"") -> int:
        stream_id = self._quic.get_next_available_stream_id(is_unidirectional=True)
        self._quic.send_stream_data(
            stream_id, encode_request(service, method, message), end_stream=True
        )
        return stream_id

    def handle_event(self, event: QuicEvent) -> list[ClientEvent]:
        if isinstance(event, StreamDataReceived) and event.stream_id in self._waiting:
            sid = event.stream_id
            try:
                reader = self._reader(sid, FrameType.RESPONSE)
                reader.feed(event.data)
                if not event.end_stream:
                    return []
                result = reader.finish()
            except StoqError as exc:
                self._waiting.discard(sid)
                self._reset(sid, exc.error_code)
                return [RequestFailed(sid, exc.error_code, str(exc))]
            self._waiting.discard(sid)
            del self._readers[sid]
            assert isinstance(result, Response)
            return [ResponseReceived(sid, result)]
        if isinstance(event, StreamReset) and event.stream_id in self._waiting:
            self._waiting.discard(event.stream_id)
            self._readers.pop(event.stream_id, None)
            return [RequestFailed(event.stream_id, event.error_code, "stream reset by server")]
        if isinstance(event, ConnectionTerminated):
            self.closed = True
            failed: list[ClientEvent] = [
                RequestFailed(sid, event.error_code, event.reason_phrase or "connection closed")
                for sid in sorted(self._waiting)
            ]
            self._waiting.clear()
            return failed
        return []
