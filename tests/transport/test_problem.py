"""Which error answers which status, with Retry-After on every 429 and 503."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from transport.problem import problem_for, problem_response
from transport.workers import WorkerStopped
from trustchain.ca.policy import NotAuthorised
from trustchain.ca.ratelimit import NEVER, Limit, RateLimited
from trustchain.errors import BadRequest, NotFound, StorageError, Unavailable

NOW = datetime(2026, 1, 1, tzinfo=UTC)
LIMIT = Limit("names", 2, timedelta(days=1), what="certificates")


def test_a_rate_limit_refusal_says_when_to_retry() -> None:
    problem = problem_for(RateLimited(LIMIT, "k", timedelta(seconds=90.2), NOW))
    assert problem is not None and (problem.status, problem.retry_after) == (429, 91)
    response = problem_response(problem)
    assert response.status_code == 429 and response.headers["retry-after"] == "91"
    assert json.loads(response.body)["retry_after"] == 91


def test_a_request_that_can_never_pass_is_told_the_period() -> None:
    problem = problem_for(RateLimited(LIMIT, "k", NEVER, NOW, cost=5))
    assert problem is not None and problem.retry_after == 86400


def test_unavailable_answers_carry_retry_after() -> None:
    for error in (WorkerStopped("worker 1 stopped"), Unavailable()):
        problem = problem_for(error)
        assert problem is not None and problem.status == 503 and problem.retry_after == 1
        assert problem_response(problem).headers["retry-after"] == "1"


def test_refusals_map_to_their_status_and_bugs_to_none() -> None:
    cases = [(BadRequest("x"), 400), (NotAuthorised("x"), 403), (NotFound("x"), 404)]
    for error, status in cases:
        problem = problem_for(error)
        assert problem is not None and problem.status == status and problem.retry_after is None
        assert "retry-after" not in problem_response(problem).headers
    assert problem_for(StorageError("disk full")) is None
    assert problem_for(KeyError("bug")) is None
