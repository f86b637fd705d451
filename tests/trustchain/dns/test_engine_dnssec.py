"""Answers with DO=1 from a signed zone: every record validates (dnspython's validator)."""

from __future__ import annotations

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from tests.trustchain.dns.test_dnssec import NOW, _keys
from tests.trustchain.dns.zonedata import EXAMPLE
from trustchain.dns.dnssec import sign_zone
from trustchain.dns.engine import ZoneSet, answer
from trustchain.dns.handler import QueryContext
from trustchain.dns.zone import from_text

ZONE = from_text(EXAMPLE)
SIGNED = sign_zone(ZONE, _keys(), NOW)
ZONES = ZoneSet({ZONE.origin: ZONE}, signed={ZONE.origin: SIGNED})
KEYRING = {ZONE.origin: SIGNED.dnskey}


def ask(name: str, rdtype: str, dnssec: bool = True) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, want_dnssec=dnssec)
    return dns.message.from_wire(answer(query.to_wire(), ZONES, QueryContext("tcp")))


def validate_section(section, keyring=None) -> int:
    """Validate every RRset of a section against its RRSIG; return how many."""
    sigs = {(r.name, r.covers): r for r in section if r.rdtype == dns.rdatatype.RRSIG}
    count = 0
    for rrset in section:
        if rrset.rdtype == dns.rdatatype.RRSIG:
            continue
        dns.dnssec.validate(rrset, sigs[(rrset.name, rrset.rdtype)], keyring or KEYRING, now=NOW)
        count += 1
    return count


def nsec_owners(message: dns.message.Message) -> list[str]:
    return [r.name.to_text() for r in message.authority if r.rdtype == dns.rdatatype.NSEC]


def test_positive_answer_carries_valid_signatures() -> None:
    r = ask("www.example.net", "AAAA")
    assert validate_section(r.answer) == 1 and r.ednsflags & dns.flags.DO


def test_dnskey_and_cname_chain() -> None:
    assert validate_section(ask("example.net", "DNSKEY").answer) == 1
    assert validate_section(ask("chain.example.net", "A").answer) == 3


def test_nxdomain_proves_name_and_wildcard_absent() -> None:
    r = ask("nope.example.net", "A")
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert validate_section(r.authority) >= 2  # SOA and at least one NSEC
    qname = dns.name.from_text("nope.example.net.")
    covering = [x for x in r.authority if x.rdtype == dns.rdatatype.NSEC]
    assert any(x.name < qname < x[0].next for x in covering)


def test_nodata_shows_the_type_bitmap() -> None:
    r = ask("www.example.net", "MX")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer
    validate_section(r.authority)
    (nsec,) = [x for x in r.authority if x.rdtype == dns.rdatatype.NSEC]
    assert nsec.name == dns.name.from_text("www.example.net.")
    assert "MX" not in nsec[0].to_text() and "AAAA" in nsec[0].to_text()


def test_empty_non_terminal_nodata_is_covered() -> None:
    r = ask("c.deep.example.net", "A")
    assert r.rcode() == dns.rcode.NOERROR
    assert validate_section(r.authority) == 2


def test_wildcard_answer_with_denial_of_the_exact_name() -> None:
    r = ask("x.wild.example.net", "TXT")
    rrsig = [s for s in r.answer if s.rdtype == dns.rdatatype.RRSIG][0]
    assert rrsig[0].labels == 3  # *.wild.example.net: the validator expands the wildcard
    dns.dnssec.validate(r.answer[0], rrsig, KEYRING, now=NOW)
    assert nsec_owners(r)  # and the NSEC that shows x.wild.example.net does not exist


def test_referrals_secure_and_insecure() -> None:
    r = ask("host.sub.example.net", "A")
    assert [x.rdtype for x in r.authority if x.rdtype != dns.rdatatype.RRSIG] == [
        dns.rdatatype.NS, dns.rdatatype.DS]
    ds = [x for x in r.authority if x.rdtype == dns.rdatatype.DS][0]
    sig = [x for x in r.authority if x.rdtype == dns.rdatatype.RRSIG][0]
    dns.dnssec.validate(ds, sig, KEYRING, now=NOW)


def test_insecure_delegation_proves_no_ds() -> None:
    text = "\n".join(line for line in EXAMPLE.splitlines() if not line.startswith("sub     DS"))
    zone = from_text(text)
    signed = sign_zone(zone, _keys(), NOW)
    zones = ZoneSet({zone.origin: zone}, signed={zone.origin: signed})
    query = dns.message.make_query("host.sub.example.net", "A", want_dnssec=True)
    r = dns.message.from_wire(answer(query.to_wire(), zones, QueryContext("tcp")))
    (nsec,) = [x for x in r.authority if x.rdtype == dns.rdatatype.NSEC]
    assert nsec.name == dns.name.from_text("sub.example.net.") and "DS" not in nsec[0].to_text()


@pytest.mark.parametrize("name,rdtype", [("www.example.net", "A"), ("nope.example.net", "A"),
                                         ("x.wild.example.net", "TXT")])
def test_without_do_no_dnssec_records(name: str, rdtype: str) -> None:
    r = ask(name, rdtype, dnssec=False)
    types = {x.rdtype for s in (r.answer, r.authority) for x in s}
    assert not types & {dns.rdatatype.RRSIG, dns.rdatatype.NSEC}


def test_ds_for_a_child_we_also_serve_comes_from_the_parent() -> None:
    child_text = ("$ORIGIN sub.example.net.\n$TTL 300\n@ SOA ns hm 1 2 3 4 5\n"
                  "@ NS ns\nns A 192.0.2.53\n")
    child = from_text(child_text)
    zones = ZoneSet({ZONE.origin: ZONE, child.origin: child}, signed={ZONE.origin: SIGNED})
    query = dns.message.make_query("sub.example.net", "DS", want_dnssec=True)
    r = dns.message.from_wire(answer(query.to_wire(), zones, QueryContext("udp")))
    assert r.answer[0].rdtype == dns.rdatatype.DS
    validate_section(r.answer)
    soa = dns.message.make_query("sub.example.net", "SOA")
    r = dns.message.from_wire(answer(soa.to_wire(), zones, QueryContext("udp")))
    assert r.answer[0][0].mname.to_text() == "ns.sub.example.net."  # the child answers the rest


NSEC3_SIGNED = sign_zone(ZONE, _keys(), NOW, nsec3=True)
NSEC3_ZONES = ZoneSet({ZONE.origin: ZONE}, signed={ZONE.origin: NSEC3_SIGNED})


def ask3(name: str, rdtype: str) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, want_dnssec=True)
    return dns.message.from_wire(answer(query.to_wire(), NSEC3_ZONES, QueryContext("tcp")))


def test_nsec3_chain_and_param() -> None:
    assert not NSEC3_SIGNED.nsec and NSEC3_SIGNED.nsec3
    r = ask3("example.net", "NSEC3PARAM")
    assert r.answer[0][0].to_text() == "1 0 0 -"
    for owner, record in NSEC3_SIGNED.nsec3.items():
        dns.dnssec.validate(record, NSEC3_SIGNED.rrsig(owner, dns.rdatatype.NSEC3),
                            {ZONE.origin: NSEC3_SIGNED.dnskey}, now=NOW)
    ent = NSEC3_SIGNED.hashed(dns.name.from_text("c.deep.example.net."))
    assert ent in NSEC3_SIGNED.nsec3  # empty non-terminals get NSEC3 records too


def test_nsec3_nxdomain_has_a_closest_encloser_proof() -> None:
    r = ask3("nope.example.net", "A")
    assert r.rcode() == dns.rcode.NXDOMAIN
    records = [x for x in r.authority if x.rdtype == dns.rdatatype.NSEC3]
    owners = {x.name for x in records}
    assert NSEC3_SIGNED.hashed(ZONE.origin) in owners  # the closest encloser matches
    assert 2 <= len(records) <= 3
    assert validate_section(r.authority, {ZONE.origin: NSEC3_SIGNED.dnskey}) == 4


def test_nsec3_nodata_matches_the_name() -> None:
    r = ask3("www.example.net", "MX")
    (record,) = [x for x in r.authority if x.rdtype == dns.rdatatype.NSEC3]
    assert record.name == NSEC3_SIGNED.hashed(dns.name.from_text("www.example.net."))
