"""The query engine, without sockets; dnslib (not our codec) reads the responses."""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dnslib
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.trustchain.dns.zonedata import EXAMPLE
from trustchain.dns.engine import ZoneSet, answer
from trustchain.dns.handler import QueryContext
from trustchain.dns.zone import from_text

ZONES = ZoneSet({(z := from_text(EXAMPLE)).origin: z})
UDP, TCP = QueryContext("udp"), QueryContext("tcp")


def ask(name: str, rdtype: str, context: QueryContext = UDP, **kw) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, **kw)
    wire = answer(query.to_wire(), ZONES, context)
    assert wire is not None
    response = dns.message.from_wire(wire)
    assert response.id == query.id
    dnslib.DNSRecord.parse(wire)  # an independent parser accepts it too
    return response


def texts(section) -> list[str]:
    return [rr.to_text() for rrset in section for rr in [rrset]]


def test_exact_match_preserves_the_query_case() -> None:
    r = ask("WwW.Example.NET", "A")
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    assert r.question[0].name.to_text() == "WwW.Example.NET."
    assert texts(r.answer) == ["WwW.Example.NET. 300 IN A 192.0.2.10"]
    assert not r.authority and not r.additional  # minimal responses


def test_cname_chain_is_followed() -> None:
    r = ask("chain.example.net", "AAAA")
    assert [a.rdtype for a in r.answer] == [5, 5, 28]
    assert r.answer[-1][0].to_text() == "2001:db8::10"


def test_cname_loop_stops() -> None:
    r = ask("loop1.example.net", "A")
    assert r.rcode() == dns.rcode.NOERROR and 2 <= len(r.answer) <= 9


def test_cname_out_of_our_zones_is_left_to_the_resolver() -> None:
    r = ask("out.example.net", "A")
    assert texts(r.answer) == ["out.example.net. 300 IN CNAME www.elsewhere.org."]


def test_query_for_cname_itself() -> None:
    r = ask("alias.example.net", "CNAME")
    assert texts(r.answer) == ["alias.example.net. 300 IN CNAME www.example.net."]


def test_wildcard_synthesis() -> None:
    r = ask("anything.wild.example.net", "TXT")
    assert texts(r.answer) == ['anything.wild.example.net. 300 IN TXT "wildcard"']
    r = ask("x.y.wc.example.net", "A")
    assert texts(r.answer)[0] == "x.y.wc.example.net. 300 IN CNAME www.example.net."


def test_wildcard_nodata() -> None:
    r = ask("anything.wild.example.net", "A")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer
    assert r.authority[0].rdtype == 6


def test_referral_with_glue() -> None:
    r = ask("host.sub.example.net", "A")
    assert r.rcode() == dns.rcode.NOERROR and not r.flags & dns.flags.AA
    assert texts(r.authority) == ["sub.example.net. 300 IN NS ns.sub.example.net."]
    assert texts(r.additional) == ["ns.sub.example.net. 300 IN A 192.0.2.53"]


def test_ds_at_the_cut_comes_from_the_parent() -> None:
    r = ask("sub.example.net", "DS")
    assert r.flags & dns.flags.AA and r.answer[0].rdtype == 43


def test_nodata_and_nxdomain_carry_the_soa_with_the_negative_ttl() -> None:
    r = ask("www.example.net", "MX")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer
    assert r.authority[0].rdtype == 6 and r.authority[0].ttl == 60
    r = ask("nope.example.net", "A")
    assert r.rcode() == dns.rcode.NXDOMAIN and r.flags & dns.flags.AA
    assert r.authority[0].ttl == 60


def test_empty_non_terminal_is_nodata() -> None:
    r = ask("c.deep.example.net", "A")
    assert r.rcode() == dns.rcode.NOERROR and r.authority[0].rdtype == 6


def test_foreign_zone_is_refused_with_extended_error() -> None:
    r = ask("example.com", "A", use_edns=0)
    assert r.rcode() == dns.rcode.REFUSED and not r.flags & dns.flags.AA
    ede = [o for o in r.options if isinstance(o, dns.edns.EDEOption)]
    assert ede and ede[0].code == dns.edns.EDECode.NOT_AUTHORITATIVE


def test_badvers_for_edns_version_1() -> None:
    r = ask("www.example.net", "A", use_edns=1)
    assert r.rcode() == dns.rcode.BADVERS and r.edns == 0


def test_edns_is_echoed_with_our_payload_and_the_do_bit() -> None:
    r = ask("www.example.net", "A", use_edns=0, want_dnssec=True, payload=4096)
    assert r.edns == 0 and r.payload == 1232 and r.ednsflags & dns.flags.DO
    assert ask("www.example.net", "A").edns == -1  # no EDNS in, none out


def test_notimp_for_other_opcodes() -> None:
    q = dns.message.make_query("www.example.net", "A")
    q.set_opcode(dns.opcode.STATUS)
    r = dns.message.from_wire(answer(q.to_wire(), ZONES, UDP))
    assert r.rcode() == dns.rcode.NOTIMP


def test_any_gets_rfc8482_minimal_answer() -> None:
    r = ask("www.example.net", "ANY")
    assert texts(r.answer) == ['www.example.net. 60 IN HINFO "RFC8482" ""']


def test_truncation_over_udp_and_full_answer_over_tcp() -> None:
    small = ask("big.example.net", "TXT")
    assert small.flags & dns.flags.TC and not small.answer
    edns = ask("big.example.net", "TXT", use_edns=0, payload=4096)
    assert edns.flags & dns.flags.TC  # capped at our 1232
    full = ask("big.example.net", "TXT", TCP)
    assert not full.flags & dns.flags.TC and len(full.answer[0][0].strings) == 6


@pytest.mark.parametrize(
    "wire",
    [b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www",  # truncated question
     b"\x12\x34\x01\x00\x00\x02\x00\x00\x00\x00\x00\x00" + b"\x00\x00\x01\x00\x01" * 2],
)
def test_formerr(wire: bytes) -> None:
    r = dns.message.from_wire(answer(wire, ZONES, UDP))
    assert r.rcode() == dns.rcode.FORMERR and r.id == 0x1234


def test_responses_and_runts_are_dropped() -> None:
    q = dns.message.make_query("www.example.net", "A")
    q.flags |= dns.flags.QR
    assert answer(q.to_wire(), ZONES, UDP) is None
    assert answer(b"\x00\x01", ZONES, UDP) is None


@given(st.binary(max_size=600))
def test_arbitrary_bytes_give_a_valid_response_or_nothing(data: bytes) -> None:
    wire = answer(data, ZONES, UDP)
    if wire is not None:
        assert len(wire) <= 1232
        parsed = dnslib.DNSRecord.parse(wire)
        assert parsed.header.qr == 1 and parsed.header.id == int.from_bytes(data[:2], "big")


@given(st.binary(min_size=12, max_size=12), st.sampled_from(
    ["www", "alias", "nope", "x.wild", "a.sub", "c.deep", "WWW", "big"]),
    st.sampled_from(["A", "AAAA", "TXT", "NS", "SOA", "MX", "DS", "ANY", "CNAME", "TYPE999"]))
def test_random_headers_on_real_questions(header: bytes, name: str, rdtype: str) -> None:
    question = dns.message.make_query(f"{name}.example.net", rdtype).to_wire()[12:]
    wire = header[:4] + b"\x00\x01\x00\x00\x00\x00\x00\x00" + question
    result = answer(wire, ZONES, UDP)
    if result is not None:
        dnslib.DNSRecord.parse(result)
