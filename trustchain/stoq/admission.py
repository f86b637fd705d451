"""Admission of new QUIC connections: address validation under load, per-address caps.

Pure: the adapter asks :meth:`Admission.decide` for every Initial packet that
would open a connection, passing the time and how many connections the
address already holds.

* Below the rate threshold, connections are accepted at once (no extra round
  trip for the common case).
* Above it (a token bucket of ``retry_above_per_second`` new connections per
  second, with a burst of the same size), the server answers with a
  stateless Retry (RFC 9000 section 8.1.2): only a client that really
  receives packets at its address can come back with the token, so spoofed
  floods cost the server a packet, not a handshake.  A threshold of 0
  validates every address.
* A client that already holds ``max_per_address`` connections is refused.
"""

from __future__ import annotations

from enum import Enum


class Decision(Enum):
    ACCEPT = "accept"
    RETRY = "retry"
    REFUSE = "refuse"


class Admission:
    def __init__(self, *, retry_above_per_second: int, max_per_address: int) -> None:
        if retry_above_per_second < 0 or max_per_address < 1:
            raise ValueError("invalid admission limits")
        self._rate = retry_above_per_second
        self._max_per_address = max_per_address
        self._tokens = float(retry_above_per_second)
        self._last: float | None = None

    def decide(self, *, now: float, has_token: bool, connections_from_address: int) -> Decision:
        """Decide about an Initial packet that would open a new connection.

        :param has_token: the packet carries a token (a Retry answer), which
            the adapter validates when the decision is not ``REFUSE``.
        """
        if connections_from_address >= self._max_per_address:
            return Decision.REFUSE
        if has_token:
            return Decision.RETRY  # validate the token it carries
        if self._last is not None:
            self._tokens = min(float(self._rate), self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return Decision.ACCEPT
        return Decision.RETRY
