"""GCRA rate limits: the pure arithmetic, its window bound, and the SQLite buckets."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trustchain.ca.ratelimit import (
    ADDRESS,
    DEFAULT_LIMITS,
    DOMAIN,
    IDENTITY,
    NAMES,
    NEVER,
    Limit,
    RateLimited,
    address_key,
    authz_key,
    check,
    names_key,
)
from trustchain.errors import RemoteError
from trustchain.storage.database import Database, open_database
from trustchain.storage.migrations import migrate
from trustchain.storage.ratelimit import RATELIMIT_SCHEMA, RateLimiter

T0 = 1_795_000_000.0  # seconds since the epoch, late 2026
FIVE_PER_10S = Limit("test", 5, timedelta(seconds=10))  # T = 2 s, burst 5
US = timedelta(microseconds=1)


def drain(limit: Limit, now: float, tat: float | None = None) -> tuple[int, float | None]:
    """Take single units at ``now`` until refused; return how many and the TAT."""
    taken = 0
    while True:
        decision = check(limit, tat, now)
        if not decision.allowed:
            return taken, tat
        tat = decision.tat
        taken += 1


# --- the pure core ----------------------------------------------------------------


def test_limit_parameters() -> None:
    assert FIVE_PER_10S.emission_interval == 2.0
    assert FIVE_PER_10S.capacity == 5 and FIVE_PER_10S.tolerance == 10.0
    bursty = Limit("b", 5, timedelta(seconds=10), burst=2)
    assert bursty.capacity == 2 and bursty.tolerance == 4.0
    for count, period, burst in ((0, 1, None), (1, 0, None), (1, 1, 0)):
        with pytest.raises(ValueError):
            Limit("x", count, timedelta(seconds=period), burst)
    with pytest.raises(ValueError):
        check(FIVE_PER_10S, None, T0, cost=0)


def test_burst_allowed_then_refused_with_exact_retry_after() -> None:
    tat = None
    for remaining in (4, 3, 2, 1, 0):
        decision = check(FIVE_PER_10S, tat, T0)
        assert decision.allowed and decision.retry_after == timedelta(0)
        assert decision.remaining == remaining
        tat = decision.tat
    assert tat == T0 + 10
    refused = check(FIVE_PER_10S, tat, T0)
    assert not refused.allowed and refused.remaining == 0
    assert refused.retry_after == timedelta(seconds=2)
    assert refused.tat == tat  # refusing changes nothing
    # One microsecond early is still refused, and told the one microsecond left.
    early = check(FIVE_PER_10S, tat, T0 + 2 - 1e-6)
    assert not early.allowed and early.retry_after == US
    assert check(FIVE_PER_10S, tat, T0 + 2).allowed


def test_refills_one_unit_per_emission_interval() -> None:
    taken, tat = drain(FIVE_PER_10S, T0)
    assert taken == 5
    assert drain(FIVE_PER_10S, T0 + 2, tat)[0] == 1
    assert drain(FIVE_PER_10S, T0 + 7, tat)[0] == 3  # 7 s refill 3 whole units
    assert drain(FIVE_PER_10S, T0 + 10, tat)[0] == 5
    assert drain(FIVE_PER_10S, T0 + 1000, tat)[0] == 5  # never more than the burst


def test_burst_differs_from_count() -> None:
    limit = Limit("b", 5, timedelta(seconds=10), burst=2)
    taken, tat = drain(limit, T0)
    assert taken == 2
    refused = check(limit, tat, T0)
    assert refused.retry_after == timedelta(seconds=2)
    assert "(bursts of up to 2)" in limit.describe()


def test_cost_greater_than_one() -> None:
    first = check(FIVE_PER_10S, None, T0, cost=3)
    assert first.allowed and first.remaining == 2 and first.tat == T0 + 6
    second = check(FIVE_PER_10S, first.tat, T0, cost=3)
    assert not second.allowed and second.remaining == 2
    assert second.retry_after == timedelta(seconds=2)  # one more unit needed
    assert check(FIVE_PER_10S, first.tat, T0 + 2, cost=3).allowed
    assert check(FIVE_PER_10S, first.tat, T0, cost=2).allowed  # what is left still goes


def test_cost_above_burst_is_never_allowed() -> None:
    decision = check(FIVE_PER_10S, None, T0, cost=6)
    assert not decision.allowed and decision.retry_after == NEVER
    assert decision.remaining == 5
    assert not check(FIVE_PER_10S, None, T0 + 10**6, cost=6).allowed
    error = RateLimited(FIVE_PER_10S, "k", NEVER, datetime.fromtimestamp(T0, UTC), cost=6)
    assert "costing 6 exceeds the burst of 5 and can never be allowed" in str(error)
    assert error.retry_at is None


def test_tight_window_bound_is_reached() -> None:
    """A full burst at a window's start, then one unit every T: count + burst in [t, t + period]."""
    limit = Limit("w", 4, timedelta(seconds=8), burst=3)  # T = 2
    taken, tat = drain(limit, T0)
    for step in range(1, 5):
        decision = check(limit, tat, T0 + 2 * step)
        assert decision.allowed
        tat = decision.tat
        taken += 1
    assert taken == limit.count + limit.capacity


@st.composite
def schedules(draw: st.DrawFn) -> tuple[Limit, list[tuple[int, int]]]:
    count = draw(st.integers(1, 8))
    interval = draw(st.integers(1, 50))  # whole seconds: float arithmetic stays exact
    burst = draw(st.integers(1, 12))
    limit = Limit("p", count, timedelta(seconds=count * interval), burst=burst)
    steps = draw(st.lists(st.tuples(st.integers(0, 3 * interval), st.integers(1, burst + 1)),
                          max_size=60))
    return limit, steps


@settings(max_examples=300)
@given(schedules())
def test_no_window_exceeds_the_gcra_bound(case: tuple[Limit, list[tuple[int, int]]]) -> None:
    """For allowed requests at s_i <= s_j: units in [s_i, s_j] <= burst + (s_j - s_i) / T.

    Hence at most count + burst units in any closed window of one period.
    """
    limit, steps = case
    interval = limit.emission_interval
    now, tat = T0, None
    allowed: list[tuple[float, int]] = []
    for advance, cost in steps:
        now += advance
        decision = check(limit, tat, now, cost)
        if decision.allowed:
            tat = decision.tat
            allowed.append((now, cost))
            assert decision.retry_after == timedelta(0)
        else:
            assert decision.tat == (now if tat is None else max(tat, now))
            if cost > limit.capacity:
                assert decision.retry_after == NEVER
            else:
                # Exactly: allowed at retry_after, refused a microsecond before.
                wait = decision.retry_after.total_seconds()
                assert check(limit, tat, now + wait, cost).allowed
                assert not check(limit, tat, now + wait - 1e-6, cost).allowed
    period = limit.period.total_seconds()
    for i, (start, _) in enumerate(allowed):
        in_window = 0
        for when, cost in allowed[i:]:
            in_window += cost
            assert in_window <= limit.capacity + (when - start) / interval
        assert sum(c for w, c in allowed[i:] if w <= start + period) <= limit.count + limit.capacity


# --- keys, defaults and the error --------------------------------------------------


def test_address_key_buckets_ipv6_by_64_and_ipv4_by_32() -> None:
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("192.0.2.1") == "192.0.2.1/32"
    assert address_key("192.0.2.1") != address_key("192.0.2.2")
    assert address_key("::ffff:192.0.2.1") == "192.0.2.1/32"
    with pytest.raises(ValueError):
        address_key("example.net")


def test_names_and_authz_keys() -> None:
    assert names_key(["WWW.example.net.", "example.net", "www.example.net"]) == \
        "example.net,www.example.net"
    assert names_key(["b.example", "a.example"]) == names_key(["A.example", "B.EXAMPLE"])
    with pytest.raises(ValueError):
        names_key([])
    assert authz_key("trustchain://testnet/node/n1", "WWW.Example.net.") == \
        "trustchain://testnet/node/n1 www.example.net"


def test_default_limits_follow_lets_encrypt() -> None:
    domain = DEFAULT_LIMITS[DOMAIN]
    assert (domain.count, domain.period, domain.capacity) == (50, timedelta(days=7), 50)
    assert domain.describe() == "50 certificates per 7 days"
    assert DEFAULT_LIMITS[IDENTITY].emission_interval == 36  # LE: one new order per 36 s
    assert DEFAULT_LIMITS[ADDRESS].emission_interval == 18 * 60  # one registration per 18 min
    assert DEFAULT_LIMITS[NAMES].emission_interval == 33.6 * 3600  # about 34 h
    assert all(name == limit.name for name, limit in DEFAULT_LIMITS.items())


def test_rate_limited_message() -> None:
    now = datetime(2026, 11, 25, 6, 47, 59, 500_000, tzinfo=UTC)
    error = RateLimited(DEFAULT_LIMITS[DOMAIN], "example.net",
                        timedelta(hours=3, minutes=12), now)
    assert isinstance(error, RemoteError) and error.status == 429
    assert str(error) == ("rate limit 'domain' for example.net: 50 certificates per 7 days; "
                          "retry after 2026-11-25T10:00:00Z (in 3h12m)")
    assert error.retry_at == datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
    assert (error.name, error.key, error.retry_after) == ("domain", "example.net",
                                                          timedelta(hours=3, minutes=12))
    assert error.audit_details() == {"limit": "domain", "key": "example.net", "cost": 1,
                                     "retry_after_seconds": 11520}
    short = RateLimited(FIVE_PER_10S, "k", timedelta(seconds=2), datetime.fromtimestamp(T0, UTC))
    assert str(short).endswith("5 requests per 10 seconds; retry after 2026-11-18T11:06:42Z (in 2s)")


# --- the SQLite buckets -------------------------------------------------------------

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
LIMITS = {
    "one": Limit("one", 2, timedelta(seconds=10)),   # T = 5 s, burst 2
    "two": Limit("two", 3, timedelta(seconds=30)),   # T = 10 s, burst 3
    "addr": Limit("addr", 1, timedelta(hours=1)),
}


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(tmp_path)
    migrate(database, RATELIMIT_SCHEMA)
    yield database
    database.close()


def test_all_buckets_or_none(db: Database) -> None:
    limiter = RateLimiter(db, LIMITS)
    limiter.check({"one": "a", "two": "b"}, NOW)
    limiter.check({"one": "a", "two": "b"}, NOW)
    # "one"/"a" is now empty: the request is refused and "two"/"b" keeps its last unit.
    with pytest.raises(RateLimited) as refused:
        limiter.check({"two": "b", "one": "a"}, NOW)
    assert (refused.value.name, refused.value.key) == ("one", "a")
    assert refused.value.retry_after == timedelta(seconds=5)
    # decision() peeks: one more would be allowed, leaving nothing.
    peek = limiter.decision("two", "b", NOW)
    assert peek.allowed and peek.remaining == 0
    limiter.check({"two": "b", "one": "other"}, NOW)
    assert not limiter.decision("two", "b", NOW).allowed


def test_refusal_names_the_longest_wait(db: Database) -> None:
    limiter = RateLimiter(db, LIMITS)
    for _ in range(3):
        limiter.check({"two": "b"}, NOW)
    limiter.check({"one": "a"}, NOW, cost=2)
    with pytest.raises(RateLimited) as refused:
        limiter.check({"one": "a", "two": "b"}, NOW)
    assert refused.value.name == "two" and refused.value.retry_after == timedelta(seconds=10)
    with pytest.raises(RateLimited) as never:
        limiter.check({"one": "x", "two": "y"}, NOW, cost=3)
    assert never.value.name == "one" and never.value.retry_after == NEVER


def test_one_limit_over_several_keys_and_repeated_buckets(db: Database) -> None:
    limiter = RateLimiter(db, LIMITS)
    limiter.check([("one", "a.example"), ("one", "b.example"), ("one", "a.example")], NOW)
    # Each bucket was charged once: one of its two units is left.
    assert limiter.decision("one", "a.example", NOW).allowed
    assert limiter.decision("one", "a.example", NOW, cost=2).retry_after == timedelta(seconds=5)
    assert limiter.decision("one", "b.example", NOW, cost=2).retry_after == timedelta(seconds=5)
    with pytest.raises(ValueError, match="no rate limit named 'nope'"):
        limiter.check({"nope": "k"}, NOW)


def test_check_in_the_callers_transaction(db: Database) -> None:
    limiter = RateLimiter(db, LIMITS)
    with pytest.raises(RuntimeError), db.transaction() as conn:
        limiter.check_in(conn, {"addr": "x"}, NOW)
        raise RuntimeError("issuance failed after the check")
    limiter.check({"addr": "x"}, NOW)  # the rolled-back check consumed nothing
    with pytest.raises(RateLimited):
        limiter.check({"addr": "x"}, NOW)


def test_buckets_survive_a_restart(tmp_path: Path) -> None:
    with open_database(tmp_path) as first:
        migrate(first, RATELIMIT_SCHEMA)
        limiter = RateLimiter(first, DEFAULT_LIMITS)
        for _ in range(10):
            limiter.check({ADDRESS: address_key("2001:db8::1")}, NOW)
    with open_database(tmp_path) as second:
        migrate(second, RATELIMIT_SCHEMA)
        limiter = RateLimiter(second, DEFAULT_LIMITS)
        with pytest.raises(RateLimited) as refused:
            # Another address in the same /64 shares the bucket.
            limiter.check({ADDRESS: address_key("2001:db8::2")}, NOW + timedelta(minutes=17))
        assert refused.value.retry_after == timedelta(minutes=1)
        assert "10 registrations per 3 hours" in str(refused.value)
        limiter.check({ADDRESS: address_key("2001:db8:0:1::1")}, NOW)  # another /64
        limiter.check({ADDRESS: address_key("192.0.2.1")}, NOW)
        limiter.check({ADDRESS: address_key("2001:db8::2")}, NOW + timedelta(minutes=18))


def test_prune_deletes_only_full_buckets(db: Database) -> None:
    limiter = RateLimiter(db, LIMITS)
    limiter.check({"one": "old"}, NOW)                           # TAT NOW + 5 s
    limiter.check({"two": "busy"}, NOW, cost=3)                  # TAT NOW + 30 s
    assert limiter.prune(NOW + timedelta(seconds=10)) == 1
    keys = {row[0] for row in db.conn.execute("SELECT key FROM ratelimit_buckets")}
    assert keys == {"busy"}
    with pytest.raises(RateLimited):
        limiter.check({"two": "busy"}, NOW + timedelta(seconds=10), cost=3)


def test_naive_time_is_refused(db: Database) -> None:
    with pytest.raises(ValueError):
        RateLimiter(db, LIMITS).check({"one": "a"}, datetime(2026, 1, 1))
