"""ACME error documents (RFC 8555 section 6.7): ``application/problem+json`` with the
``urn:ietf:params:acme:error:`` types clients act on (certbot retries a ``badNonce``
with the fresh nonce of the same answer, for example)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ACME_ERROR = "urn:ietf:params:acme:error:"
PROBLEM_TYPE = "application/problem+json"

#: The HTTP status each type is answered with (RFC 8555 section 6.7 and its examples;
#: badNonce is 400 with the status in the document too, as Boulder and Pebble do).
STATUS = {
    "accountDoesNotExist": 400,
    "alreadyReplaced": 409,
    "alreadyRevoked": 400,
    "badCSR": 400,
    "badNonce": 400,
    "badPublicKey": 400,
    "badRevocationReason": 400,
    "badSignatureAlgorithm": 400,
    "caa": 403,
    "compound": 403,
    "connection": 400,
    "dns": 400,
    "externalAccountRequired": 401,
    "incorrectResponse": 403,
    "invalidContact": 400,
    "malformed": 400,
    "orderNotReady": 403,
    "rateLimited": 429,
    "rejectedIdentifier": 400,
    "serverInternal": 500,
    "unauthorized": 403,
    "unsupportedContact": 400,
    "unsupportedIdentifier": 400,
    "userActionRequired": 403,
}


class AcmeProblem(Exception):
    """A request refused, with the RFC's error type (the part after the URN prefix)."""

    def __init__(self, kind: str, detail: str, *, status: int | None = None,
                 headers: Mapping[str, str] | None = None,
                 extra: Mapping[str, Any] | None = None) -> None:
        super().__init__(detail)
        assert kind in STATUS, kind
        self.kind = kind
        self.detail = detail
        self.status = status if status is not None else STATUS[kind]
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def document(self) -> dict[str, Any]:
        return {"type": ACME_ERROR + self.kind, "detail": self.detail, "status": self.status,
                **self.extra}
