"""A service's methods, written once and served over stoq/1, HTTP and HTTP/3 alike.

A :class:`Method` names its stoq/1 method, its HTTP route, or both, and has
one handler.  The handler gets a :class:`Call`: the request's arguments as
one JSON object (stoq/1: the message; HTTP: the JSON body, or for ``GET`` the
query parameters; HTTP path parameters on top), the raw body, and who is
calling.  It returns the answer (a JSON value, or a :class:`Reply` with its
own media type) or raises; :func:`transport.problem.problem_for` turns the
error into the same problem document on every transport.  So a method cannot
answer one way over HTTP and another over stoq/1.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.convertors import IntegerConvertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from transport.problem import problem_for, problem_response
from trustchain.canonical import canonical_json
from trustchain.errors import BadRequest, StatusAnswer
from trustchain.identity import Peer
from trustchain.stoq.router import Router, first_error

M = TypeVar("M", bound=BaseModel)

#: Largest HTTP request body a method reads unless it says otherwise.
DEFAULT_MAX_BODY = 64 * 1024
#: Deepest nesting of a JSON request: arguments are objects of scalars and lists of
#: scalars or small objects; deeper documents are refused before any parser recurses.
MAX_JSON_DEPTH = 32
#: Arrays and objects a request body may hold (a CT chain needs 2).  Parsing many
#: small ones is slow (~430 ms for 900 KB of them) on the event loop every listener shares.
MAX_JSON_CONTAINERS = 4096

_NOT_BRACKETS = bytes(range(256)).translate(None, b"[]{}")
_ONE_KIND = bytes.maketrans(b"{}", b"[]")


@dataclass(frozen=True)
class Call:
    """One request, as every transport delivers it."""

    #: The arguments: a JSON object (HTTP query and path parameters are strings).
    args: Mapping[str, Any]
    #: The request body as sent (stoq/1: the message).
    body: bytes
    #: Who is calling, proven by a client certificate (None: anonymous).
    peer: Peer | None
    #: The client's address, where the transport knows it.
    client: str | None = None
    #: The URL the client reached the node at (HTTP only: its Host header).
    base_url: str | None = None

    def parse(self, model: type[M]) -> M:
        """The arguments validated against ``model``.

        :raises BadRequest: naming the first field that is wrong.
        """
        try:
            return model.model_validate(self.args)
        except ValidationError as exc:
            raise BadRequest(first_error(exc)) from None


@dataclass(frozen=True)
class Reply:
    """An answer that is not JSON (a certificate, a tile, an OCSP response)."""

    body: bytes
    media_type: str
    headers: Mapping[str, str] = field(default_factory=dict)


Answer = Reply | bytes | dict[str, Any] | list[Any]
Handler = Callable[[Call], Answer | Awaitable[Answer]]


@dataclass(frozen=True)
class Method:
    handler: Handler
    #: The stoq/1 method name (in its service), if served over stoq/1.
    stoq: str | None = None
    #: ``"VERB /path/{param}"``, if served over HTTP and HTTP/3.
    http: str | None = None
    #: The HTTP status of a success (stoq/1 has one: OK).
    http_status: int = 200
    #: The body is not a JSON object of arguments but bytes for the handler (OCSP).
    raw: bool = False
    #: Largest HTTP body read (stoq/1 messages are bounded by the connection).
    max_body: int = DEFAULT_MAX_BODY


@dataclass(frozen=True)
class Service:
    """The methods of one service (its stoq/1 service name)."""

    name: str
    methods: tuple[Method, ...]


def json_args(body: bytes) -> dict[str, Any]:
    """A request body as a JSON object of arguments (an empty body: no arguments).

    Its nesting is bounded (:func:`nests_within`) before it is parsed, and its
    numbers must be integers: this API has no floats (canonical JSON has
    none), so ``1.5``, ``1e400``, ``NaN`` and ``Infinity`` are refused here
    rather than reaching a model as a float.

    :raises BadRequest: not a JSON object of at most :data:`MAX_JSON_DEPTH` levels
        whose numbers are integers.
    """
    if not body.strip():
        return {}
    if not nests_within(body, MAX_JSON_DEPTH):
        raise BadRequest(f"the body is nested too deeply (at most {MAX_JSON_DEPTH} levels) "
                         f"or holds more than {MAX_JSON_CONTAINERS} arrays and objects")
    try:  # UTF-8 only (RFC 8259 section 8.1): the depth check reads the bytes as such
        value = json.loads(body.decode(), parse_float=_no_float, parse_constant=_no_float)
    except (ValueError, RecursionError):
        raise BadRequest("the body is not JSON (UTF-8)") from None
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object")
    return value


def _no_float(text: str) -> Any:
    raise BadRequest(f"numbers must be integers, not {text[:20]}")


def nests_within(text: bytes, limit: int, containers: int = MAX_JSON_CONTAINERS) -> bool:
    """Whether the JSON ``text`` nests at most ``limit`` arrays and objects deep, and holds
    at most ``containers`` of them, decided without parsing it, in a few passes at C
    speed (a 900 KB CT submission: under 1 ms).

    Only the brackets outside strings count: escaped backslashes and quotes are dropped,
    then every string.  ``limit + 1`` openers in a row are too deep at once; otherwise each
    pass removes the innermost empty pairs, one level everywhere, so a document nested
    ``d`` deep is gone after ``d`` passes.  Unbalanced brackets are not JSON: False.
    """
    brackets = text.translate(None, _NOT_BRACKETS)
    if brackets.count(b"[") + brackets.count(b"{") <= min(limit, containers):
        return True
    flat = text.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = b"".join(flat.split(b'"')[::2]).translate(_ONE_KIND, _NOT_BRACKETS)
    if brackets.count(b"[") > containers:
        return False
    too_deep = b"[" * (limit + 1)
    for _ in range(limit + 1):
        if not brackets:
            return True
        if too_deep in brackets:
            return False
        shorter = brackets.replace(b"[]", b"")
        if shorter == brackets:
            return False
        brackets = shorter
    return not brackets


def encode(answer: Answer) -> tuple[bytes, str, Mapping[str, str]]:
    """An answer's bytes, media type and extra headers."""
    if isinstance(answer, Reply):
        return answer.body, answer.media_type, answer.headers
    if isinstance(answer, bytes):
        return answer, "application/json", {}
    return canonical_json(answer), "application/json", {}


def message_method(name: str, handler: Callable[[bytes, Peer | None], bytes]) -> Method:
    """A stoq/1 method whose handler takes the raw message and the peer."""
    return Method(lambda call: handler(call.body, call.peer), stoq=name, raw=True)


# --- stoq/1 -----------------------------------------------------------------------


def register(router: Router, services: Iterable[Service]) -> None:
    """Serve every method that has a stoq/1 name on ``router``."""
    for service in services:
        for method in service.methods:
            if method.stoq is not None:
                router.register(service.name, method.stoq, _stoq_handler(method))


def _stoq_handler(method: Method) -> Callable[[bytes, Peer | None], Any]:
    def handle(message: bytes, peer: Peer | None) -> bytes | Awaitable[bytes]:
        call = Call({} if method.raw else json_args(message), message, peer)
        answer = method.handler(call)
        if inspect.isawaitable(answer):
            return _finish(answer)
        return encode(answer)[0]

    async def _finish(pending: Awaitable[Answer]) -> bytes:
        return encode(await pending)[0]

    return handle


# --- HTTP and HTTP/3 --------------------------------------------------------------


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, never buffering more than ``limit`` bytes.

    :raises BadRequest: the body is larger.
    """
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BadRequest(f"the body is larger than {limit} bytes")
    return bytes(body)


class _PathInteger(IntegerConvertor):
    """``{name:int}`` in a route: at most 18 digits.  Starlette's own takes any number
    and ``int()`` refuses more than 4,300 while routing, before any handler could say
    400: a 500.  A longer number matches no route (404)."""

    regex = "[0-9]{1,18}"


register_url_convertor("int", _PathInteger())


def routes(services: Iterable[Service]) -> list[Route]:
    """Every method that has an HTTP route, as Starlette routes."""
    out = []
    for service in services:
        for method in service.methods:
            if method.http is not None:
                verb, _, path = method.http.partition(" ")
                out.append(Route(path, _http_endpoint(method), methods=[verb]))
    return out


def request_peer(request: Request) -> Peer | None:
    """The client certificate's identity (HTTPS and HTTP/3 put it in the scope)."""
    peer = request.scope.get("extensions", {}).get("trustchain.peer")
    return peer if isinstance(peer, Peer) else None


def _http_endpoint(method: Method) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            body = await read_body(request, method.max_body)
            if method.raw:
                args: dict[str, Any] = {}
            elif request.method == "GET":
                args = dict(request.query_params)
            else:
                args = json_args(body)
            args.update(request.path_params)
            call = Call(args, body, request_peer(request),
                        request.client.host if request.client else None, str(request.base_url))
            answer = method.handler(call)
            if inspect.isawaitable(answer):
                answer = await answer
        except StatusAnswer as exc:  # the type exactly as given (no charset added)
            return Response(exc.body, status_code=exc.status,
                            headers={"content-type": exc.media_type})
        except Exception as exc:
            problem = problem_for(exc)
            if problem is None:
                raise
            return problem_response(problem)
        content, media_type, headers = encode(answer)
        return Response(content, status_code=method.http_status, media_type=media_type,
                        headers=dict(headers))

    return endpoint
