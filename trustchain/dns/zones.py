"""Zone and record management: create, import, delete, and change sets.

Every change is checked (a new zone whole, a change set where it can break a
rule), then stored in one transaction with a new SOA serial and published
(signed, if the node signs it) to the zone server, or refused as a whole.
Secondaries are told of each change.

A change costs what it changes, not the size of the zone: the next version
is made with :func:`~trustchain.dns.records.changed_zone` (``Zone.apply``),
sharing all unchanged data, and :meth:`Zones.update` / :meth:`Zones.replace`
/ :meth:`Zones.publish` then store only the changed RRsets, sign only them
and their NSEC/NSEC3 neighbours, and drop only the cached answers the change
can affect, whenever the version was made from the one served.  A version
built whole (``records.build_zone``) works too, at the cost of the zone.

:meth:`Zones.change` is :meth:`Zones.prepare_change` (pure: may run in a
worker thread) then :meth:`Zones.commit` (stores, signs and publishes; on the
thread that serves queries, which must be the only one that commits, so
versions never interleave; a commit over a zone that changed meanwhile is
refused with :class:`Superseded`, to prepare again).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import dns.name
import dns.rrset

from trustchain.dns.dnssec import SignedZone
from trustchain.dns.records import (
    DEFAULT_TTL,
    DnsRequestError,
    Record,
    RecordSelector,
    build_zone,
    change_set,
    changed_zone,
    rrset_from_text,
)
from trustchain.dns.secondaries import Secondaries
from trustchain.dns.serving import ZoneServer
from trustchain.dns.xfr import Journal
from trustchain.dns.zone import Zone, ZoneError, from_text, next_serial, serial_newer
from trustchain.errors import StorageError

#: SOA timers for new zones: refresh, retry, expire, negative-caching TTL.
SOA_TIMERS = (7200, 3600, 1209600, 300)
#: The zones this node takes: host names in lower case, short enough that the key store can
#: name the zone's DNSSEC keys after it (``dnssec:<origin>:<role>``, at most 100 characters).
ZONE_ORIGIN = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+")
MAX_ORIGIN_TEXT = 89

#: Signs a new version of a zone, reusing what it can of the previous one (None: unsigned).
Sign = Callable[[Zone, SignedZone | None], SignedZone | None]


class ZoneStore(Protocol):
    """Durable zones and their DNSSEC choices.

    Every write has committed when it returns.  :meth:`replace` writes the
    changed RRsets, the new serial and the journal entry (for IXFR) in one
    transaction.
    """

    def zones(self) -> list[Zone]: ...
    def create(self, zone: Zone, now: datetime) -> None:
        """:raises StorageError: the zone exists."""
        ...

    def replace(self, old: Zone, new: Zone, now: datetime) -> None:
        """:raises StorageError: what is stored is no longer ``old``."""
        ...

    def delete(self, origin: dns.name.Name) -> None: ...
    def journal(self, origin: dns.name.Name) -> Journal: ...
    def set_dnssec_policy(self, zone: dns.name.Name, algorithm: int, csk: bool,
                          nsec3: bool) -> None: ...
    def dnssec_policy(self, zone: dns.name.Name) -> tuple[int, bool, bool]:
        """(algorithm, CSK instead of KSK+ZSK, NSEC3 instead of NSEC)."""
        ...


@dataclass(frozen=True)
class Pending:
    """A zone version made from ``old``, checked, not yet stored or served; with
    ``presigned``, already signed (``signed``, from ``previous``: the signed ``old``)."""

    old: Zone
    new: Zone
    presigned: bool = False
    previous: SignedZone | None = None
    signed: SignedZone | None = None


class Superseded(DnsRequestError):
    """The zone changed between preparing a version of it and committing that version."""


@dataclass(frozen=True)
class SigningChoices:
    """How a new zone is signed, once the node signs it."""

    #: 13 (ECDSA P-256) or 15 (Ed25519).
    algorithm: int = 13
    #: One combined signing key instead of a KSK and a ZSK.
    csk: bool = False
    #: NSEC3 denial of existence instead of NSEC.
    nsec3: bool = False


class Zones:
    """The node's zones: every change stored, published and announced."""

    def __init__(self, store: ZoneStore, server: ZoneServer, secondaries: Secondaries, *,
                 sign: Sign, now: Callable[[], datetime], default_ns: dns.name.Name) -> None:
        self._store = store
        self._server = server
        self._secondaries = secondaries
        self._sign = sign
        #: The clock, and the name server of new zones (this node): also for networks.
        self.now = now
        self.default_ns = default_ns

    def zone(self, origin: dns.name.Name) -> Zone:
        """:raises DnsRequestError: no zone ``origin`` here."""
        return self._server.zone(origin)

    def get(self, origin: dns.name.Name) -> Zone | None:
        """The zone at ``origin``, if this node serves one there."""
        return self._server.zoneset.zones.get(origin)

    def all(self) -> list[Zone]:
        """Every zone, by origin."""
        return sorted(self._server.zoneset.zones.values(), key=lambda z: z.origin)

    def today(self) -> int:
        """Today as ``YYYYMMDD``, the date part of the serials this node gives."""
        return int(self.now().strftime("%Y%m%d"))

    def create(self, origin: dns.name.Name, *, ns: Sequence[dns.name.Name] = (),
               addresses: Sequence[str] = (), email: dns.name.Name | None = None,
               ttl: int = DEFAULT_TTL, dnssec: SigningChoices | None = None) -> Zone:
        """A new zone holding its SOA and NS (default: this node), with glue from
        ``addresses`` for the name servers inside it (the origin in lower case)."""
        origin = origin.canonicalize()
        if origin in self._server.zoneset.zones:
            raise DnsRequestError(f"zone {origin} already exists")
        ns_names = list(ns) or [self.default_ns]
        email = email or dns.name.Name((b"hostmaster", *origin.labels))
        refresh, retry, expire, minimum = SOA_TIMERS
        serial = next_serial(0, self.today())
        rrsets = [
            dns.rrset.from_text(origin, ttl, "IN", "SOA",
                                f"{ns_names[0]} {email} {serial} {refresh} {retry} {expire} {minimum}"),
            dns.rrset.from_text_list(origin, ttl, "IN", "NS", [n.to_text() for n in ns_names]),
        ]
        for address in addresses:
            rdtype = "AAAA" if ":" in address else "A"
            for name in ns_names:
                if name.is_subdomain(origin):
                    rrsets.append(rrset_from_text(name, rdtype, ttl, address, origin))
        return self.add(build_zone(origin, rrsets), dnssec)

    def import_text(self, text: str, origin: dns.name.Name | None = None, *,
                    dnssec: SigningChoices | None = None, replace: bool = False) -> Zone:
        """A zone from a zone file: new, or in place of the one there (``replace``); a
        replacement's serial moves forward if the file's does not, for the secondaries."""
        try:
            zone = from_text(text, origin)
        except ZoneError as exc:
            raise DnsRequestError(str(exc)) from None
        old = self.get(zone.origin)
        if old is None:
            return self.add(zone, dnssec)
        if not replace:
            raise DnsRequestError(f"zone {zone.origin} exists: pass replace to overwrite it")
        if not serial_newer(zone.serial, old.serial):
            zone = zone.with_serial(next_serial(old.serial, self.today()))
        return self.replace(old, zone)

    def delete(self, origin: dns.name.Name) -> Zone:
        """Delete the zone (its secondaries and keys' states go with it); returns it."""
        zone = self.zone(origin)
        self._store.delete(zone.origin)
        zones = dict(self._server.zoneset.zones)
        del zones[zone.origin]
        self.publish(zones)
        self._secondaries.reload()
        return zone

    def change(self, add: Sequence[Record] = (), delete: Sequence[RecordSelector] = ()) -> Zone:
        """Apply a change set (deletions, then additions) to the one zone it touches."""
        return self.commit(self.prepare_change(add, delete))

    def prepare_change(self, add: Sequence[Record] = (),
                       delete: Sequence[RecordSelector] = ()) -> Pending:
        """The next version of the zone a change set touches, checked where it changed and
        with its serial, neither stored nor served: :meth:`commit` does that.

        Reads one snapshot of the published zones and changes nothing, so it may run
        in a worker thread while queries are answered.
        """
        names = [r.name for r in add] + [s.name for s in delete]
        if not names:
            raise DnsRequestError("the change set is empty")
        zoneset = self._server.zoneset
        found = [zoneset.find(n) for n in names]
        if any(z is None for z in found):
            raise DnsRequestError("a record is outside every zone of this node")
        if len({z.origin for z in found if z is not None}) != 1:
            raise DnsRequestError("a change set must stay within one zone")
        old = found[0]
        assert old is not None
        candidate = changed_zone(old, change_set(old, add, delete),
                                 "change refused, nothing applied: ")
        return Pending(old, candidate.with_serial(next_serial(old.serial, self.today())))

    def presign(self, pending: Pending, sign: Sign) -> Pending:
        """``pending`` signed with ``sign`` (:meth:`Signer.signing`) from the signed version
        served now; pure, so it may run in a worker thread (:meth:`commit` checks that
        the zone and its signatures did not change meanwhile)."""
        previous = self._server.zoneset.signed.get(pending.old.origin)
        return Pending(pending.old, pending.new, True, previous, sign(pending.new, previous))

    def commit(self, pending: Pending) -> Zone:
        """Store, sign (unless presigned) and serve a prepared version (on the thread that
        serves queries).

        :raises Superseded: the zone (or its signatures) changed since the version was
            prepared (nothing done: prepare it again).
        """
        current = self._server.zoneset
        origin = pending.old.origin
        if current.zones.get(origin) is not pending.old or (
                pending.presigned and current.signed.get(origin) is not pending.previous):
            raise Superseded(f"zone {origin} changed meanwhile; retry")
        if not pending.presigned:
            return self.replace(pending.old, pending.new)
        self._store.replace(pending.old, pending.new, self.now())
        zones = dict(current.zones)
        zones[origin] = pending.new
        self.publish(zones, changed=pending.new, signed=pending.signed)
        return pending.new

    # --- the steps every change takes (also for DNSSEC and networks) -------------

    def add(self, zone: Zone, dnssec: SigningChoices | None = None) -> Zone:
        """Store and publish a new zone.

        :raises DnsRequestError: the origin is not a lower-case host name of at most
            :data:`MAX_ORIGIN_TEXT` characters (refused before anything is stored).
        """
        text = zone.origin.to_text()
        if len(text) > MAX_ORIGIN_TEXT or not ZONE_ORIGIN.fullmatch(text):
            raise DnsRequestError(f"zone names are host names in lower case (letters, digits, "
                                  f"hyphens) of at most {MAX_ORIGIN_TEXT} characters, not "
                                  f"{text[:100]!r}")
        if dnssec is not None:
            if dnssec.algorithm not in (13, 15):
                raise DnsRequestError(
                    "DNSSEC algorithm must be 13 (ECDSA P-256) or 15 (Ed25519)")
            self._store.set_dnssec_policy(zone.origin, dnssec.algorithm, dnssec.csk,
                                          dnssec.nsec3)
        try:
            self._store.create(zone, self.now())
        except StorageError as exc:
            raise DnsRequestError(str(exc)) from None
        zones = dict(self._server.zoneset.zones)
        zones[zone.origin] = zone
        self.publish(zones, changed=zone)
        return zone

    def update(self, old: Zone, candidate: Zone) -> Zone:
        """Store and publish ``candidate`` in place of ``old``, with the next serial."""
        return self.replace(old, candidate.with_serial(next_serial(old.serial, self.today())))

    def replace(self, old: Zone, new: Zone) -> Zone:
        """Store and publish ``new`` (serial and all) in place of ``old``."""
        self._store.replace(old, new, self.now())
        zones = dict(self._server.zoneset.zones)
        zones[new.origin] = new
        self.publish(zones, changed=new)
        return new

    def publish(self, zones: Mapping[dns.name.Name, Zone], changed: Zone | None = None,
                signed: SignedZone | None = None) -> None:
        """Serve ``zones``, signing ``changed`` anew (or with ``signed``, its signed version
        made already) and telling its secondaries."""
        current = self._server.zoneset
        signed_zones = {o: s for o, s in current.signed.items() if o in zones}
        if changed is not None:
            new = signed if signed is not None else self._sign(
                changed, current.signed.get(changed.origin))
            if new is not None:
                signed_zones[changed.origin] = new
        self._server.publish(zones, signed_zones)
        if changed is not None:
            self._secondaries.notify(changed)
