"""DNSSEC for the node's zones: signing each version, rollovers, re-signing, DS and status.

:class:`Signer` signs a zone version with the zone's keys (reusing the
signatures of the previous version that are still good).  :class:`Dnssec`
runs the key rollovers the pure scheduler (:mod:`trustchain.dns.rollover`)
asks for, re-signs zones before their signatures expire, and reports the DS
a parent must publish.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

import dns.dnssec
import dns.name
import dns.rdatatype
import dns.rrset

from trustchain.dns.dnssec import Policy, SignedZone, SigningKey, ds_records, sign_zone
from trustchain.dns.records import DnsRequestError, build_zone
from trustchain.dns.rollover import KeyState, RolloverPolicy, Step, cds_key, next_steps
from trustchain.dns.rollover import State as KeyStateEnum
from trustchain.dns.rollover import start as start_rollover
from trustchain.dns.serving import ZoneServer
from trustchain.dns.zone import Zone
from trustchain.dns.zones import Sign, SigningChoices, Zones, ZoneStore


class KeySource(Protocol):
    """The DNSSEC keys of a zone (created on first use), from the node's key store.

    A key created, a state changed or a DS marked published is durable (key
    file synced, row committed) when the call returns.
    """

    def managed(self, origin: dns.name.Name) -> list[tuple[KeyState, SigningKey | None]]:
        """Every key with its rollover state; the signing key is None once removed."""
        ...

    def apply(self, origin: dns.name.Name, steps: list[Step]) -> None: ...
    def mark_ds_published(self, origin: dns.name.Name, key_id: str) -> None: ...


#: For a zone served by several signers (the federation's, RFC 8901): this node's ZSK,
#: the DNSKEY RRset they agreed and its RRSIGs (None: not such a zone, or not signable here).
MultiSigner = Callable[[dns.name.Name], tuple[SigningKey, dns.rrset.RRset, dns.rrset.RRset] | None]


def _unsigned(zone: Zone, previous: SignedZone | None) -> SignedZone | None:
    return None


class Signer:
    """Signs each version of a zone with its keys; with no key source, signs nothing."""

    def __init__(self, keys: KeySource | None, store: ZoneStore, *, now: Callable[[], datetime],
                 policy: Policy) -> None:
        self.keys = keys
        self._store = store
        self._now = now
        self._policy = policy
        #: Set by the federation: its zones are signed with the agreed DNSKEY RRset.
        self.multi: MultiSigner | None = None
        #: The zones signed that way (their keys are not this node's to roll over).
        self.shared: Callable[[dns.name.Name], bool] = lambda _origin: False

    def sign(self, zone: Zone, previous: SignedZone | None) -> SignedZone | None:
        return self.signing(zone.origin)(zone, previous)

    def signing(self, origin: dns.name.Name) -> Sign:
        """How versions of ``origin`` are signed now: the keys and choices read here (on the
        thread that owns the key store), the signing itself pure, for any thread."""
        now = int(self._now().timestamp())
        if self.shared(origin):
            agreed = self.multi(origin) if self.multi is not None else None
            if agreed is None:
                return _unsigned
            zsk, dnskey, rrsigs = agreed
            return lambda zone, previous: sign_zone(zone, [zsk], now, self._policy, previous,
                                                    published=(dnskey, rrsigs))
        if self.keys is None:
            return _unsigned
        managed = self.keys.managed(origin)  # read once: every change signs
        keys = [k for _, k in managed if k is not None]
        cds = _rollover_ksk(managed)  # during a KSK rollover: ask for the new DS
        nsec3 = self.choices(origin).nsec3
        return lambda zone, previous: sign_zone(zone, keys, now, self._policy, previous,
                                                cds=cds[1] if cds else None, nsec3=nsec3)

    def rollover_ksk(self, origin: dns.name.Name) -> tuple[KeyState, SigningKey] | None:
        """The new KSK of a KSK rollover under way, if any."""
        assert self.keys is not None
        return _rollover_ksk(self.keys.managed(origin))

    def choices(self, origin: dns.name.Name) -> SigningChoices:
        """How the zone is (or would be) signed."""
        return SigningChoices(*self._store.dnssec_policy(origin))

    def ds(self, origin: dns.name.Name, ttl: int, *, active_only: bool = True
           ) -> dns.rrset.RRset | None:
        """The DS set a parent publishes for ``origin`` (None: this node signs nothing)."""
        if self.shared(origin):
            agreed = self.multi(origin) if self.multi is not None else None
            return None if agreed is None else dns.rrset.from_rdata_list(origin, ttl, [
                dns.dnssec.make_ds(origin, key, "SHA256") for key in agreed[1] if key.flags & 1])
        if self.keys is None:
            return None
        return ds_records(origin, [k for _, k in self.keys.managed(origin)
                                   if k is not None and (k.active or not active_only)], ttl)


class Dnssec:
    """Rollovers, re-signing and the DNSSEC state of the zones a :class:`Signer` signs."""

    def __init__(self, signer: Signer, zones: Zones, server: ZoneServer) -> None:
        self._signer = signer
        self._zones = zones
        self._server = server

    def _zone_keys(self, origin: dns.name.Name, *, signed: bool = True
                   ) -> tuple[Zone, KeySource]:
        """The zone and its key source; it must be signed (or, with ``signed`` false,
        merely have keys)."""
        zone = self._server.zone(origin)
        keys = self._signer.keys
        if keys is None or (signed and zone.origin not in self._server.zoneset.signed):
            raise DnsRequestError(f"zone {zone.origin} is not signed")
        if self._signer.shared(zone.origin):
            raise DnsRequestError(f"{zone.origin} is a federation zone: its keys are the "
                                  "federation's (each node's ZSK, the founders' KSKs; see "
                                  "trustchain dnssec status), not rolled by one node")
        return zone, keys

    def rollover(self, origin: dns.name.Name, role: str) -> None:
        """Start a rollover of the zone's ``"ksk"`` or ``"zsk"``."""
        zone, keys = self._zone_keys(origin)
        try:
            steps = start_rollover([st for st, _ in keys.managed(zone.origin)], role)
        except ValueError as exc:
            raise DnsRequestError(str(exc)) from None
        self._apply_steps(zone, steps)

    def ds_published(self, origin: dns.name.Name) -> None:
        """The operator confirms the parent now publishes the new KSK's DS."""
        zone, keys = self._zone_keys(origin, signed=False)
        rollover = self._signer.rollover_ksk(zone.origin)
        if rollover is None:
            raise DnsRequestError("no KSK rollover is waiting for its DS")
        keys.mark_ds_published(zone.origin, rollover[0].key_id)

    def advance_rollovers(self) -> list[str]:
        """Apply the rollover steps that are due (and automatic rollovers by key age)."""
        keys = self._signer.keys
        if keys is None:
            return []
        done = []
        now = int(self._zones.now().timestamp())
        for origin in list(self._server.zoneset.signed):
            if self._signer.shared(origin):
                continue
            zone = self._server.zoneset.zones[origin]
            states = [st for st, _ in keys.managed(origin)]
            steps = next_steps(states, _rollover_policy(zone), now)
            if steps:
                self._apply_steps(zone, steps)
                done += [f"{origin} {s.role} {s.key_id or 'new'} -> {s.state.value}" for s in steps]
        return done

    def resign_due(self) -> int:
        """Re-sign zones whose earliest signature nears expiry; return how many."""
        now = int(self._zones.now().timestamp())
        due = [s.zone for s in self._server.zoneset.signed.values() if s.refresh_at <= now]
        for zone in due:
            self._zones.publish(dict(self._server.zoneset.zones), changed=zone)
        return len(due)

    def ds(self, origin: dns.name.Name) -> tuple[Zone, dns.rrset.RRset]:
        """The zone and the DS set of its active keys, for its parent."""
        zone = self._server.zone(origin)
        if not self._signer.shared(zone.origin):
            zone, _ = self._zone_keys(origin)
        ds = self._signer.ds(zone.origin, zone.soa.ttl)
        if ds is None:
            raise DnsRequestError(f"zone {zone.origin} is not signed")
        return zone, ds

    def status(self, origin: dns.name.Name) -> dict[str, Any]:
        """The zone's keys, policy and signatures, as the operator sees them."""
        zone = self._server.zone(origin)
        signed = self._server.zoneset.signed.get(zone.origin)
        keys = self._signer.keys
        if self._signer.shared(zone.origin):
            key_rows = [] if signed is None else [
                {"tag": dns.dnssec.key_id(k), "role": "ksk" if k.flags & 1 else "zsk",
                 "algorithm": int(k.algorithm), "active": True, "state": "shared",
                 "ds_published": bool(k.flags & 1)} for k in signed.dnskey]
        else:
            key_rows = [] if keys is None or signed is None else [
                {"tag": k.tag, "role": k.role.value, "algorithm": int(k.dnskey.algorithm),
                 "active": k.active, "state": st.state.value,
                 "ds_published": st.ds_published is not None}
                for st, k in keys.managed(zone.origin) if k is not None]
        choices = self._signer.choices(zone.origin)
        return {
            "zone": zone.origin.to_text(), "signed": signed is not None, "keys": key_rows,
            "policy": {"algorithm": choices.algorithm, "csk": choices.csk,
                       "nsec3": choices.nsec3},
            "nsec_names": len(signed.chain or signed.nsec3_chain) if signed else 0,
            "signatures": sum(len(r) for r in signed.rrsigs.values()) if signed else 0,
            "resign_at": signed.refresh_at if signed else None,
        }

    def _apply_steps(self, zone: Zone, steps: list[Step]) -> None:
        assert self._signer.keys is not None
        self._signer.keys.apply(zone.origin, steps)
        if any(s.role == "ksk" and s.key_id is None for s in steps):
            self._publish_ds_locally(zone)
        self._zones.publish(dict(self._server.zoneset.zones), changed=zone)

    def _publish_ds_locally(self, zone: Zone) -> None:
        """If this node also serves the parent zone, put the new DS set there itself."""
        assert self._signer.keys is not None
        if len(zone.origin) <= 1:
            return
        parent = self._server.zoneset.find(zone.origin.parent())
        if parent is None or zone.origin not in parent.cuts:
            return
        rollover = self._signer.rollover_ksk(zone.origin)
        if rollover is None:
            return
        newest, key = rollover
        rrsets = dict(parent.rrsets)
        rrsets[(zone.origin, dns.rdatatype.DS)] = ds_records(zone.origin, [key], parent.soa.ttl)
        self._zones.update(parent, build_zone(parent.origin, rrsets.values()))
        self._signer.keys.mark_ds_published(zone.origin, newest.key_id)


def _rollover_ksk(managed: list[tuple[KeyState, SigningKey | None]]
                  ) -> tuple[KeyState, SigningKey] | None:
    """The new KSK of a KSK rollover under way among a zone's keys, if any."""
    states = [st for st, _ in managed]
    if len([k for k in states if k.role == "ksk" and k.state is KeyStateEnum.ACTIVE]) < 2:
        return None
    newest = cds_key(states)
    return next(((st, k) for st, k in managed
                 if newest is not None and st.key_id == newest.key_id and k is not None), None)


def _rollover_policy(zone: Zone) -> RolloverPolicy:
    return RolloverPolicy(dnskey_ttl=zone.soa.ttl,
                          max_zone_ttl=max(r.ttl for r in zone.rrsets.values()))
