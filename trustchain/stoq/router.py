"""Dispatching stoq/1 requests to service handlers, after the permission check.

Pure: a handler takes the request message and the peer and returns the
response message (or raises :class:`BadRequest`); the router turns that into
a status and a message.  Errors are problem documents (RFC 9457) in canonical
JSON.  Handlers may be coroutines; :meth:`Router.dispatch` then returns an
awaitable that the adapter awaits.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from trustchain.errors import RemoteError
from trustchain.identity import Peer
from trustchain.stoq.connection import problem
from trustchain.stoq.framing import Request, Status
from trustchain.stoq.permissions import PERMISSIONS, Access, allowed

Handler = Callable[[bytes, Peer | None], bytes | Awaitable[bytes]]


class BadRequest(RemoteError):
    """The request message is not valid for this method (or refused: see ``status``)."""

    status: Status = Status.BAD_REQUEST
    title = "bad request"


class Forbidden(BadRequest):
    """The caller is authenticated but may not do this (the detail says why)."""

    status = Status.FORBIDDEN
    title = "forbidden"


class TooManyRequests(BadRequest):
    """A rate limit refused the request; the detail says when to retry."""

    status = Status.TOO_MANY_REQUESTS
    title = "too many requests"


class Unavailable(BadRequest):
    """The node cannot serve this right now (e.g. a worker process stopped); retry."""

    status = Status.UNAVAILABLE
    title = "unavailable"


M = TypeVar("M", bound=BaseModel)


def parse_message(model: type[M], message: bytes) -> M:
    """Validate a JSON request message against ``model``.

    :raises BadRequest: naming the first field that is wrong.
    """
    try:
        return model.model_validate_json(message)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(map(str, err["loc"]))
        raise BadRequest(f"{where + ': ' if where else ''}{err['msg']}") from None


class Router:
    def __init__(self) -> None:
        self._handlers: dict[tuple[str, str], Handler] = {}

    def register(self, service: str, method: str, handler: Handler) -> None:
        if (service, method) not in PERMISSIONS:
            raise ValueError(f"{service}.{method} has no entry in the permission table")
        self._handlers[(service, method)] = handler

    def dispatch(
        self, request: Request, peer: Peer | None
    ) -> tuple[int, bytes] | Awaitable[tuple[int, bytes]]:
        key = (request.service, request.method)
        access = PERMISSIONS.get(key)
        handler = self._handlers.get(key)
        if access is None or handler is None:
            return Status.NOT_FOUND, problem(
                Status.NOT_FOUND, "unknown method", f"{request.service}.{request.method}"
            )
        if not allowed(access, peer):
            need = {Access.ADMIN: "an admin client certificate of this network",
                    Access.NETWORK: "a network's admin credential or an admin client "
                                    "certificate of this network"}.get(
                access, "a node or admin client certificate of this network")
            return Status.FORBIDDEN, problem(
                Status.FORBIDDEN, "forbidden",
                f"{request.service}.{request.method} requires {need}",
            )
        try:
            result: Any = handler(request.message, peer)
        except BadRequest as exc:
            return exc.status, problem(exc.status, exc.title, str(exc))
        if inspect.isawaitable(result):
            return self._finish(result)
        return Status.OK, result

    @staticmethod
    async def _finish(pending: Awaitable[bytes]) -> tuple[int, bytes]:
        try:
            return Status.OK, await pending
        except BadRequest as exc:
            return exc.status, problem(exc.status, exc.title, str(exc))
