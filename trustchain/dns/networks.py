"""Federated networks as a node records them: where its CA looks networks up.

Their zones are the federation's (:mod:`trustchain.dns.federation`): a hosted
network gets the zone ``NAME.<origin>`` on every node, a delegated one NS
records (with glue for name servers inside it) and optional DS records in
the origin zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import dns.name


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
