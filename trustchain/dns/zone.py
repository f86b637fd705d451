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

A new or imported zone is checked whole (:meth:`Zone.build`).  A change makes
the next version with :meth:`Zone.apply`, which shares all unchanged data with
its predecessor, checks the same rules with the same messages only on the
names the change can affect, and records what changed (:class:`Delta`): the
store, the signer and the answer cache then do work in proportion to the
change, not to the zone.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone

from trustchain.dns.persistent import PMap, PSet, SortedSeq
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
class Delta:
    """What a version changed relative to the version it was made from."""

    #: The :attr:`Zone.token` of that version.
    base: object
    #: The RRsets added, removed or replaced, by owner and type.
    keys: frozenset[Key]
    #: Names that came into or went out of existence (owners and empty non-terminals).
    names: frozenset[dns.name.Name]


@dataclass(frozen=True)
class Zone:
    """One version of a zone.  Names compare case-insensitively (dnspython).

    The structures are persistent (:mod:`trustchain.dns.persistent`): a version made by
    :meth:`apply` shares everything with its predecessor but what the change touched,
    and records that change in :attr:`delta`, so that storing, signing and answering
    it costs what changed, not the size of the zone.
    """

    origin: dns.name.Name
    rrsets: PMap[Key, dns.rrset.RRset]
    #: Every name that exists: owner names and the empty non-terminals above them.
    names: PSet[dns.name.Name] = field(repr=False, compare=False)
    #: Delegation points: names below the apex that own NS records.
    cuts: PSet[dns.name.Name] = field(repr=False, compare=False)
    #: Owner name -> its types, in numeric order.
    types: PMap[dns.name.Name, tuple[int, ...]] = field(repr=False, compare=False)
    #: The owner names in canonical order (the subtree of a name follows it).
    owners: SortedSeq[dns.name.Name] = field(repr=False, compare=False)
    #: In-zone name server -> the owners of the NS RRsets that name it (glue checks).
    ns_targets: PMap[dns.name.Name, frozenset[dns.name.Name]] = field(repr=False, compare=False)
    #: Existing name -> how many owner names are at or below it (the map behind ``names``).
    weights: PMap[dns.name.Name, int] = field(repr=False, compare=False)
    #: What changed since the version this one was made from (None: made from scratch).
    delta: Delta | None = field(default=None, repr=False, compare=False)
    #: This version's identity, which a later version's :attr:`Delta.base` names.
    token: object = field(default_factory=object, repr=False, compare=False)

    @classmethod
    def build(cls, origin: dns.name.Name, rrsets: Iterable[dns.rrset.RRset]) -> Zone:
        """Assemble and check a zone (every rule, on every name).

        :raises ZoneError: listing every rule the data breaks.
        """
        merged: dict[Key, dns.rrset.RRset] = {}
        for rrset in rrsets:
            key = (rrset.name, rrset.rdtype)
            if key in merged:
                merged[key] = _union(merged[key], rrset)
            else:
                merged[key] = rrset
        types: dict[dns.name.Name, list[int]] = {}
        for name, rdtype in merged:
            types.setdefault(name, []).append(rdtype)
        weights: dict[dns.name.Name, int] = {}
        for name in types:
            for above in enclosing(name, origin):
                weights[above] = weights.get(above, 0) + 1
        ns_targets: dict[dns.name.Name, set[dns.name.Name]] = {}
        for (name, rdtype), rrset in merged.items():
            if rdtype == NS:
                for target in _in_zone_targets(rrset, origin):
                    ns_targets.setdefault(target, set()).add(name)
        weight_map = PMap(weights)
        zone = cls(origin, PMap(merged), PSet(_map=weight_map),
                   PSet(n for n, t in merged if t == NS and n != origin),
                   PMap((n, tuple(sorted(t))) for n, t in types.items()), SortedSeq(types),
                   PMap((t, frozenset(o)) for t, o in ns_targets.items()), weight_map)
        problems = check(zone)
        if problems:
            raise ZoneError(problems)
        return zone

    def apply(self, changes: Mapping[Key, dns.rrset.RRset | None]) -> Zone:
        """A new version with ``changes`` made (None deletes the RRset), checked only on the
        names the change can affect: those it touches, what lies below a new delegation,
        and the delegations whose name server lost its address.  Copies nothing that did
        not change.

        :raises ZoneError: listing every rule the new version breaks there.
        """
        origin = self.origin
        changes = {k: v for k, v in changes.items() if not same_rrset(self.rrsets.get(k), v)}
        type_changes: dict[dns.name.Name, set[int]] = {}
        for (name, rdtype), rrset in changes.items():
            types = type_changes.get(name)
            if types is None:
                types = type_changes[name] = set(self.types.get(name, ()))
            if rrset is None:
                types.discard(rdtype)
            else:
                types.add(rdtype)
        owners, weights = self.owners, self.weights
        weight_changes: dict[dns.name.Name, int] = {}
        for name, types in type_changes.items():
            existed = name in self.types
            if types and not existed:
                owners, step = owners.insert(name), 1
            elif not types and existed:
                owners, step = owners.remove(name), -1
            else:
                continue
            for above in enclosing(name, origin):
                weight_changes[above] = weight_changes.get(above, weights.get(above, 0)) + step
        appeared_or_gone = frozenset(n for n, w in weight_changes.items()
                                     if (w > 0) != (n in weights))
        weights = weights.evolve((n, w or None) for n, w in weight_changes.items())
        ns_owners = [n for n, t in changes if t == NS]
        new_cuts = [n for n in ns_owners if n != origin and changes[(n, NS)] is not None
                    and n not in self.cuts]
        cuts = self.cuts.evolve(new_cuts, [n for n in ns_owners if changes[(n, NS)] is None])
        target_changes: dict[dns.name.Name, set[dns.name.Name]] = {}
        for name in ns_owners:
            for rrset, add in ((self.rrsets.get((name, NS)), False), (changes[(name, NS)], True)):
                for target in _in_zone_targets(rrset, origin):
                    if target not in target_changes:
                        target_changes[target] = set(self.ns_targets.get(target, ()))
                    (target_changes[target].add if add else target_changes[target].discard)(name)
        zone = Zone(origin, self.rrsets.evolve(changes.items()), PSet(_map=weights), cuts,
                    self.types.evolve((n, tuple(sorted(t)) or None)
                                      for n, t in type_changes.items()),
                    owners,
                    self.ns_targets.evolve((t, frozenset(o) or None)
                                           for t, o in target_changes.items()),
                    weights, Delta(self.token, frozenset(changes), appeared_or_gone))
        affected = set(type_changes)
        for cut in new_cuts:  # what was authoritative data is now below a delegation
            affected.update(zone.owners_below(cut))
        for name, types in type_changes.items():  # an NS target without addresses now
            if _ADDRESSES.isdisjoint(types) and not _ADDRESSES.isdisjoint(self.types_at(name)):
                affected.update(zone.ns_targets.get(name, ()))
        problems = check(zone, affected)
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

    def types_at(self, name: dns.name.Name) -> tuple[int, ...]:
        return self.types.get(name, ())

    def owners_below(self, name: dns.name.Name) -> Iterator[dns.name.Name]:
        """The owner names strictly below ``name``, in canonical order (they follow it)."""
        for owner in self.owners.iter_after(name):
            if not owner.is_subdomain(name):
                return
            yield owner

    def changes_since(self, old: Zone) -> frozenset[Key] | None:
        """The keys of the RRsets that differ from ``old``, if this version was made from
        it (None: unknown, compare the whole zones)."""
        if self.delta is not None and self.delta.base is old.token:
            return self.delta.keys
        return None

    def cut_above(self, name: dns.name.Name) -> dns.name.Name | None:
        """The highest delegation point at or above ``name`` (below the apex), if any."""
        if not self.cuts:  # most zones delegate nothing: no names to make and look up
            return None
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
        for name in self.owners:
            for rdtype in self.types[name]:
                if (name, rdtype) != (self.origin, SOA):
                    yield self.rrsets[(name, rdtype)]

    def to_text(self) -> str:
        """The zone as an RFC 1035 master file (absolute names)."""
        lines = [f"$ORIGIN {self.origin.to_text()}"]
        for rrset in self.sorted_rrsets():
            lines.append(rrset.to_text())
        return "\n".join(lines) + "\n"

    def with_serial(self, serial: int) -> Zone:
        """The same data with a new SOA serial (its delta still relative to the version
        this one was made from)."""
        soa = self.soa
        key = (self.origin, SOA)
        was = soa[0]  # the constructor, not ``replace`` (which inspects the signature per call)
        rdata = type(was)(was.rdclass, was.rdtype, was.mname, was.rname, serial, was.refresh,
                          was.retry, was.expire, was.minimum)
        new = rrset_of(soa.name, soa.ttl, [rdata])
        delta = self.delta or Delta(self.token, frozenset(), frozenset())
        return replace(self, rrsets=self.rrsets.set(key, new),
                       delta=Delta(delta.base, delta.keys | {key}, delta.names), token=object())


_ADDRESSES = frozenset({A, AAAA})


def same_rrset(a: dns.rrset.RRset | None, b: dns.rrset.RRset | None) -> bool:
    """Both None, or equal RRsets with the same TTL."""
    if a is None or b is None:
        return a is b
    if a is b:
        return True
    if a.ttl != b.ttl:
        return False
    if len(a) == len(b) and a.rdtype == b.rdtype and a.covers == b.covers \
            and a.rdclass == b.rdclass and all(x is y for x, y in zip(a, b, strict=True)) \
            and (a.name is b.name or a.name == b.name):
        return True  # the same rdata objects: equal without hashing them (a hash is a wire form)
    return a == b


def rrset_of(name: dns.name.Name, ttl: int, rdatas: list[Any]) -> dns.rrset.RRset:
    """``dns.rrset.from_rdata_list(name, ttl, rdatas)`` (one type, duplicates dropped, one
    rdata of a singleton type), hashing each rdata once instead of twice (``Rdataset.add``
    looks it up, then stores it; a hash computes the rdata's whole canonical wire form)."""
    first = rdatas[0]
    rrset = dns.rrset.RRset(name, first.rdclass, first.rdtype, first.covers())
    rrset.ttl = ttl
    rrset.items = dict.fromkeys(rdatas)
    return rrset


def enclosing(name: dns.name.Name, origin: dns.name.Name) -> Iterator[dns.name.Name]:
    """``name`` and the names above it up to ``origin`` (none if it is outside the zone)."""
    while name.is_subdomain(origin):
        yield name
        if name == origin:
            return
        name = name.parent()


def _in_zone_targets(ns: dns.rrset.RRset | None, origin: dns.name.Name) -> set[dns.name.Name]:
    return set() if ns is None else {r.target for r in ns if r.target.is_subdomain(origin)}


def _union(a: dns.rrset.RRset, b: dns.rrset.RRset) -> dns.rrset.RRset:
    merged = dns.rrset.RRset(a.name, a.rdclass, a.rdtype)
    merged.update(a)
    merged.update(b)
    merged.ttl = min(a.ttl, b.ttl)
    return merged


def type_name(rdtype: int) -> str:
    return dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rdtype))


def check(zone: Zone, names: Iterable[dns.name.Name] | None = None) -> list[str]:
    """Every rule ``zone`` breaks, as messages (empty when it is fine).

    :param names: check only the rules about these names (and the apex): what a change
        to them can break in a version whose predecessor passed.  Default: every name.
    """
    problems = _apex_problems(zone)
    if names is None:
        for (name, rdtype), rrset in zone.rrsets.items():
            problems += _rrset_problems(zone, name, rdtype, rrset)
        for name, types in zone.types.items():
            problems += _cname_problems(zone, name, types)
        for (name, rdtype), rrset in zone.rrsets.items():
            if rdtype == NS:
                problems += _glue_problems(zone, name, rrset)
        return problems
    for name in sorted(names):
        types = zone.types_at(name)
        for rdtype in types:
            problems += _rrset_problems(zone, name, rdtype, zone.rrsets[(name, rdtype)])
        problems += _cname_problems(zone, name, types)
        if NS in types:
            problems += _glue_problems(zone, name, zone.rrsets[(name, NS)])
    return problems


def _apex_problems(zone: Zone) -> list[str]:
    problems = []
    origin = zone.origin
    soa = zone.rrsets.get((origin, SOA))
    if soa is None:
        problems.append(f"{origin}: no SOA record at the apex")
    elif len(soa) != 1:
        problems.append(f"{origin}: more than one SOA record")
    if (origin, NS) not in zone.rrsets:
        problems.append(f"{origin}: no NS records at the apex")
    return problems


def _rrset_problems(zone: Zone, name: dns.name.Name, rdtype: int,
                    rrset: dns.rrset.RRset) -> list[str]:
    origin = zone.origin
    if not name.is_subdomain(origin):
        return [f"{name}: outside the zone {origin}"]
    problems = []
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
    return problems


def _cname_problems(zone: Zone, name: dns.name.Name, types: Iterable[int]) -> list[str]:
    present = set(types)
    if CNAME not in present:
        return []
    if name == zone.origin:
        return [f"{name}: CNAME at the zone apex"]
    if present - _CNAME_COMPANIONS:
        others = ", ".join(sorted(type_name(t) for t in present - {CNAME}))
        return [f"{name}: CNAME and other data ({others}) at the same name"]
    return []


def _glue_problems(zone: Zone, name: dns.name.Name, rrset: dns.rrset.RRset) -> list[str]:
    problems = []
    for rdata in rrset:
        target = rdata.target
        if target.is_subdomain(zone.origin) and not (
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
