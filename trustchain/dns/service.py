"""The DNS service of a node: its parts, built over one store.

=====================  =========================================================
part                   holds
=====================  =========================================================
:mod:`.serving`        the published zones, the answer cache, zone transfers
:mod:`.zones`          zone and record management (change sets)
:mod:`.secondaries`    who may transfer each zone, with which TSIG key; NOTIFY
:mod:`.signing`        DNSSEC signing, rollovers, re-signing, DS and status
:mod:`.networks`       the networks this node records (their zones: :mod:`.federation`)
=====================  =========================================================

The parts take and return Python values and refuse a request with
:class:`~trustchain.dns.records.DnsRequestError`; the admin API's JSON lives
at the edge (:mod:`trustchain.wiring.dns`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

import dns.name

from trustchain.dns.dnssec import Policy
from trustchain.dns.engine import ZoneSet
from trustchain.dns.handler import DnsHandler, QueryContext
from trustchain.dns.networks import NetworkStore
from trustchain.dns.secondaries import Notifier, Secondaries, SecondaryStore, SecretStore
from trustchain.dns.serving import ZoneServer
from trustchain.dns.signing import Dnssec, KeySource, Signer
from trustchain.dns.zones import Zones, ZoneStore

__all__ = ["DnsService", "DnsStore", "KeySource", "Notifier", "SecretStore"]


class DnsStore(ZoneStore, SecondaryStore, NetworkStore, Protocol):
    """Everything the DNS service keeps: zones, secondaries, networks.

    Every write has committed when it returns (see each part's protocol).
    """


class DnsService:
    """The zones a node serves and their management, from one store."""

    def __init__(
        self, store: DnsStore, *, now: Callable[[], datetime], default_ns: dns.name.Name,
        secrets: SecretStore | None = None, notifier: Notifier | None = None,
        keys: KeySource | None = None,
        policy: Policy | None = None,
    ) -> None:
        self.signer = Signer(keys, store, now=now, policy=policy or Policy())
        zones = {z.origin: z for z in store.zones()}
        self.server = ZoneServer(
            ZoneSet(zones, 0, {o: s for o, z in zones.items()
                               if (s := self.signer.sign(z, None)) is not None}),
            store.journal)
        self.secondaries = Secondaries(store, self.server, secrets, notifier)
        self.zones = Zones(store, self.server, self.secondaries, sign=self.signer.sign, now=now,
                           default_ns=default_ns)
        self.dnssec = Dnssec(self.signer, self.zones, self.server)
        # Bound methods of the parts, not wrappers: a query costs no extra call.
        self.handle: DnsHandler = self.server.handle
        self.handle_stream: Callable[[bytes, QueryContext], list[bytes]] = self.server.handle_stream
        self.resign_due: Callable[[], int] = self.dnssec.resign_due
        self.advance_rollovers: Callable[[], list[str]] = self.dnssec.advance_rollovers

    @property
    def zoneset(self) -> ZoneSet:
        """The zones as served right now."""
        return self.server.zoneset
