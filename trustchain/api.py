"""The REST API: one ASGI application, served over HTTP/1.1 (and later HTTP/3).

Routes:

* ``GET /healthz`` -- liveness, ``{"status": "ok"}``;
* ``GET /genesis.json`` -- the network's genesis document, byte for byte as
  pinned (a joining node checks its SHA-256 against the pin it was given);
* ``/logs/<name>/ct/v1/...`` -- the RFC 6962 API of each CT log;
* ``/logs/<name>/checkpoint``, ``/logs/<name>/tile/...``,
  ``/logs/<name>/issuer/<sha256>`` -- the same logs as static-ct-api assets.

Errors are RFC 9457 problem documents (``application/problem+json``).  Later
issues add the CA and ACME routes here.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from transport.ca import CaRunner
from transport.ct import LogRunner
from transport.problem import problem
from transport.workers import WorkerStopped
from trustchain.ct.log import MAX_CERT_BYTES, MAX_CHAIN, BadSubmission, Log
from trustchain.ct.tiles import TileError

#: add-chain bodies: MAX_CHAIN certificates of MAX_CERT_BYTES, base64 and JSON.
MAX_SUBMISSION_BYTES = (MAX_CHAIN * MAX_CERT_BYTES * 4) // 3 + 64 * 1024
#: Tiles and issuers never change once served.
IMMUTABLE = "public, max-age=31536000, immutable"


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    response = problem(exc.status_code, exc.detail)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def _ct_routes(logs: LogRunner) -> list[Route]:
    """RFC 6962 section 4 under ``/logs/<name>/ct/v1/``; errors are 400 problem documents."""

    def target(request: Request) -> Log:
        found = logs.logs.get(request.path_params["log"])
        if found is None:
            raise HTTPException(404, f"no log {request.path_params['log']!r}")
        return found

    def number(request: Request, name: str) -> int:
        value = request.query_params.get(name)
        if value is None or not value.isdigit():
            raise BadSubmission(f"parameter {name} must be a non-negative integer")
        return int(value)

    async def guarded(request: Request, work: Callable[[], Any]) -> Response:
        try:
            result = work()
            if inspect.isawaitable(result):
                result = await result
        except BadSubmission as exc:
            return problem(400, "bad request", str(exc))
        except WorkerStopped as exc:
            return problem(503, "unavailable", f"{exc}; retry")
        return JSONResponse(result)

    async def add_chain(request: Request) -> Response:
        return await submit(request, precert=False)

    async def add_pre_chain(request: Request) -> Response:
        return await submit(request, precert=True)

    async def submit(request: Request, *, precert: bool) -> Response:
        raw = bytearray()
        async for chunk in request.stream():  # never buffer more than a chain can need
            raw += chunk
            if len(raw) > MAX_SUBMISSION_BYTES:
                return problem(400, "bad request",
                               f"a submission is at most {MAX_SUBMISSION_BYTES} bytes")
        try:
            body = json.loads(raw)
            chain = body["chain"]
            if not isinstance(chain, list) or not all(isinstance(c, str) for c in chain):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return problem(400, "bad request", 'the body must be {"chain": [base64 DER, ...]}')
        name = request.path_params["log"]
        return await guarded(request, lambda: logs.add_chain(name, chain, precert))

    async def get_sth(request: Request) -> Response:
        return await guarded(request, lambda: target(request).get_sth())

    async def get_consistency(request: Request) -> Response:
        return await guarded(request, lambda: target(request).get_sth_consistency(
            number(request, "first"), number(request, "second")))

    async def get_proof(request: Request) -> Response:
        return await guarded(request, lambda: target(request).get_proof_by_hash(
            request.query_params.get("hash", ""), number(request, "tree_size")))

    async def get_entries(request: Request) -> Response:
        return await guarded(request, lambda: target(request).get_entries(
            number(request, "start"), number(request, "end")))

    async def get_entry_and_proof(request: Request) -> Response:
        return await guarded(request, lambda: target(request).get_entry_and_proof(
            number(request, "leaf_index"), number(request, "tree_size")))

    async def checkpoint(request: Request) -> Response:
        return PlainTextResponse(target(request).checkpoint(),
                                 headers={"cache-control": "no-cache, max-age=0"})

    async def tile(request: Request) -> Response:
        try:
            data = target(request).tile(request.path_params["path"])
        except TileError as exc:
            return problem(404, "no such tile", str(exc))
        return Response(data, media_type="application/octet-stream",
                        headers={"cache-control": IMMUTABLE})

    async def issuer(request: Request) -> Response:
        der = target(request).issuer(request.path_params["fingerprint"])
        if der is None:
            return problem(404, "no such issuer", "no submitted chain holds that issuer")
        return Response(der, media_type="application/pkix-cert",
                        headers={"cache-control": IMMUTABLE})

    async def get_roots(request: Request) -> Response:
        return await guarded(request, lambda: target(request).get_roots())

    async def log_list(request: Request) -> Response:
        return JSONResponse(logs.log_list(str(request.base_url)))

    base = "/logs/{log}/ct/v1/"
    return [
        Route("/logs", log_list, methods=["GET"]),
        Route(base + "add-chain", add_chain, methods=["POST"]),
        Route(base + "add-pre-chain", add_pre_chain, methods=["POST"]),
        Route(base + "get-sth", get_sth, methods=["GET"]),
        Route(base + "get-sth-consistency", get_consistency, methods=["GET"]),
        Route(base + "get-proof-by-hash", get_proof, methods=["GET"]),
        Route(base + "get-entries", get_entries, methods=["GET"]),
        Route(base + "get-entry-and-proof", get_entry_and_proof, methods=["GET"]),
        Route(base + "get-roots", get_roots, methods=["GET"]),
        # static-ct-api monitoring prefix: the same as the submission prefix.
        Route("/logs/{log}/checkpoint", checkpoint, methods=["GET"]),
        Route("/logs/{log}/tile/{path:path}", tile, methods=["GET"]),
        Route("/logs/{log}/issuer/{fingerprint}", issuer, methods=["GET"]),
    ]


def create_app(*, genesis_bytes: bytes, logs: LogRunner | None = None,
               ca: CaRunner | None = None) -> Starlette:
    """Build the ASGI application for a node whose genesis is ``genesis_bytes``."""

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def genesis(_: Request) -> Response:
        return Response(genesis_bytes, media_type="application/json")

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/genesis.json", genesis, methods=["GET"]),
            *(_ct_routes(logs) if logs is not None else []),
            *(ca.routes() if ca is not None else []),
        ],
        exception_handlers={HTTPException: _http_error},
    )
