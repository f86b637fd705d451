"""The federation's zones on a running node: applied with the chain, served, signed.

:class:`ZonesApplication` puts :class:`~trustchain.dns.federation.FederationZones`
beside the ledger, so the zones are replayed from the stored blocks at start
and applied with each committed block, like the rest of the replicated state.

:class:`FederationDns` is this node's part: after every commit it serves the
federation zones it may serve (signed with its own ZSK under the DNSKEY RRset
the KSK holders signed), publishes its addresses and keys (``node-dns``),
declares itself serving once its ZSK is published and no resolver can hold a
DNSKEY RRset without it, signs each new DNSKEY RRset if it holds a KSK (and
again before its signatures expire), and turns an operator's change to a
federation zone into a ``zone-change`` operation that it answers once committed.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import dns.dnssec
import dns.name
import dns.rdatatype
import dns.rrset
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from pydantic import BaseModel, ConfigDict

from transport.consensus import ConsensusRunner
from transport.methods import Call, Method, Service
from trustchain.ca.federation import CaRefused, FederationCa
from trustchain.consensus.evidence import evidence_from_body
from trustchain.consensus.operations import (
    POLICY,
    Entry,
    NodePart,
    Operation,
    OperationKind,
    ProofBundle,
    node_operation_message,
)
from trustchain.consensus.proofs import ProofError
from trustchain.consensus.proofs.stake import ValidatorStake
from trustchain.ct.federation import FederationLogs, LogsRefused
from trustchain.dns.dnssec import Role, SigningKey, make_dnskey
from trustchain.dns.federation import FederationRefused, FederationZones
from trustchain.dns.records import (
    DnsRequestError,
    Record,
    RecordSelector,
    change_set,
    changed_zone,
)
from trustchain.dns.service import DnsService
from trustchain.dns.zone import Zone, enclosing
from trustchain.errors import BadRequest
from trustchain.keystore import KeyStore, KeyType

log = logging.getLogger("trustchain.federation.dns")

#: The federation's DNSSEC keys of this node, in its key store.
KSK_PURPOSE = "dnssec-federation:ksk"
ZSK_PURPOSE = "dnssec-federation:zsk"
#: How long a zone change waits for its block.
COMMIT_TIMEOUT = 30.0
#: A KSK holder re-signs the DNSKEY RRsets this long before its signatures expire.
RESIGN_BEFORE = 4 * 86400
#: Signatures over the DNSKEY RRsets last this long (backdated an hour for clock skew).
DNSKEY_VALIDITY = 14 * 86400
#: A founder waits this long for the other founders' ZSKs before it serves anyway.
BOOTSTRAP_GRACE = 60.0
#: An operation of this node not reflected in the state is sent again after this long.
RESUBMIT_SECONDS = 10.0


class FederationApplication:
    """The federation's zones and CA as a ledger
    :class:`~trustchain.consensus.ledger.Application`."""

    _ZONES = frozenset({OperationKind.NODE_DNS, OperationKind.ZONE_CHANGE,
                        OperationKind.DNSKEY_SIGNATURES, OperationKind.NODE_LEAVE})
    _CA = frozenset({OperationKind.CA_INTERMEDIATE, OperationKind.CA_REVOCATION})
    _LOGS = frozenset({OperationKind.NODE_LOGS, OperationKind.LOG_FINAL,
                       OperationKind.LOG_FORK})
    kinds = _ZONES | _CA | _LOGS | {OperationKind.NETWORK_REGISTRATION, OperationKind.EVIDENCE}

    def __init__(self, zones: FederationZones, ca: FederationCa, logs: FederationLogs) -> None:
        self.zones = zones
        self.ca = ca
        self.logs = logs

    def check(self, operation: Operation, validators: Mapping[str, ValidatorStake]) -> None:
        kind, requester, body = operation.kind, operation.requester, operation.body
        self.logs.stakes = lambda: {n: v.stake for n, v in validators.items()}
        try:
            if kind in self._ZONES:
                self.zones.check(kind.value, requester, body)
            elif kind in self._CA:
                self.ca.check(kind.value, requester, body)
            elif kind in self._LOGS:
                self.logs.check(kind.value, requester, body)
        except (FederationRefused, CaRefused, LogsRefused) as exc:
            raise ProofError(str(exc)) from None

    def apply(self, operation: Operation, height: int,
              validators: Mapping[str, ValidatorStake]) -> None:
        kind, requester, body = operation.kind, operation.requester, operation.body
        self.logs.stakes = lambda: {n: v.stake for n, v in validators.items()}
        if kind is OperationKind.EVIDENCE:
            offender = evidence_from_body(body).offender
            self.zones.remove_node(offender, height)
            self.logs.remove_operator(offender)
            return
        if kind in self._LOGS:
            try:
                self.logs.apply(kind.value, requester, body, height)
            except LogsRefused:  # checked against the state before its block
                return
            if kind is OperationKind.LOG_FORK:  # its operator is removed, as for a double vote
                self.zones.remove_node(str(body["operator"]), height)
                self.logs.remove_operator(str(body["operator"]))
            return
        if kind in self._CA or kind is OperationKind.NETWORK_REGISTRATION:
            try:
                self.ca.apply(kind.value, requester, body, height)
            except CaRefused:  # checked against the state before its block: no longer fits
                pass
        if kind not in self._CA:
            self.zones.apply(kind.value, requester, body, height, operation.digest)


def federation_keys(keystore: KeyStore, founder: bool, now: datetime
                    ) -> tuple[SigningKey, SigningKey | None]:
    """This node's federation ZSK, and its KSK if it is a founder (made on first use)."""
    def key(purpose: str, role: Role) -> SigningKey:
        record = keystore.active_or_generate(KeyType.ECDSA_P256, purpose, now)
        private = keystore.private_key(record.id)
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        return SigningKey(role, private, make_dnskey(private, 13, role))

    return key(ZSK_PURPOSE, Role.ZSK), key(KSK_PURPOSE, Role.KSK) if founder else None


class NodeOperations:
    """This node's own operations: signed with its consensus key, sent once in a while."""

    def __init__(self, runner: ConsensusRunner, *, node_id: str, chain_id: str,
                 node_key: ed25519.Ed25519PrivateKey,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.runner = runner
        self.node = node_id
        self._chain = chain_id
        self._key = node_key
        self._monotonic = monotonic
        #: What this node sent and when ((kind, subject) -> (what it asks, monotonic time)).
        self._sent: dict[tuple[str, str], tuple[str, float]] = {}

    def send(self, kind: OperationKind, body: dict[str, Any], what: str | None = None,
             subject: str = "") -> None:
        """Submit an operation, unless the same one (for ``subject``) left recently: the
        state after each commit says whether it is still owed."""
        what = what if what is not None else repr(sorted(body.items()))
        sent = self._sent.get((kind.value, subject))
        now = self._monotonic()
        if sent is not None and sent[0] == what and now - sent[1] < RESUBMIT_SECONDS:
            return
        try:
            self.runner.submit(self.entry(kind, body))
        except Exception as exc:  # a full pool, a stopped loop: the next commit tries again
            log.warning("%s not submitted: %s", kind.value, exc)
            return
        self._sent[(kind.value, subject)] = (what, now)

    def entry(self, kind: OperationKind, body: dict[str, Any]) -> Entry:
        """One of this node's operations, signed with its consensus key as of the last
        committed block (unless its kind takes no proofs: it proves itself)."""
        ledger = self.runner.ledger
        body = {**body, "nonce": secrets.token_hex(8)}  # the same change twice is no replay
        operation = Operation(kind=kind, requester=self.node, body=body)
        if not POLICY[kind]:
            return Entry(operation=operation, proofs=ProofBundle())
        block = ledger.hashes[ledger.height]
        signature = self._key.sign(node_operation_message(self._chain, block, operation.digest))
        return Entry(operation=operation, proofs=ProofBundle(
            anchor=ledger.height,
            node=NodePart(node=self.node, signature=base64.b64encode(signature).decode())))


class FederationDns:
    def __init__(self, zones: FederationZones, dns_service: DnsService,
                 operations: NodeOperations, *, zsk: SigningKey, ksk: SigningKey | None,
                 addresses: Sequence[str], founders: frozenset[str],
                 clock: Callable[[], datetime],
                 monotonic: Callable[[], float] = time.monotonic, serve: bool = True) -> None:
        """``serve=False``: the zones are kept and signed as ever but not answered for
        (``serve_federation_zones = false``)."""
        self.zones = zones
        self._serve = serve
        self._dns = dns_service
        self.operations = operations
        self._runner = operations.runner
        self._node = operations.node
        self._zsk = zsk
        self._ksk = ksk
        self._addresses = [str(a) for a in addresses]
        self._founders = founders
        self._clock = clock
        self._monotonic = monotonic
        #: When this node first saw its ZSK published (monotonic), for the serving wait.
        self._published_seen: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._served_names: list[str] = []
        #: Set (and replaced) at each commit, for those who wait for a zone.
        self._commits = asyncio.Event()
        #: When this node, leaving, may withdraw its ZSK (monotonic; None: not leaving).
        self._remove_at: float | None = None
        signer = dns_service.signer
        signer.shared = zones.owns
        signer.multi = self._agreed

    # --- serving -------------------------------------------------------------------------

    def _agreed(self, origin: dns.name.Name
                ) -> tuple[SigningKey, dns.rrset.RRset, dns.rrset.RRset] | None:
        published = self.zones.published.get(origin)
        if published is None or self._zsk.dnskey not in published.dnskey:
            return None
        return self._zsk, published.dnskey, published.rrsigs

    def serving(self) -> bool:
        mine = self.zones.nodes.get(self._node)
        return mine is not None and mine.serving and mine.zsk == self._zsk.dnskey.to_text()

    def served(self) -> dict[dns.name.Name, Zone]:
        """The federation zones this node serves now: those its ZSK is published for."""
        if not self._serve or not self.serving():
            return {}
        return {o: z for o, z in self.zones.zones.items() if self._agreed(o) is not None}

    def publish(self) -> None:
        """Serve the federation zones as committed, re-signing only those that changed."""
        current = self._dns.server.zoneset
        wanted = self.served()
        zones = {o: z for o, z in current.zones.items()
                 if not self.zones.owns(o) or o in wanted}
        removed = len(zones) != len(current.zones)
        changed = []
        for origin, zone in wanted.items():
            signed = current.signed.get(origin)
            if current.zones.get(origin) is not zone or signed is None or \
                    signed.rrsigs.get((origin, dns.rdatatype.DNSKEY)) != \
                    self.zones.published[origin].rrsigs:
                zones[origin] = zone
                changed.append(zone)
        for zone in changed:
            self._dns.zones.publish(zones, changed=zone)
        if removed and not changed:
            self._dns.zones.publish(zones)
        names = sorted(o.to_text() for o in wanted)
        if names != self._served_names:
            if names:
                log.info("serving the federation's zones: %s", ", ".join(names))
            else:
                log.warning("not serving the federation's zones (this node's ZSK is not in "
                            "their signed DNSKEY RRset, or it does not serve yet)")
            self._served_names = names

    # --- this node's operations -----------------------------------------------------------

    def after_commit(self) -> None:
        """After each commit (and at start): serve, and send what this node owes."""
        self._commits.set()
        self._commits = asyncio.Event()
        try:
            self.publish()
        except Exception:  # never let serving stop the consensus hook
            log.exception("the federation zones could not be published")
        self._announce()
        self._sign_dnskeys()

    def _announce(self) -> None:
        if self._node in self.zones.left:
            return
        if self._node in self.zones.leaving:
            self._leave_later()
            return
        mine = self.zones.nodes.get(self._node)
        zsk = self._zsk.dnskey.to_text()
        ksk = self._ksk.dnskey.to_text() if self._ksk is not None else None
        if mine is None or mine.zsk != zsk or mine.ksk != ksk \
                or list(mine.addresses) != self._addresses:
            self.operations.send(OperationKind.NODE_DNS, {"addresses": self._addresses, "zsk": zsk,
                                                "ksk": ksk, "serving": False})
            return
        if mine.serving:
            return
        wait = self.zones.serving_wait(self._node)
        if wait is None:
            return
        now = self._monotonic()
        if self._published_seen is None:
            self._published_seen = now
        founders_published = all(f in self.zones.zsk_published_at for f in self._founders
                                 if f in self.zones.nodes)
        if wait == 0 and self._node in self._founders and not founders_published and \
                now - self._published_seen < BOOTSTRAP_GRACE:
            self._later(BOOTSTRAP_GRACE - (now - self._published_seen))
            return  # so that the founders start serving together, none of them waiting
        if now - self._published_seen < wait:
            self._later(wait - (now - self._published_seen))
            return
        self.operations.send(OperationKind.NODE_DNS, {"addresses": self._addresses, "zsk": zsk,
                                            "ksk": ksk, "serving": True})

    def _leave_later(self) -> None:
        """Leaving: serve on, out of the NS sets, until no cache can hold this node's name
        server or signatures (counted from when this process saw the withdrawal: after a
        restart, the whole wait again), then remove its ZSK and names."""
        now = self._monotonic()
        if self._remove_at is None:
            wait = self.zones.leaving[self._node]
            self._remove_at = now + wait
            log.info("leaving the federation's DNS: out of the NS sets; the ZSK goes in %d s",
                     wait)
        if now < self._remove_at:
            self._later(self._remove_at - now)
            return
        self.operations.send(OperationKind.NODE_LEAVE, {"step": "remove"})

    async def leave(self) -> dict[str, Any]:
        """Withdraw this node from the federation's NS sets (committed when this returns);
        its ZSK and names follow after :meth:`FederationZones.leave_wait`.

        :raises DnsRequestError: refused (the last KSK holder, the last name server, leaving
            already).
        """
        entry = self.operations.entry(OperationKind.NODE_LEAVE, {"step": "withdraw"})
        try:
            self.zones.check(OperationKind.NODE_LEAVE.value, self._node, {"step": "withdraw"})
        except FederationRefused as exc:
            raise DnsRequestError(str(exc)) from None
        height = await self._runner.committed_height(entry, COMMIT_TIMEOUT)
        refused = self.zones.refused.get(entry.operation.digest)
        if refused is not None:
            raise DnsRequestError(refused)
        return {"node_id": self._node, "height": height,
                "remove_after": self.zones.leaving.get(self._node, 0)}

    def _later(self, seconds: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(seconds, 0.1), self.after_commit)

    def _sign_dnskeys(self) -> None:
        if self._ksk is None or self._node not in self.zones.nodes or \
                self.zones.nodes[self._node].ksk is None:
            return
        digest, keys = self.zones.keyset()
        now = int(self._clock().timestamp())
        tag = self._ksk.tag
        due = []
        for zone in self.zones.zone_names():
            published = self.zones.published.get(zone)
            mine = [s for s in published.rrsigs if s.key_tag == tag] if published else []
            if published is None or published.keyset != digest or not mine or \
                    mine[0].expiration - RESIGN_BEFORE <= now:
                due.append(zone)
        if not due:
            return
        signatures = []
        for zone in due[:256]:
            rrset = self.zones.dnskey_rrset(zone, keys)
            rrsig = dns.dnssec.sign(rrset, self._ksk.private_key, zone,  # type: ignore[arg-type]
                                    self._ksk.dnskey, inception=now - 3600,
                                    expiration=now + DNSKEY_VALIDITY)
            signatures.append([zone.to_text(), rrsig.to_text()])
        self.operations.send(OperationKind.DNSKEY_SIGNATURES, {"keyset": digest, "signatures": signatures},
                   what=digest + " ".join(z.to_text() for z in due))

    # --- an operator's change ----------------------------------------------------------

    def owns(self, origin: dns.name.Name) -> bool:
        return self.zones.owns(origin)

    def covers(self, name: dns.name.Name) -> bool:
        return name.is_subdomain(self.zones.origin)

    def zone_of(self, names: Sequence[dns.name.Name]) -> dns.name.Name | None:
        """The federation zone a change set touches (the closest enclosing), if any."""
        for name in names:
            for candidate in enclosing(name, dns.name.root):
                if self.zones.owns(candidate):
                    return candidate
        return None

    async def change(self, zone: dns.name.Name, add: Sequence[Record],
                     delete: Sequence[RecordSelector], ttl: int | None = None) -> dict[str, Any]:
        """Make ``add``/``delete`` a ``zone-change`` and wait for its block.

        :raises DnsRequestError: the change is refused (before or after it is committed).
        """
        current = await self._served(zone)
        if add or delete:  # refused here, at once, what would be refused when applied
            changed_zone(current, change_set(current, add, delete),
                         "change refused, nothing applied: ")
        body: dict[str, Any] = {
            "zone": zone.to_text(),
            "add": [[r.name.to_text(), r.type, r.ttl, r.data] for r in add],
            "delete": [[s.name.to_text(), s.type or "", s.data or ""] for s in delete]}
        if ttl is not None:
            body["ttl"] = ttl
        entry = self.operations.entry(OperationKind.ZONE_CHANGE, body)
        height = await self._runner.committed_height(entry, COMMIT_TIMEOUT)
        refused = self.zones.refused.get(entry.operation.digest)
        if refused is not None:
            raise DnsRequestError(refused)
        served = self.zones.zones.get(zone)
        return {"zone": zone.to_text(), "serial": served.serial if served else height,
                "height": height}


    async def _served(self, zone: dns.name.Name) -> Zone:
        """The zone as committed; a zone no node serves yet (a federation starting) is
        waited for, up to :data:`COMMIT_TIMEOUT`.

        :raises DnsRequestError: it is not served by then.
        """
        deadline = self._monotonic() + COMMIT_TIMEOUT
        while (current := self.zones.zones.get(zone)) is None:
            left = deadline - self._monotonic()
            if left <= 0:
                raise DnsRequestError(f"{zone}: no node of the federation serves it yet")
            try:
                await asyncio.wait_for(self._commits.wait(), left)
            except TimeoutError:
                pass
        return current


def node_signing_key(keystore: KeyStore, purpose: str) -> ed25519.Ed25519PrivateKey:
    key = keystore.private_key(keystore.active(purpose).id)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    return key


def leave_service(federation_dns: FederationDns) -> Service:
    """``admin.federation-leave``: this node leaves the federation's DNS."""

    async def leave(call: Call) -> dict[str, Any]:
        call.parse(LeaveRequest)
        try:
            return await federation_dns.leave()
        except DnsRequestError as exc:
            raise BadRequest(str(exc)) from None

    return Service("admin", (Method(leave, stoq="federation-leave"),))


class LeaveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
