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

from collections.abc import Iterable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

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
