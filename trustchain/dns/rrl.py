"""Response rate limiting (RRL) for DNS over UDP, so the server is no amplifier.

Pure: :meth:`ResponseRateLimiter.decide` gets the client address, the query,
the response and the time, and says whether to send the response, drop it,
or "slip" a truncated answer (TC) in its place, which makes a real client
retry over TCP, where spoofing is impossible.  The scheme follows BIND's and
Knot's RRL:

* clients are grouped by prefix (IPv4 /24, IPv6 /56), since spoofed floods
  use many addresses of one network;
* responses are grouped by class: positive answers by query name and type,
  errors (NXDOMAIN, REFUSED, FORMERR, ...) by rcode alone, so that random
  subdomains share one bucket;
* each (prefix, class) has a token bucket of ``rate`` responses per second
  with a burst of ``rate``; over it, every ``slip``-th response is slipped
  and the rest dropped (``slip`` 0: drop all).

TCP, DoQ and stoq/1 are never limited: their clients' addresses are proven.
"""

from __future__ import annotations

import ipaddress
from enum import Enum

MAX_TRACKED = 100_000


class Action(Enum):
    SEND = "send"
    DROP = "drop"
    SLIP = "slip"


def client_network(address: str) -> bytes:
    """The network ``address`` counts in (IPv4 /24, IPv6 /56; IPv4-mapped as IPv4), packed."""
    ip = ipaddress.ip_address(address)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    raw = ip.packed
    return raw[:3] if ip.version == 4 else raw[:7]


def _question(query: bytes) -> bytes:
    """The question's name (lower-cased) and type, straight from the wire."""
    end = 12
    while end < len(query):
        length = query[end]
        if length == 0 or length & 0xC0:
            break
        end += 1 + length
    return query[12:end].lower() + query[end + 1 : end + 3]


class ResponseRateLimiter:
    def __init__(self, *, responses_per_second: int, slip: int = 2) -> None:
        if responses_per_second < 1 or slip < 0:
            raise ValueError("invalid rate-limiting settings")
        self._rate = float(responses_per_second)
        self._slip = slip
        self._buckets: dict[bytes, tuple[float, float, int]] = {}  # tokens, last, dropped
        #: Client address -> its prefix: parsing an address costs as much as the rest of
        #: a decision, and a flood comes from few addresses.
        self._prefixes: dict[str, bytes] = {}

    def decide(self, client: str, query: bytes, response: bytes, now: float) -> Action:
        rcode = response[3] & 0x0F if len(response) > 3 else 0
        kind = b"\x00" + _question(query) if rcode == 0 else b"\x01" + bytes([rcode])
        prefix = self._prefixes.get(client)
        if prefix is None:
            if len(self._prefixes) >= MAX_TRACKED:
                self._prefixes.clear()  # many addresses: start over rather than grow
            prefix = self._prefixes[client] = client_network(client)
        key = prefix + kind
        tokens, last, dropped = self._buckets.get(key, (self._rate, now, 0))
        tokens = min(self._rate, tokens + (now - last) * self._rate)
        if tokens >= 1.0:
            self._remember(key, (tokens - 1.0, now, 0))
            return Action.SEND
        dropped += 1
        self._remember(key, (tokens, now, dropped))
        if self._slip and dropped % self._slip == 0:
            return Action.SLIP
        return Action.DROP

    def _remember(self, key: bytes, state: tuple[float, float, int]) -> None:
        if len(self._buckets) >= MAX_TRACKED and key not in self._buckets:
            self._buckets.clear()  # a flood of prefixes: start over rather than grow
        self._buckets[key] = state


def truncated(query: bytes) -> bytes | None:
    """A minimal TC answer to ``query``: header and question, nothing else."""
    end = 12
    while end < len(query) and query[end] != 0:
        if query[end] & 0xC0:
            return None
        end += 1 + query[end]
    end += 5  # the root label, QTYPE and QCLASS
    if len(query) < end:
        return None
    flags = 0x8000 | 0x0200 | (int.from_bytes(query[2:4], "big") & 0x7900)  # QR, TC, opcode, RD
    return (query[:2] + flags.to_bytes(2, "big") + b"\x00\x01\x00\x00\x00\x00\x00\x00"
            + query[12:end])
