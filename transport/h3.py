"""HTTP/3 on the node's QUIC endpoint: aioquic's ``H3Connection`` driving the ASGI app.

The same ASGI application that uvicorn serves over HTTP/1.1 (and HTTPS)
is served here over HTTP/3, so every REST route exists on both.  One
request per bidirectional stream, as RFC 9114 says; request bodies larger
than ``max_body`` are refused with 413 before the application runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aioquic.h3.connection import H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.h3.exceptions import H3Error
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import QuicEvent, StreamReset

from trustchain.problem import PROBLEM_JSON, Problem

log = logging.getLogger("trustchain.h3")

ALPN = "h3"
ASGIApp = Callable[..., Any]


class _Request:
    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id
        self.body: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.size = 0
        self.task: asyncio.Task[None] | None = None


class H3Server:
    """Serve ``app`` on one QUIC connection that negotiated ``h3``."""

    def __init__(
        self, quic: QuicConnection, app: ASGIApp, *, transmit: Callable[[], None],
        client: tuple[str, int] | None, max_body: int = 1024 * 1024,
        peer: Callable[[], object] = lambda: None,
    ) -> None:
        self._h3 = H3Connection(quic)
        #: Who the client certificate says the client is (verified at the handshake), for
        #: routes that need an identity: ASGI scope extension "trustchain.peer".
        self._peer = peer
        self._app = app
        self._transmit = transmit
        self._client = client
        self._max_body = max_body
        self._requests: dict[int, _Request] = {}

    def handle_event(self, event: QuicEvent) -> None:
        if isinstance(event, StreamReset) and event.stream_id in self._requests:
            request = self._requests.pop(event.stream_id)
            request.body.put_nowait({"type": "http.disconnect"})
        try:
            h3_events = self._h3.handle_event(event)
        except H3Error as exc:  # aioquic closes the connection itself
            log.debug("HTTP/3 error: %s", exc)
            return
        for h3_event in h3_events:
            self._h3_event(h3_event)

    def _h3_event(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived) and event.stream_id not in self._requests:
            self._start(event)
        elif isinstance(event, DataReceived) and event.stream_id in self._requests:
            request = self._requests[event.stream_id]
            request.size += len(event.data)
            if request.size > self._max_body:
                self._refuse(event.stream_id, Problem(413, "the request body is too large"))
                return
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
        method = pseudo.get(b":method", b"").decode("ascii", "replace")
        raw_path = pseudo.get(b":path", b"/")
        path, _, query = raw_path.partition(b"?")
        request = _Request(event.stream_id)
        self._requests[event.stream_id] = request
        if not method or not path.startswith(b"/"):
            self._refuse(event.stream_id, Problem(400, "malformed request"))
            return
        if event.stream_ended:
            request.body.put_nowait({"type": "http.request", "body": b"", "more_body": False})
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

    async def _run(self, request: _Request, scope: dict[str, Any]) -> None:
        stream_id = request.stream_id
        started = False

        async def receive() -> dict[str, Any]:
            return await request.body.get()

        async def send(message: dict[str, Any]) -> None:
            nonlocal started
            if self._requests.get(stream_id) is not request:
                return  # the client reset the stream
            if message["type"] == "http.response.start":
                started = True
                self._h3.send_headers(stream_id, [
                    (b":status", str(message["status"]).encode()),
                    *[(bytes(k).lower(), bytes(v)) for k, v in message.get("headers", [])],
                ])
            elif message["type"] == "http.response.body":
                more = message.get("more_body", False)
                self._h3.send_data(stream_id, message.get("body", b""), end_stream=not more)
                if not more:
                    self._requests.pop(stream_id, None)
            self._transmit()

        try:
            await self._app(scope, receive, send)
        except Exception:
            log.exception("ASGI application failed on HTTP/3")
            if not started and self._requests.get(stream_id) is request:
                self._refuse(stream_id, Problem(500))

    def _refuse(self, stream_id: int, problem: Problem) -> None:
        request = self._requests.pop(stream_id, None)
        if request is not None and request.task is not None:
            request.task.cancel()
        self._h3.send_headers(stream_id, [
            (b":status", str(problem.status).encode()),
            (b"content-type", PROBLEM_JSON.encode()),
        ])
        self._h3.send_data(stream_id, problem.to_json(), end_stream=True)
        self._transmit()
