from __future__ import annotations

import dns.name
import dns.rrset
import pytest

from tests.trustchain.dns.zonedata import EXAMPLE
from trustchain.dns.zone import Zone, ZoneError, from_text, next_serial

APEX = "$ORIGIN z.test.\n$TTL 60\n@ SOA ns hm 1 2 3 4 5\n@ NS ns\nns A 192.0.2.1\n"


def test_parse_and_structure() -> None:
    zone = from_text(EXAMPLE)
    assert zone.origin == dns.name.from_text("example.net.")
    assert zone.serial == 2026112500
    assert dns.name.from_text("c.deep.example.net.") in zone.names  # empty non-terminal
    assert zone.cuts == frozenset({dns.name.from_text("sub.example.net.")})
    assert zone.cut_above(dns.name.from_text("x.y.sub.example.net.")) == dns.name.from_text(
        "sub.example.net.")


def test_round_trip_through_text() -> None:
    zone = from_text(EXAMPLE)
    again = from_text(zone.to_text())
    assert again.rrsets == zone.rrsets and again.to_text() == zone.to_text()


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ("www CNAME ns\nwww A 192.0.2.9\n", "CNAME and other data"),
        ("@ CNAME ns\n", "CNAME at the zone apex"),
        ("other.test. A 192.0.2.1\n", "outside the zone"),
        ("x DS 1 13 2 " + "AB" * 32 + "\n", "DS records belong at a delegation point"),
        ("d NS ns.d\n", "has no address in the zone"),
        ("d NS ns.elsewhere.\nx.d TXT \"hidden\"\n", "below the delegation"),
        ("x SOA ns hm 1 2 3 4 5\n", "SOA below the apex"),
        ("x CNAME relative-but-fine\ny NS ns2\n", "has no address"),
    ],
)
def test_semantic_checks(extra: str, problem: str) -> None:
    """The checker itself, on RRsets as the management API builds them."""
    with pytest.raises(ZoneError) as info:
        Zone.build(ORIGIN, _rrsets(APEX + extra))
    assert any(problem in p for p in info.value.problems), info.value.problems


def _rrsets(text: str) -> list[dns.rrset.RRset]:
    out = []
    for line in text.splitlines():
        if not line or line.startswith("$"):
            continue
        name, rdtype, *data = line.split(None, 2)
        owner = dns.name.from_text(name, ORIGIN) if name != "@" else ORIGIN
        out.append(dns.rrset.from_text_list(owner, 60, "IN", rdtype, [" ".join(data)],
                                            origin=ORIGIN, relativize=False))
    return out


ORIGIN = dns.name.from_text("z.test.")


def test_missing_soa_and_ns() -> None:
    with pytest.raises(ZoneError) as info:
        Zone.build(ORIGIN, _rrsets("www A 192.0.2.1"))
    text = str(info.value)
    assert "no SOA" in text and "no NS" in text


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ("www CNAME ns\nwww A 192.0.2.9\n", "not compatible"),
        ("x SOA ns hm 1 2 3 4 5\n", "non-origin SOA"),
        ("$INCLUDE /etc/passwd\n", "INCLUDE"),
        ("www A not-an-address\n", "zone file"),
    ],
)
def test_zone_file_parser_refuses(extra: str, problem: str) -> None:
    with pytest.raises(ZoneError, match=problem):
        from_text(APEX + extra)


def test_zone_file_without_origin() -> None:
    with pytest.raises(ZoneError, match="no \\$ORIGIN"):
        from_text("@ SOA ns hm 1 2 3 4 5\n")
    assert from_text(APEX.replace("$ORIGIN z.test.\n", ""), ORIGIN).origin == ORIGIN


def test_glue_below_a_delegation_is_allowed() -> None:
    from_text(APEX + "d NS ns.d\nns.d AAAA 2001:db8::5\n")


def test_serials() -> None:
    assert next_serial(1, 20261125) == 2026112500
    assert next_serial(2026112500, 20261125) == 2026112501
    assert next_serial(2026112599, 20261125) == 2026112600  # past nn=99: still increases
    assert next_serial(4294967295, 20261125) == 2026112500  # RFC 1982 wrap: 2026112500 is newer
    assert next_serial(3000000000, 20261125) == 3000000001
