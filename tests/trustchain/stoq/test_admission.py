from __future__ import annotations

import pytest

from trustchain.stoq.admission import Admission, Decision


def test_burst_then_retry_then_refill() -> None:
    admission = Admission(retry_above_per_second=3, max_per_address=100)
    decide = lambda now: admission.decide(now=now, has_token=False, connections_from_address=0)  # noqa: E731
    assert [decide(0.0) for _ in range(4)] == [Decision.ACCEPT] * 3 + [Decision.RETRY]
    assert decide(0.1) is Decision.RETRY  # 0.3 tokens refilled: not enough
    assert decide(0.5) is Decision.ACCEPT  # 1.2 tokens by now
    assert [decide(10.0) for _ in range(4)] == [Decision.ACCEPT] * 3 + [Decision.RETRY]


def test_zero_threshold_validates_every_address() -> None:
    admission = Admission(retry_above_per_second=0, max_per_address=10)
    assert admission.decide(now=0, has_token=False, connections_from_address=0) is Decision.RETRY
    assert admission.decide(now=99, has_token=False, connections_from_address=0) is Decision.RETRY


def test_token_is_always_validated() -> None:
    admission = Admission(retry_above_per_second=100, max_per_address=10)
    assert admission.decide(now=0, has_token=True, connections_from_address=0) is Decision.RETRY


def test_per_address_cap() -> None:
    admission = Admission(retry_above_per_second=100, max_per_address=2)
    assert admission.decide(now=0, has_token=False, connections_from_address=1) is Decision.ACCEPT
    assert admission.decide(now=0, has_token=False, connections_from_address=2) is Decision.REFUSE
    assert admission.decide(now=0, has_token=True, connections_from_address=2) is Decision.REFUSE


def test_invalid_limits() -> None:
    with pytest.raises(ValueError):
        Admission(retry_above_per_second=-1, max_per_address=1)
