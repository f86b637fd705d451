"""Plain-HTTP listener for the ASGI application (hypercorn does the HTTP/1.1).

The node binds the sockets itself (so it can report the real port when the
configuration asks for port 0, and so binding errors surface before
anything else starts) and hands them to hypercorn by file descriptor.
Shutdown is driven by the node: :meth:`HttpListener.stop` stops accepting,
lets in-flight requests finish for the grace period, then returns.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl

import hypercorn.asyncio
import hypercorn.config
from starlette.types import ASGIApp

from transport.sockets import bind_socket, format_address

log = logging.getLogger("trustchain.http")

#: Listen queue for the HTTP(S) sockets (the kernel caps it at net.core.somaxconn).
BACKLOG = 4096


class _TlsConfig(hypercorn.config.Config):
    """hypercorn reads certificates from files; ours come as a ready SSLContext."""

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__()
        self._context = context

    @property
    def ssl_enabled(self) -> bool:
        return True

    def create_ssl_context(self) -> ssl.SSLContext:
        return self._context


class HttpListener:
    def __init__(
        self, app: ASGIApp, addresses: list[str], port: int, grace_seconds: float,
        *, tls: ssl.SSLContext | None = None,
    ) -> None:
        self._app = app
        self._tls = tls
        self._scheme = "https" if tls else "http"
        self._addresses = addresses
        self._port = port
        self._grace = grace_seconds
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.bound: list[tuple[str, int]] = []

    async def start(self) -> list[tuple[str, int]]:
        """Bind and start serving; return the bound ``(address, port)`` pairs.

        :raises ListenError: if an address cannot be bound.
        """
        fds = []
        try:
            for address in self._addresses:
                sock = bind_socket(address, self._port, socket.SOCK_STREAM)
                sock.listen(BACKLOG)  # queue connections from now on, before hypercorn runs
                self.bound.append(sock.getsockname()[:2])
                fds.append(sock.detach())
        except BaseException:
            for fd in fds:
                socket.socket(fileno=fd).close()
            raise
        config = _TlsConfig(self._tls) if self._tls else hypercorn.config.Config()
        config.bind = [f"fd://{fd}" for fd in fds]
        config.accesslog = None
        server_log = logging.getLogger("trustchain.http.server")
        server_log.setLevel(max(logging.WARNING, log.getEffectiveLevel()))
        config.errorlog = server_log
        config.graceful_timeout = self._grace
        config.backlog = BACKLOG  # hypercorn's 100 drops bursts of CT submitters
        config.include_server_header = False
        self._task = asyncio.create_task(
            hypercorn.asyncio.serve(
                self._app,  # type: ignore[arg-type]  # hypercorn's ASGI types are narrower
                config, shutdown_trigger=self._stop.wait, mode="asgi",
            )
        )
        for address, port in self.bound:
            log.info("listening: %s on %s/tcp", self._scheme, format_address(address, port))
        return self.bound

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
