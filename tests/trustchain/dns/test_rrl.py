from __future__ import annotations

import dns.flags
import dns.message
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustchain.dns.rrl import Action, ResponseRateLimiter, truncated

QUERY = dns.message.make_query("www.example.net", "A").to_wire()
OTHER = dns.message.make_query("WWW.example.net", "AAAA").to_wire()
NOERROR = b"\x00\x00\x84\x00"
NXDOMAIN = b"\x00\x00\x84\x03"


def test_bucket_then_slip_and_drop() -> None:
    rrl = ResponseRateLimiter(responses_per_second=3, slip=2)
    actions = [rrl.decide("2001:db8::1", QUERY, NOERROR, 0.0) for _ in range(7)]
    assert actions == [Action.SEND] * 3 + [Action.DROP, Action.SLIP, Action.DROP, Action.SLIP]
    assert rrl.decide("2001:db8::1", QUERY, NOERROR, 1.0) is Action.SEND  # refilled


def test_prefixes_and_classes_are_separate() -> None:
    rrl = ResponseRateLimiter(responses_per_second=1, slip=0)
    assert rrl.decide("2001:db8::1", QUERY, NOERROR, 0) is Action.SEND
    assert rrl.decide("2001:db8::2", QUERY, NOERROR, 0) is Action.DROP  # same /56
    assert rrl.decide("2001:db8:0:100::1", QUERY, NOERROR, 0) is Action.SEND  # another /56
    assert rrl.decide("2001:db8::1", OTHER, NOERROR, 0) is Action.SEND  # another qname/type
    assert rrl.decide("192.0.2.1", QUERY, NOERROR, 0) is Action.SEND
    assert rrl.decide("192.0.2.200", QUERY, NOERROR, 0) is Action.DROP  # same /24


def test_random_subdomains_share_the_error_bucket() -> None:
    rrl = ResponseRateLimiter(responses_per_second=2, slip=0)
    names = [dns.message.make_query(f"r{i}.example.net", "A").to_wire() for i in range(5)]
    actions = [rrl.decide("198.51.100.7", q, NXDOMAIN, 0) for q in names]
    assert actions == [Action.SEND, Action.SEND, Action.DROP, Action.DROP, Action.DROP]


def test_truncated_answer_is_minimal_and_parses() -> None:
    wire = truncated(QUERY)
    assert wire is not None
    message = dns.message.from_wire(wire)
    assert message.flags & dns.flags.TC and message.flags & dns.flags.QR
    assert not message.answer and message.question[0].name.to_text() == "www.example.net."


@given(st.binary(max_size=300))
def test_truncated_never_crashes(data: bytes) -> None:
    truncated(data)


def test_invalid_settings() -> None:
    with pytest.raises(ValueError):
        ResponseRateLimiter(responses_per_second=0)
