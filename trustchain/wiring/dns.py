"""The DNS service's wiring: built over the zone tables and the key store, and its
management methods (admin only, stoq/1 ``admin``).

The methods' JSON requests are validated here by the models below, turned into
the DNS core's values, and its answers rendered back as JSON.  The formats are
the CLI's and operators' scripts': they do not change.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import ipaddress
import re
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Protocol

import dns.name
import dns.rdatatype
from pydantic import BaseModel, ConfigDict, Field, field_validator

from transport.dns import Notifier
from transport.methods import Call, Method, Service
from trustchain.dns.networks import NameServer
from trustchain.dns.records import DEFAULT_TTL, DnsRequestError, parse_name
from trustchain.dns.records import Record as CoreRecord
from trustchain.dns.records import RecordSelector as CoreSelector
from trustchain.dns.service import DnsService
from trustchain.dns.zone import Zone
from trustchain.dns.zones import Sign, SigningChoices, Superseded, Zones
from trustchain.errors import Forbidden
from trustchain.identity import Peer, Role
from trustchain.storage.dns import SqliteZoneStore
from trustchain.wiring.keys import KeystoreDnssecKeys, KeystoreSecrets
from trustchain.wiring.node import OpenNode, utcnow

Ttl = Annotated[int, Field(ge=0, le=2**31 - 1)]
DomainName = Annotated[str, Field(min_length=1, max_length=255)]


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ZoneName(_Msg):
    zone: DomainName


class DnssecChoices(_Msg):
    algorithm: int = Field(13, description="13 (ECDSA P-256) or 15 (Ed25519)")
    csk: bool = False
    nsec3: bool = False

    def core(self) -> SigningChoices:
        return SigningChoices(self.algorithm, self.csk, self.nsec3)


class ZoneCreate(_Msg):
    zone: DomainName
    dnssec: DnssecChoices = Field(default_factory=DnssecChoices)
    ns: list[str] = Field(default_factory=list, max_length=13)
    addresses: list[str] = Field(default_factory=list, max_length=16)
    email: str | None = Field(default=None, max_length=255)
    ttl: Ttl = DEFAULT_TTL


class ZoneTtl(_Msg):
    zone: DomainName
    ttl: int = Field(ge=1, le=86400)


class SecondaryRequest(_Msg):
    zone: DomainName
    address: str = Field(min_length=2, max_length=64)
    port: int = Field(53, ge=1, le=65535)
    key: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9.-]{0,62}$")


class Rollover(_Msg):
    zone: DomainName
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
    name: DomainName
    type: str = Field(min_length=1, max_length=16)
    ttl: Ttl = DEFAULT_TTL
    data: str = Field(min_length=1, max_length=65535)


class RecordSelector(_Msg):
    name: DomainName
    type: str | None = Field(default=None, max_length=16)
    data: str | None = Field(default=None, max_length=65535)


class ChangeSet(_Msg):
    add: list[Record] = Field(default_factory=list, max_length=10_000)
    delete: list[RecordSelector] = Field(default_factory=list, max_length=10_000)


class ChangesOffLoop:
    """Record changes checked and signed in a worker thread, one change at a time.

    Why: the event loop also answers DNS queries; whatever a change costs there delays
    them.  :meth:`Zones.prepare_change` (parsing, the next version and its checks) is
    pure and runs in a worker thread; so does the signing (:meth:`Zones.presign`), with
    the keys read on the loop (the key store's SQLite connection belongs to the loop's
    thread, :meth:`Signer.signing`).  :meth:`Zones.commit` (storing, and the atomic
    swap of the published zones) runs on the loop, where every other zone change also
    commits, so versions never interleave; a change whose zone changed meanwhile is
    prepared again.
    """

    #: Preparations of one change before it is refused as ever superseded.
    ATTEMPTS = 5

    def __init__(self, zones: Zones, signing: Callable[[dns.name.Name], Sign]) -> None:
        self._zones = zones
        self._signing = signing
        self._lock = asyncio.Lock()

    async def change(self, add: list[CoreRecord], delete: list[CoreSelector]) -> Zone:
        async with self._lock:
            for _ in range(self.ATTEMPTS):
                pending = await asyncio.to_thread(self._zones.prepare_change, add, delete)
                sign = self._signing(pending.new.origin)
                pending = await asyncio.to_thread(self._zones.presign, pending, sign)
                try:
                    return self._zones.commit(pending)
                except Superseded:
                    continue
            raise Superseded("the zone kept changing meanwhile; retry")


#: A zone file's first $ORIGIN (the zone parser reads it again, with every other check).
_ORIGIN_LINE = re.compile(r"^\$ORIGIN\s+(\S+)", re.MULTILINE | re.IGNORECASE)


def build_dns(node: OpenNode, notifier: Notifier | None = None) -> DnsService:
    origin = dns.name.from_text(node.identity.origin)
    store = SqliteZoneStore(node.db)
    return DnsService(
        store, now=utcnow,
        default_ns=dns.name.from_text(f"{node.identity.node_id}.nodes", origin),
        secrets=KeystoreSecrets(node.keystore, utcnow), notifier=notifier,
        keys=KeystoreDnssecKeys(node.keystore, store, utcnow),
    )


def _serial(zone: Zone) -> dict[str, Any]:
    return {"zone": zone.origin.to_text(), "serial": zone.serial}


def name_server(item: str) -> NameServer:
    """``NAME`` or ``NAME=ADDR[,ADDR...]``; a name is absolute with or without its dot."""
    host, _, addresses = item.partition("=")
    return NameServer(parse_name(host if host.endswith(".") else host + "."),
                      tuple(filter(None, addresses.split(","))))


class SharedZones(Protocol):
    """The federation's zones (:mod:`trustchain.wiring.federation`): changed through the
    consensus, never by one node alone."""

    def owns(self, origin: dns.name.Name) -> bool: ...
    def covers(self, name: dns.name.Name) -> bool:
        """Whether ``name`` is in the federation's namespace (at or under its origin)."""
        ...
    def zone_of(self, names: Sequence[dns.name.Name]) -> dns.name.Name | None: ...
    async def change(self, zone: dns.name.Name, add: Sequence[CoreRecord],
                     delete: Sequence[CoreSelector], ttl: int | None = None
                     ) -> dict[str, Any]: ...


#: The only records a network's own credential changes: ACME dns-01 challenges.
ACME_CHALLENGE = b"_acme-challenge"


def zone_service(service: DnsService, shared: SharedZones | None = None,
                 network_zone: Callable[[Peer], str] | None = None) -> Service:
    """Zone, record, secondary and DNSSEC management (admin only; networks are registered
    through the consensus: :mod:`trustchain.wiring.registry`).  A change to one of the
    ``shared`` zones goes to the consensus and is answered once committed.  A network's
    own admin credential may change ``_acme-challenge`` TXT records inside its network's
    zone (``network_zone(peer)``: the zone, once the credential is checked), so that an
    ACME client's dns-01 hook needs no node admin."""
    zones, dnssec = service.zones, service.dnssec

    def in_scope(peer: Peer | None, names: Sequence[dns.name.Name],
                 types: Sequence[str | None]) -> None:
        if peer is None or peer.role is not Role.NETWORK:
            return  # the node's admin (the permission table admits no one else)
        if network_zone is None:
            raise Forbidden("a network's credential changes no records on this node")
        zone = dns.name.from_text(network_zone(peer))
        if not all(n.labels[:1] == (ACME_CHALLENGE,) and n.is_subdomain(zone) for n in names) \
                or any((t or "").upper() != "TXT" for t in types):
            raise Forbidden(f"network {peer.name}'s credential changes only _acme-challenge TXT "
                            f"records inside {zone}")

    def local_only(method: Callable[[Call], Any]) -> Callable[[Call], Any]:
        """Refuse a method on a shared zone (the federation's: no node deletes it alone)."""
        def checked(call: Call) -> Any:
            origin = parse_name(call.parse(ZoneName).zone)
            if shared is not None and shared.owns(origin):
                raise DnsRequestError(f"{origin} is one of the federation's zones: change its "
                                      "records (trustchain record add/delete)")
            return method(call)
        return checked

    def federated(method: Callable[[Call], Any]) -> Callable[[Call], Any]:
        """Send a change set within a shared zone to the consensus; others to ``method``."""
        if shared is None:
            return method

        async def routed(call: Call) -> Any:
            req = call.parse(ChangeSet)
            add = [CoreRecord(parse_name(r.name), r.type, r.data, r.ttl) for r in req.add]
            delete = [CoreSelector(parse_name(s.name), s.type, s.data) for s in req.delete]
            in_scope(call.peer, [r.name for r in add] + [s.name for s in delete],
                     [r.type for r in add] + [s.type for s in delete])
            zone = shared.zone_of([r.name for r in add] + [s.name for s in delete])
            if zone is not None:
                return await shared.change(zone, add, delete)
            answer = method(call)
            return await answer if inspect.isawaitable(answer) else answer
        return routed

    async def zone_ttl(call: Call) -> dict[str, Any]:
        req = call.parse(ZoneTtl)
        origin = parse_name(req.zone)
        if shared is None or not shared.owns(origin):
            raise DnsRequestError(f"{origin} is not one of the federation's zones (a zone of "
                                  "this node's own takes the TTL of each record)")
        return await shared.change(origin, [], [], ttl=req.ttl)

    def on_zone(answer: Callable[[dns.name.Name], Any]) -> Callable[[Call], Any]:
        """A method whose request names one zone (``{"zone": ...}``)."""
        return lambda call: answer(parse_name(call.parse(ZoneName).zone))

    def not_shared(origin: dns.name.Name) -> None:
        """A zone of this node's own may not take the federation's names: every node
        serves those the same (a local zone there would differ from node to node)."""
        if shared is not None and shared.covers(origin):
            raise DnsRequestError(f"{origin} is in the federation's namespace: its names are "
                                  "changed through the consensus (trustchain record add), and "
                                  "a network gets its zone by trustchain network register")

    def zone_create(call: Call) -> dict[str, Any]:
        req = call.parse(ZoneCreate)
        origin = parse_name(req.zone)
        not_shared(origin)
        return _serial(zones.create(
            origin, ns=[parse_name(n) for n in req.ns], addresses=req.addresses,
            email=parse_name(req.email.replace("@", ".")) if req.email else None,
            ttl=req.ttl, dnssec=req.dnssec.core()))

    def zone_import(call: Call) -> dict[str, Any]:
        req = call.parse(ZoneImport)
        named = req.origin or next(iter(_ORIGIN_LINE.findall(req.text)), None)
        if named:
            not_shared(parse_name(named))
        return _serial(zones.import_text(
            req.text, parse_name(req.origin) if req.origin else None,
            dnssec=req.dnssec.core() if req.dnssec else None, replace=req.replace))

    def zone_list(call: Call) -> list[dict[str, Any]]:
        return [{"zone": z.origin.to_text(), "serial": z.serial, "rrsets": len(z.rrsets)}
                for z in zones.all()]

    def zone_delete(origin: dns.name.Name) -> dict[str, Any]:
        return {"zone": zones.delete(origin).origin.to_text(), "deleted": True}

    def zone_export(origin: dns.name.Name) -> dict[str, Any]:
        zone = zones.zone(origin)
        return {**_serial(zone), "text": zone.to_text()}

    def records_list(origin: dns.name.Name) -> list[dict[str, Any]]:
        return [{"name": r.name.to_text(), "type": dns.rdatatype.to_text(r.rdtype),
                 "ttl": r.ttl, "data": rdata.to_text()}
                for r in zones.zone(origin).sorted_rrsets() for rdata in r]

    changes = ChangesOffLoop(zones, service.signer.signing)

    async def records_change(call: Call) -> dict[str, Any]:
        req = call.parse(ChangeSet)
        add = [CoreRecord(parse_name(r.name), r.type, r.data, r.ttl) for r in req.add]
        delete = [CoreSelector(parse_name(s.name), s.type, s.data) for s in req.delete]
        in_scope(call.peer, [r.name for r in add] + [s.name for s in delete],
                 [r.type for r in add] + [s.type for s in delete])
        return _serial(await changes.change(add, delete))

    def secondary_add(call: Call) -> dict[str, Any]:
        req = call.parse(SecondaryRequest)
        secondary, secret = service.secondaries.add(parse_name(req.zone), req.address,
                                                    req.port, req.key)
        return {"zone": secondary.zone.to_text(), "address": secondary.address,
                "port": secondary.port, "key": secondary.key_name, "algorithm": "hmac-sha256",
                "secret": base64.b64encode(secret).decode()}

    def secondary_list(call: Call) -> list[dict[str, Any]]:
        return [{"zone": s.zone.to_text(), "address": s.address, "port": s.port,
                 "key": s.key_name} for s in service.secondaries.all()]

    def secondary_remove(call: Call) -> dict[str, Any]:
        req = call.parse(SecondaryRequest)
        removed = service.secondaries.remove(parse_name(req.zone), req.address, req.port)
        return {"zone": removed.zone.to_text(), "address": removed.address,
                "port": removed.port, "removed": True}

    def dnssec_ds(origin: dns.name.Name) -> dict[str, Any]:
        zone, ds = dnssec.ds(origin)
        return {"zone": zone.origin.to_text(), "ds": [r.to_text() for r in ds],
                "text": ds.to_text()}

    def dnssec_rollover(call: Call) -> dict[str, Any]:
        req = call.parse(Rollover)
        origin = parse_name(req.zone)
        dnssec.rollover(origin, req.role)
        return dnssec.status(origin)

    def dnssec_ds_published(origin: dns.name.Name) -> dict[str, Any]:
        dnssec.ds_published(origin)
        return dnssec.status(origin)

    return Service("admin", (
        Method(zone_create, stoq="zone-create"),
        Method(local_only(on_zone(zone_delete)), stoq="zone-delete"),
        Method(zone_list, stoq="zone-list"),
        Method(zone_ttl, stoq="zone-ttl"),
        Method(on_zone(zone_export), stoq="zone-export"),
        Method(zone_import, stoq="zone-import"),
        Method(on_zone(records_list), stoq="records-list"),
        Method(federated(records_change), stoq="records-change"),
        Method(secondary_add, stoq="secondary-add"),
        Method(secondary_list, stoq="secondary-list"),
        Method(secondary_remove, stoq="secondary-remove"),
        Method(on_zone(dnssec_ds), stoq="dnssec-ds"),
        Method(on_zone(dnssec.status), stoq="dnssec-status"),
        Method(dnssec_rollover, stoq="dnssec-rollover"),
        Method(on_zone(dnssec_ds_published), stoq="dnssec-ds-published"),
    ))
