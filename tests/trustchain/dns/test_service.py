"""Zone management: change sets are checked whole and stored atomically."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import dns.message
import dns.name
import dns.rdatatype
import pytest

from tests.trustchain.dns.zonedata import EXAMPLE
from trustchain.dns.handler import QueryContext
from trustchain.dns.service import DnsService
from trustchain.dns.zone import from_text
from trustchain.stoq.router import BadRequest
from trustchain.storage.database import open_database
from trustchain.storage.dns import DNS_SCHEMA, SqliteZoneStore
from trustchain.storage.migrations import migrate

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
NODE_NS = dns.name.from_text("n1.nodes.example.net.")


@pytest.fixture
def store(tmp_path: Path):
    db = open_database(tmp_path)
    migrate(db, DNS_SCHEMA)
    yield SqliteZoneStore(db)
    db.close()


def call(method, body) -> dict:
    return json.loads(method(json.dumps(body).encode(), None))


def service(store) -> DnsService:
    return DnsService(store, now=lambda: NOW, default_ns=NODE_NS)


def test_create_zone_with_defaults_and_reload(store) -> None:
    svc = service(store)
    result = call(svc.zone_create, {"zone": "example.net", "addresses": ["2001:db8::53"]})
    assert result == {"zone": "example.net.", "serial": 2026112500}
    text = call(svc.zone_export, {"zone": "example.net"})["text"]
    assert "example.net. 3600 IN NS n1.nodes.example.net." in text
    assert "n1.nodes.example.net. 3600 IN AAAA 2001:db8::53" in text
    assert service(store).zoneset.zones.keys() == svc.zoneset.zones.keys()  # durable


def test_create_needs_glue_for_in_zone_name_servers(store) -> None:
    with pytest.raises(BadRequest, match="no address"):
        call(service(store).zone_create, {"zone": "example.net"})
    assert service(store).zoneset.zones == {}


def test_change_set_is_atomic(store) -> None:
    svc = service(store)
    call(svc.zone_import, {"text": EXAMPLE})
    before = call(svc.zone_export, {"zone": "example.net"})
    with pytest.raises(BadRequest, match="nothing applied"):
        call(svc.records_change, {"add": [
            {"name": "new.example.net", "type": "A", "data": "192.0.2.77"},
            {"name": "www.example.net", "type": "CNAME", "data": "alias"},  # breaks the rules
        ]})
    assert call(svc.zone_export, {"zone": "example.net"}) == before
    assert call(service(store).zone_export, {"zone": "example.net"}) == before
    assert store.journal(dns.name.from_text("example.net.")) == []


def test_change_bumps_serial_and_journals(store) -> None:
    svc = service(store)
    call(svc.zone_import, {"text": EXAMPLE})
    result = call(svc.records_change, {
        "add": [{"name": "api.example.net", "type": "AAAA", "ttl": 120, "data": "2001:db8::99"}],
        "delete": [{"name": "mail.example.net"}],
    })
    assert result["serial"] == 2026112501
    journal = store.journal(dns.name.from_text("example.net."))
    (serial_from, serial_to, removed, added), = journal
    assert (serial_from, serial_to) == (2026112500, 2026112501)
    assert "api.example.net. 120 IN AAAA 2001:db8::99" in added
    assert any("MX" in r for r in removed)
    wire = svc.handle(dns.message.make_query("api.example.net", "AAAA").to_wire(),
                      QueryContext("udp"))
    assert dns.message.from_wire(wire).answer[0][0].to_text() == "2001:db8::99"


def test_delete_by_type_and_value(store) -> None:
    svc = service(store)
    call(svc.zone_import, {"text": EXAMPLE})
    call(svc.records_change, {"delete": [{"name": "www.example.net", "type": "A",
                                         "data": "192.0.2.10"}]})
    rows = call(svc.records_list, {"zone": "example.net"})
    assert not [r for r in rows if r["name"] == "www.example.net." and r["type"] == "A"]
    assert [r for r in rows if r["name"] == "www.example.net." and r["type"] == "AAAA"]
    with pytest.raises(BadRequest, match="nothing to delete"):
        call(svc.records_change, {"delete": [{"name": "www.example.net", "type": "A"}]})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"add": [{"name": "x.example.com", "type": "A", "data": "192.0.2.1"}]}, "outside"),
        ({"add": [{"name": "example.net", "type": "SOA", "data": "a b 1 2 3 4 5"}]}, "SOA"),
        ({"delete": [{"name": "example.net", "type": "SOA"}]}, "SOA"),
        ({"add": [{"name": "x.example.net", "type": "BOGUS", "data": "1"}]}, "unknown record"),
        ({"add": [{"name": "x.example.net", "type": "A", "data": "not-an-ip"}]}, "x.example.net"),
        ({"add": [{"name": "alias.example.net", "type": "CNAME", "data": "ns1"}]}, "already has"),
        ({}, "empty"),
        ({"add": [{"name": "x.example.net", "type": "A", "data": "192.0.2.1", "ttl": -1}]}, "ttl"),
    ],
)
def test_bad_changes_are_refused(store, change: dict, message: str) -> None:
    svc = service(store)
    call(svc.zone_import, {"text": EXAMPLE})
    with pytest.raises(BadRequest, match=message):
        call(svc.records_change, change)


def test_import_replace_moves_the_serial_forward(store) -> None:
    svc = service(store)
    call(svc.zone_import, {"text": EXAMPLE})
    with pytest.raises(BadRequest, match="exists"):
        call(svc.zone_import, {"text": EXAMPLE})
    result = call(svc.zone_import, {"text": EXAMPLE.replace("192.0.2.10", "192.0.2.11"),
                                    "replace": True})
    assert result["serial"] == 2026112501  # same serial in the file: moved forward for secondaries


def test_delete_zone(store) -> None:
    svc = service(store)
    call(svc.zone_import, {"text": EXAMPLE})
    call(svc.zone_delete, {"zone": "example.net"})
    assert service(store).zoneset.zones == {}
    with pytest.raises(BadRequest, match="no zone"):
        call(svc.zone_delete, {"zone": "example.net"})


def test_cached_answers_patch_the_id_and_follow_changes(store) -> None:
    svc = service(store)
    call(svc.zone_import, {"text": EXAMPLE})
    q1 = dns.message.make_query("www.example.net", "A")
    q2 = dns.message.make_query("www.example.net", "A")
    q2.id = (q1.id + 1) % 65536
    first = svc.handle(q1.to_wire(), QueryContext("udp"))
    second = svc.handle(q2.to_wire(), QueryContext("udp"))
    assert dns.message.from_wire(second).id == q2.id
    assert first[2:] == second[2:]
    call(svc.records_change, {"delete": [{"name": "www.example.net", "type": "A"}],
                              "add": [{"name": "www.example.net", "type": "A",
                                       "data": "192.0.2.222"}]})
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
    call(svc.zone_import, {"text": EXAMPLE})
    call(svc.records_change, {"add": [{"name": "t.example.net", "type": rdtype, "data": data}]})
    query = dns.message.make_query("t.example.net", rdtype)
    response = dns.message.from_wire(svc.handle(query.to_wire(), QueryContext("tcp")))
    assert response.answer and response.answer[0].rdtype == dns.rdatatype.from_text(rdtype)
    exported = call(svc.zone_export, {"zone": "example.net"})["text"]
    assert from_text(exported).get(dns.name.from_text("t.example.net."),
                                   dns.rdatatype.from_text(rdtype)) is not None
