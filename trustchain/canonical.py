"""Canonical JSON: the byte form that TrustChain signs and hashes.

The encoding is the subset of RFC 8785 (JSON Canonicalization Scheme) that
needs no floating-point formatting: objects with string keys sorted by code
point, no insignificant whitespace, UTF-8, and the minimal string escapes of
ECMAScript ``JSON.stringify``.  Numbers must be integers with magnitude below
2**53 (so that every JCS implementation reads them exactly); floats, NaN and
non-string keys are rejected rather than silently normalised.  For such
documents the output is byte-identical to RFC 8785, as long as keys are ASCII
(JCS sorts keys by UTF-16 code unit, which differs from code-point order only
outside the Basic Multilingual Plane); non-ASCII keys are rejected.
"""

from __future__ import annotations

import json
from typing import Any

from trustchain.errors import CanonicalJSONError

#: The largest integer canonical JSON carries (models bound their integers by it).
MAX_SAFE_INTEGER = 2**53 - 1


def _check(value: Any, path: str) -> None:
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise CanonicalJSONError(f"{path}: integer {value} is outside the exact JSON range")
        return
    if isinstance(value, float):
        raise CanonicalJSONError(f"{path}: floating-point numbers are not allowed")
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not key.isascii():
                raise CanonicalJSONError(f"{path}: object keys must be ASCII strings, got {key!r}")
            _check(item, f"{path}.{key}")
        return
    raise CanonicalJSONError(f"{path}: {type(value).__name__} is not a JSON value")


def canonical_json(value: Any) -> bytes:
    """Encode ``value`` as canonical JSON bytes.

    :raises CanonicalJSONError: if ``value`` holds anything outside the
        supported subset (floats, huge integers, non-ASCII or non-string keys,
        strings with a lone surrogate).
    """
    _check(value, "$")
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800" parses, but is no character)
        raise CanonicalJSONError("a string holds a lone UTF-16 surrogate") from None


def parse_canonical_json(data: bytes) -> Any:
    """Parse ``data`` and insist that it is already in canonical form.

    Signed documents are accepted only in their canonical byte form, so that
    the bytes a pin or signature covers are exactly the bytes that are read.

    :raises CanonicalJSONError: if ``data`` is not valid UTF-8 JSON or is not
        canonical.
    """
    try:
        value = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, an integer too long
        raise CanonicalJSONError(f"not valid JSON: {exc}") from None
    if canonical_json(value) != data:
        raise CanonicalJSONError("JSON is valid but not in canonical form")
    return value


def _reject_constant(name: str) -> Any:
    raise CanonicalJSONError(f"{name} is not allowed in canonical JSON")
