"""Issuance rate limits: the generic cell rate algorithm (GCRA), as Let's Encrypt's limiter uses.

Pure: :func:`check` gets a limit, the bucket's stored state (its *theoretical
arrival time*, TAT, in seconds since the epoch) and the time, and returns a
:class:`Decision`; it never reads a clock or a database.  Persistence (and the
all-or-nothing check of several buckets) is :mod:`trustchain.storage.ratelimit`.

The algorithm
-------------

A limit of ``count`` per ``period`` with a burst of ``burst`` has the emission
interval ``T = period / count`` and the tolerance ``tau = T * burst``.  A
request costing ``c`` at time ``now`` is allowed when::

    max(TAT, now) + c * T - now <= tau

and then moves the TAT to ``max(TAT, now) + c * T``; a refused request leaves
the TAT as it was.  An empty bucket (no TAT, or a TAT in the past) therefore
takes ``burst`` units at once and then refills one unit every ``T``.  A
refused request is told exactly when it would pass (``retry_after``, to the
microsecond); a request costing more than ``burst`` can never pass and is told
so (``retry_after`` is :data:`NEVER`).  In any closed time window of length
``W`` the allowed units never exceed ``burst + floor(W / T)``, so at most
``count + burst`` in any window of one ``period`` (reached by a full burst at
the window's start followed by one unit every ``T``).  This is the same
arithmetic as Boulder's ``ratelimits/gcra.go``.

Default limits
--------------

Modelled on Let's Encrypt's published limits
(https://letsencrypt.org/docs/rate-limits/, as updated in 2025), whose bursts
equal their counts; each is keyed by one of TrustChain's keys:

============  ======================================  =====================================================
limit (key)   default                                 Let's Encrypt source
============  ======================================  =====================================================
``identity``  300 certificate requests per 3 hours    New Orders per Account: 300 per 3 hours
              per requesting identity                 (refill 1 every 36 s)
``network``   500 certificate requests per 3 hours    New Registrations per IPv6 Range: 500 per /48 per
              per TrustChain network                  3 hours (refill 1 every 22 s) -- LE's cap on the
                                                      many requesters of one organisation's allocation,
                                                      applied to the many identities of one network
``domain``    50 certificates per 7 days              New Certificates per Registered Domain: 50 per
              per registered domain                   7 days (refill 1 every 202 minutes)
``address``   10 registrations per 3 hours            New Registrations per IP Address: 10 per 3 hours
              per client address (IPv4 /32,           (refill 1 every 18 minutes); LE counts IPv6 per
              IPv6 /64: :func:`address_key`)          address and separately per /48, TrustChain per /64
``names``     5 certificates per 7 days               New Certificates per Exact Set of Identifiers: 5
              per exact set of names                  per 7 days (refill 1 every 34 hours)
              (:func:`names_key`)
``authz``     5 failed validations per hour           Authorization Failures per Identifier per Account:
              per identity and name                   5 per hour (refill 1 every 12 minutes)
              (:func:`authz_key`)
============  ======================================  =====================================================

Keys are caller-computed strings: the requesting identity's URI, the
network's name, the registered domain (the caller applies its public-suffix
rules), :func:`address_key`, :func:`names_key` and :func:`authz_key`.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from trustchain.errors import RemoteError

#: ``retry_after`` of a request that can never be allowed (it costs more than the burst).
NEVER = timedelta.max

#: Limit kinds, which are also the names of the default limits.
IDENTITY = "identity"
NETWORK = "network"
DOMAIN = "domain"
ADDRESS = "address"
NAMES = "names"
AUTHZ = "authz"
#: New ACME orders per account (Let's Encrypt: 300 per 3 hours).
ORDERS = "orders"

# TATs are floats (seconds since the epoch, about 2.4e-7 s apart today); half a
# microsecond of slack keeps float rounding from refusing a request retried
# exactly at its ``retry_after``, which is itself given to the microsecond.
_SLACK = 0.5e-6
_REMAINING_EPSILON = 1e-9


@dataclass(frozen=True)
class Limit:
    """``count`` units per ``period`` sustained, in bursts of up to ``burst`` (default ``count``).

    ``what`` names the unit in messages (plural: "certificates").
    """

    name: str
    count: int
    period: timedelta
    burst: int | None = None
    what: str = "requests"

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"rate limit {self.name!r}: count must be at least 1")
        if self.period <= timedelta(0):
            raise ValueError(f"rate limit {self.name!r}: period must be positive")
        if self.burst is not None and self.burst < 1:
            raise ValueError(f"rate limit {self.name!r}: burst must be at least 1")

    @property
    def capacity(self) -> int:
        """The burst: the most units that can be taken at once."""
        return self.count if self.burst is None else self.burst

    @property
    def emission_interval(self) -> float:
        """``T``: seconds for one unit to refill."""
        return self.period.total_seconds() / self.count

    @property
    def tolerance(self) -> float:
        """``tau = T * burst`` in seconds: how far the TAT may run ahead of now."""
        return self.emission_interval * self.capacity

    def describe(self) -> str:
        """E.g. ``50 certificates per 7 days`` (with the burst when it differs from the count)."""
        text = f"{self.count} {self.what} per {_format_period(self.period)}"
        if self.capacity != self.count:
            text += f" (bursts of up to {self.capacity})"
        return text


@dataclass(frozen=True)
class Decision:
    """The outcome of :func:`check`.

    ``retry_after``: zero when allowed; otherwise exactly how long until the
    same request would be allowed (:data:`NEVER` if it costs more than the
    burst).  ``remaining``: whole units still available right after this
    decision.  ``tat``: the bucket's TAT after the decision (unchanged, in
    effect, when refused: a TAT in the past means the same as ``now``).
    """

    allowed: bool
    retry_after: timedelta
    remaining: int
    tat: float


def check(limit: Limit, tat: float | None, now: float, cost: int = 1) -> Decision:
    """Decide a request costing ``cost`` units against a bucket whose TAT is ``tat``.

    ``tat`` is ``None`` for a bucket never used (or pruned); times are seconds
    since the epoch.
    """
    if cost < 1:
        raise ValueError(f"rate limit {limit.name!r}: cost must be at least 1, got {cost}")
    interval = limit.emission_interval
    tolerance = limit.tolerance
    start = now if tat is None or tat < now else tat
    new_tat = start + cost * interval
    excess = new_tat - now - tolerance  # how much too early this request is
    available = _units(tolerance - (start - now), interval)
    if cost > limit.capacity:
        return Decision(False, NEVER, available, start)
    if excess <= _SLACK:
        return Decision(True, timedelta(0), _units(-excess, interval), new_tat)
    return Decision(False, _microseconds_up(excess - _SLACK), available, start)


def _units(seconds: float, interval: float) -> int:
    return max(0, math.floor(seconds / interval + _REMAINING_EPSILON))


def _microseconds_up(seconds: float) -> timedelta:
    return timedelta(microseconds=max(1, math.ceil(seconds * 1e6)))


# --- keys -------------------------------------------------------------------------


def address_key(ip: str) -> str:
    """The bucket of a client address: IPv4 by /32, IPv6 by /64 (one site's subnet).

    IPv4-mapped IPv6 addresses count as their IPv4 address.

    :raises ValueError: if ``ip`` is not an IP address.
    """
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return f"{address.ipv4_mapped}/32"
        network = ipaddress.IPv6Network((address.packed[:8] + bytes(8), 64))
        return str(network)
    return f"{address}/32"


def names_key(names: Iterable[str]) -> str:
    """The bucket of an exact set of names: sorted, lower-cased, without a final dot, comma-joined."""
    normalised = sorted({name.lower().rstrip(".") for name in names})
    if not normalised or "" in normalised:
        raise ValueError("a name set needs at least one non-empty name")
    return ",".join(normalised)


def authz_key(identity: str, name: str) -> str:
    """The bucket of failed validations of ``name`` by ``identity``."""
    return f"{identity} {name.lower().rstrip('.')}"


# --- defaults ---------------------------------------------------------------------

_HOUR = timedelta(hours=1)

DEFAULT_LIMITS: dict[str, Limit] = {
    limit.name: limit
    for limit in (
        Limit(IDENTITY, 300, 3 * _HOUR, what="certificate requests"),
        Limit(NETWORK, 500, 3 * _HOUR, what="certificate requests"),
        Limit(DOMAIN, 50, timedelta(days=7), what="certificates"),
        Limit(ADDRESS, 10, 3 * _HOUR, what="registrations"),
        Limit(NAMES, 5, timedelta(days=7), what="certificates"),
        Limit(AUTHZ, 5, _HOUR, what="failed validations"),
        Limit(ORDERS, 300, 3 * _HOUR, what="orders"),
    )
}


# --- the error --------------------------------------------------------------------


class RateLimited(RemoteError):
    """The request exceeds a rate limit."""

    #: The stoq/1 and HTTP status for a problem document.
    status = 429

    def __init__(self, limit: Limit, key: str, retry_after: timedelta, now: datetime,
                 cost: int = 1) -> None:
        self.limit = limit
        self.name = limit.name
        self.key = key
        self.retry_after = retry_after
        self.cost = cost
        #: When the request would be allowed (to the second, rounded up); None: never.
        self.retry_at: datetime | None = None
        #: Seconds until then (HTTP Retry-After); for a request that can never pass, the
        #: limit's period: no sooner is worth asking again.
        self.retry_seconds = max(1, math.ceil(limit.period.total_seconds()))
        head = f"rate limit {limit.name!r} for {key}: {limit.describe()}; "
        if retry_after >= NEVER:
            super().__init__(head + f"a request costing {cost} exceeds the burst of "
                             f"{limit.capacity} and can never be allowed")
            return
        # Rounded up to the second: a retry at the time shown is allowed.
        retry_at = now.astimezone(UTC) + retry_after
        if retry_at.microsecond:
            retry_at = retry_at.replace(microsecond=0) + timedelta(seconds=1)
        self.retry_at = retry_at
        wait = math.ceil((retry_at - now).total_seconds())
        self.retry_seconds = max(1, wait)
        super().__init__(head + f"retry after {self.retry_at.strftime('%Y-%m-%dT%H:%M:%SZ')} "
                         f"(in {_format_wait(wait)})")

    def audit_details(self) -> dict[str, Any]:
        """The refusal as JSON-able details for a ``ratelimit.refuse`` audit record."""
        return {
            "limit": self.name,
            "key": self.key,
            "cost": self.cost,
            "retry_after_seconds": None if self.retry_at is None
            else math.ceil(self.retry_after.total_seconds()),
        }


def _format_period(period: timedelta) -> str:
    seconds = period.total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {unit}" + ("" if n == 1 else "s")
    return f"{seconds:g} seconds"


def _format_wait(seconds: int) -> str:
    """E.g. ``3h12m``: the two largest non-zero units (the exact time is given beside it)."""
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, seconds = divmod(seconds, size)
        if n or parts:
            parts.append(f"{n}{unit}")
    parts = parts[:2]
    while len(parts) > 1 and parts[-1][0] == "0":
        parts.pop()
    return "".join(parts) or "0s"
