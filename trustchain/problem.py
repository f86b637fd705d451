"""The one shape of an error answer: an RFC 9457 problem document.

Every transport answers a refused request with one of these: HTTP (and
HTTP/3) as ``application/problem+json`` with the status line, stoq/1 as the
response message with the same status.  Which error becomes which status is
decided in one place at the edge (:mod:`transport.problem`).
"""

from __future__ import annotations

from dataclasses import dataclass

from trustchain.canonical import canonical_json

#: The media type of a problem document over HTTP.
PROBLEM_JSON = "application/problem+json"

#: The title of each status a node answers with (RFC 9457: a short, fixed summary).
TITLES = {
    400: "bad request",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
    409: "conflict",
    413: "content too large",
    429: "too many requests",
    500: "internal error",
    503: "unavailable",
}


@dataclass(frozen=True)
class Problem:
    status: int
    detail: str = ""
    #: A short summary; by default the one of the status.
    title: str = ""
    type: str = "about:blank"
    #: Seconds after which a retry may succeed (429 and 503): HTTP's Retry-After
    #: header, and the document's ``retry_after`` member on every transport.
    retry_after: int | None = None

    def document(self) -> dict[str, object]:
        body: dict[str, object] = {"type": self.type, "status": int(self.status),
                                   "title": self.title or TITLES.get(self.status, "error")}
        if self.detail:
            body["detail"] = self.detail
        if self.retry_after is not None:
            body["retry_after"] = self.retry_after
        return body

    def to_json(self) -> bytes:
        """Canonical JSON: the same bytes over every transport."""
        return canonical_json(self.document())
