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
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from transport.methods import Call, Method, Service, read_body
from trustchain.ca.acme.problems import AcmeProblem
from trustchain.ca.acme.server import AcmeRequest, AcmeServer, Meta
from trustchain.ca.acme.store import Account
from trustchain.ca.ratelimit import ADDRESS, address_key
from trustchain.errors import BadRequest, NotFound
from trustchain.storage.acme import SqliteAcmeStore
from trustchain.storage.ratelimit import RateLimiter
from trustchain.wiring.node import OpenNode, utcnow

#: Largest ACME request body read (a finalize's CSR is the largest: a few KiB).
MAX_BODY = 64 * 1024


def build_acme(node: OpenNode, limiter: RateLimiter, store: SqliteAcmeStore) -> AcmeServer:
    """The node's ACME server: its nonces prefixed with the node's id (whose they are,
    in a federation), its identity for CAA the federation's origin, new accounts
    limited per client address (the CA's ``address`` limit: 10 in 3 hours by default,
    ``ca_rate_limits`` in trustchain.toml)."""
    origin = node.identity.origin.rstrip(".").lower()

    def new_account_limit(client: str | None, now: datetime) -> None:
        if client is not None:
            try:
                key = address_key(client)
            except ValueError:  # not an IP address (a transport that names clients)
                key = client
            limiter.check({ADDRESS: key}, now)

    return AcmeServer(store, nonce_prefix=node.identity.node_id[:8],
                      meta=Meta(caa_identities=(origin,)), random=secrets.token_bytes,
                      new_account_limit=new_account_limit)


def acme_routes(server: AcmeServer) -> list[Route]:
    async def endpoint(request: Request) -> Response:
        url = f"{request.url.scheme}://{request.url.netloc}{request.url.path}"
        acme = AcmeRequest(request.method, url, request.headers.get("content-type"),
                           client=request.client.host if request.client else None)
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


class AccountsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    after: int = Field(default=0, ge=0)
    limit: int = Field(default=100, ge=1, le=1000)


class DeactivateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    account: int = Field(ge=1)


def acme_admin_service(store: SqliteAcmeStore) -> Service:
    """``admin.acme-accounts`` (a page of accounts) and ``admin.acme-deactivate`` (an
    account no longer acts: RFC 8555 7.3.6, as if its key had asked)."""

    def shown(account: Account) -> dict[str, Any]:
        return {"id": account.id, "status": account.status, "contact": account.contact,
                "key_thumbprint": account.thumbprint, "key_type": account.jwk.get("kty"),
                "created_at": account.created_at}

    def accounts(call: Call) -> dict[str, Any]:
        args = call.parse(AccountsRequest)
        return {"accounts": [shown(a) for a in store.accounts(args.after, args.limit)]}

    def deactivate(call: Call) -> dict[str, Any]:
        args = call.parse(DeactivateRequest)
        if store.account(args.account) is None:
            raise NotFound(f"no ACME account {args.account}")
        return shown(store.update_account(args.account, status="deactivated"))

    return Service("admin", (Method(accounts, stoq="acme-accounts"),
                             Method(deactivate, stoq="acme-deactivate")))
