"""The REST API: one ASGI application, served over HTTP/1.1 (and later HTTP/3).

Only public reads exist so far:

* ``GET /healthz`` -- liveness, ``{"status": "ok"}``;
* ``GET /genesis.json`` -- the network's genesis document, byte for byte as
  pinned (a joining node checks its SHA-256 against the pin it was given).

Errors are RFC 9457 problem documents (``application/problem+json``).  Later
issues add the CT, CA and ACME routes here.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

PROBLEM_JSON = "application/problem+json"


def problem(status: int, title: str, detail: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    response = problem(exc.status_code, exc.detail)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def create_app(*, genesis_bytes: bytes) -> Starlette:
    """Build the ASGI application for a node whose genesis is ``genesis_bytes``."""

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def genesis(_: Request) -> Response:
        return Response(genesis_bytes, media_type="application/json")

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/genesis.json", genesis, methods=["GET"]),
        ],
        exception_handlers={HTTPException: _http_error},
    )
