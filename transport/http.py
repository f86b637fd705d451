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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable, Iterator

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from transport.sockets import bind_socket, format_address
from trustchain.identity import Peer

log = logging.getLogger("trustchain.http")

#: Listen queue for the HTTP(S) sockets (the kernel caps it at net.core.somaxconn).
BACKLOG = 4096


class _Server(uvicorn.Server):
    """uvicorn's server minus its signal handlers: the node decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


#: From a TLS client's certificate (DER) to the identity it proves, or None.
Identify = Callable[[bytes], Peer | None]


def _identifying_protocol(identify: Identify) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, telling the app who the TLS client is.

    uvicorn does not pass client certificates to the application; this puts
    the identity proven by the connection's certificate (checked once per
    connection) into each request's scope as the ``trustchain.peer``
    extension, as the HTTP/3 adapter does (None: no certificate, or one that
    proves no identity here).
    """

    class IdentifyingProtocol(HttpToolsProtocol):
        _peer: Peer | None = None
        _identified = False

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if not self._identified:
                ssl_object = self.transport.get_extra_info("ssl_object")
                der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
                self._peer = identify(der) if der else None
                self._identified = True
            self.scope["extensions"] = {"trustchain.peer": self._peer}  # type: ignore[dict-item]

    return IdentifyingProtocol


class HttpListener:
    def __init__(
        self, app: ASGIApp, addresses: list[str], port: int, grace_seconds: float,
        *, tls: ssl.SSLContext | None = None, identify: Identify | None = None,
    ) -> None:
        self._app = app
        self._tls = tls
        self._identify = identify
        self._scheme = "https" if tls else "http"
        self._addresses = addresses
        self._port = port
        self._grace = grace_seconds
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
        tls = self._tls
        factory: Callable[..., ssl.SSLContext] | None = (
            (lambda _config, _default: tls) if tls is not None else None)
        protocol: type[HttpToolsProtocol] | str = (
            _identifying_protocol(self._identify) if self._identify is not None else "httptools")
        config = uvicorn.Config(
            self._app, http=protocol, lifespan="off", log_config=None, access_log=False,
            server_header=False, date_header=False, proxy_headers=False, backlog=BACKLOG,
            timeout_graceful_shutdown=max(1, round(self._grace)), ssl_context_factory=factory,
        )
        server_log = logging.getLogger("uvicorn.error")
        server_log.setLevel(max(logging.WARNING, log.getEffectiveLevel()))
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
        if self._task is not None:
            await self._task
