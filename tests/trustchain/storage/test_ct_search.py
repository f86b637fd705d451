"""The certificate search index: filled from a log's signed entries up to a durable
watermark, found by name (exact and under) and by serial; and its query parser."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.pki import cert_builder, der_b64, new_key, node_pki, signed
from trustchain.ct.log import Log
from trustchain.ct.search import (
    MAX_QUERY,
    QueryError,
    normalise_name,
    parse_query,
    reverse_name,
    under_range,
)
from trustchain.storage.ct import CT_SCHEMA, SqliteLogStore
from trustchain.storage.ct_search import CTSEARCH_SCHEMA, CtSearchIndex
from trustchain.storage.database import open_database
from trustchain.storage.migrations import migrate

NOW = datetime.now(UTC)
PKI = node_pki(now=NOW)
CA_B64 = der_b64(PKI.ca)
LOG_KEY = new_key()


@pytest.fixture
def db(tmp_path: Path):
    database = open_database(tmp_path)
    migrate(database, CT_SCHEMA)
    migrate(database, CTSEARCH_SCHEMA)
    yield database
    database.close()


def new_log(db, name: str = "a") -> Log:
    return Log(name, LOG_KEY, SqliteLogStore(db, name), [PKI.root])


def leaf(*names: str, serial: int | None = None, precert: bool = False) -> str:
    return der_b64(signed(cert_builder(names[0], new_key().public_key(), issuer=PKI.ca,
                                       serial=serial, not_before=NOW, days=30,
                                       dns_names=names, poison=precert), PKI.ca_key))


def log_all(log: Log, chains: list[tuple[str, bool]], now_ms: int = 1_000) -> None:
    for cert, precert in chains:
        log.check([cert, CA_B64], precert=precert)
    log.sequence(now_ms)


def test_names_under_a_domain_and_serials_are_found(db) -> None:
    log = new_log(db)
    log_all(log, [(leaf("example.net", "www.example.net", serial=0xABC), False),
                  (leaf("api.example.net", serial=0xDEF, precert=True), True),
                  (leaf("example.org", serial=0x123), False),
                  (leaf("notexample.net", serial=0x456), False)])
    index = CtSearchIndex(db)
    assert index.catch_up() == 4
    assert not index.behind()
    assert {h.serial for h in index.by_name("example.net")} == {0xABC, 0xDEF}
    assert {h.serial for h in index.by_name("example.net", strict=True)} == {0xABC, 0xDEF}
    assert [h.serial for h in index.by_name("www.example.net")] == [0xABC]
    assert {h.serial for h in index.by_name("net")} == {0xABC, 0xDEF, 0x456}
    assert index.by_name("ample.net") == []
    (hit,) = index.by_serial(0xDEF)
    assert hit.precert and hit.names == ("api.example.net",) and hit.log == "a"
    assert hit.index == 1 and hit.issuer == PKI.ca.subject.rfc4514_string()
    assert index.by_serial(0x999) == []
    # one hit per entry, even when two of its names match
    assert len(index.by_name("example.net", limit=10)) == 2


def test_the_watermark_resumes_and_an_existing_log_is_indexed(db) -> None:
    log = new_log(db)
    log_all(log, [(leaf(f"n{i}.example.com", serial=100 + i), False) for i in range(5)])
    index = CtSearchIndex(db)  # the log existed before the index
    assert index.catch_up(limit=2) == 2
    assert [(p.log, p.indexed, p.size) for p in index.progress()] == [("a", 2, 5)]
    again = CtSearchIndex(db)  # a restart: the watermark was durable
    assert again.catch_up(limit=2) == 2 and again.catch_up(limit=2) == 1
    assert again.catch_up() == 0
    log_all(log, [(leaf("late.example.com", serial=999), False)], now_ms=2_000)
    assert again.behind() and again.catch_up() == 1
    assert sorted(h.serial for h in again.by_name("example.com")) == [100, 101, 102, 103, 104, 999]
    second = new_log(db, "b")
    log_all(second, [(leaf("n0.example.com", serial=100), False)])
    assert again.catch_up() == 1
    assert sorted((h.log, h.index) for h in again.by_serial(100)) == [("a", 0), ("b", 0)]


def test_names_are_normalised() -> None:
    assert normalise_name("WWW.Example.NET.") == "www.example.net"
    assert normalise_name("bücher.example") == "xn--bcher-kva.example"
    assert normalise_name("*.example.net") == "*.example.net"
    for bad in ("", "a..b", "-a.example", "a b", "x" * 64 + ".net", "w*.example", "a/b"):
        assert normalise_name(bad) is None, bad
    assert reverse_name("www.example.net") == "net.example.www"
    assert under_range("example.net") == ("net.example.", "net.example/")


def test_queries() -> None:
    assert parse_query(" Example.NET ") == parse_query("example.net.")
    assert parse_query("example.net").name == "example.net"
    assert parse_query("example.net").serial is None
    strict = parse_query("%.example.net")
    assert strict.strict and strict.name == "example.net" and strict.text == "%.example.net"
    assert parse_query("*.example.net") == strict
    assert parse_query("0x0ABC").serial == 0xABC
    assert parse_query("0a:bc").serial == 0xABC and parse_query("0a:bc").name is None
    both = parse_query("cafe")
    assert both.serial == 0xCAFE and both.name == "cafe"
    for bad in ("", "   ", "a b", "%.", "x" * (MAX_QUERY + 1), "<script>", "1:2:", "%.*.net"):
        with pytest.raises(QueryError):
            parse_query(bad)


@given(st.text(max_size=300))
def test_any_text_is_a_query_or_a_query_error(text: str) -> None:
    try:
        query = parse_query(text)
    except QueryError:
        return
    assert query.name is not None or query.serial is not None
    assert len(query.text) <= MAX_QUERY + 2
    if query.name is not None:
        assert normalise_name(query.name) == query.name
        assert parse_query(query.text).name == query.name  # what is shown searches the same


@given(st.lists(st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True),
                min_size=1, max_size=5))
def test_names_under_a_domain_are_in_its_range(labels: list[str]) -> None:
    name = ".".join(labels)
    low, high = under_range(name)
    for child in ("www", "a-b", "*", "0"):
        assert low <= reverse_name(f"{child}.{name}") < high
    assert not low <= reverse_name(name) < high
    sibling = labels[0] + "x" + ("." + ".".join(labels[1:]) if labels[1:] else "")
    assert not low <= reverse_name(sibling) < high
