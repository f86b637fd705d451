"""The DNS service's parts through their typed API: secondaries and transfers, DNSSEC
signing and rollovers, and network registration (no sockets, a scripted clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.tsig
import pytest

from tests.trustchain.dns.fakes import MemoryKeys, MemorySecrets, Notifications
from tests.trustchain.dns.zonedata import EXAMPLE
from trustchain.dns.handler import QueryContext
from trustchain.dns.records import DnsRequestError, Record
from trustchain.dns.service import DnsService
from trustchain.dns.zones import SigningChoices
from trustchain.storage.database import open_database
from trustchain.storage.dns import DNS_SCHEMA, SqliteZoneStore
from trustchain.storage.migrations import migrate

ORIGIN = dns.name.from_text("example.net.")
NODE_NS = dns.name.from_text("n1.nodes.example.net.")
ACME = dns.name.from_text("acme.example.net.")
DS = dns.rdatatype.DS


class Node:
    """One DNS service over a store, a key source and a clock that tests move."""

    def __init__(self, tmp_path: Path, *, signed: bool = True,
                 store: type[SqliteZoneStore] = SqliteZoneStore) -> None:
        self.time = datetime(2026, 11, 25, 12, tzinfo=UTC)
        db = open_database(tmp_path)
        migrate(db, DNS_SCHEMA)
        self.store = store(db)
        self.secrets = MemorySecrets()
        self.notes = Notifications()
        self.keys = MemoryKeys(self.store.dnssec_policy, self.now) if signed else None
        self.service = self.start()

    def now(self) -> datetime:
        return self.time

    def start(self) -> DnsService:
        """The service as a restarted node builds it from what is stored."""
        return DnsService(self.store, now=self.now, default_ns=NODE_NS, secrets=self.secrets,
                          notifier=self.notes, keys=self.keys)

    def with_origin_zone(self) -> DnsService:
        self.service.zones.import_text(EXAMPLE)
        self.service.zones.change([Record(NODE_NS, "A", "192.0.2.53")])
        return self.service


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return Node(tmp_path)


def axfr(service: DnsService, key: dns.tsig.Key | None) -> dns.message.Message:
    query = dns.message.make_query(ORIGIN, "AXFR")
    query.use_edns(0)
    if key is not None:
        query.use_tsig({key.name: key}, keyname=key.name)
    wire = service.handle_stream(query.to_wire(), QueryContext("tcp"))[0]
    return dns.message.from_wire(wire, keyring={key.name: key} if key else None, xfr=True,
                                 origin=None, request_mac=query.mac if key else b"")


def test_secondaries_get_notify_and_transfers_by_their_key(node: Node) -> None:
    svc = node.with_origin_zone()
    secondary, secret = svc.secondaries.add(ORIGIN, "[2001:db8::2]", 5300)
    assert (secondary.address, secondary.key_name) == ("2001:db8::2", "xfr.example.net")
    assert node.notes.sent[-1] == ("example.net.", ["2001:db8::2"])
    key = dns.tsig.Key("xfr.example.net.", secret, dns.tsig.HMAC_SHA256)
    assert axfr(svc, key).answer[0].rdtype == dns.rdatatype.SOA
    refused = axfr(svc, None)
    assert refused.rcode() == dns.rcode.REFUSED
    assert refused.extended_errors()[0].code == 18  # prohibited
    # A restarted node loads the key again; changes are announced to the secondary.
    again = node.start()
    assert axfr(again, key).answer[0].rdtype == dns.rdatatype.SOA
    again.zones.change([Record(dns.name.from_text("new.example.net."), "A", "192.0.2.1")])
    assert node.notes.sent[-1] == ("example.net.", ["2001:db8::2"])
    again.secondaries.remove(ORIGIN, "2001:db8::2", 5300)
    assert again.secondaries.all() == []
    assert axfr(again, key).rcode() == dns.rcode.REFUSED


def test_deleting_a_zone_drops_its_secondaries(node: Node) -> None:
    svc = node.with_origin_zone()
    svc.secondaries.add(ORIGIN, "192.0.2.9", 53, "shared.key")
    svc.zones.delete(ORIGIN)
    assert svc.secondaries.all() == [] and node.store.secondaries() == []


def test_secondaries_need_a_secret_store(tmp_path: Path) -> None:
    db = open_database(tmp_path)
    migrate(db, DNS_SCHEMA)
    svc = DnsService(SqliteZoneStore(db), now=lambda: datetime(2026, 11, 25, tzinfo=UTC),
                     default_ns=NODE_NS)
    svc.zones.import_text(EXAMPLE)
    with pytest.raises(DnsRequestError, match="no key store for TSIG secrets"):
        svc.secondaries.add(ORIGIN, "192.0.2.9", 53)
    with pytest.raises(DnsRequestError, match="'nope' is not an IP address"):
        svc.secondaries.add(ORIGIN, "nope", 53)


def test_zones_are_signed_and_rolled_over(node: Node) -> None:
    svc = node.with_origin_zone()
    status = svc.dnssec.status(ORIGIN)
    assert status["signed"] and status["signatures"] > 0
    zone, ds = svc.dnssec.ds(ORIGIN)
    assert zone.origin == ORIGIN and len(ds) == 1
    svc.dnssec.rollover(ORIGIN, "zsk")
    with pytest.raises(DnsRequestError, match="already under way"):
        svc.dnssec.rollover(ORIGIN, "zsk")

    def states() -> list[tuple[str, str]]:
        return sorted((k["role"], k["state"]) for k in svc.dnssec.status(ORIGIN)["keys"])

    assert states() == [("ksk", "active"), ("zsk", "active"), ("zsk", "published")]
    node.time += timedelta(days=1)
    assert svc.advance_rollovers()  # the new ZSK signs, the old one retires
    assert states() == [("ksk", "active"), ("zsk", "active"), ("zsk", "retired")]
    node.time += timedelta(days=40)
    assert svc.resign_due() == 1  # signatures near expiry are made again


def test_unsigned_zones_are_refused_dnssec_management(tmp_path: Path) -> None:
    svc = Node(tmp_path, signed=False).with_origin_zone()
    for call in (lambda: svc.dnssec.ds(ORIGIN), lambda: svc.dnssec.rollover(ORIGIN, "ksk"),
                 lambda: svc.dnssec.ds_published(ORIGIN)):
        with pytest.raises(DnsRequestError, match="zone example.net. is not signed"):
            call()
    assert svc.dnssec.status(ORIGIN)["keys"] == [] and svc.advance_rollovers() == []
    with pytest.raises(DnsRequestError, match="no zone nope."):
        svc.dnssec.status(dns.name.from_text("nope."))


def test_zone_creation_keeps_the_signing_choices(node: Node) -> None:
    svc = node.service
    svc.zones.create(ORIGIN, ns=[dns.name.from_text("ns.elsewhere.org.")],
                     dnssec=SigningChoices(algorithm=15, csk=True, nsec3=True))
    status = svc.dnssec.status(ORIGIN)
    assert status["policy"] == {"algorithm": 15, "csk": True, "nsec3": True}
    assert [(k["role"], k["algorithm"]) for k in status["keys"]] == [("csk", 15)]
