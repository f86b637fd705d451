"""Zone management: change sets are checked whole and stored atomically."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dns.message
import dns.name
import dns.rdatatype
import pytest

from tests.trustchain.dns.zonedata import EXAMPLE
from trustchain.dns.handler import QueryContext
from trustchain.dns.records import DnsRequestError, Record, RecordSelector
from trustchain.dns.service import DnsService
from trustchain.dns.zone import Zone, from_text
from trustchain.errors import RemoteError
from trustchain.storage.database import open_database
from trustchain.storage.dns import DNS_SCHEMA, SqliteZoneStore
from trustchain.storage.migrations import migrate

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
NODE_NS = dns.name.from_text("n1.nodes.example.net.")
ORIGIN = dns.name.from_text("example.net.")


@pytest.fixture
def store(tmp_path: Path):
    db = open_database(tmp_path)
    migrate(db, DNS_SCHEMA)
    yield SqliteZoneStore(db)
    db.close()


def service(store) -> DnsService:
    return DnsService(store, now=lambda: NOW, default_ns=NODE_NS)


def name(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


def exported(svc: DnsService) -> tuple[str, int, str]:
    zone = svc.zones.zone(ORIGIN)
    return zone.origin.to_text(), zone.serial, zone.to_text()


def records(zone: Zone) -> list[tuple[str, str]]:
    return [(r.name.to_text(), dns.rdatatype.to_text(r.rdtype)) for r in zone.sorted_rrsets()]


def test_refusals_are_remote_errors() -> None:
    # Mapped to a 400 problem document at the edge, like every refused request.
    assert issubclass(DnsRequestError, RemoteError)


def test_create_zone_with_defaults_and_reload(store) -> None:
    svc = service(store)
    result = svc.zones.create(ORIGIN, addresses=["2001:db8::53"])
    assert (result.origin.to_text(), result.serial) == ("example.net.", 2026112500)
    text = exported(svc)[2]
    assert "example.net. 3600 IN NS n1.nodes.example.net." in text
    assert "n1.nodes.example.net. 3600 IN AAAA 2001:db8::53" in text
    assert service(store).zoneset.zones.keys() == svc.zoneset.zones.keys()  # durable


def test_create_needs_glue_for_in_zone_name_servers(store) -> None:
    with pytest.raises(DnsRequestError, match="no address"):
        service(store).zones.create(ORIGIN)
    assert service(store).zoneset.zones == {}


def test_create_refuses_an_existing_zone_and_a_bad_algorithm(store) -> None:
    from trustchain.dns.zones import SigningChoices

    svc = service(store)
    with pytest.raises(DnsRequestError, match="algorithm must be 13"):
        svc.zones.create(ORIGIN, ns=[name("ns.elsewhere.org.")],
                         dnssec=SigningChoices(algorithm=8))
    svc.zones.create(ORIGIN, ns=[name("ns.elsewhere.org.")], email=name("ops.example.org."))
    assert "ops.example.org." in exported(svc)[2]
    with pytest.raises(DnsRequestError, match="already exists"):
        svc.zones.create(ORIGIN, ns=[name("ns.elsewhere.org.")])


def test_change_set_is_atomic(store) -> None:
    svc = service(store)
    svc.zones.import_text(EXAMPLE)
    before = exported(svc)
    with pytest.raises(DnsRequestError, match="nothing applied"):
        svc.zones.change(add=[
            Record(name("new.example.net"), "A", "192.0.2.77"),
            Record(name("www.example.net"), "CNAME", "alias"),  # breaks the rules
        ])
    assert exported(svc) == before
    assert exported(service(store)) == before
    assert store.journal(ORIGIN) == []


def test_change_bumps_serial_and_journals(store) -> None:
    svc = service(store)
    svc.zones.import_text(EXAMPLE)
    result = svc.zones.change(
        add=[Record(name("api.example.net"), "AAAA", "2001:db8::99", ttl=120)],
        delete=[RecordSelector(name("mail.example.net"))],
    )
    assert result.serial == 2026112501
    journal = store.journal(ORIGIN)
    (serial_from, serial_to, removed, added), = journal
    assert (serial_from, serial_to) == (2026112500, 2026112501)
    assert "api.example.net. 120 IN AAAA 2001:db8::99" in added
    assert any("MX" in r for r in removed)
    wire = svc.handle(dns.message.make_query("api.example.net", "AAAA").to_wire(),
                      QueryContext("udp"))
    assert dns.message.from_wire(wire).answer[0][0].to_text() == "2001:db8::99"


def test_delete_by_type_and_value(store) -> None:
    svc = service(store)
    svc.zones.import_text(EXAMPLE)
    svc.zones.change(delete=[RecordSelector(name("www.example.net"), "A", "192.0.2.10")])
    rows = records(svc.zones.zone(ORIGIN))
    assert ("www.example.net.", "A") not in rows
    assert ("www.example.net.", "AAAA") in rows
    with pytest.raises(DnsRequestError, match="nothing to delete"):
        svc.zones.change(delete=[RecordSelector(name("www.example.net"), "A")])
    with pytest.raises(DnsRequestError, match="no AAAA 2001:db8::77 at www.example.net."):
        svc.zones.change(delete=[RecordSelector(name("www.example.net"), "AAAA",
                                                "2001:db8::77")])


def test_an_added_record_joins_its_rrset_with_the_new_ttl(store) -> None:
    svc = service(store)
    svc.zones.import_text(EXAMPLE)
    zone = svc.zones.change(add=[Record(name("www.example.net"), "A", "192.0.2.11", ttl=60)])
    rrset = zone.get(name("www.example.net."), dns.rdatatype.A)
    assert rrset is not None and rrset.ttl == 60
    assert sorted(r.to_text() for r in rrset) == ["192.0.2.10", "192.0.2.11"]


@pytest.mark.parametrize(
    ("add", "delete", "message"),
    [
        ([Record(name("x.example.com"), "A", "192.0.2.1")], [], "outside"),
        ([Record(name("example.net"), "SOA", "a b 1 2 3 4 5")], [], "SOA"),
        ([], [RecordSelector(name("example.net"), "SOA")], "SOA"),
        ([Record(name("x.example.net"), "BOGUS", "1")], [], "unknown record"),
        ([Record(name("x.example.net"), "ANY", "1")], [], "that can be stored"),
        ([Record(name("x.example.net"), "A", "not-an-ip")], [], "x.example.net"),
        ([Record(name("alias.example.net"), "CNAME", "ns1")], [], "already has"),
        ([], [], "empty"),
        ([Record(name("x.example.net"), "A", "192.0.2.1")],
         [RecordSelector(name("x.sub2.example.org"))], "outside"),
    ],
)
def test_bad_changes_are_refused(store, add: list, delete: list, message: str) -> None:
    svc = service(store)
    svc.zones.import_text(EXAMPLE)
    with pytest.raises(DnsRequestError, match=message):
        svc.zones.change(add, delete)


def test_a_change_set_stays_within_one_zone(store) -> None:
    svc = service(store)
    svc.zones.import_text(EXAMPLE)
    svc.zones.create(name("example.org."), ns=[name("ns.elsewhere.org.")])
    with pytest.raises(DnsRequestError, match="within one zone"):
        svc.zones.change([Record(name("a.example.net"), "A", "192.0.2.1"),
                          Record(name("a.example.org"), "A", "192.0.2.1")])


def test_import_replace_moves_the_serial_forward(store) -> None:
    svc = service(store)
    svc.zones.import_text(EXAMPLE)
    with pytest.raises(DnsRequestError, match="exists"):
        svc.zones.import_text(EXAMPLE)
    result = svc.zones.import_text(EXAMPLE.replace("192.0.2.10", "192.0.2.11"), replace=True)
    assert result.serial == 2026112501  # same serial in the file: moved forward for secondaries


def test_import_refuses_a_bad_zone_file(store) -> None:
    with pytest.raises(DnsRequestError, match="no \\$ORIGIN"):
        service(store).zones.import_text("@ SOA a b 1 2 3 4 5\n")
    zone = service(store).zones.import_text(EXAMPLE.replace("$ORIGIN example.net.\n", ""),
                                            ORIGIN)
    assert zone.origin == ORIGIN


def test_delete_zone(store) -> None:
    svc = service(store)
    svc.zones.import_text(EXAMPLE)
    svc.zones.delete(ORIGIN)
    assert service(store).zoneset.zones == {}
    with pytest.raises(DnsRequestError, match="no zone"):
        svc.zones.delete(ORIGIN)


def test_cached_answers_patch_the_id_and_follow_changes(store) -> None:
    svc = service(store)
    svc.zones.import_text(EXAMPLE)
    q1 = dns.message.make_query("www.example.net", "A")
    q2 = dns.message.make_query("www.example.net", "A")
    q2.id = (q1.id + 1) % 65536
    first = svc.handle(q1.to_wire(), QueryContext("udp"))
    second = svc.handle(q2.to_wire(), QueryContext("udp"))
    assert dns.message.from_wire(second).id == q2.id
    assert first[2:] == second[2:]
    svc.zones.change(delete=[RecordSelector(name("www.example.net"), "A")],
                     add=[Record(name("www.example.net"), "A", "192.0.2.222")])
    third = dns.message.from_wire(svc.handle(q2.to_wire(), QueryContext("udp")))
    assert third.answer[0][0].to_text() == "192.0.2.222"
    # UDP and TCP answers differ (truncation), so they are cached apart.
    big = dns.message.make_query("big.example.net", "TXT")
    assert dns.message.from_wire(svc.handle(big.to_wire(), QueryContext("udp"))).flags & 0x200
    assert not dns.message.from_wire(svc.handle(big.to_wire(), QueryContext("tcp"))).flags & 0x200


@pytest.mark.parametrize(
    ("rdtype", "data"),
    [("A", "192.0.2.1"), ("AAAA", "2001:db8::1"), ("TXT", '"hello world"'),
     ("MX", "10 mail.example.net."), ("SRV", "0 5 443 www.example.net."),
     ("CAA", '0 issue "trust.hypermesh.online"'),
     ("TLSA", "3 1 1 " + "ab" * 32), ("HTTPS", '1 . alpn="h3,h2"'),
     ("SVCB", "1 svc.example.net. port=8443"), ("CNAME", "www.example.net.")],
)
def test_every_record_type_of_the_issue(store, rdtype: str, data: str) -> None:
    svc = service(store)
    svc.zones.import_text(EXAMPLE)
    svc.zones.change(add=[Record(name("t.example.net"), rdtype, data)])
    query = dns.message.make_query("t.example.net", rdtype)
    response = dns.message.from_wire(svc.handle(query.to_wire(), QueryContext("tcp")))
    assert response.answer and response.answer[0].rdtype == dns.rdatatype.from_text(rdtype)
    assert from_text(exported(svc)[2]).get(dns.name.from_text("t.example.net."),
                                           dns.rdatatype.from_text(rdtype)) is not None
