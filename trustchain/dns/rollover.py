"""DNSSEC key rollovers as a pure scheduler: key states and the clock in, steps out.

ZSK, pre-publication (RFC 6781 section 4.1.1.1)::

    new ZSK published (in DNSKEY, not signing)
      -- wait DNSKEY TTL + propagation -->  new ZSK active, old ZSK retired (published, silent)
      -- wait the largest TTL in the zone + propagation -->  old ZSK removed

KSK, double signature (RFC 6781 section 4.1.2)::

    new KSK active beside the old one (both sign the DNSKEY set; CDS/CDNSKEY name the new one)
      -- the parent publishes the new DS (confirmed, or done by this node when it serves
         the parent), then wait DS TTL + propagation -->  old KSK removed

At every step the zone validates from the DS the parent publishes: the old
KSK keeps signing the DNSKEY set until resolvers can no longer hold the old
DS.  :func:`next_steps` is called with the current time (from the node's
clock, or a simulated one in tests) and returns what to do now; applying the
steps and re-signing is the caller's job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum


class State(Enum):
    PUBLISHED = "published"  # in the DNSKEY set, not signing yet
    ACTIVE = "active"  # signing
    RETIRED = "retired"  # in the DNSKEY set, no longer signing
    REMOVED = "removed"  # gone


@dataclass(frozen=True)
class KeyState:
    key_id: str
    role: str  # "ksk", "zsk" or "csk"
    state: State
    #: When the key entered its current state (seconds since the epoch).
    since: int
    #: KSKs: when the parent was seen to publish this key's DS (None: not yet).
    ds_published: int | None = None


@dataclass(frozen=True)
class RolloverPolicy:
    dnskey_ttl: int = 3600
    max_zone_ttl: int = 86400
    ds_ttl: int = 86400
    #: Time for a change to reach every secondary and cache (NOTIFY, transfers).
    propagation: int = 3600
    #: Automatic rollovers start when the active key is this old (0: only by hand).
    zsk_lifetime: int = 30 * 86400
    ksk_lifetime: int = 0


@dataclass(frozen=True)
class Step:
    """Put ``key_id`` in ``state`` (``key_id`` None: generate a new ``role`` key in it)."""

    role: str
    state: State
    key_id: str | None = None


def _live(keys: Sequence[KeyState], role: str) -> list[KeyState]:
    return [k for k in keys if k.role == role and k.state is not State.REMOVED]


def start(keys: Sequence[KeyState], role: str) -> list[Step]:
    """The first step of a rollover of ``role`` requested now.

    :raises ValueError: if a rollover of that role is already under way.
    """
    live = _live(keys, role)
    if role == "zsk":
        if any(k.state in (State.PUBLISHED, State.RETIRED) for k in live):
            raise ValueError("a ZSK rollover is already under way")
        return [Step("zsk", State.PUBLISHED)]
    if role == "ksk":
        if len([k for k in live if k.state is State.ACTIVE]) > 1:
            raise ValueError("a KSK rollover is already under way")
        return [Step("ksk", State.ACTIVE)]
    raise ValueError(f"no rollover for {role} keys")


def next_steps(keys: Sequence[KeyState], policy: RolloverPolicy, now: int) -> list[Step]:
    """What to do at ``now``: the timed transitions, and rollovers due by key age."""
    steps: list[Step] = []
    zsks = _live(keys, "zsk")
    published = [k for k in zsks if k.state is State.PUBLISHED]
    for new in published:
        if now - new.since >= policy.dnskey_ttl + policy.propagation:
            steps.append(Step("zsk", State.ACTIVE, new.key_id))
            steps += [Step("zsk", State.RETIRED, old.key_id) for old in zsks
                      if old.state is State.ACTIVE]
    for old in zsks:
        if old.state is State.RETIRED and now - old.since >= policy.max_zone_ttl + policy.propagation:
            steps.append(Step("zsk", State.REMOVED, old.key_id))

    ksks = sorted((k for k in _live(keys, "ksk") if k.state is State.ACTIVE), key=lambda k: k.since)
    if len(ksks) > 1:
        newest = ksks[-1]
        if newest.ds_published is not None and \
                now - newest.ds_published >= policy.ds_ttl + policy.propagation:
            steps += [Step("ksk", State.REMOVED, old.key_id) for old in ksks[:-1]]

    in_progress = {s.role for s in steps} | {
        "zsk" for k in zsks if k.state in (State.PUBLISHED, State.RETIRED)} | (
        {"ksk"} if len(ksks) > 1 else set())
    for role, lifetime, active in (("zsk", policy.zsk_lifetime, zsks),
                                   ("ksk", policy.ksk_lifetime, ksks)):
        current = [k for k in active if k.state is State.ACTIVE]
        if lifetime and role not in in_progress and current and \
                all(now - k.since >= lifetime for k in current):
            steps += start(keys, role)
    return steps


def cds_key(keys: Sequence[KeyState]) -> KeyState | None:
    """The KSK that CDS/CDNSKEY should name (RFC 7344): the newest active one."""
    active = sorted((k for k in keys if k.role in ("ksk", "csk") and k.state is State.ACTIVE),
                    key=lambda k: k.since)
    return active[-1] if active else None
