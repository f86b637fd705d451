"""HTTP/3 on the node's QUIC endpoint: aioquic's ``H3Connection`` driving the ASGI app.

The same ASGI application that uvicorn serves over HTTP/1.1 (and HTTPS)
is served here over HTTP/3, so every REST route exists on both.  One
request per bidirectional stream, as RFC 9114 says.

The edge limits of the HTTP listeners hold here too (:class:`H3Limits`):
a request head still arriving may hold at most ``max_head`` bytes and must
be complete within ``header_timeout`` (else the stream is reset with
H3_EXCESSIVE_LOAD or H3_REQUEST_REJECTED, before any of it is decoded); a
decoded head with too many fields or too many bytes is answered 431 (414
for a long ``:path``); at most ``max_streams_in_flight`` requests per
connection (more are reset with H3_REQUEST_REJECTED, which RFC 9114 lets a
client retry); a body larger than ``max_body`` is answered 413, one whose
next bytes take longer than ``body_timeout`` 408.  The QPACK dynamic table
is switched off, so that a small encoded head cannot decode into a large one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pylsqpack
from aioquic.h3.connection import ErrorCode, H3Connection, Setting
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.h3.exceptions import H3Error
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import QuicEvent, StreamDataReceived, StreamReset

from trustchain.config import NodeConfig
from trustchain.problem import PROBLEM_JSON, Problem

log = logging.getLogger("trustchain.h3")

ALPN = "h3"
ASGIApp = Callable[..., Any]
#: Incomplete request heads one connection may hold at once, in ``max_head`` units.
PENDING_HEADS = 4
#: RFC 9114 section 4.2.2: each field counts its name, its value and 32 bytes.
FIELD_OVERHEAD = 32


@dataclass(frozen=True)
class H3Limits:
    """What one HTTP/3 connection may make the node hold (docs/operations.md)."""

    max_request_line: int
    max_header_bytes: int
    max_headers: int
    header_timeout: float
    body_timeout: float
    max_streams_in_flight: int
    max_body: int = 1024 * 1024

    @classmethod
    def from_config(cls, config: NodeConfig) -> H3Limits:
        """The HTTP listeners' head and body limits, and the QUIC cap on requests in flight."""
        return cls(config.http_max_request_line_bytes, config.http_max_header_bytes,
                   config.http_max_headers, config.http_header_timeout_seconds,
                   config.http_body_timeout_seconds, config.quic_max_streams_in_flight)

    @property
    def max_head(self) -> int:
        """Bytes of a request head (its HEADERS frame), as over HTTP/1.1."""
        return self.max_request_line + self.max_header_bytes

    @property
    def max_field_section(self) -> int:
        """The SETTINGS_MAX_FIELD_SECTION_SIZE that says as much (RFC 9114 section 4.2.2)."""
        return self.max_head + FIELD_OVERHEAD * (self.max_headers + 5)


@dataclass(frozen=True)
class LimitedApp:
    """The ASGI application, carrying the limits its HTTP/3 connections keep."""

    app: ASGIApp
    limits: H3Limits

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


class _H3Connection(H3Connection):
    """aioquic's HTTP/3 connection without a QPACK dynamic table, announcing its head limit.

    A header block may refer to a dynamic-table entry (up to the table's size)
    in one byte, so a 40 KB head could decode into 160 MB; with the static
    table only, an entry is at most a few dozen bytes.  Relies on aioquic's
    private ``_init_connection`` and ``_decoder`` (the pinned version).
    """

    def __init__(self, quic: QuicConnection, max_field_section: int) -> None:
        self._max_field_section = max_field_section
        super().__init__(quic)

    def _init_connection(self) -> None:
        self._max_table_capacity = 0
        self._blocked_streams = 0
        self._decoder = pylsqpack.Decoder(0, 0)
        super()._init_connection()

    def _get_local_settings(self) -> dict[int, int]:
        settings = super()._get_local_settings()
        settings[Setting.MAX_FIELD_SECTION_SIZE] = self._max_field_section
        return settings


def is_request_stream(stream_id: int) -> bool:
    """A client-initiated bidirectional stream: one request (RFC 9114 section 6.1)."""
    return stream_id % 4 == 0


@dataclass
class _Head:
    """A request stream whose head is still arriving."""

    size: int
    timer: asyncio.TimerHandle


@dataclass
class _Request:
    stream_id: int
    body: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    size: int = 0
    task: asyncio.Task[None] | None = None
    started: bool = False  # the response has begun
    progress: float = 0.0  # when body bytes last came
    timer: asyncio.TimerHandle | None = None


class H3Server:
    """Serve ``app`` on one QUIC connection that negotiated ``h3``."""

    def __init__(
        self, quic: QuicConnection, app: ASGIApp, *, transmit: Callable[[], None],
        client: tuple[str, int] | None, max_body: int | None = None,
        peer: Callable[[], object] = lambda: None, limits: H3Limits | None = None,
    ) -> None:
        if isinstance(app, LimitedApp):
            limits = limits or app.limits
            app = app.app
        limits = limits or H3Limits.from_config(NodeConfig())
        if max_body is not None:
            limits = dataclasses.replace(limits, max_body=max_body)
        self._limits = limits
        self._quic = quic
        self._h3 = _H3Connection(quic, limits.max_field_section)
        #: Who the client certificate says the client is (verified at the handshake), for
        #: routes that need an identity: ASGI scope extension "trustchain.peer".
        self._peer = peer
        self._app = app
        self._transmit = transmit
        self._client = client
        self._requests: dict[int, _Request] = {}
        self._heads: dict[int, _Head] = {}
        self._pending_bytes = 0
        #: Request streams past their head whose client side is still open.
        self._receiving: set[int] = set()
        #: Streams reset by the node whose client side is still open: their bytes are dropped.
        self._dropped: set[int] = set()

    def handle_event(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived) and is_request_stream(event.stream_id):
            if not self._admit(event):
                return
        elif isinstance(event, StreamReset):
            self._client_side_ended(event.stream_id)
            self._dropped.discard(event.stream_id)
            if event.stream_id in self._requests:
                request = self._finish(event.stream_id)
                request.body.put_nowait({"type": "http.disconnect"})
        try:
            h3_events = self._h3.handle_event(event)
        except H3Error as exc:  # aioquic closes the connection itself
            log.debug("HTTP/3 error: %s", exc)
            return
        for h3_event in h3_events:
            self._h3_event(h3_event)
        if isinstance(event, StreamDataReceived) and is_request_stream(event.stream_id):
            self._check_head(event)
            if event.end_stream:
                self._receiving.discard(event.stream_id)

    # --- request heads --------------------------------------------------------------

    def _admit(self, event: StreamDataReceived) -> bool:
        """Count bytes of heads still arriving; False: the event is not for aioquic."""
        stream_id, size = event.stream_id, len(event.data)
        if stream_id in self._dropped:
            if event.end_stream:
                self._dropped.discard(stream_id)
            return False
        if stream_id in self._receiving:
            return True
        head = self._heads.get(stream_id)
        if head is not None:
            head.size += size
            self._pending_bytes += size
            return True
        if len(self._requests) + len(self._heads) >= self._limits.max_streams_in_flight:
            self._reset(stream_id, ErrorCode.H3_REQUEST_REJECTED, seen=False,
                        ended=event.end_stream)
            return False
        timer = asyncio.get_running_loop().call_later(
            self._limits.header_timeout, self._head_timeout, stream_id)
        self._heads[stream_id] = _Head(size, timer)
        self._pending_bytes += size
        return True

    def _check_head(self, event: StreamDataReceived) -> None:
        head = self._heads.get(event.stream_id)
        if head is None:
            return
        if event.end_stream:  # ended without a whole head: aioquic has aborted it
            self._head_done(event.stream_id)
        elif (head.size > self._limits.max_head
              or self._pending_bytes > PENDING_HEADS * self._limits.max_head):
            log.debug("HTTP/3 stream %d: request head over %d bytes", event.stream_id,
                      self._limits.max_head)
            self._reset(event.stream_id, ErrorCode.H3_EXCESSIVE_LOAD, seen=True, ended=False)

    def _head_timeout(self, stream_id: int) -> None:
        if stream_id in self._heads:
            log.debug("HTTP/3 stream %d: request head took too long", stream_id)
            self._reset(stream_id, ErrorCode.H3_REQUEST_REJECTED, seen=True, ended=False)

    def _head_done(self, stream_id: int) -> None:
        head = self._heads.pop(stream_id, None)
        if head is not None:
            head.timer.cancel()
            self._pending_bytes -= head.size

    def _client_side_ended(self, stream_id: int) -> None:
        self._head_done(stream_id)
        self._receiving.discard(stream_id)

    def _reset(self, stream_id: int, code: int, *, seen: bool, ended: bool) -> None:
        """Reset both directions of a request stream whose head is not (all) in."""
        self._head_done(stream_id)
        self._quic.reset_stream(stream_id, code)
        if not ended:
            with contextlib.suppress(ValueError):  # aioquic no longer knows the stream
                self._quic.stop_stream(stream_id, code)
            self._dropped.add(stream_id)
        if seen:  # have aioquic forget the part of the head it holds
            self._h3.handle_event(StreamReset(error_code=code, stream_id=stream_id))
        self._transmit()

    # --- requests -----------------------------------------------------------------------

    def _h3_event(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived) and event.stream_id not in self._requests:
            self._head_done(event.stream_id)
            if not event.stream_ended:
                self._receiving.add(event.stream_id)
            self._start(event)
        elif isinstance(event, DataReceived) and event.stream_id in self._requests:
            request = self._requests[event.stream_id]
            request.size += len(event.data)
            if request.size > self._limits.max_body:
                self._refuse(event.stream_id, Problem(413, "the request body is too large"))
                return
            request.progress = asyncio.get_running_loop().time()
            if event.stream_ended and request.timer is not None:
                request.timer.cancel()
                request.timer = None
            request.body.put_nowait({
                "type": "http.request", "body": event.data, "more_body": not event.stream_ended,
            })

    def _start(self, event: HeadersReceived) -> None:
        pseudo: dict[bytes, bytes] = {}
        headers: list[tuple[bytes, bytes]] = []
        for name, value in event.headers:
            if name.startswith(b":"):
                pseudo[name] = value
            else:
                headers.append((name, value))
        if b":authority" in pseudo and not any(name == b"host" for name, _ in headers):
            # As HTTP/2 and HTTP/3 servers hand it to ASGI (RFC 9114 4.3.1: :authority
            # stands for Host): URLs the application builds then name the host asked for.
            headers.append((b"host", pseudo[b":authority"]))
        method = pseudo.get(b":method", b"").decode("ascii", "replace")
        raw_path = pseudo.get(b":path", b"/")
        path, _, query = raw_path.partition(b"?")
        request = _Request(event.stream_id)
        self._requests[event.stream_id] = request
        problem = self._head_problem(raw_path, headers)
        if problem is None and (not method or not path.startswith(b"/")):
            problem = Problem(400, "malformed request")
        if problem is not None:
            self._refuse(event.stream_id, problem)
            return
        if event.stream_ended:
            request.body.put_nowait({"type": "http.request", "body": b"", "more_body": False})
        else:
            self._watch_body(request)
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "3",
            "method": method,
            "scheme": "https",
            "path": path.decode("utf-8", "replace"),
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": headers,
            "client": self._client,
            "server": None,
            "extensions": {"trustchain.peer": self._peer()},
        }
        request.task = asyncio.ensure_future(self._run(request, scope))

    def _head_problem(self, raw_path: bytes, headers: list[tuple[bytes, bytes]]) -> Problem | None:
        limits = self._limits
        if len(raw_path) > limits.max_request_line:
            return Problem(414, f"the request target is longer than {limits.max_request_line} "
                                "bytes", title="URI too long")
        if len(headers) > limits.max_headers:
            return Problem(431, f"the request has more than {limits.max_headers} header fields",
                           title="request header fields too large")
        if sum(len(name) + len(value) for name, value in headers) > limits.max_header_bytes:
            return Problem(431, f"the request header is larger than {limits.max_header_bytes} "
                                "bytes", title="request header fields too large")
        return None

    def _watch_body(self, request: _Request) -> None:
        loop = asyncio.get_running_loop()
        request.progress = loop.time()
        request.timer = loop.call_at(request.progress + self._limits.body_timeout,
                                     self._body_timeout, request)

    def _body_timeout(self, request: _Request) -> None:
        """408 when the client sent no body bytes for ``body_timeout`` before the answer."""
        request.timer = None
        if self._requests.get(request.stream_id) is not request or request.started:
            return
        loop = asyncio.get_running_loop()
        due = request.progress + self._limits.body_timeout
        if due > loop.time():
            request.timer = loop.call_at(due, self._body_timeout, request)
            return
        self._refuse(request.stream_id, Problem(
            408, f"no request body bytes arrived for {self._limits.body_timeout:g} s",
            title="request timeout"))

    def _finish(self, stream_id: int) -> _Request:
        request = self._requests.pop(stream_id)
        if request.timer is not None:
            request.timer.cancel()
            request.timer = None
        return request

    async def _run(self, request: _Request, scope: dict[str, Any]) -> None:
        stream_id = request.stream_id

        async def receive() -> dict[str, Any]:
            return await request.body.get()

        async def send(message: dict[str, Any]) -> None:
            if self._requests.get(stream_id) is not request:
                return  # the client reset the stream
            if message["type"] == "http.response.start":
                request.started = True
                self._h3.send_headers(stream_id, [
                    (b":status", str(message["status"]).encode()),
                    *[(bytes(k).lower(), bytes(v)) for k, v in message.get("headers", [])],
                ])
            elif message["type"] == "http.response.body":
                more = message.get("more_body", False)
                self._h3.send_data(stream_id, message.get("body", b""), end_stream=not more)
                if not more:
                    self._finish(stream_id)
            self._transmit()

        try:
            await self._app(scope, receive, send)
        except Exception:
            log.exception("ASGI application failed on HTTP/3", extra={
                "client": self._client[0] if self._client else None, "transport": "h3",
                "method": scope["method"]})
            if not request.started and self._requests.get(stream_id) is request:
                self._refuse(stream_id, Problem(500))

    def _refuse(self, stream_id: int, problem: Problem) -> None:
        """Answer ``problem`` on the stream, and ask the client to stop sending its request."""
        request = self._finish(stream_id) if stream_id in self._requests else None
        if request is not None and request.task is not None:
            request.task.cancel()
        self._h3.send_headers(stream_id, [
            (b":status", str(problem.status).encode()),
            (b"content-type", PROBLEM_JSON.encode()),
        ])
        self._h3.send_data(stream_id, problem.to_json(), end_stream=True)
        if stream_id in self._receiving:
            with contextlib.suppress(ValueError):
                self._quic.stop_stream(stream_id, ErrorCode.H3_NO_ERROR)
        self._transmit()
