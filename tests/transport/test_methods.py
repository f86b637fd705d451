"""Request arguments as every transport reads them: JSON bounded before it is parsed,
integers only, and path integers that cannot fail the router (issue 14)."""

from __future__ import annotations

import json

import pytest
from starlette.applications import Starlette

from tests.fuzz.node import ADMIN, asgi_request, fuzz_node
from transport.methods import MAX_JSON_DEPTH, Call, Method, Service, json_args, nests_within, routes
from trustchain.errors import BadRequest


def nested(depth: int) -> bytes:
    return b'{"chain":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


def test_json_nested_deeper_than_the_limit_is_refused_before_parsing() -> None:
    assert json_args(nested(MAX_JSON_DEPTH)) == {"chain": json.loads(nested(MAX_JSON_DEPTH))["chain"]}
    for body in (nested(MAX_JSON_DEPTH + 1), b"[" * 100_000, b'{"a":' * 50_000):
        with pytest.raises(BadRequest, match="nested too deeply"):
            json_args(body)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = '"' + "[" * 100 + '\\"' + "{" * 100 + '\\\\"'
    assert json_args(f'{{"a": {text}, "b": [[1], [2]]}}'.encode())["b"] == [[1], [2]]
    assert nests_within(b'["\\\\"' + b",[" * 40 + b"]" * 41, 32) is False
    assert nests_within(b"[[]" + b"[]" * 1000 + b"]", 32) is True
    assert nests_within(b"]]][[[" * 20, 32) is False  # unbalanced: not JSON


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"1.5",
                                    b"1.0", b"-0.0", b"1E2"])
def test_json_numbers_must_be_integers(number: bytes) -> None:
    with pytest.raises(BadRequest, match="integers"):
        json_args(b'{"log": "a", "start": ' + number + b', "end": 1}')
    assert json_args(b'{"start": -0, "end": 18446744073709551616}')["end"] == 2**64


def test_a_body_in_another_encoding_than_utf8_is_not_json() -> None:
    with pytest.raises(BadRequest, match="not JSON"):
        json_args('{"log": "a"}'.encode("utf-16"))


async def test_a_path_integer_too_long_for_int_matches_no_route() -> None:
    """Starlette's ``int`` convertor took any number of digits, and int() refuses more than
    4,300 while routing: a 500 before any handler ran."""
    service = Service("t", (Method(lambda call: {"shard": call.args["shard"]},
                                   http="GET /crl/{shard:int}.crl"),))
    app = Starlette(routes=routes([service]))
    assert await asgi_request(app, "GET", "/crl/7.crl", b"", None) == (200, b'{"shard":7}')
    status, _ = await asgi_request(app, "GET", "/crl/" + "9" * 5000 + ".crl", b"", None)
    assert status == 404


@pytest.mark.parametrize("target", ["/logs/a/ct/v1/add-chain", "/logs/a/ct/v1/add-pre-chain",
                                    "/ca/revoke"])
def test_deeply_nested_bodies_to_the_node_get_400_nested_too_deeply(target: str) -> None:
    """Issue 14: 100,000 '[' to add-chain, add-pre-chain and /ca/revoke gave a 500 (60,000:
    /ca/revoke reads at most 64 KiB)."""
    node = fuzz_node()
    for body in (b"[" * 60_000, nested(MAX_JSON_DEPTH + 1)):
        status, answer = node.http("POST", target, body)
        problem = json.loads(answer)
        assert (status, problem["status"]) == (400, 400)
        assert "nested too deeply" in problem["detail"]


def test_the_node_refuses_nan_and_floats_over_http_and_stoq() -> None:
    from trustchain.stoq.framing import Request

    node = fuzz_node()
    status, answer = node.http("POST", "/logs/a/ct/v1/add-chain", b'{"chain": NaN}')
    assert status == 400 and "integers" in json.loads(answer)["detail"]
    outcome = node.router.dispatch(Request("ca", "list", b'{"network": 1.5}'), ADMIN)
    assert isinstance(outcome, tuple) and outcome[0] == 400


def test_call_parse_names_the_field() -> None:
    from trustchain.wiring.ct import Entries

    with pytest.raises(BadRequest, match="start"):
        Call(json_args(b'{"log": "a", "start": "abc", "end": 1}'), b"", None).parse(Entries)


def test_a_body_of_many_small_arrays_is_refused_before_parsing() -> None:
    """900 KB of shallow arrays took json.loads ~430 ms on the shared event loop."""
    from transport.methods import MAX_JSON_CONTAINERS, json_args, nests_within

    many = b'{"chain": [' + b",".join([b"[]"] * 200_000) + b"]}"
    assert not nests_within(many, 32)
    with pytest.raises(BadRequest, match="arrays and objects"):
        json_args(many)
    brackets_in_strings = b'{"chain": ["' + b"[" * 100_000 + b'"]}'
    assert json_args(brackets_in_strings)["chain"][0] == "[" * 100_000
    just_enough = b"[" + b",".join([b"[]"] * (MAX_JSON_CONTAINERS - 2)) + b"]"
    assert nests_within(just_enough, 32)
