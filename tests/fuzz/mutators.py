"""Structure-aware mutations: JSON documents and the DER or bytes carried inside them.

Byte flips rarely survive a JSON parser, so JSON seeds are also mutated as
values: one leaf (or container) is replaced by a boundary value (huge or
negative integers, a float, an empty or very long string, a deep list), a
key dropped, renamed or added, a list element dropped or duplicated, and a
string that holds base64 or hex has its decoded bytes mutated (a certificate
with a flipped byte in its key is still base64).  The document is written
back in canonical form, or with whitespace, or with a constant such as
``NaN`` put in place of a number.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
from typing import Any

from tests.fuzz.engine import geometric, mutate

#: Byte-level tokens of JSON that parsers disagree on, or refuse.
JSON_TOKENS = (
    b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"1.5", b"-0", b"1E2", b"0.0",
    b"18446744073709551616", b"-9223372036854775809", b"9" * 5000, b'"\\ud800"', b'"\\u0000"',
    b"null", b"true", b"[]", b"{}", b"[", b"{", b"]", b"}", b",", b":", b'"', b"\\",
    b'"abc"', b"\xff", b"\xc3\x28", b" " * 5, b"[" * 40, b"{\"a\":" * 40,
)

_BOUNDARY_VALUES: tuple[Any, ...] = (
    None, True, False, 0, -1, 1, 2**31, 2**53, 2**53 + 1, 2**62, 2**63, 2**64, -(2**63) - 1,
    10**30, 1.5, -0.0, 1e300, "", "a", "abc", "x" * 70, "x" * 5000, "0", "-1", "1e400", "NaN",
    "\u0000", "\ud7ff\u00e9", "..", "*.", [], {}, [1, 2], ["", ""], {"": None},
)


def deep(rng: random.Random) -> Any:
    """A list nested deeper than any parser's or model's limit."""
    value: Any = rng.choice((0, "a", None))
    for _ in range(rng.choice((33, 64, 300, 1100))):
        value = [value]
    return value


def _mutate_bytes_text(rng: random.Random, text: str) -> str | None:
    """A base64 or hex string with its decoded bytes mutated (None if it is neither)."""
    if len(text) >= 8 and len(text) % 2 == 0 and all(c in "0123456789abcdef" for c in text):
        return mutate(rng, bytes.fromhex(text)).hex()
    if len(text) >= 8:
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            return None
        return base64.b64encode(mutate(rng, raw)).decode()
    return None


def _leaf(rng: random.Random, value: Any) -> Any:
    roll = rng.random()
    if isinstance(value, str) and roll < 0.5:
        changed = _mutate_bytes_text(rng, value)
        if changed is not None:
            return changed
        if roll < 0.3:
            cut = rng.randrange(len(value) + 1)
            return value[:cut] + rng.choice(("", ".", "-", "A", "\u00e9", "=", "/", " ")) \
                + value[cut:]
    if isinstance(value, bool):
        return not value
    if isinstance(value, int) and roll < 0.5:
        return value + rng.choice((-(2**64), -1, 1, 2**32, 2**64))
    if roll < 0.03:
        return deep(rng)
    return rng.choice(_BOUNDARY_VALUES)


def mutate_value(rng: random.Random, value: Any, depth: int = 0) -> Any:
    """``value`` with one thing in it changed (a leaf, a key, a list element)."""
    if isinstance(value, dict) and value and (depth < 8) and (depth == 0 or rng.random() < 0.8):
        keys = list(value)
        key = rng.choice(keys)
        out = dict(value)
        roll = rng.random()
        if roll < 0.1:
            del out[key]
        elif roll < 0.16:
            out[rng.choice(("extra", "", key.upper(), key + "_"))] = rng.choice(_BOUNDARY_VALUES)
        else:
            out[key] = mutate_value(rng, value[key], depth + 1)
        return out
    if isinstance(value, list) and value and depth < 8 and rng.random() < 0.8:
        out_list = list(value)
        i = rng.randrange(len(out_list))
        roll = rng.random()
        if roll < 0.1:
            del out_list[i]
        elif roll < 0.2:
            out_list.insert(i, out_list[i])
        elif roll < 0.25:
            out_list.reverse()
        else:
            out_list[i] = mutate_value(rng, out_list[i], depth + 1)
        return out_list
    return _leaf(rng, value)


def dump(rng: random.Random, value: Any) -> bytes:
    """``value`` as JSON: canonical mostly, sometimes spaced or with unsorted keys."""
    roll = rng.random()
    try:
        if roll < 0.8:
            text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        elif roll < 0.9:
            text = json.dumps(value, indent=1)
        else:
            text = json.dumps(value, ensure_ascii=True)
        return text.encode("utf-8", "surrogatepass")
    except (ValueError, RecursionError):
        return b"[]"


def mutate_json(rng: random.Random, data: bytes) -> bytes:
    """A JSON seed with one value mutated (or its bytes, if it is not JSON)."""
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return mutate(rng, data, JSON_TOKENS)
    for _ in range(geometric(rng, 0.25, 4)):
        value = mutate_value(rng, value)
    out = dump(rng, value)
    if rng.random() < 0.1:  # a number (or any scalar) replaced by a raw token
        out = mutate(rng, out, JSON_TOKENS)
    return out
