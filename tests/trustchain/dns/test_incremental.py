"""Zone changes at the cost of the change: incremental checks, signing, storage and cache.

Each incremental path is compared with the whole one it replaces, over
hypothesis-generated change sequences: the same refusals (the same problems),
the same NSEC/NSEC3 chain and records, signatures that validate (dnspython's
``dns.dnssec.validate``), the same rows in the store, and a cache that never
serves an answer the current zones would not give.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.rdatatype
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.trustchain.dns.fakes import MemoryKeys
from tests.trustchain.dns.zonedata import EXAMPLE
from trustchain.dns.dnssec import Role, SignedZone, SigningKey, make_dnskey, sign_zone
from trustchain.dns.engine import respond
from trustchain.dns.handler import QueryContext
from trustchain.dns.records import DnsRequestError, Record, RecordSelector, change_set
from trustchain.dns.service import DnsService
from trustchain.dns.zone import Zone, ZoneError, check, from_text
from trustchain.dns.zones import SigningChoices, Superseded
from trustchain.storage.database import open_database
from trustchain.storage.dns import DNS_SCHEMA, SqliteZoneStore
from trustchain.storage.migrations import migrate
from trustchain.wiring.dns import ChangesOffLoop

ORIGIN = dns.name.from_text("example.net.")
NOW = 1_795_000_000
CLOCK = datetime(2026, 11, 25, 12, tzinfo=UTC)
UDP = QueryContext("udp", "192.0.2.99")

#: Names the changes touch: existing, new, empty non-terminals, wildcards, delegations.
NAMES = ["www", "new", "a.new", "x.y.new", "c.deep", "a.b.c.deep", "*.wild", "*.new", "sub",
         "ns.sub", "q.sub", "sub2", "ns.sub2", "mail", "alias", "zz", "@"]
RECORDS = {
    "A": ["192.0.2.7", "192.0.2.8"], "AAAA": ["2001:db8::7"], "TXT": ['"t"', '"u"'],
    "NS": ["ns.sub2", "ns1", "ns.elsewhere.org."], "CNAME": ["www", "nowhere.example.org."],
    "DS": ["12345 13 2 3AB2A1D4B4E5B8D5E0C47D1AB2EE4BE2AE3B9A1FA2AFB5B3AF0D1CCE9AE4A3F0"],
    "MX": ["10 www"],
}


def absolute(relative: str) -> dns.name.Name:
    return ORIGIN if relative == "@" else dns.name.from_text(relative, ORIGIN)


records = st.builds(lambda n, t, i: Record(absolute(n), t, RECORDS[t][i % len(RECORDS[t])]),
                    st.sampled_from(NAMES), st.sampled_from(sorted(RECORDS)),
                    st.integers(0, 3))
selectors = st.builds(lambda n, t: RecordSelector(absolute(n), t), st.sampled_from(NAMES),
                      st.sampled_from([None, "A", "TXT", "NS", "CNAME", "DS"]))
change_sets = st.tuples(st.lists(records, max_size=3), st.lists(selectors, max_size=2))


def keys() -> list[SigningKey]:
    made = []
    for number, role in ((1, Role.KSK), (2, Role.ZSK)):
        private = ed25519.Ed25519PrivateKey.from_private_bytes(bytes([number]) * 32)
        made.append(SigningKey(role, private, make_dnskey(private, 15, role)))
    return made


def whole(zone: Zone) -> dict:
    return {k: (v.ttl, sorted(r.to_text() for r in v)) for k, v in zone.rrsets.items()}


def assert_same_signing(incremental: SignedZone, full: SignedZone) -> None:
    """The same chain and NSEC/NSEC3 records, signatures over the same RRsets, and every
    signature of the incremental one validates."""
    zone = incremental.zone
    assert list(incremental.chain) == list(full.chain)
    assert list(incremental.nsec3_chain) == list(full.nsec3_chain)
    assert dict(incremental.nsec) == dict(full.nsec)
    assert dict(incremental.nsec3) == dict(full.nsec3)
    assert set(incremental.rrsigs) == set(full.rrsigs)
    keyring = {zone.origin: incremental.dnskey}
    signed = {**dict(zone.rrsets), **{(n, r.rdtype): r for n, r in incremental.nsec.items()},
              **{(n, r.rdtype): r for n, r in incremental.nsec3.items()},
              **dict(incremental.extra), (zone.origin, dns.rdatatype.DNSKEY): incremental.dnskey}
    for key, sigs in incremental.rrsigs.items():
        dns.dnssec.validate(signed[key], sigs, keyring, now=NOW + 120)


@pytest.mark.parametrize("nsec3", [False, True])
@settings(max_examples=25, deadline=None)
@given(steps=st.lists(change_sets, min_size=1, max_size=6))
def test_incremental_versions_and_signing_match_whole_ones(nsec3: bool, steps) -> None:
    zone = from_text(EXAMPLE)
    signed = sign_zone(zone, keys(), NOW, nsec3=nsec3)
    for number, (add, delete) in enumerate(steps):
        try:
            changes = change_set(zone, add, delete)
        except DnsRequestError:
            continue
        full = {**dict(zone.rrsets), **changes}
        full_rrsets = [r for r in full.values() if r is not None]
        try:
            new = zone.apply(changes)
        except ZoneError as refused:
            with pytest.raises(ZoneError) as whole_refused:
                Zone.build(zone.origin, full_rrsets)
            assert set(refused.problems) == set(whole_refused.value.problems)
            continue
        assert check(new) == []  # the whole check agrees: nothing was missed
        built = Zone.build(zone.origin, full_rrsets)
        assert whole(new) == whole(built)
        assert set(new.names) == set(built.names) and set(new.cuts) == set(built.cuts)
        assert list(new.owners) == list(built.owners)
        new = new.with_serial(zone.serial + 1)
        now = NOW + 60 * (number + 1)
        incremental = sign_zone(new, keys(), now, previous=signed, nsec3=nsec3)
        assert incremental.resigned is not None  # the incremental path was taken
        assert_same_signing(incremental, sign_zone(new, keys(), now, nsec3=nsec3))
        zone, signed = new, incremental


def test_signing_whole_again_when_a_signature_is_due() -> None:
    zone = from_text(EXAMPLE)
    first = sign_zone(zone, keys(), NOW)
    changed = zone.apply(change_set(zone, [Record(absolute("new"), "A", "192.0.2.9")], []))
    assert sign_zone(changed, keys(), NOW + 60, previous=first).resigned is not None
    late = sign_zone(changed, keys(), first.refresh_at, previous=first)
    assert late.resigned is None  # refresh: every RRset, signatures renewed where due
    assert sign_zone(zone, keys(), NOW + 60, previous=first) is first  # nothing to do


def test_a_version_shares_what_did_not_change() -> None:
    zone = from_text(EXAMPLE)
    new = zone.apply(change_set(zone, [Record(absolute("new"), "A", "192.0.2.9")], []))
    assert new.changes_since(zone) == {(absolute("new"), dns.rdatatype.A)}
    assert new.delta is not None and new.delta.names == {absolute("new")}
    assert new.changes_since(new) is None  # not made from itself: compare whole zones
    # Every RRset the change did not touch is the very same object (the map's nodes are
    # shared too, inside immutables' C trie, where a test cannot see them).
    assert all(new.rrsets[key] is rrset for key, rrset in zone.rrsets.items())


# --- the service: store, publish, cache ------------------------------------------


def new_service(tmp: Path) -> tuple[DnsService, SqliteZoneStore]:
    db = open_database(tmp)
    migrate(db, DNS_SCHEMA)
    store = SqliteZoneStore(db)
    memory = MemoryKeys(store.dnssec_policy, lambda: CLOCK)
    svc = DnsService(store, now=lambda: CLOCK, default_ns=dns.name.from_text("n1.example.net."),
                     keys=memory)
    svc.zones.import_text(EXAMPLE, dnssec=SigningChoices(algorithm=15))
    return svc, store


QUERIES = [(name, rdtype, do) for name in NAMES + ["nope", "a.nope.wild", "x.sub", "chain",
                                                   "b.c.deep", "y.new"]
           for rdtype in ("A", "TXT", "NS", "DS", "ANY") for do in (True,)]
QUERIES += [("www", "A", False), ("nope", "A", False), ("@", "SOA", True), ("@", "NSEC", True)]


def same_answer(cached: bytes | None, fresh: bytes | None) -> bool:
    """The same message but for the order of records within an RRset (shuffled when
    rendered): same sections, records and TTLs."""
    if cached is None or fresh is None:
        return cached is fresh
    a, b = dns.message.from_wire(cached), dns.message.from_wire(fresh)
    ttls = [[r.ttl for r in section] for section in (a.answer, a.authority, a.additional)]
    return a == b and ttls == [[r.ttl for r in section]
                               for section in (b.answer, b.authority, b.additional)]


def wire(name: str, rdtype: str, do: bool) -> bytes:
    query = dns.message.make_query(absolute(name), rdtype, want_dnssec=do)
    query.id = 4242
    return query.to_wire()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(change_sets, min_size=1, max_size=4), nsec3=st.booleans())
def test_the_cache_never_serves_an_answer_the_zones_would_not_give(steps, nsec3) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        svc, store = new_service(Path(tmp))
        if nsec3:
            store.set_dnssec_policy(ORIGIN, 15, False, True)
            zone = svc.zones.zone(ORIGIN)
            svc.zones.publish(dict(svc.zoneset.zones), changed=zone)
        queries = [wire(*q) for q in QUERIES]
        try:
            for add, delete in steps:
                for query in queries:
                    svc.handle(query, UDP)  # fill the cache
                try:
                    svc.zones.change(add, delete)
                except DnsRequestError:
                    pass
                for query in queries:
                    assert same_answer(svc.handle(query, UDP), respond(query, svc.zoneset, UDP)[0])
            assert whole(store.zones()[0]) == whole(svc.zones.zone(ORIGIN))
        finally:
            store.db.close()


def test_a_refused_change_leaves_everything_as_it_was(tmp_path: Path) -> None:
    svc, store = new_service(tmp_path)
    query = wire("www", "A", True)
    answer = svc.handle(query, UDP)
    before = (svc.zoneset, store.zones()[0].to_text(), len(store.journal(ORIGIN)))
    with pytest.raises(DnsRequestError, match="CNAME and other data"):
        svc.zones.change([Record(absolute("www"), "CNAME", "mail")])
    with pytest.raises(DnsRequestError, match="no address in the zone"):
        svc.zones.change([], [RecordSelector(absolute("ns1"))])
    assert (svc.zoneset, store.zones()[0].to_text(), len(store.journal(ORIGIN))) == before
    assert same_answer(svc.handle(query, UDP), answer)
    store.db.close()


def test_a_change_stores_only_what_changed(tmp_path: Path) -> None:
    svc, store = new_service(tmp_path)
    new = svc.zones.change([Record(absolute("www"), "TXT", '"hello"')])
    _, _, removed, added = store.journal(ORIGIN)[-1]
    assert [line.split()[3] for line in removed] == ["SOA"]
    assert sorted(line.split()[3] for line in added) == ["SOA", "TXT"]
    assert whole(store.zones()[0]) == whole(new)
    store.db.close()


def test_a_version_prepared_over_a_replaced_one_is_refused(tmp_path: Path) -> None:
    svc, store = new_service(tmp_path)
    stale = svc.zones.prepare_change([Record(absolute("one"), "A", "192.0.2.1")])
    svc.zones.change([Record(absolute("two"), "A", "192.0.2.2")])
    served = svc.zoneset
    with pytest.raises(Superseded):
        svc.zones.commit(stale)
    assert svc.zoneset is served
    store.db.close()


def test_changes_off_the_loop_are_serialised(tmp_path: Path) -> None:
    svc, store = new_service(tmp_path)
    changes = ChangesOffLoop(svc.zones, svc.signer.signing)
    first = svc.zones.zone(ORIGIN).serial

    async def many() -> list[Zone]:
        return await asyncio.gather(*(
            changes.change([Record(absolute(f"h{i}"), "A", f"192.0.2.{i}")], [])
            for i in range(1, 6)))

    versions = asyncio.run(many())
    assert sorted(v.serial for v in versions) == [v.serial for v in versions]
    assert len({v.serial for v in versions}) == 5 and versions[0].serial > first
    zone = svc.zones.zone(ORIGIN)
    assert all((absolute(f"h{i}"), dns.rdatatype.A) in zone.rrsets for i in range(1, 6))
    assert len(store.journal(ORIGIN)) == 5
    reply = dns.message.from_wire(svc.handle(wire("h3", "A", True), UDP))
    assert reply.flags & dns.flags.AA and len(reply.answer) == 2
    store.db.close()


@pytest.mark.parametrize("nsec3", [False, True])
def test_changes_at_existing_names_sign_as_a_whole_signing_does(nsec3: bool) -> None:
    """The fast path (no owner comes or goes, no delegation changes): a record joining an
    RRset, a type new at a name (its NSEC/NSEC3 bitmap changes), one gone, a mixed-case
    name, glue below a delegation; then a new name and a removed one (the chain moves)."""
    zone = from_text(EXAMPLE)
    signed = sign_zone(zone, keys(), NOW, nsec3=nsec3)
    steps = [([Record(absolute("www"), "AAAA", "2001:db8::11")], []),
             ([Record(absolute("www"), "TXT", '"t"')], []),
             ([], [RecordSelector(absolute("www"), "TXT")]),
             ([Record(dns.name.from_text("MAIL", ORIGIN), "TXT", '"m"')], []),
             ([Record(absolute("ns.sub"), "AAAA", "2001:db8::53")], []),
             ([Record(absolute("zz"), "A", "192.0.2.99")], []),
             ([], [RecordSelector(absolute("zz"))])]
    for number, (add, delete) in enumerate(steps):
        new = zone.apply(change_set(zone, add, delete)).with_serial(zone.serial + 1)
        now = NOW + 60 * (number + 1)
        incremental = sign_zone(new, keys(), now, previous=signed, nsec3=nsec3)
        assert incremental.resigned is not None
        assert_same_signing(incremental, sign_zone(new, keys(), now, nsec3=nsec3))
        zone, signed = new, incremental
