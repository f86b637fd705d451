"""Secondaries: the servers that transfer a zone from this node, each with its TSIG key.

A secondary is told of every change by NOTIFY and pulls the zone by AXFR or
IXFR; :class:`~trustchain.dns.serving.ZoneServer` answers those transfers
only to the keys listed here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import Protocol

import dns.name
import dns.tsig

from trustchain.dns.records import DnsRequestError
from trustchain.dns.serving import ZoneServer
from trustchain.dns.zone import Secondary, Zone


class SecondaryStore(Protocol):
    """The secondaries of each zone.  Every write has committed when it returns."""

    def secondaries(self) -> list[Secondary]: ...
    def add_secondary(self, secondary: Secondary) -> None:
        """Add ``secondary`` (or give the one at that address and port a new key)."""
        ...

    def remove_secondary(self, zone: dns.name.Name, address: str, port: int) -> bool:
        """Whether there was such a secondary to remove."""
        ...


class SecretStore(Protocol):
    """TSIG secrets, kept encrypted in the node's key store.

    A secret is durable (written and synced) when :meth:`create_secret` returns.
    """

    def secret(self, name: str) -> bytes | None: ...
    def create_secret(self, name: str) -> bytes: ...


#: Called after a zone changed (or gained a secondary): send NOTIFY to these.
Notifier = Callable[[Zone, list[Secondary], Mapping[dns.name.Name, dns.tsig.Key]], None]


class Secondaries:
    """The zones' secondaries and their TSIG keys, as the zone server needs them."""

    def __init__(self, store: SecondaryStore, server: ZoneServer, secrets: SecretStore | None,
                 notifier: Notifier | None) -> None:
        self._store = store
        self._server = server
        self._secrets = secrets
        self._notifier = notifier
        self._keyring: dict[dns.name.Name, dns.tsig.Key] = {}
        self._all = store.secondaries()
        for secondary in self._all:
            self._load_key(secondary.key_name)
        server.allow_transfers(self._all, self._keyring)

    def all(self) -> list[Secondary]:
        return list(self._all)

    def add(self, origin: dns.name.Name, address: str, port: int,
            key_name: str | None = None) -> tuple[Secondary, bytes]:
        """Let ``address`` transfer the zone, with the TSIG key ``key_name`` (created if
        new; default ``xfr.<zone>``), and NOTIFY it now.  Returns the key's secret too,
        for the secondary's configuration.
        """
        zone = self._server.zone(origin)
        try:
            address = str(ipaddress.ip_address(address.strip("[]")))
        except ValueError:
            raise DnsRequestError(f"{address!r} is not an IP address") from None
        key_name = key_name or f"xfr.{zone.origin.to_text().rstrip('.')}"
        secret = self._load_key(key_name, create=True)
        secondary = Secondary(zone.origin, address, port, key_name)
        self._store.add_secondary(secondary)
        self.reload()
        self.notify(zone, [secondary])
        return secondary, secret

    def remove(self, origin: dns.name.Name, address: str, port: int) -> Secondary:
        """Stop transfers to ``address`` (and NOTIFY to it); returns the one removed."""
        zone = self._server.zone(origin)
        address = address.strip("[]")
        found = [s for s in self._all
                 if s.zone == zone.origin and s.address == address and s.port == port]
        if not found or not self._store.remove_secondary(zone.origin, address, port):
            raise DnsRequestError(f"{address} port {port} is not a secondary of {zone.origin}")
        self.reload()
        return found[0]

    def reload(self) -> None:
        """Read the secondaries again (a deleted zone takes its secondaries with it)."""
        self._all = self._store.secondaries()
        self._server.allow_transfers(self._all, self._keyring)

    def notify(self, zone: Zone, only: list[Secondary] | None = None) -> None:
        """Tell ``zone``'s secondaries (or ``only`` these) that it changed."""
        targets = only if only is not None else [s for s in self._all if s.zone == zone.origin]
        if targets and self._notifier is not None:
            self._notifier(zone, targets, dict(self._keyring))

    def _load_key(self, name: str, create: bool = False) -> bytes:
        if self._secrets is None:
            raise DnsRequestError("this node has no key store for TSIG secrets")
        secret = self._secrets.secret(name)
        if secret is None:
            if not create:
                raise DnsRequestError(f"no TSIG key {name}")
            secret = self._secrets.create_secret(name)
        key_name = dns.name.from_text(name)
        self._keyring[key_name] = dns.tsig.Key(key_name, secret, dns.tsig.HMAC_SHA256)
        return secret
