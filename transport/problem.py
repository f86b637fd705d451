"""Which error answers which status: the one table, for every transport.

Services raise their own errors (the CA's :class:`PolicyError`, a CT log's
:class:`BadSubmission`, ...); the edges' method tables raise the generic
refusals of :mod:`trustchain.errors`.  :func:`problem_for` turns either into
a :class:`~trustchain.problem.Problem`; stoq/1 sends it as the response
message, HTTP and HTTP/3 as ``application/problem+json``.  Anything not
listed here is a bug, not a refusal: the transport logs it and answers 500
(HTTP) or resets the stream (stoq/1).
"""

from __future__ import annotations

from starlette.responses import Response

from transport.workers import WorkerStopped
from trustchain.ca.lint import LintError
from trustchain.ca.policy import NotAuthorised, PolicyError
from trustchain.ca.ratelimit import RateLimited
from trustchain.ct.log import BadSubmission
from trustchain.ct.tiles import TileError
from trustchain.errors import BadRequest, Forbidden, NotFound, RemoteError, Unavailable
from trustchain.problem import PROBLEM_JSON, Problem

#: (error class, status), most specific first; the first ``isinstance`` match wins.
STATUSES: tuple[tuple[type[Exception], int], ...] = (
    (NotAuthorised, 403),
    (Forbidden, 403),
    (NotFound, 404),
    (TileError, 404),
    (RateLimited, 429),
    (Unavailable, 503),
    (WorkerStopped, 503),
    (PolicyError, 400),
    (LintError, 400),
    (BadSubmission, 400),
    (BadRequest, 400),
    # Any other data from elsewhere that a service found invalid.
    (RemoteError, 400),
)


#: Retry-After of a 503 (a worker restarting, the node busy): soon.
UNAVAILABLE_RETRY_SECONDS = 1


def problem_for(exc: Exception) -> Problem | None:
    """The answer to a request that raised ``exc``; None for a bug (not a refusal)."""
    for kind, status in STATUSES:
        if isinstance(exc, kind):
            detail = str(exc)
            if isinstance(exc, WorkerStopped):
                detail = f"{detail}; retry"
            retry = None
            if isinstance(exc, RateLimited):
                retry = exc.retry_seconds
            elif status == 503:
                retry = UNAVAILABLE_RETRY_SECONDS
            return Problem(status, detail, retry_after=retry)
    return None


def problem_response(problem: Problem) -> Response:
    """A problem as an HTTP response (HTTP/1.1 and HTTP/3 alike)."""
    headers = ({"retry-after": str(problem.retry_after)} if problem.retry_after is not None
               else None)
    return Response(problem.to_json(), status_code=problem.status, media_type=PROBLEM_JSON,
                    headers=headers)


def problem(status: int, detail: str = "") -> Response:
    return problem_response(Problem(status, detail))
