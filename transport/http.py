"""HTTP/1.1 and HTTPS listeners for the ASGI application (uvicorn with httptools).

uvicorn's httptools protocol (llhttp, the parser Node.js uses) handles a
request in a fraction of the CPU that a pure-Python parser needs; CT
submissions are HTTP-bound, so this is where the node's time goes.

The node binds the sockets itself (so it can report the real port when the
configuration asks for port 0, and so binding errors surface before
anything else starts) and hands them to uvicorn. The node owns signal
handling: the server here never installs handlers of its own.
:meth:`HttpListener.stop` stops accepting, lets in-flight requests finish
for the grace period, then returns.

Every connection runs :class:`EdgeProtocol`, which adds the edge limits
(:class:`HttpLimits`) that uvicorn lacks: one anonymous client must not be
able to hold the node's only event loop or its descriptors.  uvicorn gives a
keep-alive timeout and a cap on requests in progress; the rest is here.  The
request head is fed to the parser in pieces no longer than what the limits
still allow (httptools would otherwise buffer a header of any size, at a cost
that grows with it), each head and each wait for body bytes has a deadline,
and connections over the per-address or per-listener cap are refused as they
are accepted.  TLS is started here too (not by uvicorn), so that a client
counts against the caps from its TCP connection on and its handshake has the
head's deadline.  A refusal answers 414, 431, 408 or 503 (with Retry-After)
as a problem document and closes; limits hit are logged at most once a
minute per client address.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
import uvicorn
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from transport.sockets import bind_socket, client_key, descriptor_limit, format_address
from trustchain.config import NodeConfig
from trustchain.identity import Peer
from trustchain.problem import PROBLEM_JSON, Problem

log = logging.getLogger("trustchain.http")

#: Listen queue for the HTTP(S) sockets (the kernel caps it at net.core.somaxconn).
BACKLOG = 4096
#: After a refusal the node stops sending and reads (and drops) at most this much,
#: for at most LINGER_SECONDS, so that closing does not reset the answer away.
LINGER_BYTES = 1024 * 1024
LINGER_SECONDS = 1.0
#: Bytes of a request head beyond its target and fields: method, version, separators.
HEAD_OVERHEAD = 64
#: The Retry-After of a 503 (a slot frees as soon as any request of the client ends).
RETRY_AFTER_SECONDS = 1
#: A client address's limit warnings are logged at most this often.
WARN_INTERVAL = 60.0
#: Addresses remembered for rate-limiting warnings before the old ones are forgotten.
MAX_WARNED = 4096
#: RFC 9110 and RFC 6585 names of the statuses the edge answers by itself.
TITLES = {400: "bad request", 408: "request timeout", 414: "URI too long",
          431: "request header fields too large", 503: "unavailable"}


#: From a TLS client's certificate (DER) to the identity it proves, or None.
Identify = Callable[[bytes], Peer | None]


@dataclass(frozen=True)
class HttpLimits:
    """What one connection may make an HTTP(S) listener hold (docs/operations.md)."""

    max_request_line: int
    max_header_bytes: int
    max_headers: int
    header_timeout: float
    body_timeout: float
    keepalive_timeout: float
    max_per_address: int
    max_connections: int

    @classmethod
    def from_config(cls, config: NodeConfig) -> HttpLimits:
        return cls(
            max_request_line=config.http_max_request_line_bytes,
            max_header_bytes=config.http_max_header_bytes,
            max_headers=config.http_max_headers,
            header_timeout=config.http_header_timeout_seconds,
            body_timeout=config.http_body_timeout_seconds,
            keepalive_timeout=config.http_keepalive_timeout_seconds,
            max_per_address=config.http_max_connections_per_address,
            max_connections=config.http_max_connections,
        )


def answer(status: int, detail: str, *, retry_after: int | None = None) -> bytes:
    """A whole HTTP/1.1 response closing the connection: the problem document of ``status``."""
    body = Problem(status, detail, title=TITLES.get(status, ""), retry_after=retry_after).to_json()
    head = [STATUS_LINE[status], b"content-type: ", PROBLEM_JSON.encode(), b"\r\n",
            b"content-length: %d\r\nconnection: close\r\n" % len(body)]
    if retry_after is not None:
        head.append(b"retry-after: %d\r\n" % retry_after)
    return b"".join([*head, b"\r\n", body])


async def _busy(scope: Scope, receive: Receive, send: Send) -> None:
    """503 once uvicorn's cap on requests in progress is reached (its own has no Retry-After)."""
    body = Problem(503, "too many requests in progress", retry_after=RETRY_AFTER_SECONDS).to_json()
    await send({"type": "http.response.start", "status": 503, "headers": [
        (b"content-type", PROBLEM_JSON.encode()), (b"content-length", b"%d" % len(body)),
        (b"retry-after", b"%d" % RETRY_AFTER_SECONDS), (b"connection", b"close"),
    ]})
    await send({"type": "http.response.body", "body": body})


def _quiet_disconnects(app: ASGIApp) -> ASGIApp:
    """``app``, with a request whose client went away (or was cut off by a body timeout)
    ending quietly: nothing can be answered, and it is no error of the node's."""

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await app(scope, receive, send)
        except ClientDisconnect:
            log.debug("the client went away before its request body was read")

    return guarded


def _quiet_overload(record: logging.LogRecord) -> bool:
    """Drops uvicorn's warning for each request over its cap (:meth:`Gate.warn` logs them)."""
    return record.getMessage() != "Exceeded concurrency limit."


class Gate:
    """One listener's open connections by client, and its warnings (once a minute per client)."""

    def __init__(self, name: str, limits: HttpLimits, max_connections: int) -> None:
        self.name = name
        self.limits = limits
        self.max_connections = max_connections
        self.total = 0
        self.open: dict[str, int] = {}
        #: TLS handshakes under way, cancelled when the listener stops.
        self.handshakes: set[asyncio.Task[None]] = set()
        self._warned: dict[str, tuple[float, int]] = {}

    def admit(self, client: str) -> str | None:
        """Count a new connection of ``client``; or say why it is refused (nothing counted)."""
        held = self.open.get(client, 0)
        if held >= self.limits.max_per_address:
            return f"{held} connections open from this client (the cap per address)"
        if self.total >= self.max_connections:
            return f"{self.total} connections open on the listener (its cap)"
        self.open[client] = held + 1
        self.total += 1
        return None

    def release(self, client: str) -> None:
        held = self.open.pop(client) - 1
        if held:
            self.open[client] = held
        self.total -= 1

    def warn(self, client: str, now: float, what: str, status: int | None = None) -> None:
        """Log ``what`` unless ``client`` was warned about in the last minute (then count it)."""
        last, skipped = self._warned.get(client, (None, 0))
        if last is not None and now - last < WARN_INTERVAL:
            self._warned[client] = (last, skipped + 1)
            return
        if len(self._warned) >= MAX_WARNED:
            self._warned = {c: w for c, w in self._warned.items() if now - w[0] < WARN_INTERVAL}
        self._warned[client] = (now, 0)
        more = f" ({skipped} more from it since the last warning)" if skipped else ""
        fields: dict[str, object] = {"client": client, "transport": self.name}
        if status is not None:
            fields["status"] = status
        log.warning("%s: client %s: %s%s", self.name, client, what, more, extra=fields)


def _consume(future: asyncio.Future[Any]) -> None:
    """Mark ``future``'s exception as seen (asyncio logs unseen ones)."""
    if not future.cancelled():
        future.exception()


def _feed(protocol: asyncio.BaseProtocol, chunks: list[bytes]) -> None:
    """Hand ``chunks`` to ``protocol`` as if the transport had read them."""
    get_buffer = getattr(protocol, "get_buffer", None)
    for data in chunks:
        if get_buffer is None:
            protocol.data_received(data)  # type: ignore[attr-defined]
            continue
        view = memoryview(data)
        while view:  # a buffered protocol (uvloop's and asyncio's TLS protocols are)
            buffer = get_buffer(len(view))
            size = min(len(buffer), len(view))
            buffer[:size] = view[:size]
            protocol.buffer_updated(size)  # type: ignore[attr-defined]
            view = view[size:]


class _Stop(Exception):
    """Raised in a parser callback to stop parsing a request that is refused."""


class EdgeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the edge limits, TLS, and the client's identity.

    Subclassed per listener (:func:`_protocol_for`) to set :attr:`listener`.
    With ``identify``, the identity proven by the TLS client's certificate (checked
    once per connection) goes into each request's scope as the ``trustchain.peer``
    extension, as the HTTP/3 adapter does (None: no certificate, or one that
    proves no identity here); uvicorn does not pass client certificates on.
    """

    listener: ClassVar[_Listener]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = self.listener.gate
        self._limits = self.gate.limits
        self._client: str | None = None  # counted against the caps until released
        self._serving = False  # uvicorn's protocol has the connection (TLS is up, if any)
        self._early: list[bytes] = []
        self._accepted = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._in_head = True  # what arrives is a request head (or nothing yet)
        self._in_body = False
        self._begun = False  # a byte of the current request has come
        self._head_bytes = self._url_bytes = self._field_bytes = 0
        self._progress = 0.0
        self._refusal: tuple[int, str] | None = None
        self._discard: int | None = None  # bytes still to drop while lingering
        self._peer: Peer | None = None
        self._identified = False

    # --- the connection -------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        self._accepted = self.loop.time()
        peer = transport.get_extra_info("peername")
        client = client_key(str(peer[0])) if peer else "unknown"
        refused = self.gate.admit(client)
        if refused is not None:
            self.gate.warn(client, self._accepted, f"refused a connection: {refused}")
            if self.listener.tls is None:  # over TLS an answer would cost a handshake: close
                transport.write(answer(503, "too many connections",
                                       retry_after=RETRY_AFTER_SECONDS))
            transport.close()
            return
        self._client = client
        if self.listener.tls is None:
            self._serve(transport)
            return
        transport.pause_reading()  # start_tls takes the reads over
        task = self.loop.create_task(self._handshake(transport, self.listener.tls))
        self.gate.handshakes.add(task)
        task.add_done_callback(self.gate.handshakes.discard)

    async def _handshake(self, transport: asyncio.Transport, context: ssl.SSLContext) -> None:
        """TLS within the head's deadline, then HTTP; a failed handshake just closes.

        uvloop starts reading as soon as ``connection_made`` returns (pausing there
        does not hold), so the client's first bytes may have come here before TLS
        was set up: ``start_tls`` is stepped by hand to hand them to the TLS
        protocol right after it takes over the reads, before anything newer.
        """
        timeout = max(0.1, self._accepted + self._limits.header_timeout - self.loop.time())
        start = self.loop.start_tls(
            transport, self, context, server_side=True,
            ssl_handshake_timeout=timeout, ssl_shutdown_timeout=self._limits.header_timeout,
        )
        handshake: asyncio.Future[None] = self.loop.create_future()
        try:
            handshake = start.send(None)  # up to its wait for the handshake
            raw, self._early = self._early, []
            _feed(transport.get_protocol(), raw)  # from now on, _early holds plain bytes
            await asyncio.wait([handshake])
            start.send(None)
            raise RuntimeError("start_tls did not return after its handshake")
        except StopIteration as done:
            secure = done.value
        except asyncio.CancelledError:  # the listener stops
            handshake.add_done_callback(_consume)  # its end, now or later, is of no interest
            start.close()
            transport.close()
            self._release()
            raise
        except Exception as exc:  # timeouts, resets and TLS alerts alike: nothing to answer
            log.debug("%s: TLS handshake with %s failed: %r", self.gate.name, self._client, exc,
                      extra={"client": self._client, "transport": self.gate.name})
            start.close()
            transport.close()
            self._release()
            return
        if secure is None or secure.is_closing():
            self._release()
            return
        self._serve(secure)
        early, self._early = self._early, []
        for data in early:  # what came with the end of the handshake, before start_tls returned
            if not self.transport.is_closing():
                self.data_received(data)

    def _serve(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        self._serving = True
        self._arm(self._accepted + self._limits.header_timeout, self._head_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._release()
        if self._serving:
            super().connection_lost(exc)

    def _release(self) -> None:
        if self._client is not None:
            self.gate.release(self._client)
            self._client = None

    # --- bytes in ---------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if not self._serving:  # TLS bytes before start_tls took the reads, then HTTP
            self._early.append(data)  # bytes that came with the end of the handshake
            return
        if self._discard is not None:
            self._discard -= len(data)
            if self._discard < 0:
                self.transport.abort()
            return
        self._unset_keepalive_if_required()
        limit = self._limits.max_request_line + self._limits.max_header_bytes + HEAD_OVERHEAD
        while data:
            piece = data
            if self._in_head:  # never hand the parser more head than the limits allow
                room = limit - self._head_bytes
                if room <= 0:
                    self._refuse(*self._too_large())
                    return
                piece, data = data[:room], data[room:]
                self._head_bytes += len(piece)
            else:
                data = b""
            if not self._feed(piece):
                return
        if self._in_body and self._timer is None:
            self._progress = self.loop.time()
            self._arm(self._progress + self._limits.body_timeout, self._body_timeout)

    def _feed(self, piece: bytes) -> bool:
        """Parse ``piece``; False once the connection is being refused or closed."""
        try:
            self.parser.feed_data(piece)
        except httptools.HttpParserUpgrade:
            # No upgrade is served: the request is answered as HTTP/1.1, then the
            # connection closes (the parser reads nothing after an upgrade).
            if self.cycle is not None and not self.cycle.response_complete:
                self.cycle.keep_alive = False
            else:
                self.transport.close()
            self._discard = LINGER_BYTES
            return False
        except httptools.HttpParserError:
            if self._refusal is None:
                self._refusal = (400, "not a valid HTTP/1.1 request")
        if self._refusal is not None:
            self._refuse(*self._refusal)
            return False
        return not self.transport.is_closing()

    def _too_large(self) -> tuple[int, str]:
        if self._url_bytes > self._limits.max_request_line:
            return 414, f"the request line is longer than {self._limits.max_request_line} bytes"
        return 431, f"the request header is larger than {self._limits.max_header_bytes} bytes"

    def _stop(self, refusal: tuple[int, str]) -> None:
        self._refusal = refusal
        raise _Stop

    # --- parser callbacks ---------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._begun = True
        self._url_bytes = self._field_bytes = 0
        if self._timer is None:  # a request after keep-alive: its head has a deadline too
            self._arm(self.loop.time() + self._limits.header_timeout, self._head_timeout)
        identify = self.listener.identify
        if identify is not None:
            if not self._identified:
                ssl_object = self.transport.get_extra_info("ssl_object")
                der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
                self._peer = identify(der) if der else None
                self._identified = True
            self.scope["extensions"] = {"trustchain.peer": self._peer}  # type: ignore[dict-item]

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._url_bytes += len(url)
        if self._url_bytes > self._limits.max_request_line:
            self._stop(self._too_large())

    def on_header(self, name: bytes, value: bytes) -> None:
        self._field_bytes += len(name) + len(value) + 4
        if self._field_bytes > self._limits.max_header_bytes:
            self._stop(self._too_large())
        if len(self.headers) >= self._limits.max_headers:
            self._stop((431, f"the request has more than {self._limits.max_headers} header fields"))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._in_body = True
        self._cancel_timer()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._progress = self.loop.time()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_head, self._in_body, self._begun = True, False, False
        self._head_bytes = 0
        self._cancel_timer()
        super().on_message_complete()

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        if app is service_unavailable:  # uvicorn's cap on requests in progress
            self.gate.warn(self._client or "unknown", self.loop.time(),
                           "answered 503: too many requests in progress", 503)
            app = _busy
        super()._start_asgi_task(cycle, app)

    # --- deadlines and refusals -----------------------------------------------------

    def _arm(self, when: float, callback: Callable[[], None]) -> None:
        self._cancel_timer()
        self._timer = self.loop.call_at(when, callback)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_timeout(self) -> None:
        self._timer = None
        if not self._begun:
            self.transport.close()  # nothing came: nothing to answer
            return
        self._refuse(408, f"the request head did not arrive within "
                          f"{self._limits.header_timeout:g} s")

    def _body_timeout(self) -> None:
        self._timer = None
        cycle = self.cycle
        if not self._in_body or cycle is None:
            return
        now = self.loop.time()
        if self.flow.read_paused or cycle.waiting_for_100_continue:
            self._progress = now  # the application is not reading: not the client's delay
        due = self._progress + self._limits.body_timeout
        if due > now:
            self._arm(due, self._body_timeout)
        elif cycle.response_started:
            self.transport.close()
        else:
            self._refuse(408, f"no request body bytes arrived for "
                              f"{self._limits.body_timeout:g} s")

    def _refuse(self, status: int, detail: str) -> None:
        """Answer ``status`` and close, reading no further request."""
        self._cancel_timer()
        self.gate.warn(self._client or "unknown", self.loop.time(), f"answered {status}: {detail}",
                       status)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if cycle.response_started or self._in_head:  # a response is on its way: cut it
                self.transport.close()
                return
            cycle.disconnected = True  # the application's reads end; its answer is dropped
            cycle.message_event.set()
        self.transport.write(answer(status, detail))
        self._linger()

    def _linger(self) -> None:
        """Close once the client could read the answer: stop sending, then drop what it
        still sends (a bounded amount, for a bounded time) instead of resetting."""
        self._in_head = self._in_body = False
        self._discard = LINGER_BYTES
        self.flow.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._arm(self.loop.time() + LINGER_SECONDS, self.transport.close)


@dataclass(frozen=True)
class _Listener:
    """What the connections of one listener share."""

    gate: Gate
    tls: ssl.SSLContext | None
    identify: Identify | None


def _protocol_for(listener: _Listener) -> type[EdgeProtocol]:
    class ListenerProtocol(EdgeProtocol):
        pass

    ListenerProtocol.listener = listener
    return ListenerProtocol


class _Server(uvicorn.Server):
    """uvicorn's server minus its signal handlers: the node decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpListener:
    def __init__(
        self, app: ASGIApp, addresses: list[str], port: int, grace_seconds: float,
        *, tls: ssl.SSLContext | None = None, identify: Identify | None = None,
        limits: HttpLimits | None = None,
    ) -> None:
        self._app = app
        self._tls = tls
        self._identify = identify
        self._scheme = "https" if tls else "http"
        self._addresses = addresses
        self._port = port
        self._grace = grace_seconds
        self._limits = limits if limits is not None else HttpLimits.from_config(NodeConfig())
        self._gate: Gate | None = None
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.bound: list[tuple[str, int]] = []

    async def start(self) -> list[tuple[str, int]]:
        """Bind and start serving; return the bound ``(address, port)`` pairs.

        :raises ListenError: if an address cannot be bound.
        """
        sockets: list[socket.socket] = []
        try:
            for address in self._addresses:
                sock = bind_socket(address, self._port, socket.SOCK_STREAM)
                sock.listen(BACKLOG)  # queue connections from now on, before the server runs
                self.bound.append(sock.getsockname()[:2])
                sockets.append(sock)
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        limits = self._limits
        cap = min(limits.max_connections, max(1, descriptor_limit() // 4))
        if cap < limits.max_connections:
            log.info("%s: at most %d connections (a quarter of the descriptor limit)",
                     self._scheme, cap)
        self._gate = Gate(self._scheme, limits, cap)
        config = uvicorn.Config(
            _quiet_disconnects(self._app),
            http=_protocol_for(_Listener(self._gate, self._tls, self._identify)), ws="none",
            lifespan="off", log_config=None, access_log=False, server_header=False,
            date_header=False, proxy_headers=False, backlog=BACKLOG,
            timeout_graceful_shutdown=max(1, round(self._grace)),
            timeout_keep_alive=max(1, round(limits.keepalive_timeout)),
            # Connections are capped at accept; this catches requests that outlive theirs.
            limit_concurrency=cap + 1,
        )
        server_log = logging.getLogger("uvicorn.error")
        server_log.setLevel(max(logging.WARNING, log.getEffectiveLevel()))
        if _quiet_overload not in server_log.filters:
            server_log.addFilter(_quiet_overload)  # logged once a minute per client instead
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=sockets))
        while not self._server.started and not self._task.done():
            await asyncio.sleep(0.01)  # uvicorn signals readiness only through this flag
        if self._task.done():
            self._task.result()  # startup failed: raise its error here
        for address, port in self.bound:
            log.info("listening: %s on %s/tcp", self._scheme, format_address(address, port))
        return self.bound

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._gate is not None:
            for task in list(self._gate.handshakes):
                task.cancel()
        if self._task is not None:
            await self._task
