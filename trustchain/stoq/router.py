"""Dispatching stoq/1 requests to service handlers, after the permission check.

Pure: a handler takes the request message and the peer and returns the
response message, or raises; the router turns that into a status and a
message.  Which error becomes which status is not the router's to know: the
``describe`` function it is built with (:func:`transport.problem.problem_for`)
decides, the same for every transport.  An error it does not describe is a
bug and propagates (the adapter resets the stream).  Handlers may be
coroutines; :meth:`Router.dispatch` then returns an awaitable that the
adapter awaits.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from trustchain.errors import BadRequest, StatusAnswer
from trustchain.identity import Peer
from trustchain.problem import Problem
from trustchain.stoq.framing import Request, Status
from trustchain.stoq.permissions import PERMISSIONS, Access, allowed

Handler = Callable[[bytes, Peer | None], bytes | Awaitable[bytes]]
Describe = Callable[[Exception], Problem | None]

M = TypeVar("M", bound=BaseModel)


def parse_message(model: type[M], message: bytes) -> M:
    """Validate a JSON request message against ``model``.

    :raises BadRequest: naming the first field that is wrong.
    """
    try:
        return model.model_validate_json(message)
    except ValidationError as exc:
        raise BadRequest(first_error(exc)) from None


def first_error(exc: ValidationError) -> str:
    """The first thing pydantic found wrong, as one line naming the field."""
    err = exc.errors()[0]
    where = ".".join(map(str, err["loc"]))
    return f"{where + ': ' if where else ''}{err['msg']}"


class Router:
    def __init__(self, describe: Describe) -> None:
        self._handlers: dict[tuple[str, str], Handler] = {}
        self._describe = describe

    def register(self, service: str, method: str, handler: Handler) -> None:
        if (service, method) not in PERMISSIONS:
            raise ValueError(f"{service}.{method} has no entry in the permission table")
        if (service, method) in self._handlers:
            raise ValueError(f"{service}.{method} is registered twice")
        self._handlers[(service, method)] = handler

    def dispatch(
        self, request: Request, peer: Peer | None
    ) -> tuple[int, bytes] | Awaitable[tuple[int, bytes]]:
        key = (request.service, request.method)
        access = PERMISSIONS.get(key)
        handler = self._handlers.get(key)
        if access is None or handler is None:
            return _answer(Problem(Status.NOT_FOUND, f"{request.service}.{request.method}",
                                   "unknown method"))
        if not allowed(access, peer):
            need = {Access.ADMIN: "an admin client certificate of this network",
                    Access.NETWORK: "a network's admin credential or an admin client "
                                    "certificate of this network"}.get(
                access, "a node or admin client certificate of this network")
            return _answer(Problem(Status.FORBIDDEN,
                                   f"{request.service}.{request.method} requires {need}"))
        try:
            result: Any = handler(request.message, peer)
        except Exception as exc:
            return self._refusal(exc)
        if inspect.isawaitable(result):
            return self._finish(result)
        return Status.OK, result

    def _refusal(self, exc: Exception) -> tuple[int, bytes]:
        if isinstance(exc, StatusAnswer):
            return exc.status, exc.body
        problem = self._describe(exc)
        if problem is None:
            raise exc
        return _answer(problem)

    async def _finish(self, pending: Awaitable[bytes]) -> tuple[int, bytes]:
        try:
            return Status.OK, await pending
        except Exception as exc:
            return self._refusal(exc)


def _answer(problem: Problem) -> tuple[int, bytes]:
    return problem.status, problem.to_json()
