from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustchain.canonical import canonical_json, parse_canonical_json
from trustchain.errors import CanonicalJSONError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(alphabet=st.characters(max_codepoint=127), max_size=8), children,
                      max_size=4),
    max_leaves=20,
)


def test_rfc8785_shape() -> None:
    # Sorted keys, no whitespace, UTF-8 kept as is, only mandatory escapes.
    value = {"b": [1, True, None], "a": "é\u2028\n\"\\\x1f", "c": {"z": 0, "y": -5}}
    assert canonical_json(value) == (
        '{"a":"é\u2028\\n\\"\\\\\\u001f","b":[1,true,null],"c":{"y":-5,"z":0}}'
    ).encode()


@given(json_values)
def test_round_trip(value: object) -> None:
    data = canonical_json(value)
    assert parse_canonical_json(data) == value
    assert json.loads(data) == value


@pytest.mark.parametrize(
    "value",
    [1.5, float("nan"), 2**53, {1: "x"}, {"é": 1}, b"bytes", {"a": {1, 2}}],
)
def test_rejects_values_outside_the_subset(value: object) -> None:
    with pytest.raises(CanonicalJSONError):
        canonical_json(value)


@pytest.mark.parametrize(
    "data",
    [b'{"b":1,"a":2}', b'{"a": 1}', b'{"a":1}\n', b"\xff", b'{"a":NaN}', b'{"a":1.0}', b"[",
     b'{"a":"\\u0041"}'],
)
def test_parse_rejects_non_canonical(data: bytes) -> None:
    with pytest.raises(CanonicalJSONError):
        parse_canonical_json(data)


@given(st.binary(max_size=200))
def test_parse_arbitrary_bytes_is_value_or_error(data: bytes) -> None:
    try:
        value = parse_canonical_json(data)
    except CanonicalJSONError:
        return
    assert canonical_json(value) == data
