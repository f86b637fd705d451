"""ACME over HTTP: the routes under ``/acme/`` of the node's API (HTTPS, HTTP/3, and the
plain HTTP port for tests and local clients), each request handed to the core
(:class:`trustchain.ca.acme.server.AcmeServer`) and its response sent as it is.

The request URL the core checks a JWS's ``url`` against is the one the client
addressed (scheme, Host and path), so a node reached under several names answers
each with URLs of that name.
"""

from __future__ import annotations

import secrets
from dataclasses import replace

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from transport.methods import read_body
from trustchain.ca.acme.problems import AcmeProblem
from trustchain.ca.acme.server import AcmeRequest, AcmeServer, Meta
from trustchain.errors import BadRequest
from trustchain.storage.acme import SqliteAcmeStore
from trustchain.wiring.node import OpenNode, utcnow

#: Largest ACME request body read (a finalize's CSR is the largest: a few KiB).
MAX_BODY = 64 * 1024


def build_acme(node: OpenNode) -> AcmeServer:
    """The node's ACME server: its nonces prefixed with the node's id (whose they are,
    in a federation), its identity for CAA the federation's origin."""
    origin = node.identity.origin.rstrip(".").lower()
    return AcmeServer(SqliteAcmeStore(node.db), nonce_prefix=node.identity.node_id[:8],
                      meta=Meta(caa_identities=(origin,)), random=secrets.token_bytes)


def acme_routes(server: AcmeServer) -> list[Route]:
    async def endpoint(request: Request) -> Response:
        url = f"{request.url.scheme}://{request.url.netloc}{request.url.path}"
        acme = AcmeRequest(request.method, url, request.headers.get("content-type"))
        try:
            body = await read_body(request, MAX_BODY) if request.method == "POST" else b""
        except BadRequest as exc:
            answer = server.refuse(acme, AcmeProblem("malformed", str(exc), status=413), utcnow())
        else:
            answer = server.handle(replace(acme, body=body), utcnow())
        response = Response(answer.body, answer.status, media_type=answer.content_type)
        for name, value in answer.headers:
            response.headers.append(name, value)
        return response

    return [Route("/acme/{rest:path}", endpoint, methods=["GET", "HEAD", "POST"])]
