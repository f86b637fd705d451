"""Federated networks: each gets the zone ``NAME.<origin>``, hosted here or delegated.

Hosted: a child zone on this node (SOA and NS naming this node), and in the
origin zone its delegation with the DS of its key-signing key when the node
signs.  Delegated: NS records (with glue for name servers inside the child)
and optional DS records in the origin zone.  Either way the origin zone
changes once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import dns.exception
import dns.name
import dns.rdatatype
import dns.rrset

from trustchain.dns.records import DnsRequestError, build_zone, merged, rrset_from_text
from trustchain.dns.signing import Signer
from trustchain.dns.zones import SOA_TIMERS, Zones


class NetworkStore(Protocol):
    """The networks registered here.  :meth:`add_network` has committed when it returns."""

    def add_network(self, name: str, zone: dns.name.Name, mode: str, now: datetime,
                    prefixes: list[str] | None = None) -> None: ...
    def networks(self) -> list[dict[str, Any]]:
        """Each network as ``name``, ``zone``, ``mode``, ``registered_at``, ``prefixes``."""
        ...


@dataclass(frozen=True)
class NameServer:
    """A name server of a delegated network, with glue addresses if it is inside the child."""

    name: dns.name.Name
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class Network:
    """A registration as made."""

    name: str
    zone: dns.name.Name
    #: ``"hosted"`` or ``"delegated"``.
    mode: str
    name_servers: list[dns.name.Name]
    #: The network's address blocks (CIDR): its CA may certify addresses inside them.
    prefixes: list[str] = field(default_factory=list)


class Networks:
    """Registration of networks under the node's origin zone."""

    def __init__(self, store: NetworkStore, zones: Zones, signer: Signer,
                 origin: dns.name.Name | None) -> None:
        self._store = store
        self._zones = zones
        self._signer = signer
        self._origin = origin

    def all(self) -> list[dict[str, Any]]:
        return self._store.networks()

    def serves_origin(self) -> bool:
        """Whether this node serves the origin zone, under which networks get their zones."""
        return self._origin is not None and self._zones.get(self._origin) is not None

    def check(self, name: str, delegate: Sequence[NameServer] = (),
              ds: Sequence[str] = ()) -> None:
        """Refuse, without changing anything, what :meth:`register` would refuse.

        :raises DnsRequestError: naming the problem.
        """
        self._plan(name, delegate, ds)

    def register(self, name: str, delegate: Sequence[NameServer] = (),
                 ds: Sequence[str] = (), prefixes: Sequence[str] = ()) -> Network:
        """Give the network ``name`` (one DNS label) its zone: delegated to ``delegate``
        (with the DS records ``ds``), or hosted here if no name server is given."""
        origin, parent, child, rrsets, ttl, ns_names, new_parent = self._plan(name, delegate, ds)
        refused = "registration refused: "
        hosted = not delegate
        if hosted:
            refresh, retry, expire, minimum = SOA_TIMERS
            self._zones.add(build_zone(child, [
                dns.rrset.from_text(child, ttl, "IN", "SOA",
                                    f"{ns_names[0]} hostmaster.{child} {self._zones.today() * 100} "
                                    f"{refresh} {retry} {expire} {minimum}"),
                dns.rrset.from_text_list(child, ttl, "IN", "NS", [n.to_text() for n in ns_names]),
            ]))
            child_ds = None if ds else self._signer.ds(child, ttl, active_only=False)
            if child_ds is not None:
                # The chain of trust: the parent vouches for the child's key-signing key.
                rrsets[(child, dns.rdatatype.DS)] = child_ds
                new_parent = build_zone(origin, rrsets.values(), refused)
        try:
            self._zones.update(parent, new_parent)
        except Exception:
            if hosted:
                self._zones.delete(child)
            raise
        mode = "hosted" if hosted else "delegated"
        self._store.add_network(name, child, mode, self._zones.now(), list(prefixes))
        return Network(name, child, mode, ns_names, list(prefixes))

    def _plan(self, name: str, delegate: Sequence[NameServer],
              ds: Sequence[str]) -> tuple[Any, ...]:
        """The origin's new records for the delegation to ``name``, checked."""
        origin = self._origin
        parent = None if origin is None else self._zones.get(origin)
        if origin is None or parent is None:
            raise DnsRequestError(f"this node does not serve the origin zone {origin}: "
                                  "create it first (trustchain zone create)")
        child = dns.name.Name((name.encode(), *origin.labels))
        if any(n["name"] == name for n in self._store.networks()) or child in parent.names \
                or self._zones.get(child) is not None:
            raise DnsRequestError(f"{child} is already registered or in use")
        ttl = parent.soa.ttl
        rrsets = dict(parent.rrsets)
        name_servers = list(delegate) or [NameServer(self._zones.default_ns)]
        ns_names = [ns.name for ns in name_servers]
        for ns in name_servers:
            for address in ns.addresses:
                rdtype = "AAAA" if ":" in address else "A"
                glue = rrset_from_text(ns.name, rdtype, ttl, address, origin)
                rrsets[(ns.name, glue.rdtype)] = merged(rrsets.get((ns.name, glue.rdtype)), glue)
        rrsets[(child, dns.rdatatype.NS)] = dns.rrset.from_text_list(
            child, ttl, "IN", "NS", [n.to_text() for n in ns_names])
        if ds:
            try:
                rrsets[(child, dns.rdatatype.DS)] = dns.rrset.from_text_list(
                    child, ttl, "IN", "DS", list(ds))
            except dns.exception.DNSException as exc:
                raise DnsRequestError(f"a DS record {list(ds)!r} does not parse: {exc}") from None
        new_parent = build_zone(origin, rrsets.values(), "registration refused: ")
        return origin, parent, child, rrsets, ttl, ns_names, new_parent
