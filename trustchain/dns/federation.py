"""The federation's zones, as the committed blocks make them: pure and deterministic.

Every node applies the same operations in block order and so holds the same
zones, RRset for RRset, at the same SOA serial (the height of the block that
last changed the zone; never a clock).  The federation's zones are

* the origin zone: its apex, every node's name ``<node>.nodes.<origin>`` with
  its addresses, and the delegation of every registered network;
* the zone of every hosted network, ``<name>.<origin>``.

Their NS sets list every node that serves them.  Records come from
``zone-change`` operations (any federation node may make one for its
operator); SOA, apex NS, the nodes' names and the networks' delegations are
derived here and cannot be changed by one.  Zones outside the federation
(imports, secondaries) stay each node's own.

DNSSEC follows RFC 8901's first model, with the common key-signing keys held
apart: each *founding* node (a genesis validator) publishes a KSK, every node a
ZSK (``node-dns``); the DNSKEY RRset of every federation zone holds them all,
and the KSK holders sign it (``dnskey-signatures``), so every node serves the
same DNSKEY RRset with the same RRSIGs while it signs the zone's data with its
own ZSK; no node holds another's private key.  The DS set lists the founders'
KSKs, which a joining node does not change: its ZSK is pre-published (it enters
the DNSKEY RRset, signed) before it serves, and it serves only once the
resolvers' caches can hold no DNSKEY RRset without it (see :meth:`serving_wait`).
A node leaves the other way round (``node-leave``): first out of the NS sets
while it still serves and its ZSK stays published (``withdraw``), then, once no
cache can hold an NS set naming it or an RRset it signed (:meth:`leave_wait`),
its ZSK and names go (``remove``) and the KSK holders sign the smaller DNSKEY RRset.
A founder leaves the same way, its KSK going with its ZSK: this is the last steps
of a double-DS rollover (RFC 6781 4.1.2), the DNSKEY removed before the DS.  Every
DNSKEY RRset a cache may hold is signed by the KSKs of the founders that stay,
whose DS records the parent holds already, so a resolver validates through them
whether it holds the old DS set or the new (:meth:`ds`, which the parent should
take up; a DS matching no key is ignored).  The last KSK holder cannot leave.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dns.dnssec
import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.DNSKEY import DNSKEY
from dns.rdtypes.ANY.RRSIG import RRSIG

from trustchain.dns.records import (
    DnsRequestError,
    Record,
    RecordSelector,
    build_zone,
    change_set,
    changed_zone,
    rrset_from_text,
)
from trustchain.dns.zone import SOA, Key, Zone
from trustchain.dns.zones import SOA_TIMERS

#: The TTL of the federation zones' derived records and DNSKEY RRsets, unless changed.
DEFAULT_TTL = 3600
#: The one algorithm every signer uses (RFC 8901 section 5: signers agree on it).
ALGORITHM = dns.dnssec.Algorithm.ECDSAP256SHA256
MAX_RECORDS = 1000
MAX_ADDRESSES = 4
#: Zone changes refused when applied, remembered for their submitters (the newest).
KEPT_REFUSALS = 1000


class FederationRefused(ValueError):
    """An operation the federation's zones do not take; the message says why."""


@dataclass(frozen=True)
class NodeDns:
    """What a node published of itself (``node-dns``)."""

    addresses: tuple[str, ...]
    zsk: str  # DNSKEY presentation form
    ksk: str | None  # founders only
    serving: bool


@dataclass(frozen=True)
class Published:
    """A zone's DNSKEY RRset as signed by the KSK holders, and those signatures."""

    keyset: str  # digest of the key set (hex)
    dnskey: dns.rrset.RRset
    rrsigs: dns.rrset.RRset


@dataclass
class FederationZones:
    origin: dns.name.Name
    #: The genesis validators: the only nodes that may hold a KSK.
    founders: frozenset[str]
    ttl: int = DEFAULT_TTL
    nodes: dict[str, NodeDns] = field(default_factory=dict)
    #: Registered networks: name -> its registration's body.
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The records operators added, by zone (what ``zone-change`` changes).
    content: dict[dns.name.Name, dict[Key, dns.rrset.RRset]] = field(default_factory=dict)
    #: The zones as served (a zone with no serving node yet is absent).
    zones: dict[dns.name.Name, Zone] = field(default_factory=dict)
    serials: dict[dns.name.Name, int] = field(default_factory=dict)
    published: dict[dns.name.Name, Published] = field(default_factory=dict)
    #: Node -> height at which a signed DNSKEY RRset of the origin first held its ZSK.
    zsk_published_at: dict[str, int] = field(default_factory=dict)
    #: Height at which a node first served (None: none yet).
    first_serving: int | None = None
    #: Operation digest -> why it was refused when applied.
    refused: dict[bytes, str] = field(default_factory=dict)
    #: Nodes withdrawn from the NS sets, still serving: node -> seconds to wait before
    #: their ZSK may go (:meth:`leave_wait` when they withdrew).
    leaving: dict[str, int] = field(default_factory=dict)
    #: Nodes that left the federation's DNS (their keys and names removed).
    left: set[str] = field(default_factory=set)

    # --- what is derived ---------------------------------------------------------------

    def node_name(self, node: str) -> dns.name.Name:
        return dns.name.Name((node.encode(), b"nodes", *self.origin.labels))

    def zone_names(self) -> list[dns.name.Name]:
        """The origin and every hosted network's zone."""
        return [self.origin, *(self._child(n) for n, b in sorted(self.networks.items())
                               if not b.get("delegate"))]

    def owns(self, name: dns.name.Name) -> bool:
        return name in self.content

    def keyset(self) -> tuple[str, list[str]]:
        """The DNSKEY RRset every federation zone should publish: its digest and keys."""
        ksks = sorted(n.ksk for i, n in self.nodes.items() if n.ksk and i in self.founders)
        keys = ksks + sorted(n.zsk for n in self.nodes.values())
        digest = hashlib.sha256(f"{self.ttl}\n{chr(10).join(keys)}".encode()).hexdigest()
        return digest, keys

    def dnskey_rrset(self, zone: dns.name.Name, keys: list[str]) -> dns.rrset.RRset:
        return dns.rrset.from_text_list(zone, self.ttl, "IN", "DNSKEY", keys)

    def ds(self, zone: dns.name.Name) -> dns.rrset.RRset | None:
        """The DS set of ``zone`` (its published KSKs), for its parent."""
        published = self.published.get(zone)
        if published is None:
            return None
        return dns.rrset.from_rdata_list(zone, self.ttl, [
            dns.dnssec.make_ds(zone, key, "SHA256") for key in published.dnskey
            if key.flags & 1])

    def serving_wait(self, node: str) -> int | None:
        """Seconds ``node`` waits, once its ZSK is published, before it may serve (None: its
        ZSK is not in a published DNSKEY RRset yet).  No wait if nobody served before its
        ZSK was published: no resolver can have cached a DNSKEY RRset without it."""
        published_at = self.zsk_published_at.get(node)
        if published_at is None:
            return None
        if self.first_serving is None or self.first_serving > published_at:
            return 0
        return self.ttl

    def leave_wait(self) -> int:
        """Seconds a leaving node keeps its ZSK published after it left the NS sets: the
        longest TTL a cache may hold its NS set or an RRset it signed for (RFC 6781 4.1.1.1:
        a ZSK goes once the data it signed has expired from caches)."""
        ttls = [rrset.ttl for content in self.content.values() for rrset in content.values()]
        return max([self.ttl, *ttls])

    # --- checks (against the state before the block) --------------------------------

    def check(self, kind: str, requester: str, body: Mapping[str, Any]) -> None:
        """:raises FederationRefused: naming why."""
        body = _unique(body)
        if kind == "node-dns":
            self._check_node(requester, body)
        elif kind == "zone-change":
            self._change_of(body)
        elif kind == "dnskey-signatures":
            self._signatures_of(requester, body)
        elif kind == "node-leave":
            self._check_leave(requester, body)

    def _check_leave(self, node: str, body: Mapping[str, Any]) -> str:
        step = body.get("step")
        if set(body) != {"step"} or step not in ("withdraw", "remove"):
            raise FederationRefused("node-leave: step, withdraw or remove")
        current = self.nodes.get(node)
        if current is None:
            raise FederationRefused("node-leave: this node serves no federation zone")
        if step == "remove":
            if node not in self.leaving:
                raise FederationRefused("node-leave: remove follows withdraw")
            return step
        if node in self.leaving:
            raise FederationRefused("node-leave: this node is leaving already")
        if current.ksk is not None and not any(
                n.ksk for i, n in self.nodes.items() if i != node and i not in self.leaving):
            raise FederationRefused("node-leave: this node holds the last key-signing key "
                                    "left: no DNSKEY would match the DS set")
        if not any(n.serving for i, n in self.nodes.items()
                   if i != node and i not in self.leaving):
            raise FederationRefused("node-leave: the federation's zones would have no name "
                                    "server left")
        return step

    def _check_node(self, node: str, body: Mapping[str, Any]) -> NodeDns:
        if set(body) != {"addresses", "zsk", "ksk", "serving"} \
                or not isinstance(body["addresses"], list) \
                or not 1 <= len(body["addresses"]) <= MAX_ADDRESSES \
                or not isinstance(body["serving"], bool):
            raise FederationRefused("node-dns: addresses (1 to 4), zsk, ksk, serving")
        try:
            addresses = tuple(str(ipaddress.ip_address(a)) for a in body["addresses"])
        except (TypeError, ValueError):
            raise FederationRefused("node-dns: addresses are IP addresses") from None
        zsk = _dnskey(body["zsk"], 256)
        ksk = None if body["ksk"] is None else _dnskey(body["ksk"], 257)
        if node in self.leaving or node in self.left:
            raise FederationRefused("node-dns: this node left (or is leaving) the "
                                    "federation's DNS")
        if ksk is not None and node not in self.founders:
            raise FederationRefused("node-dns: only a founding node holds a key-signing key")
        if any(n.zsk == zsk for i, n in self.nodes.items() if i != node):
            raise FederationRefused("node-dns: that ZSK is another node's")
        current = self.nodes.get(node)
        if body["serving"] and (current is None or current.zsk != zsk
                                or self.serving_wait(node) is None):
            raise FederationRefused("node-dns: a node serves only with a ZSK already published")
        return NodeDns(addresses, zsk, ksk, body["serving"])

    def _change_of(self, body: Mapping[str, Any]
                   ) -> tuple[dns.name.Name, list[Record], list[RecordSelector], int | None]:
        if not set(body) <= {"zone", "add", "delete", "ttl"} or not isinstance(
                body.get("zone"), str):
            raise FederationRefused("zone-change: zone, add, delete (and ttl, at the origin)")
        try:
            zone = dns.name.from_text(body["zone"])
        except dns.exception.DNSException:
            raise FederationRefused("zone-change: the zone is not a domain name") from None
        if zone not in self.content:
            raise FederationRefused(f"zone-change: {zone} is not one of the federation's zones")
        add, delete = body.get("add", []), body.get("delete", [])
        ttl = body.get("ttl")
        if ttl is not None and (zone != self.origin or not isinstance(ttl, int)
                                or not 1 <= ttl <= 86400):
            raise FederationRefused("zone-change: ttl (1 to 86400 s) is set at the origin")
        if not isinstance(add, list) or not isinstance(delete, list) \
                or len(add) + len(delete) > MAX_RECORDS or not (add or delete or ttl):
            raise FederationRefused(f"zone-change: 1 to {MAX_RECORDS} records")
        try:
            records = [Record(_name(n, zone), str(t), str(d), int(ttl_))
                       for n, t, ttl_, d in add]
            selectors = [RecordSelector(_name(n, zone), t or None, d or None)
                         for n, t, d in delete]
        except (TypeError, ValueError, DnsRequestError):
            raise FederationRefused("zone-change: add [name, type, ttl, data], "
                                    "delete [name, type or '', data or '']") from None
        for name in [r.name for r in records] + [s.name for s in selectors]:
            if not name.is_subdomain(zone):
                raise FederationRefused(f"zone-change: {name} is outside {zone}")
            reason = self._protected(zone, name)
            if reason:
                raise FederationRefused(f"zone-change: {name}: {reason}")
        for record in records:
            if record.type.upper() in ("SOA", "DNSKEY", "RRSIG", "NSEC", "NSEC3", "NSEC3PARAM",
                                       "CDS", "CDNSKEY") or (
                    record.name == zone and record.type.upper() == "NS"):
                raise FederationRefused(f"zone-change: {record.type} records are the "
                                        "federation's own")
            if not 0 <= record.ttl <= 2**31 - 1:
                raise FederationRefused("zone-change: a TTL out of range")
        return zone, records, selectors, ttl

    def _protected(self, zone: dns.name.Name, name: dns.name.Name) -> str | None:
        if zone != self.origin:
            return None
        if name.is_subdomain(dns.name.Name((b"nodes", *self.origin.labels))):
            return "the nodes' names are the federation's own"
        for network in self.networks:
            if name.is_subdomain(self._child(network)):
                return f"inside the network {network}'s zone (change it there)"
        return None

    def _signatures_of(self, node: str, body: Mapping[str, Any]
                       ) -> tuple[str, list[tuple[dns.name.Name, RRSIG]]]:
        current = self.nodes.get(node)
        if current is None or current.ksk is None or node not in self.founders:
            raise FederationRefused("dnskey-signatures: the signer holds no published KSK")
        digest, keys = self.keyset()
        if body.get("keyset") != digest or set(body) != {"keyset", "signatures"}:
            raise FederationRefused("dnskey-signatures: not for the current key set")
        signatures = body["signatures"]
        if not isinstance(signatures, list) or not 1 <= len(signatures) <= 256:
            raise FederationRefused("dnskey-signatures: 1 to 256 [zone, RRSIG]")
        ksk = _dnskey(current.ksk, 257)
        key = dns.rdata.from_text("IN", "DNSKEY", ksk)
        names = set(self.zone_names())
        out = []
        for item in signatures:
            try:
                zone_text, text = item
                zone = dns.name.from_text(zone_text)
                rrsig = dns.rdata.from_text("IN", "RRSIG", text)
                assert isinstance(rrsig, RRSIG)
            except (TypeError, ValueError, AssertionError, dns.exception.DNSException):
                raise FederationRefused("dnskey-signatures: [zone, RRSIG] pairs") from None
            if zone not in names:
                raise FederationRefused(f"dnskey-signatures: {zone} is not a federation zone")
            rrset = self.dnskey_rrset(zone, keys)
            try:  # checked at its own inception: no clock, the same verdict on every node
                dns.dnssec.validate_rrsig(rrset, rrsig, {zone: dns.rrset.from_rdata(
                    zone, self.ttl, key)}, now=rrsig.inception)
            except dns.dnssec.ValidationFailure:
                raise FederationRefused(f"dnskey-signatures: {zone}: the RRSIG does not "
                                        "verify with the signer's KSK") from None
            out.append((zone, rrsig))
        return digest, out

    # --- application (in block order) ---------------------------------------------------

    def apply(self, kind: str, requester: str, body: Mapping[str, Any], height: int,
              digest: bytes) -> None:
        """Apply a committed operation (already checked, but against the state before its
        block: what no longer fits is refused here, the same way on every node)."""
        try:
            body = _unique(body)
            if kind == "node-dns":
                node = self._check_node(requester, body)
                old = self.nodes.get(requester)
                if old is not None and old.zsk != node.zsk:
                    self.zsk_published_at.pop(requester, None)
                self.nodes[requester] = node
                if body["serving"] and self.first_serving is None:
                    self.first_serving = height
                self._render_all(height)
            elif kind == "zone-change":
                self._apply_change(body, height)
            elif kind == "dnskey-signatures":
                self._apply_signatures(requester, body, height)
            elif kind == "node-leave":
                if self._check_leave(requester, body) == "withdraw":
                    self.leaving[requester] = self.leave_wait()
                else:
                    del self.leaving[requester]
                    self.left.add(requester)
                    self.nodes.pop(requester)
                    self.zsk_published_at.pop(requester, None)
                self._render_all(height)
            elif kind == "network-registration":
                self.networks[body["name"]] = dict(body)
                if not body.get("delegate"):
                    self.content[self._child(body["name"])] = {}
                self._render_all(height)
        except (FederationRefused, DnsRequestError) as exc:
            self.refused[digest] = str(exc)
            while len(self.refused) > KEPT_REFUSALS:
                del self.refused[next(iter(self.refused))]

    def remove_node(self, node: str, height: int) -> None:
        """A node removed from the federation (slashed): its keys and names go."""
        if self.nodes.pop(node, None) is not None:
            self.zsk_published_at.pop(node, None)
            self.leaving.pop(node, None)
            self._render_all(height)

    def __post_init__(self) -> None:
        # The origin zone exists from genesis; it is served once a node serves.
        self.content.setdefault(self.origin, {})

    def _apply_change(self, body: Mapping[str, Any], height: int) -> None:
        zone_name, records, selectors, ttl = self._change_of(body)
        if ttl is not None:
            self.ttl = ttl
            self._render_all(height)
        if not (records or selectors):
            return
        current = self.zones.get(zone_name)
        if current is None:
            raise FederationRefused(f"zone-change: {zone_name} has no serving node yet")
        # The next version shares all that did not change: the cost is the change's.
        changes = change_set(current, records, selectors)
        new = changed_zone(current, changes, "zone-change refused: ").with_serial(height)
        content = self.content[zone_name]
        for key, rrset in changes.items():
            if rrset is None:
                content.pop(key, None)
            else:
                content[key] = rrset
        self._set(zone_name, new, height)

    def _apply_signatures(self, node: str, body: Mapping[str, Any], height: int) -> None:
        digest, signatures = self._signatures_of(node, body)
        _, keys = self.keyset()
        ksk = dns.rdata.from_text("IN", "DNSKEY", self.nodes[node].ksk or "")
        assert isinstance(ksk, DNSKEY)
        tag = dns.dnssec.key_id(ksk)
        for zone, rrsig in signatures:
            old = self.published.get(zone)
            kept = [s for s in old.rrsigs if s.key_tag != tag] \
                if old is not None and old.keyset == digest else []
            self.published[zone] = Published(digest, self.dnskey_rrset(zone, keys),
                                             dns.rrset.from_rdata_list(zone, self.ttl,
                                                                       [*kept, rrsig]))
            if zone == self.origin:
                zsks = {r.to_text() for r in self.published[zone].dnskey if not r.flags & 1}
                for other, info in self.nodes.items():
                    if info.zsk in zsks:
                        self.zsk_published_at.setdefault(other, height)
        self._render_all(height)  # a DS in the origin may follow a child's new KSKs

    def _render_all(self, height: int) -> None:
        for zone_name in self.zone_names():
            self.content.setdefault(zone_name, {})
            new = self._render(zone_name, height)
            old = self.zones.get(zone_name)
            if new is None:
                self.zones.pop(zone_name, None)
            elif old is None or _data(old) != _data(new):
                self._set(zone_name, new, height)
        for gone in set(self.zones) - set(self.zone_names()):
            del self.zones[gone]

    def _set(self, zone_name: dns.name.Name, zone: Zone | None, height: int) -> None:
        if zone is not None:
            self.serials[zone_name] = height
            self.zones[zone_name] = zone

    def _derived(self, zone_name: dns.name.Name, serial: int) -> dict[Key, dns.rrset.RRset]:
        serving = sorted(i for i, n in self.nodes.items() if n.serving and i not in self.leaving)
        if not serving:
            return {}
        ns = [self.node_name(i) for i in serving]
        refresh, retry, expire, minimum = SOA_TIMERS
        out: dict[Key, dns.rrset.RRset] = {}

        def put(rrset: dns.rrset.RRset) -> None:
            out[(rrset.name, rrset.rdtype)] = rrset

        put(dns.rrset.from_text(zone_name, self.ttl, "IN", "SOA",
                                f"{ns[0]} hostmaster.{zone_name} {serial} {refresh} {retry} "
                                f"{expire} {minimum}"))
        put(dns.rrset.from_text_list(zone_name, self.ttl, "IN", "NS", [n.to_text() for n in ns]))
        if zone_name != self.origin:
            return out
        for node, info in self.nodes.items():
            for rdtype in ("A", "AAAA"):
                wanted = [a for a in info.addresses if (":" in a) == (rdtype == "AAAA")]
                if wanted:
                    put(dns.rrset.from_text_list(self.node_name(node), self.ttl, "IN", rdtype,
                                                 wanted))
        for name, network in self.networks.items():
            child = self._child(name)
            delegate = network.get("delegate") or []
            if not delegate:
                put(dns.rrset.from_text_list(child, self.ttl, "IN", "NS",
                                             [n.to_text() for n in ns]))
                ds = self.ds(child)
                if ds is not None:
                    put(ds)
                continue
            self._delegation(child, delegate, network.get("ds") or [], put)
        return out

    def _delegation(self, child: dns.name.Name, delegate: list[str], ds: list[str],
                    put: Any) -> None:
        targets = []
        for item in delegate:
            host, _, addresses = item.partition("=")
            target = dns.name.from_text(host if host.endswith(".") else host + ".")
            targets.append(target.to_text())
            for address in filter(None, addresses.split(",")):
                put(rrset_from_text(target, "AAAA" if ":" in address else "A", self.ttl,
                                    address, self.origin))
        put(dns.rrset.from_text_list(child, self.ttl, "IN", "NS", targets))
        if ds:
            put(dns.rrset.from_text_list(child, self.ttl, "IN", "DS", ds))

    def _render(self, zone_name: dns.name.Name, serial: int) -> Zone | None:
        derived = self._derived(zone_name, serial)
        if not derived:
            return None
        rrsets = {**self.content.get(zone_name, {}), **derived}
        try:
            return build_zone(zone_name, rrsets.values())
        except DnsRequestError:
            # Derived data that breaks a rule (a delegation's glue): keep what is served.
            return self.zones.get(zone_name)

    def _child(self, network: str) -> dns.name.Name:
        return dns.name.Name((network.encode(), *self.origin.labels))


def _unique(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """``body`` without its ``nonce``: a node's operations carry one so that the same change
    made twice (a record added, deleted, added again) is two operations, not a replay.

    :raises FederationRefused: a nonce that is not 1 to 32 hex digits.
    """
    if "nonce" not in body:
        return body
    nonce = body["nonce"]
    if not isinstance(nonce, str) or not 1 <= len(nonce) <= 32 or \
            not all(c in "0123456789abcdef" for c in nonce):
        raise FederationRefused("nonce: 1 to 32 hex digits")
    return {k: v for k, v in body.items() if k != "nonce"}


def _data(zone: Zone) -> dict[Key, tuple[int, dns.rrset.RRset]]:
    """What a zone serves but its SOA, with the TTLs (RRset equality ignores them, and a
    TTL changed by ``zone ttl`` must reach the resolvers' caches)."""
    return {k: (v.ttl, v) for k, v in zone.rrsets.items() if k[1] != SOA}


def _name(text: Any, zone: dns.name.Name) -> dns.name.Name:
    if not isinstance(text, str):
        raise TypeError("a name")
    try:
        return dns.name.from_text(text)
    except dns.exception.DNSException as exc:
        raise DnsRequestError(f"{text!r}: {exc}") from None


def _dnskey(text: Any, flags: int) -> str:
    """A DNSKEY of our one algorithm with these flags, in canonical presentation form."""
    try:
        key = dns.rdata.from_text("IN", "DNSKEY", text)
        assert isinstance(key, DNSKEY)
    except (TypeError, AssertionError, dns.exception.DNSException, ValueError):
        raise FederationRefused("node-dns: a DNSKEY in presentation form") from None
    if key.flags != flags or key.algorithm != ALGORITHM or key.protocol != 3:
        raise FederationRefused(f"node-dns: a DNSKEY of algorithm 13 with flags {flags}")
    return key.to_text()
