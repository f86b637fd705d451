"""Records as a management request gives them, checked into dnspython values.

A change set becomes the RRsets it replaces (:func:`change_set`: deletions,
then additions), and the next zone version is made from them and checked
where the change can break a rule (:func:`changed_zone`), so a change lands
whole or not at all, at a cost that does not grow with the zone.
:func:`apply_change` and :func:`build_zone` do the same over a whole copy of
the zone (for callers that assemble zones from scratch).  Every refusal is a
:class:`DnsRequestError` whose message the operator reads as is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from trustchain.dns.zone import SOA, Key, Zone, ZoneError
from trustchain.errors import RemoteError

#: The TTL of records and new zones unless the request names one.
DEFAULT_TTL = 3600


class DnsRequestError(RemoteError):
    """A management request refused; the message says why."""


@dataclass(frozen=True)
class Record:
    """A record to add, as in a zone file: ``type`` and ``data`` in presentation
    form, names in ``data`` relative to the zone's origin."""

    name: dns.name.Name
    type: str
    data: str
    ttl: int = DEFAULT_TTL


@dataclass(frozen=True)
class RecordSelector:
    """What to delete at ``name``: every type, one ``type``, or one record of it (``data``)."""

    name: dns.name.Name
    type: str | None = None
    data: str | None = None


def parse_name(text: str) -> dns.name.Name:
    try:
        return dns.name.from_text(text)
    except dns.exception.DNSException as exc:
        raise DnsRequestError(f"{text!r} is not a domain name: {exc}") from None


def parse_rdtype(text: str) -> dns.rdatatype.RdataType:
    """A type that zones may hold (not a meta type such as ANY or OPT)."""
    try:
        rdtype = dns.rdatatype.from_text(text)
    except dns.exception.DNSException:
        raise DnsRequestError(f"unknown record type {text!r}") from None
    if dns.rdatatype.is_metatype(rdtype) or rdtype in (dns.rdatatype.OPT,):
        raise DnsRequestError(f"{text} is not a record type that can be stored")
    return rdtype


def rrset_from_text(name: dns.name.Name, rdtype: str, ttl: int, data: str,
                    origin: dns.name.Name) -> dns.rrset.RRset:
    """One record; relative names in ``data`` are relative to ``origin``, as in zone files."""
    try:
        return dns.rrset.from_text_list(name, ttl, "IN", parse_rdtype(rdtype).name, [data],
                                        origin=origin, relativize=False)
    except dns.exception.DNSException as exc:
        raise DnsRequestError(f"{name} {rdtype} {data!r}: {exc}") from None


def merged(existing: dns.rrset.RRset | None, new: dns.rrset.RRset) -> dns.rrset.RRset:
    """``new`` added to ``existing`` (a new RRset: zones are never changed in place)."""
    if existing is None:
        return new
    out = dns.rrset.RRset(existing.name, existing.rdclass, existing.rdtype)
    out.update(existing)
    out.update(new)
    return out


def build_zone(origin: dns.name.Name, rrsets: Iterable[dns.rrset.RRset],
               prefix: str = "") -> Zone:
    """A zone version, refused (naming every rule it breaks) unless it passes the checks."""
    try:
        return Zone.build(origin, rrsets)
    except ZoneError as exc:
        raise DnsRequestError(f"{prefix}{exc}") from None


def changed_zone(zone: Zone, changes: Mapping[Key, dns.rrset.RRset | None],
                 prefix: str = "") -> Zone:
    """The next version of ``zone`` with ``changes`` made (None deletes an RRset), checked
    where the change can break a rule and sharing everything else: what
    :func:`build_zone` over :func:`apply_change` gives, at the cost of the change
    instead of the zone.  Store and publish it with ``Zones.update`` (or
    ``Zones.publish(..., changed=...)``) to sign and answer it incrementally too."""
    try:
        return zone.apply(changes)
    except ZoneError as exc:
        raise DnsRequestError(f"{prefix}{exc}") from None


def change_set(zone: Zone, add: Sequence[Record],
               delete: Sequence[RecordSelector]) -> dict[Key, dns.rrset.RRset | None]:
    """The RRsets a change set replaces in ``zone`` (deletions, then additions), by key:
    the new RRset, or None where it goes.  Not yet checked as a zone.

    An added record joins its RRset (taking the new TTL); a singleton type
    (CNAME, ...) that already holds other data is refused.
    """
    changes: dict[Key, dns.rrset.RRset | None] = {}

    def current(key: Key) -> dns.rrset.RRset | None:
        return changes[key] if key in changes else zone.rrsets.get(key)

    for selector in delete:
        _delete(changes, current, zone, selector)
    for record in add:
        name, rdtype = record.name, parse_rdtype(record.type)
        if rdtype == SOA:
            raise DnsRequestError(
                "the SOA is managed by the node (its serial moves on every change)")
        new = rrset_from_text(name, record.type, record.ttl, record.data, zone.origin)
        existing = current((name, rdtype))
        if existing is not None and dns.rdatatype.is_singleton(rdtype) and existing != new:
            raise DnsRequestError(f"{name} already has a {record.type.upper()} record; "
                                  "delete it first (nothing applied)")
        new = merged(existing, new)
        new.ttl = record.ttl
        changes[(name, rdtype)] = new
    return changes


def apply_change(zone: Zone, add: Sequence[Record],
                 delete: Sequence[RecordSelector]) -> dict[Key, dns.rrset.RRset]:
    """``zone``'s RRsets after the deletions, then the additions (not yet checked as a zone).

    A whole copy of the zone, for :func:`build_zone`; :func:`change_set` and
    :func:`changed_zone` do the same at the cost of the change.
    """
    rrsets = dict(zone.rrsets)
    for key, rrset in change_set(zone, add, delete).items():
        if rrset is None:
            rrsets.pop(key, None)
        else:
            rrsets[key] = rrset
    return rrsets


def _delete(changes: dict[Key, dns.rrset.RRset | None],
            current: Callable[[Key], dns.rrset.RRset | None], zone: Zone,
            selector: RecordSelector) -> None:
    name = selector.name
    rdtype = parse_rdtype(selector.type) if selector.type else None
    if rdtype == SOA:
        raise DnsRequestError("the SOA cannot be deleted (delete the zone instead)")
    at_name = set(zone.types_at(name)) | {t for n, t in changes if n == name}
    keys = [(name, t) for t in sorted(at_name) if (rdtype is None or t == rdtype)
            and t != SOA and current((name, t)) is not None]
    if not keys:
        raise DnsRequestError(f"nothing to delete at {name}"
                              + (f" {dns.rdatatype.to_text(rdtype)}" if rdtype else ""))
    for key in keys:
        existing = current(key)
        assert existing is not None
        if selector.data is None:
            changes[key] = None
            continue
        key_type = dns.rdatatype.RdataType.make(key[1])
        target = rrset_from_text(name, dns.rdatatype.to_text(key_type), 0, selector.data,
                                 zone.origin)
        remaining = dns.rrset.RRset(name, dns.rdataclass.IN, key_type)
        for rdata in existing:
            if rdata not in target:
                remaining.add(rdata)
        if len(remaining) == len(existing):
            raise DnsRequestError(
                f"no {dns.rdatatype.to_text(key_type)} {selector.data} at {name}")
        remaining.ttl = existing.ttl
        changes[key] = remaining if remaining else None
