"""ZSK and KSK rollovers on a simulated clock; at every step the zone validates from the
DS the parent publishes (dnspython's validator), and with the DNSKEY set a resolver may
still hold from the step before."""

from __future__ import annotations

import itertools

import dns.dnssec
import dns.name
import dns.rdatatype
import dns.rrset
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.trustchain.dns.zonedata import EXAMPLE
from trustchain.dns.dnssec import Role, SigningKey, make_dnskey, sign_zone
from trustchain.dns.rollover import (
    KeyState,
    RolloverPolicy,
    State,
    Step,
    cds_key,
    next_steps,
    start,
)
from trustchain.dns.zone import from_text

ZONE = from_text(EXAMPLE)
WWW = (dns.name.from_text("www.example.net."), dns.rdatatype.A)
POLICY = RolloverPolicy(dnskey_ttl=3600, max_zone_ttl=300, ds_ttl=3600, propagation=600,
                        zsk_lifetime=0, ksk_lifetime=0)


class Keyring:
    """The simulated key store and key table of one zone."""

    def __init__(self, t0: int) -> None:
        self.private: dict[str, object] = {}
        self.states: dict[str, KeyState] = {}
        self.ids = (f"k{i}" for i in itertools.count())
        for role in ("ksk", "zsk"):
            self.apply([Step(role, State.ACTIVE)], t0)

    def apply(self, steps: list[Step], now: int) -> None:
        for step in steps:
            key_id = step.key_id or next(self.ids)
            if step.key_id is None:
                self.private[key_id] = ec.generate_private_key(ec.SECP256R1())
            old = self.states.get(key_id)
            self.states[key_id] = KeyState(key_id, step.role, step.state, now,
                                           old.ds_published if old else None)

    def signing_keys(self) -> list[SigningKey]:
        out = []
        for key_id, state in self.states.items():
            if state.state is State.REMOVED:
                continue
            role = Role(state.role)
            private = self.private[key_id]
            out.append(SigningKey(role, private, make_dnskey(private, 13, role),
                                  active=state.state is State.ACTIVE))
        return out

    def dnskey(self, key_id: str):
        return make_dnskey(self.private[key_id], 13, Role(self.states[key_id].role))


def check(ring: Keyring, anchor_key: str, now: int, cached_dnskey: dns.rrset.RRset | None):
    """Validate the DNSKEY set from the anchored KSK, and the data with the DNSKEY set(s)."""
    keys = ring.signing_keys()
    cds = next((k for k in keys if k.dnskey == ring.dnskey(cds_key(
        list(ring.states.values())).key_id)), None)
    signed = sign_zone(ZONE, keys, now, cds=cds)
    anchored = dns.rrset.from_rdata(ZONE.origin, 3600, ring.dnskey(anchor_key))
    assert ring.dnskey(anchor_key) in signed.dnskey, "the anchored KSK left the DNSKEY set"
    dns.dnssec.validate(signed.dnskey, signed.rrsigs[(ZONE.origin, dns.rdatatype.DNSKEY)],
                        {ZONE.origin: anchored}, now=now)
    for dnskey_set in filter(None, (signed.dnskey, cached_dnskey)):
        dns.dnssec.validate(ZONE.rrsets[WWW], signed.rrsigs[WWW], {ZONE.origin: dnskey_set},
                            now=now)
    return signed


def run(ring: Keyring, times: list[int], anchor_for) -> list[tuple[int, list[Step]]]:
    log = []
    cached = None
    for now in times:
        steps = next_steps(list(ring.states.values()), POLICY, now)
        ring.apply(steps, now)
        log.append((now, steps))
        cached = check(ring, anchor_for(now), now, cached).dnskey
    return log


def test_zsk_prepublication_rollover() -> None:
    t0 = 1_795_000_000
    ring = Keyring(t0)
    ksk = next(k for k, s in ring.states.items() if s.role == "ksk")
    old_zsk = next(k for k, s in ring.states.items() if s.role == "zsk")
    ring.apply(start(list(ring.states.values()), "zsk"), t0 + 100)
    with pytest.raises(ValueError):
        start(list(ring.states.values()), "zsk")
    times = [t0 + 100 + d for d in (0, 1800, 4199, 4200, 4300, 4200 + 899, 4200 + 900, 9000)]
    log = run(ring, times, lambda now: ksk)
    transitions = [(now - t0 - 100, [(s.key_id or "new", s.state.value) for s in steps])
                   for now, steps in log if steps]
    assert transitions == [
        (4200, [("k2", "active"), (old_zsk, "retired")]),
        (5100, [(old_zsk, "removed")]),
    ]
    assert [s.state for s in ring.states.values() if s.role == "zsk"] == [
        State.REMOVED, State.ACTIVE]


def test_ksk_double_signature_rollover_with_the_parent() -> None:
    t0 = 1_795_000_000
    ring = Keyring(t0)
    old_ksk = next(k for k, s in ring.states.items() if s.role == "ksk")
    ring.apply(start(list(ring.states.values()), "ksk"), t0 + 10)
    new_ksk = next(k for k, s in ring.states.items() if s.role == "ksk" and k != old_ksk)
    assert cds_key(list(ring.states.values())).key_id == new_ksk  # CDS names the new KSK
    ds_seen = t0 + 7200  # the parent publishes the new DS
    # Resolvers use the old DS until the new one is published, then either, then the new one.
    log = run(ring, [t0 + 10, t0 + 3600], lambda now: old_ksk)
    assert all(not steps for _, steps in log)  # nothing happens before the DS is seen
    ring.states[new_ksk] = KeyState(new_ksk, "ksk", State.ACTIVE, ring.states[new_ksk].since,
                                    ds_published=ds_seen)
    log += run(ring, [ds_seen, ds_seen + 4199], lambda now: old_ksk)
    log += run(ring, [ds_seen, ds_seen + 4199], lambda now: new_ksk)
    log += run(ring, [ds_seen + 4200, ds_seen + 9000], lambda now: new_ksk)
    removals = [(now - ds_seen, steps) for now, steps in log if steps]
    assert removals == [(4200, [Step("ksk", State.REMOVED, old_ksk)])]


def test_automatic_rollover_by_key_age() -> None:
    t0 = 1_795_000_000
    ring = Keyring(t0)
    policy = RolloverPolicy(zsk_lifetime=30 * 86400)
    assert next_steps(list(ring.states.values()), policy, t0 + 29 * 86400) == []
    assert next_steps(list(ring.states.values()), policy, t0 + 30 * 86400) == [
        Step("zsk", State.PUBLISHED)]
