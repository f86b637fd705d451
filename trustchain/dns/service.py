"""The DNS service of a node: the current zones, queries, and the management API.

Queries go to :func:`trustchain.dns.engine.answer` over the current
:class:`~trustchain.dns.engine.ZoneSet`, which is replaced whole after every
accepted change (readers never see a half-applied change).  Management
methods take and return canonical JSON (they sit behind admin-only stoq/1
methods).  Every change is a change set: all of it is checked as the zone it
would produce, then stored in one transaction with a new SOA serial, or
refused as a whole.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Annotated, Any, Protocol

import dns.edns
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig
from pydantic import BaseModel, ConfigDict, Field, field_validator

from trustchain.canonical import canonical_json
from trustchain.dns.dnssec import Policy, SignedZone, SigningKey, ds_records, sign_zone
from trustchain.dns.engine import EDNS_PAYLOAD, TSIG_ERRORS, ZoneSet, question_type, respond
from trustchain.dns.handler import QueryContext, header_only_response
from trustchain.dns.rollover import KeyState, RolloverPolicy, Step, cds_key, next_steps
from trustchain.dns.rollover import State as KeyStateEnum
from trustchain.dns.rollover import start as start_rollover
from trustchain.dns.xfr import transfer
from trustchain.dns.zone import (
    SOA,
    Secondary,
    Zone,
    ZoneError,
    from_text,
    next_serial,
    serial_newer,
)
from trustchain.errors import StorageError
from trustchain.identity import Peer
from trustchain.stoq.router import BadRequest, parse_message

log = logging.getLogger("trustchain.dns")

DEFAULT_TTL = 3600
#: Pre-rendered answers kept per zone version (the cache is emptied when full).
ANSWER_CACHE_SIZE = 100_000
#: Queries longer than this are answered but not cached (keys stay small).
ANSWER_CACHE_MAX_QUERY = 512
#: SOA timers for new zones: refresh, retry, expire, negative-caching TTL.
SOA_TIMERS = (7200, 3600, 1209600, 300)

Ttl = Annotated[int, Field(ge=0, le=2**31 - 1)]


class ZoneStore(Protocol):
    """Durable zones.  Every write has committed when it returns."""

    def zones(self) -> list[Zone]: ...
    def create(self, zone: Zone, now: datetime) -> None: ...
    def replace(self, old: Zone, new: Zone, now: datetime) -> None: ...
    def delete(self, origin: dns.name.Name) -> None: ...
    def set_dnssec_policy(self, zone: dns.name.Name, algorithm: int, csk: bool,
                          nsec3: bool) -> None: ...
    def dnssec_policy(self, zone: dns.name.Name) -> tuple[int, bool, bool]: ...
    def journal(self, origin: dns.name.Name) -> list[tuple[int, int, list[str], list[str]]]: ...
    def add_secondary(self, secondary: Secondary) -> None: ...
    def add_network(self, name: str, zone: dns.name.Name, mode: str, now: datetime,
                    prefixes: list[str] | None = None) -> None: ...
    def networks(self) -> list[dict[str, Any]]: ...
    def remove_secondary(self, zone: dns.name.Name, address: str, port: int) -> bool: ...
    def secondaries(self) -> list[Secondary]: ...


class KeySource(Protocol):
    """The DNSSEC keys of a zone (created on first use), from the node's key store."""

    def managed(self, origin: dns.name.Name) -> list[tuple[KeyState, SigningKey | None]]:
        """Every key with its rollover state; the signing key is None once removed."""
        ...

    def apply(self, origin: dns.name.Name, steps: list[Step]) -> None: ...
    def mark_ds_published(self, origin: dns.name.Name, key_id: str) -> None: ...


class SecretStore(Protocol):
    """TSIG secrets, kept encrypted in the node's key store."""

    def secret(self, name: str) -> bytes | None: ...
    def create_secret(self, name: str) -> bytes: ...


#: Called after a zone changed (or gained a secondary): send NOTIFY to these.
Notifier = Callable[[Zone, list[Secondary], Mapping[dns.name.Name, dns.tsig.Key]], None]


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ZoneName(_Msg):
    zone: str = Field(min_length=1, max_length=255)


class DnssecChoices(_Msg):
    algorithm: int = Field(13, description="13 (ECDSA P-256) or 15 (Ed25519)")
    csk: bool = False
    nsec3: bool = False


class ZoneCreate(_Msg):
    zone: str = Field(min_length=1, max_length=255)
    dnssec: DnssecChoices = Field(default_factory=DnssecChoices)
    ns: list[str] = Field(default_factory=list, max_length=13)
    addresses: list[str] = Field(default_factory=list, max_length=16)
    email: str | None = Field(default=None, max_length=255)
    ttl: Ttl = DEFAULT_TTL


class SecondaryRequest(_Msg):
    zone: str = Field(min_length=1, max_length=255)
    address: str = Field(min_length=2, max_length=64)
    port: int = Field(53, ge=1, le=65535)
    key: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9.-]{0,62}$")


class Rollover(_Msg):
    zone: str = Field(min_length=1, max_length=255)
    role: str = Field(pattern="^(ksk|zsk)$")


class NetworkRegister(_Msg):
    name: str = Field(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
    #: Name servers: ``NAME`` or ``NAME=ADDR[,ADDR...]`` (addresses: glue for names inside).
    delegate: list[str] = Field(default_factory=list, max_length=13)
    ds: list[str] = Field(default_factory=list, max_length=8)
    #: Address blocks of the network (CIDR): its CA may certify addresses inside them.
    prefixes: list[str] = Field(default_factory=list, max_length=16)

    @field_validator("prefixes")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        out = []
        for item in value:
            try:
                out.append(str(ipaddress.ip_network(item, strict=True)))
            except ValueError as exc:
                raise ValueError(f"{item!r} is not an address block (CIDR, host bits zero): "
                                 f"{exc}") from None
        return out


class ZoneImport(_Msg):
    text: str = Field(max_length=16 * 1024 * 1024)
    dnssec: DnssecChoices | None = None
    origin: str | None = Field(default=None, max_length=255)
    replace: bool = False


class Record(_Msg):
    name: str = Field(min_length=1, max_length=255)
    type: str = Field(min_length=1, max_length=16)
    ttl: Ttl = DEFAULT_TTL
    data: str = Field(min_length=1, max_length=65535)


class RecordSelector(_Msg):
    name: str = Field(min_length=1, max_length=255)
    type: str | None = Field(default=None, max_length=16)
    data: str | None = Field(default=None, max_length=65535)


class ChangeSet(_Msg):
    add: list[Record] = Field(default_factory=list, max_length=10_000)
    delete: list[RecordSelector] = Field(default_factory=list, max_length=10_000)


def _name(text: str) -> dns.name.Name:
    try:
        return dns.name.from_text(text)
    except dns.exception.DNSException as exc:
        raise BadRequest(f"{text!r} is not a domain name: {exc}") from None


def _rdtype(text: str) -> dns.rdatatype.RdataType:
    try:
        rdtype = dns.rdatatype.from_text(text)
    except dns.exception.DNSException:
        raise BadRequest(f"unknown record type {text!r}") from None
    if dns.rdatatype.is_metatype(rdtype) or rdtype in (dns.rdatatype.OPT,):
        raise BadRequest(f"{text} is not a record type that can be stored")
    return rdtype


class DnsService:
    def __init__(
        self, store: ZoneStore, *, now: Callable[[], datetime], default_ns: dns.name.Name,
        secrets: SecretStore | None = None, notifier: Notifier | None = None,
        origin: dns.name.Name | None = None, keys: KeySource | None = None,
        policy: Policy | None = None,
    ) -> None:
        self._store = store
        self._origin = origin
        self._keys = keys
        self._policy = policy or Policy()
        self._now = now
        self._default_ns = default_ns
        self._secrets = secrets
        self.notifier = notifier
        zones = {z.origin: z for z in store.zones()}
        self.zoneset = ZoneSet(zones, 0, {o: s for o, z in zones.items()
                                          if (s := self._sign(z, None)) is not None})
        self._cache: dict[tuple[bool, bytes], bytes | None] = {}
        self._secondaries = store.secondaries()
        self._keyring: dict[dns.name.Name, dns.tsig.Key] = {}
        for secondary in self._secondaries:
            self._load_key(secondary.key_name)

    def _load_key(self, name: str, create: bool = False) -> bytes:
        if self._secrets is None:
            raise BadRequest("this node has no key store for TSIG secrets")
        secret = self._secrets.secret(name)
        if secret is None:
            if not create:
                raise BadRequest(f"no TSIG key {name}")
            secret = self._secrets.create_secret(name)
        key_name = dns.name.from_text(name)
        self._keyring[key_name] = dns.tsig.Key(key_name, secret, dns.tsig.HMAC_SHA256)
        return secret

    # --- queries ------------------------------------------------------------

    def handle(self, query: bytes, context: QueryContext) -> bytes | None:
        """Answer ``query``; the hot path never re-encodes.

        The engine's answer is a function of the query bytes after the
        message ID, the zone version and whether the transport is UDP
        (truncation), so rendered answers are cached under exactly that
        key and only the ID is patched in.  The cache is replaced with
        every zone change.  (The question keeps the client's letter case,
        so 0x20-randomised queries are answered right, just less often
        from the cache.)
        """
        key = (context.transport == "udp", query[2:])
        try:
            cached = self._cache[key]
        except KeyError:
            pass
        else:
            return None if cached is None else query[:2] + cached[2:]
        response, cacheable = respond(query, self.zoneset, context, self._keyring)
        if cacheable and len(query) <= ANSWER_CACHE_MAX_QUERY and len(query) >= 2:
            if len(self._cache) >= ANSWER_CACHE_SIZE:
                self._cache = {}
            self._cache[key] = response
        return response

    def handle_stream(self, query: bytes, context: QueryContext) -> list[bytes]:
        """Answer a query on a stream (TCP): zone transfers give several messages.

        AXFR and IXFR need a TSIG signature by a key of one of the zone's
        secondaries; anything else is refused (EDE 18, prohibited).  Over DoQ
        the message IDs are 0, so signatures made here stay valid there.
        """
        if question_type(query) not in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
            response = self.handle(query, context)
            return [] if response is None else [response]
        try:
            message = dns.message.from_wire(query, keyring=self._keyring or None)
        except TSIG_ERRORS:
            refusal = header_only_response(query, dns.rcode.NOTAUTH)
            return [refusal] if refusal else []
        except Exception:  # malformed: FORMERR, as for any query
            refusal = header_only_response(query, dns.rcode.FORMERR)
            return [refusal] if refusal else []
        zone = self.zoneset.zones.get(message.question[0].name)
        allowed = {dns.name.from_text(s.key_name) for s in self._secondaries
                   if zone is not None and s.zone == zone.origin}
        if zone is None or not message.had_tsig or message.keyname not in allowed:
            refused = dns.message.make_response(message)
            refused.set_rcode(dns.rcode.NOTAUTH if zone is None else dns.rcode.REFUSED)
            if refused.edns >= 0:
                refused.use_edns(0, 0, EDNS_PAYLOAD,
                                 options=[dns.edns.EDEOption(dns.edns.EDECode.PROHIBITED)])
            return [refused.to_wire()]
        messages = transfer(message, zone, self._store.journal(zone.origin),
                            self.zoneset.signed.get(zone.origin))
        log.info("%s of %s (serial %d) to %s with key %s: %d messages%s",
                 dns.rdatatype.to_text(message.question[0].rdtype), zone.origin, zone.serial,
                 context.client, message.keyname, len(messages),
                 " (signed zone: sent in full)" if zone.origin in self.zoneset.signed else "")
        return messages

    # --- management ---------------------------------------------------------

    def _sign(self, zone: Zone, previous: SignedZone | None) -> SignedZone | None:
        if self._keys is None:
            return None
        managed = self._keys.managed(zone.origin)
        keys = [k for _, k in managed if k is not None]
        cds = self._rollover_ksk(zone.origin)  # during a KSK rollover: ask for the new DS
        _, _, nsec3 = self._store.dnssec_policy(zone.origin)
        return sign_zone(zone, keys, int(self._now().timestamp()), self._policy, previous,
                         cds=cds[1] if cds else None, nsec3=nsec3)

    def _rollover_ksk(self, origin: dns.name.Name) -> tuple[KeyState, SigningKey] | None:
        """The new KSK of a KSK rollover under way, if any."""
        assert self._keys is not None
        managed = self._keys.managed(origin)
        states = [st for st, _ in managed]
        if len([k for k in states if k.role == "ksk" and k.state is KeyStateEnum.ACTIVE]) < 2:
            return None
        newest = cds_key(states)
        return next(((st, k) for st, k in managed
                     if newest is not None and st.key_id == newest.key_id and k is not None), None)

    def _rollover_policy(self, zone: Zone) -> RolloverPolicy:
        return RolloverPolicy(dnskey_ttl=zone.soa.ttl,
                              max_zone_ttl=max(r.ttl for r in zone.rrsets.values()))

    def _apply_steps(self, zone: Zone, steps: list[Step]) -> None:
        assert self._keys is not None
        self._keys.apply(zone.origin, steps)
        if any(s.role == "ksk" and s.key_id is None for s in steps):
            self._publish_ds_locally(zone)
        self._publish(dict(self.zoneset.zones), changed=zone)

    def _publish_ds_locally(self, zone: Zone) -> None:
        """If this node also serves the parent zone, put the new DS set there itself."""
        assert self._keys is not None
        if len(zone.origin) <= 1:
            return
        parent = self.zoneset.find(zone.origin.parent())
        if parent is None or zone.origin not in parent.cuts:
            return
        rollover = self._rollover_ksk(zone.origin)
        if rollover is None:
            return
        newest, key = rollover
        rrsets = dict(parent.rrsets)
        rrsets[(zone.origin, dns.rdatatype.DS)] = ds_records(zone.origin, [key], parent.soa.ttl)
        today = int(self._now().strftime("%Y%m%d"))
        new_parent = _build(parent.origin, rrsets.values())
        self._replace(parent, new_parent.with_serial(next_serial(parent.serial, today)))
        self._keys.mark_ds_published(zone.origin, newest.key_id)

    def dnssec_rollover(self, message: bytes, peer: Peer | None) -> bytes:
        req = parse_message(Rollover, message)
        zone = self._zone(req.zone)
        if self._keys is None or zone.origin not in self.zoneset.signed:
            raise BadRequest(f"zone {zone.origin} is not signed")
        try:
            steps = start_rollover([st for st, _ in self._keys.managed(zone.origin)], req.role)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        self._apply_steps(zone, steps)
        return self.dnssec_status(canonical_json({"zone": zone.origin.to_text()}), peer)

    def dnssec_ds_published(self, message: bytes, peer: Peer | None) -> bytes:
        """The operator confirms the parent now publishes the new KSK's DS."""
        req = parse_message(ZoneName, message)
        zone = self._zone(req.zone)
        if self._keys is None:
            raise BadRequest(f"zone {zone.origin} is not signed")
        rollover = self._rollover_ksk(zone.origin)
        if rollover is None:
            raise BadRequest("no KSK rollover is waiting for its DS")
        self._keys.mark_ds_published(zone.origin, rollover[0].key_id)
        return self.dnssec_status(canonical_json({"zone": zone.origin.to_text()}), peer)

    def advance_rollovers(self) -> list[str]:
        """Apply the rollover steps that are due (and automatic rollovers by key age)."""
        if self._keys is None:
            return []
        done = []
        now = int(self._now().timestamp())
        for origin in list(self.zoneset.signed):
            zone = self.zoneset.zones[origin]
            states = [st for st, _ in self._keys.managed(origin)]
            steps = next_steps(states, self._rollover_policy(zone), now)
            if steps:
                self._apply_steps(zone, steps)
                done += [f"{origin} {s.role} {s.key_id or 'new'} -> {s.state.value}" for s in steps]
        return done

    def _publish(self, zones: dict[dns.name.Name, Zone], changed: Zone | None = None) -> None:
        signed = {o: s for o, s in self.zoneset.signed.items() if o in zones}
        if changed is not None:
            new = self._sign(changed, self.zoneset.signed.get(changed.origin))
            if new is not None:
                signed[changed.origin] = new
        self.zoneset = ZoneSet(zones, self.zoneset.version + 1, signed)
        self._cache = {}
        if changed is not None:
            self._notify(changed)

    def resign_due(self) -> int:
        """Re-sign zones whose earliest signature nears expiry; return how many."""
        now = int(self._now().timestamp())
        due = [s.zone for s in self.zoneset.signed.values() if s.refresh_at <= now]
        for zone in due:
            self._publish(dict(self.zoneset.zones), changed=zone)
        return len(due)

    def dnssec_ds(self, message: bytes, peer: Peer | None) -> bytes:
        req = parse_message(ZoneName, message)
        zone = self._zone(req.zone)
        if self._keys is None or zone.origin not in self.zoneset.signed:
            raise BadRequest(f"zone {zone.origin} is not signed")
        ds = ds_records(zone.origin, [k for st, k in self._keys.managed(zone.origin)
                                      if k is not None and k.active], zone.soa.ttl)
        return canonical_json({"zone": zone.origin.to_text(), "ds": [r.to_text() for r in ds],
                               "text": ds.to_text()})

    def dnssec_status(self, message: bytes, peer: Peer | None) -> bytes:
        req = parse_message(ZoneName, message)
        zone = self._zone(req.zone)
        signed = self.zoneset.signed.get(zone.origin)
        keys = [] if self._keys is None or signed is None else [
            {"tag": k.tag, "role": k.role.value, "algorithm": int(k.dnskey.algorithm),
             "active": k.active, "state": st.state.value,
             "ds_published": st.ds_published is not None}
            for st, k in self._keys.managed(zone.origin) if k is not None]
        algorithm, csk, nsec3 = self._store.dnssec_policy(zone.origin)
        return canonical_json({
            "zone": zone.origin.to_text(), "signed": signed is not None, "keys": keys,
            "policy": {"algorithm": algorithm, "csk": csk, "nsec3": nsec3},
            "nsec_names": len(signed.chain or signed.nsec3_chain) if signed else 0,
            "signatures": sum(len(r) for r in signed.rrsigs.values()) if signed else 0,
            "resign_at": signed.refresh_at if signed else None,
        })

    def _notify(self, zone: Zone, only: list[Secondary] | None = None) -> None:
        targets = only if only is not None else [
            s for s in self._secondaries if s.zone == zone.origin]
        if targets and self.notifier is not None:
            self.notifier(zone, targets, dict(self._keyring))

    def secondary_add(self, message: bytes, peer: Peer | None) -> bytes:
        req = parse_message(SecondaryRequest, message)
        zone = self._zone(req.zone)
        try:
            address = str(ipaddress.ip_address(req.address.strip("[]")))
        except ValueError:
            raise BadRequest(f"{req.address!r} is not an IP address") from None
        key_name = req.key or f"xfr.{zone.origin.to_text().rstrip('.')}"
        secret = self._load_key(key_name, create=True)
        secondary = Secondary(zone.origin, address, req.port, key_name)
        self._store.add_secondary(secondary)
        self._secondaries = self._store.secondaries()
        self._notify(zone, [secondary])
        return canonical_json({
            "zone": zone.origin.to_text(), "address": address, "port": req.port,
            "key": key_name, "algorithm": "hmac-sha256",
            "secret": base64.b64encode(secret).decode(),
        })

    def network_register(self, message: bytes, peer: Peer | None) -> bytes:
        """Give a federated network its zone ``NAME.<origin>``: hosted here, or delegated.

        Hosted: a child zone on this node (SOA and NS naming this node) plus the
        delegation in the origin zone.  Delegated: NS records (with glue for
        name servers inside the child) and optional DS records in the origin
        zone.  Both land as one change of the origin zone.
        """
        req = parse_message(NetworkRegister, message)
        if self._origin is None or self._origin not in self.zoneset.zones:
            raise BadRequest(f"this node does not serve the origin zone {self._origin}: "
                             "create it first (trustchain zone create)")
        parent = self.zoneset.zones[self._origin]
        child = dns.name.Name((req.name.encode(), *self._origin.labels))
        if any(n["name"] == req.name for n in self._store.networks()) or child in parent.names \
                or child in self.zoneset.zones:
            raise BadRequest(f"{child} is already registered or in use")
        ttl = parent.soa.ttl
        rrsets = dict(parent.rrsets)
        ns_names: list[dns.name.Name] = []
        for item in req.delegate or [self._default_ns.to_text()]:
            host, _, addresses = item.partition("=")
            ns = _name(host if host.endswith(".") else host + ".")
            ns_names.append(ns)
            for address in filter(None, addresses.split(",")):
                rdtype = "AAAA" if ":" in address else "A"
                glue = self._rrset(ns, rdtype, ttl, address, self._origin)
                rrsets[(ns, glue.rdtype)] = _merged(rrsets.get((ns, glue.rdtype)), glue)
        rrsets[(child, dns.rdatatype.NS)] = dns.rrset.from_text_list(
            child, ttl, "IN", "NS", [n.to_text() for n in ns_names])
        if req.ds:
            rrsets[(child, dns.rdatatype.DS)] = dns.rrset.from_text_list(
                child, ttl, "IN", "DS", req.ds)
        hosted = not req.delegate
        today = int(self._now().strftime("%Y%m%d"))
        new_parent = _build(self._origin, rrsets.values(), "registration refused: ")
        if hosted:
            refresh, retry, expire, minimum = SOA_TIMERS
            child_zone = _build(child, [
                dns.rrset.from_text(child, ttl, "IN", "SOA",
                                    f"{ns_names[0]} hostmaster.{child} {today * 100} {refresh} "
                                    f"{retry} {expire} {minimum}"),
                dns.rrset.from_text_list(child, ttl, "IN", "NS", [n.to_text() for n in ns_names]),
            ])
            self._create(child_zone)
            if self._keys is not None and not req.ds:
                # The chain of trust: the parent vouches for the child's key-signing key.
                rrsets[(child, dns.rdatatype.DS)] = ds_records(
                    child, [k for _, k in self._keys.managed(child) if k is not None], ttl)
                new_parent = _build(self._origin, rrsets.values(), "registration refused: ")
        try:
            self._replace(parent, new_parent.with_serial(next_serial(parent.serial, today)))
        except Exception:
            if hosted:
                self.zone_delete(canonical_json({"zone": child.to_text()}), peer)
            raise
        self._store.add_network(req.name, child, "hosted" if hosted else "delegated", self._now(),
                                req.prefixes)
        return canonical_json({"name": req.name, "zone": child.to_text(),
                               "mode": "hosted" if hosted else "delegated",
                               "prefixes": req.prefixes,
                               "name_servers": [n.to_text() for n in ns_names]})

    def network_list(self, message: bytes, peer: Peer | None) -> bytes:
        return canonical_json(self._store.networks())

    def secondary_list(self, message: bytes, peer: Peer | None) -> bytes:
        return canonical_json([
            {"zone": s.zone.to_text(), "address": s.address, "port": s.port, "key": s.key_name}
            for s in self._secondaries
        ])

    def secondary_remove(self, message: bytes, peer: Peer | None) -> bytes:
        req = parse_message(SecondaryRequest, message)
        zone = self._zone(req.zone)
        address = req.address.strip("[]")
        if not self._store.remove_secondary(zone.origin, address, req.port):
            raise BadRequest(f"{address} port {req.port} is not a secondary of {zone.origin}")
        self._secondaries = self._store.secondaries()
        return canonical_json({"zone": zone.origin.to_text(), "address": address,
                               "port": req.port, "removed": True})

    def _zone(self, text: str) -> Zone:
        origin = _name(text)
        zone = self.zoneset.zones.get(origin)
        if zone is None:
            raise BadRequest(f"no zone {origin}")
        return zone

    def zone_create(self, message: bytes, peer: Peer | None) -> bytes:
        req = parse_message(ZoneCreate, message)
        origin = _name(req.zone)
        if origin in self.zoneset.zones:
            raise BadRequest(f"zone {origin} already exists")
        ns_names = [_name(n) for n in req.ns] or [self._default_ns]
        email = _name(req.email.replace("@", ".")) if req.email else dns.name.Name(
            (b"hostmaster", *origin.labels))
        refresh, retry, expire, minimum = SOA_TIMERS
        serial = next_serial(0, int(self._now().strftime("%Y%m%d")))
        rrsets = [
            dns.rrset.from_text(origin, req.ttl, "IN", "SOA",
                                f"{ns_names[0]} {email} {serial} {refresh} {retry} {expire} {minimum}"),
            dns.rrset.from_text_list(origin, req.ttl, "IN", "NS", [n.to_text() for n in ns_names]),
        ]
        for address in req.addresses:
            rdtype = "AAAA" if ":" in address else "A"
            for ns in ns_names:
                if ns.is_subdomain(origin):
                    rrsets.append(self._rrset(ns, rdtype, req.ttl, address, origin))
        return self._create(_build(origin, rrsets), req.dnssec)

    def zone_import(self, message: bytes, peer: Peer | None) -> bytes:
        req = parse_message(ZoneImport, message)
        try:
            zone = from_text(req.text, _name(req.origin) if req.origin else None)
        except ZoneError as exc:
            raise BadRequest(str(exc)) from None
        old = self.zoneset.zones.get(zone.origin)
        if old is None:
            return self._create(zone, req.dnssec)
        if not req.replace:
            raise BadRequest(f"zone {zone.origin} exists: pass replace to overwrite it")
        serial = zone.serial
        if not serial_newer(serial, old.serial):
            zone = zone.with_serial(next_serial(old.serial, int(self._now().strftime("%Y%m%d"))))
        return self._replace(old, zone)

    def zone_delete(self, message: bytes, peer: Peer | None) -> bytes:
        req = parse_message(ZoneName, message)
        zone = self._zone(req.zone)
        self._store.delete(zone.origin)
        zones = dict(self.zoneset.zones)
        del zones[zone.origin]
        self._publish(zones)
        self._secondaries = self._store.secondaries()
        return canonical_json({"zone": zone.origin.to_text(), "deleted": True})

    def zone_list(self, message: bytes, peer: Peer | None) -> bytes:
        return canonical_json([
            {"zone": z.origin.to_text(), "serial": z.serial, "rrsets": len(z.rrsets)}
            for z in sorted(self.zoneset.zones.values(), key=lambda z: z.origin)
        ])

    def zone_export(self, message: bytes, peer: Peer | None) -> bytes:
        req = parse_message(ZoneName, message)
        zone = self._zone(req.zone)
        return canonical_json({"zone": zone.origin.to_text(), "serial": zone.serial,
                               "text": zone.to_text()})

    def records_list(self, message: bytes, peer: Peer | None) -> bytes:
        req = parse_message(ZoneName, message)
        zone = self._zone(req.zone)
        return canonical_json([
            {"name": r.name.to_text(), "type": dns.rdatatype.to_text(r.rdtype), "ttl": r.ttl,
             "data": rdata.to_text()}
            for r in zone.sorted_rrsets() for rdata in r
        ])

    def records_change(self, message: bytes, peer: Peer | None) -> bytes:
        """Apply a change set (deletions, then additions) to the one zone it touches."""
        req = parse_message(ChangeSet, message)
        names = [_name(r.name) for r in req.add] + [_name(s.name) for s in req.delete]
        if not names:
            raise BadRequest("the change set is empty")
        found = [self.zoneset.find(n) for n in names]
        if any(z is None for z in found):
            raise BadRequest("a record is outside every zone of this node")
        if len({z.origin for z in found if z is not None}) != 1:
            raise BadRequest("a change set must stay within one zone")
        old = found[0]
        assert old is not None
        rrsets = dict(old.rrsets)
        for selector in req.delete:
            self._delete(rrsets, old, selector)
        for record in req.add:
            name, rdtype = _name(record.name), _rdtype(record.type)
            if rdtype == SOA:
                raise BadRequest("the SOA is managed by the node (its serial moves on every change)")
            new = self._rrset(name, record.type, record.ttl, record.data, old.origin)
            existing = rrsets.get((name, rdtype))
            if existing is not None and dns.rdatatype.is_singleton(rdtype) and existing != new:
                raise BadRequest(f"{name} already has a {record.type.upper()} record; "
                                 "delete it first (nothing applied)")
            if existing is not None:
                merged = dns.rrset.RRset(existing.name, existing.rdclass, existing.rdtype)
                merged.update(existing)
                merged.update(new)
                merged.ttl = record.ttl
                new = merged
            rrsets[(name, rdtype)] = new
        candidate = _build(old.origin, rrsets.values(), "change refused, nothing applied: ")
        today = int(self._now().strftime("%Y%m%d"))
        return self._replace(old, candidate.with_serial(next_serial(old.serial, today)))

    def _delete(self, rrsets: dict, zone: Zone, selector: RecordSelector) -> None:
        name = _name(selector.name)
        rdtype = _rdtype(selector.type) if selector.type else None
        if rdtype == SOA:
            raise BadRequest("the SOA cannot be deleted (delete the zone instead)")
        keys = [k for k in rrsets if k[0] == name and (rdtype is None or k[1] == rdtype)
                and k[1] != SOA]
        if not keys:
            raise BadRequest(f"nothing to delete at {name}"
                             + (f" {dns.rdatatype.to_text(rdtype)}" if rdtype else ""))
        for key in keys:
            if selector.data is None:
                del rrsets[key]
                continue
            target = self._rrset(name, dns.rdatatype.to_text(key[1]), 0, selector.data,
                                 zone.origin)
            remaining = dns.rrset.RRset(name, dns.rdataclass.IN, key[1])
            for rdata in rrsets[key]:
                if rdata not in target:
                    remaining.add(rdata)
            if len(remaining) == len(rrsets[key]):
                raise BadRequest(f"no {dns.rdatatype.to_text(key[1])} {selector.data} at {name}")
            remaining.ttl = rrsets[key].ttl
            if remaining:
                rrsets[key] = remaining
            else:
                del rrsets[key]

    @staticmethod
    def _rrset(name: dns.name.Name, rdtype: str, ttl: int, data: str,
               origin: dns.name.Name) -> dns.rrset.RRset:
        """One record; relative names in ``data`` are relative to ``origin``, as in zone files."""
        try:
            return dns.rrset.from_text_list(name, ttl, "IN", _rdtype(rdtype).name, [data],
                                            origin=origin, relativize=False)
        except dns.exception.DNSException as exc:
            raise BadRequest(f"{name} {rdtype} {data!r}: {exc}") from None

    def _create(self, zone: Zone, dnssec: DnssecChoices | None = None) -> bytes:
        if dnssec is not None:
            if dnssec.algorithm not in (13, 15):
                raise BadRequest("DNSSEC algorithm must be 13 (ECDSA P-256) or 15 (Ed25519)")
            self._store.set_dnssec_policy(zone.origin, dnssec.algorithm, dnssec.csk, dnssec.nsec3)
        try:
            self._store.create(zone, self._now())
        except StorageError as exc:
            raise BadRequest(str(exc)) from None
        zones = dict(self.zoneset.zones)
        zones[zone.origin] = zone
        self._publish(zones, changed=zone)
        return canonical_json({"zone": zone.origin.to_text(), "serial": zone.serial})

    def _replace(self, old: Zone, new: Zone) -> bytes:
        self._store.replace(old, new, self._now())
        zones = dict(self.zoneset.zones)
        zones[new.origin] = new
        self._publish(zones, changed=new)
        return canonical_json({"zone": new.origin.to_text(), "serial": new.serial})


def _merged(existing: dns.rrset.RRset | None, new: dns.rrset.RRset) -> dns.rrset.RRset:
    if existing is None:
        return new
    merged = dns.rrset.RRset(existing.name, existing.rdclass, existing.rdtype)
    merged.update(existing)
    merged.update(new)
    return merged


def _build(origin: dns.name.Name, rrsets: Iterable[dns.rrset.RRset], prefix: str = "") -> Zone:
    try:
        return Zone.build(origin, rrsets)
    except ZoneError as exc:
        raise BadRequest(f"{prefix}{exc}") from None
