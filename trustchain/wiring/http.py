"""The REST API: one ASGI application, served over HTTP/1.1, HTTPS and HTTP/3.

Routes: ``GET /healthz`` (liveness, ``{"status": "ok"}``), ``GET /genesis.json``
(the network's genesis document, byte for byte as pinned: a joining node
checks its SHA-256 against the pin it was given), and every method of the
services' tables that has an HTTP route (:mod:`transport.methods`): the CT
logs' RFC 6962 API and static-ct-api assets (:mod:`trustchain.wiring.ct`),
the CA's issuance, revocation, CRLs and OCSP (:mod:`trustchain.wiring.ca`).

Errors are RFC 9457 problem documents (``application/problem+json``), the
same shape stoq/1 answers with.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from transport.methods import Service, routes
from transport.problem import problem_response
from trustchain.problem import Problem


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route: 404, wrong verb: 405) as problems."""
    assert isinstance(exc, HTTPException)
    response = problem_response(Problem(exc.status_code, exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def create_app(*, genesis_bytes: bytes, services: Iterable[Service] = (),
               extra: Iterable[BaseRoute] = ()) -> Starlette:
    """The ASGI application of a node whose genesis is ``genesis_bytes``; ``extra`` are
    routes of protocols with rules of their own (ACME)."""

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def genesis(_: Request) -> Response:
        return Response(genesis_bytes, media_type="application/json")

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/genesis.json", genesis, methods=["GET"]),
            *routes(services),
            *extra,
        ],
        exception_handlers={HTTPException: _http_error},
    )


#: One line per HTTP request, at info, when ``access_log = true`` (off by default: the CT
#: and ACME paths take thousands of requests a second).
ACCESS = logging.getLogger("trustchain.access")


def with_access_log(app: ASGIApp, transport: str) -> ASGIApp:
    """``app`` logging each request on :data:`ACCESS` once answered: the client's
    address, ``transport``, method, path, status and duration (as JSON fields with
    ``log_format = "json"``).  Costs a level check per request while the log is off."""

    async def logged(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not ACCESS.isEnabledFor(logging.INFO):
            await app(scope, receive, send)
            return
        started, status = time.perf_counter(), 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await app(scope, receive, sending)
        finally:
            client: Any = scope.get("client")
            duration = round((time.perf_counter() - started) * 1000, 1)
            ACCESS.info("%s %s %s %d %.1f ms", client[0] if client else "-", scope["method"],
                        scope["path"], status, duration, extra={
                            "client": client[0] if client else None, "transport": transport,
                            "method": scope["method"], "status": status,
                            "duration_ms": duration})

    return logged
