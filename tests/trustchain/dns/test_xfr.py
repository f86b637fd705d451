"""AXFR and IXFR responses, built from a zone and its journal (no sockets)."""

from __future__ import annotations

import dns.message
import dns.rdatatype
import dns.rrset

from tests.trustchain.dns.zonedata import EXAMPLE
from trustchain.dns.xfr import ixfr_sequence, transfer
from trustchain.dns.zone import from_text

ZONE = from_text(EXAMPLE)


def _journal_step(old, new):
    removed = old.soa.to_text().splitlines() + ["www.example.net. 300 IN A 192.0.2.10"]
    added = new.soa.to_text().splitlines() + ["www.example.net. 300 IN A 192.0.2.11"]
    return (old.serial, new.serial, removed, added)


def test_axfr_starts_and_ends_with_the_soa() -> None:
    query = dns.message.make_query("example.net", "AXFR")
    messages = [dns.message.from_wire(w, xfr=True, origin=None) for w in transfer(query, ZONE, [])]
    records = [r for m in messages for r in m.answer]
    assert records[0].rdtype == records[-1].rdtype == dns.rdatatype.SOA
    assert {(r.name, r.rdtype) for r in records} == set(ZONE.rrsets)


def test_ixfr_from_the_journal() -> None:
    newer = ZONE.with_serial(ZONE.serial + 1)
    journal = [_journal_step(ZONE, newer)]
    sequence = ixfr_sequence(newer, journal, ZONE.serial)
    assert sequence is not None
    assert [r.rdtype for r in sequence] == [6, 6, 1, 6, 1, 6]
    assert [int(r[0].serial) for r in sequence if r.rdtype == 6] == [
        newer.serial, ZONE.serial, newer.serial, newer.serial]


def test_ixfr_without_a_chain_falls_back_to_a_full_transfer() -> None:
    newer = ZONE.with_serial(ZONE.serial + 2)
    gap = [_journal_step(ZONE, ZONE.with_serial(ZONE.serial + 1))]  # never reaches +2
    assert ixfr_sequence(newer, gap, ZONE.serial) is None
    assert ixfr_sequence(newer, gap, 12345) is None
    query = dns.message.make_query("example.net", "IXFR")
    query.authority.append(dns.rrset.from_text("example.net.", 0, "IN", "SOA",
                                               f"a. b. {ZONE.serial} 0 0 0 0"))
    records = dns.message.from_wire(transfer(query, newer, gap)[0], xfr=True).answer
    assert records[0].rdtype == records[-1].rdtype == dns.rdatatype.SOA
    assert {(r.name, r.rdtype) for r in records} == set(newer.rrsets)


def test_ixfr_when_current_is_one_soa() -> None:
    query = dns.message.make_query("example.net", "IXFR")
    query.authority.append(dns.rrset.from_text("example.net.", 0, "IN", "SOA",
                                               f"a. b. {ZONE.serial} 0 0 0 0"))
    (wire,) = transfer(query, ZONE, [])
    assert [r.rdtype for r in dns.message.from_wire(wire).answer] == [6]
