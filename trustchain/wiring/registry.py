"""The federation's registry of networks, replicated by consensus.

``trustchain network register`` is a ``network-registration`` operation: the
client makes its proofs (work and time, bound to a recent committed block,
the cost the policy asks of a registration), the node it asks checks the
operation as validators will, submits it, and answers once a block carries
it.  Every node applies the committed registrations in block order to the
ledger (:attr:`~trustchain.consensus.ledger.Ledger.networks`), so
``network list`` is the same on every node at the same height.

The same blocks give each network its zone, or its delegation, in the
federation's zones (:mod:`trustchain.dns.federation`), identical on every
node; each node also records the network where its CA looks networks up.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import dns.exception
import dns.name
import dns.rdata
from pydantic import BaseModel, ConfigDict, Field

from transport.consensus import ConsensusRunner
from transport.methods import Call, Method, Service
from trustchain.canonical import MAX_SAFE_INTEGER
from trustchain.consensus.ledger import GENESIS_HASH
from trustchain.consensus.operations import (
    Entry,
    Operation,
    OperationKind,
    ProofBundle,
    TimePart,
    WorkPart,
    decode_entry,
    time_part,
    work_part,
)
from trustchain.consensus.parameters import ProofParameters
from trustchain.consensus.proofs import Challenge
from trustchain.consensus.proofs.delay import prove_delay
from trustchain.consensus.proofs.work import solve_work
from trustchain.consensus.tendermint import Committed
from trustchain.dns.networks import NetworkStore
from trustchain.dns.records import DnsRequestError
from trustchain.wiring.dns import NetworkRegister, name_server
from trustchain.wiring.federation import FederationDns

log = logging.getLogger("trustchain.registry")

#: How long ``network register`` waits for the block that carries it.
COMMIT_TIMEOUT = 30.0


class RegistrationProofs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: Hex identifier of who asks (the proofs are bound to it).
    requester: str = Field(pattern=r"^(?:[0-9a-f]{2}){1,64}$")
    anchor: int = Field(ge=0, le=MAX_SAFE_INTEGER)
    work: WorkPart
    time: TimePart


class RegisterRequest(NetworkRegister):
    proofs: RegistrationProofs


def registration_proofs(body: dict[str, Any], *, requester: str, anchor: int,
                        anchor_hash: str | None, parameters: dict[str, Any]) -> dict[str, Any]:
    """The proofs of a registration of ``body`` by ``requester``, bound to the committed
    block ``anchor`` (its hash; none before the first block): what a client makes."""
    operation = Operation(kind=OperationKind.NETWORK_REGISTRATION, requester=requester,
                          body=body)
    params = ProofParameters.model_validate(parameters)
    block = bytes.fromhex(anchor_hash) if anchor_hash else GENESIS_HASH
    challenge = Challenge(operation.digest, block)
    work = solve_work(challenge, bytes.fromhex(requester), params.work_difficulty_bits)
    delay = prove_delay(challenge, params.time_vdf_iterations)
    return {"requester": requester, "anchor": anchor,
            "work": work_part(work).model_dump(), "time": time_part(delay).model_dump()}


def registration_entry(request: RegisterRequest) -> Entry:
    """The operation a registration request asks for, with its proofs."""
    body = NetworkRegister.model_validate(request.model_dump(exclude={"proofs"})).model_dump()
    proofs = request.proofs
    return Entry(
        operation=Operation(kind=OperationKind.NETWORK_REGISTRATION,
                            requester=proofs.requester, body=body),
        proofs=ProofBundle(work=proofs.work, time=proofs.time, anchor=proofs.anchor))


def check_registration(body: dict[str, Any]) -> None:
    """Refuse early what the zones would not take (a name server or DS that does not
    parse).

    :raises DnsRequestError: naming the problem.
    """
    for item in body["delegate"]:
        for address in name_server(item).addresses:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise DnsRequestError(f"{address!r} is not an IP address") from None
    for text in body["ds"]:
        try:
            dns.rdata.from_text("IN", "DS", text)
        except (dns.exception.DNSException, ValueError) as exc:
            raise DnsRequestError(f"a DS record {text!r} does not parse: {exc}") from None


class Registry:
    """Records committed registrations where this node's CA looks networks up; their zones
    are the federation's (:mod:`trustchain.wiring.federation`), the same on every node."""

    def __init__(self, runner: ConsensusRunner, store: NetworkStore, zones: FederationDns,
                 now: Callable[[], datetime]) -> None:
        self._runner = runner
        self._store = store
        self._zones = zones
        self._now = now

    def committed(self, committed: Committed) -> None:
        for raw in committed.block.operations:
            operation = decode_entry(raw).operation
            if operation.kind is OperationKind.NETWORK_REGISTRATION:
                self._record(operation.body)

    def catch_up(self) -> None:
        """Record the networks committed while this node did not (at start)."""
        known = {n["name"] for n in self._store.networks()}
        for name, body in self._runner.ledger.networks.items():
            if name not in known:
                self._record(body)

    def _record(self, body: dict[str, Any]) -> None:
        origin = self._zones.zones.origin
        zone = dns.name.Name((body["name"].encode(), *origin.labels))
        mode = "delegated" if body.get("delegate") else "hosted"
        if any(n["name"] == body["name"] for n in self._store.networks()):
            return
        self._store.add_network(body["name"], zone, mode, self._now(),
                                list(body.get("prefixes", [])))

    def list(self) -> list[dict[str, Any]]:
        """Every registered network, with its zone."""
        recorded = {n["name"]: n for n in self._store.networks()}
        out = []
        for name, body in sorted(self._runner.ledger.networks.items()):
            row: dict[str, Any] = {"name": name, "prefixes": body.get("prefixes", []),
                                   "delegate": body.get("delegate", [])}
            row.update(recorded.get(name, {}))
            zone = self._zones.zones.zones.get(dns.name.Name(
                (name.encode(), *self._zones.zones.origin.labels)))
            row["serial"] = zone.serial if zone is not None else None
            out.append(row)
        return out


def registry_service(registry: Registry, runner: ConsensusRunner) -> Service:
    """``admin.network-register`` and ``admin.network-list`` (admin only)."""

    async def network_register(call: Call) -> dict[str, Any]:
        request = call.parse(RegisterRequest)
        entry = registration_entry(request)
        check_registration(entry.operation.body)
        height = await runner.committed_height(entry, COMMIT_TIMEOUT)
        row = next((n for n in registry.list() if n["name"] == request.name), None)
        return {"name": request.name, "height": height, "network": row}

    return Service("admin", (
        Method(network_register, stoq="network-register"),
        Method(lambda call: registry.list(), stoq="network-list"),
    ))
