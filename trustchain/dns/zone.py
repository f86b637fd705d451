"""Zones: immutable snapshots of authoritative data, and their semantic checks.

A :class:`Zone` is built once per version from its RRsets and never changes;
the query engine reads it without locks.  :func:`check` is run on every
candidate version before it is stored, so a zone that breaks the rules never
becomes visible (the rules are Knot's and NSD's usual ones):

* exactly one SOA, at the apex, and at least one NS at the apex;
* every owner name inside the zone;
* CNAME alone at its name (RFC 1034 3.6.2; RRSIG/NSEC excepted), never at
  the apex (dnspython keeps a single CNAME per name);
* DS only at delegation points; nothing but glue below a delegation point;
* every in-bailiwick name server has an address (glue) in the zone;
* TTLs between 0 and 2^31-1 (RFC 2181 section 8).
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone

from trustchain.errors import LocalError

SOA = dns.rdatatype.SOA
NS = dns.rdatatype.NS
CNAME = dns.rdatatype.CNAME
DS = dns.rdatatype.DS
A = dns.rdatatype.A
AAAA = dns.rdatatype.AAAA
#: Types that may sit beside a CNAME (DNSSEC records of the CNAME itself).
_CNAME_COMPANIONS = {dns.rdatatype.RRSIG, dns.rdatatype.NSEC, CNAME}
MAX_TTL = 2**31 - 1


class ZoneError(LocalError):
    """The zone data breaks the rules."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


Key = tuple[dns.name.Name, int]


@dataclass(frozen=True)
class Secondary:
    """A server that transfers ``zone`` from us, authenticated by the TSIG key ``key_name``."""

    zone: dns.name.Name
    address: str
    port: int
    key_name: str


@dataclass(frozen=True)
class Zone:
    """One version of a zone.  Names compare case-insensitively (dnspython)."""

    origin: dns.name.Name
    rrsets: Mapping[Key, dns.rrset.RRset]
    #: Every name that exists: owner names and the empty non-terminals above them.
    names: frozenset[dns.name.Name] = field(repr=False)
    #: Delegation points: names below the apex that own NS records.
    cuts: frozenset[dns.name.Name] = field(repr=False)

    @classmethod
    def build(cls, origin: dns.name.Name, rrsets: Iterable[dns.rrset.RRset]) -> Zone:
        """Assemble and check a zone.

        :raises ZoneError: listing every rule the data breaks.
        """
        merged: dict[Key, dns.rrset.RRset] = {}
        for rrset in rrsets:
            key = (rrset.name, rrset.rdtype)
            if key in merged:
                merged[key] = _union(merged[key], rrset)
            else:
                merged[key] = rrset
        names: set[dns.name.Name] = set()
        for name, _ in merged:
            while name.is_subdomain(origin) and name not in names:
                names.add(name)
                if name == origin:
                    break
                name = name.parent()
        cuts = frozenset(n for n, t in merged if t == NS and n != origin)
        zone = cls(origin, merged, frozenset(names), cuts)
        problems = check(zone)
        if problems:
            raise ZoneError(problems)
        return zone

    @property
    def soa(self) -> dns.rrset.RRset:
        return self.rrsets[(self.origin, SOA)]

    @property
    def serial(self) -> int:
        return int(self.soa[0].serial)

    def get(self, name: dns.name.Name, rdtype: int) -> dns.rrset.RRset | None:
        return self.rrsets.get((name, rdtype))

    def types_at(self, name: dns.name.Name) -> list[int]:
        return self._types_by_name.get(name, [])

    @functools.cached_property
    def _types_by_name(self) -> dict[dns.name.Name, list[int]]:
        """Owner name -> its types, built once per version (scanning every RRset for each
        name made signing quadratic in the zone: 4 s a change at 1,000 RRsets)."""
        types: dict[dns.name.Name, list[int]] = {}
        for name, rdtype in self.rrsets:
            types.setdefault(name, []).append(rdtype)
        return types

    def cut_above(self, name: dns.name.Name) -> dns.name.Name | None:
        """The highest delegation point at or above ``name`` (below the apex), if any."""
        labels = name.relativize(self.origin).labels if name != self.origin else ()
        current = self.origin
        for label in reversed(labels):
            current = dns.name.Name((label, *current.labels))
            if current in self.cuts:
                return current
        return None

    def sorted_rrsets(self) -> Iterator[dns.rrset.RRset]:
        """SOA first, then by canonical name order and type."""
        yield self.soa
        for key in sorted(self.rrsets, key=lambda k: (k[0], k[1])):
            if key != (self.origin, SOA):
                yield self.rrsets[key]

    def to_text(self) -> str:
        """The zone as an RFC 1035 master file (absolute names)."""
        lines = [f"$ORIGIN {self.origin.to_text()}"]
        for rrset in self.sorted_rrsets():
            lines.append(rrset.to_text())
        return "\n".join(lines) + "\n"

    def with_serial(self, serial: int) -> Zone:
        """The same data with a new SOA serial."""
        soa = self.soa
        new = dns.rrset.from_rdata(soa.name, soa.ttl, soa[0].replace(serial=serial))
        rrsets = dict(self.rrsets)
        rrsets[(self.origin, SOA)] = new
        return Zone(self.origin, rrsets, self.names, self.cuts)


def _union(a: dns.rrset.RRset, b: dns.rrset.RRset) -> dns.rrset.RRset:
    merged = dns.rrset.RRset(a.name, a.rdclass, a.rdtype)
    merged.update(a)
    merged.update(b)
    merged.ttl = min(a.ttl, b.ttl)
    return merged


def type_name(rdtype: int) -> str:
    return dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rdtype))


def check(zone: Zone) -> list[str]:
    """Every rule ``zone`` breaks, as messages (empty when it is fine)."""
    problems: list[str] = []
    origin = zone.origin
    soa = zone.rrsets.get((origin, SOA))
    if soa is None:
        problems.append(f"{origin}: no SOA record at the apex")
    elif len(soa) != 1:
        problems.append(f"{origin}: more than one SOA record")
    if (origin, NS) not in zone.rrsets:
        problems.append(f"{origin}: no NS records at the apex")
    by_name: dict[dns.name.Name, set[int]] = {}
    for (name, rdtype), rrset in zone.rrsets.items():
        by_name.setdefault(name, set()).add(rdtype)
        if not name.is_subdomain(origin):
            problems.append(f"{name}: outside the zone {origin}")
            continue
        try:
            rrset.to_wire(io.BytesIO())
        except dns.exception.DNSException as exc:
            problems.append(f"{name} {type_name(rdtype)}: {exc}")
        if rrset.rdclass != dns.rdataclass.IN:
            problems.append(f"{name}: only class IN is served")
        if not 0 <= rrset.ttl <= MAX_TTL:
            problems.append(f"{name} {type_name(rdtype)}: TTL {rrset.ttl} out of range")
        if rdtype == SOA and name != origin:
            problems.append(f"{name}: SOA below the apex")
        if rdtype == DS and name not in zone.cuts:
            problems.append(f"{name}: DS records belong at a delegation point (with NS)")
        cut = zone.cut_above(name)
        if cut is not None and (name != cut or rdtype not in (NS, DS)) and rdtype not in (A, AAAA):
            problems.append(
                f"{name} {type_name(rdtype)}: data below the delegation at {cut} "
                "is not served (only glue addresses may be there)"
            )
    for name, types in by_name.items():
        if CNAME in types:
            if name == origin:
                problems.append(f"{name}: CNAME at the zone apex")
            elif types - _CNAME_COMPANIONS:
                others = ", ".join(sorted(type_name(t) for t in types - {CNAME}))
                problems.append(f"{name}: CNAME and other data ({others}) at the same name")
    for (name, rdtype), rrset in zone.rrsets.items():
        if rdtype != NS:
            continue
        for rdata in rrset:
            target = rdata.target
            if target.is_subdomain(origin) and not (
                (target, A) in zone.rrsets or (target, AAAA) in zone.rrsets
            ):
                problems.append(f"{name} NS {target}: the name server has no address in the zone")
    return problems


_ORIGIN_DIRECTIVE = re.compile(r"^\$ORIGIN\s+(\S+)", re.MULTILINE | re.IGNORECASE)


def from_text(text: str, origin: dns.name.Name | None = None) -> Zone:
    """Parse an RFC 1035 master file (``$ORIGIN`` and ``$TTL``; ``$INCLUDE`` is refused).

    :param origin: the zone's origin; by default the file's first ``$ORIGIN``.
    :raises ZoneError: if it does not parse or breaks a rule.
    """
    try:
        if origin is None:
            found = _ORIGIN_DIRECTIVE.search(text)
            if found is None:
                raise ZoneError(["zone file: no $ORIGIN line; give the origin explicitly"])
            origin = dns.name.from_text(found[1])
        # Read into dnspython's Zone (a node per name) rather than its RRsetsReaderManager,
        # which looks every name up by scanning all it has read: quadratic, 90 s for a
        # zone of 10,000 RRsets.  Our own Zone.build checks the result.
        parsed = dns.zone.from_text(text, origin, relativize=False, check_origin=False,
                                    allow_include=False, allow_directives=["$ORIGIN", "$TTL"],
                                    filename="<zone file>")
    except (dns.exception.DNSException, ValueError) as exc:
        raise ZoneError([f"zone file: {exc}"]) from None
    return Zone.build(origin, (dns.rrset.from_rdata_list(name, rdataset.ttl, list(rdataset))
                               for name, rdataset in parsed.iterate_rdatasets()))


def next_serial(current: int, today: int) -> int:
    """The serial after ``current`` (RFC 1982): date-based YYYYMMDDnn when it fits.

    :param today: the date as YYYYMMDD.
    """
    candidate = today * 100
    if serial_newer(candidate, current) and candidate < 2**32:
        return candidate
    return (current + 1) % 2**32 or 1


def serial_newer(a: int, b: int) -> bool:
    """``a`` is a later serial than ``b`` in RFC 1982 arithmetic."""
    return a != b and ((a > b and a - b < 2**31) or (a < b and b - a > 2**31))
