"""The federation's registry of networks, replicated by consensus.

``trustchain network register`` is a ``network-registration`` operation: the
client makes its proofs (work and time, bound to a recent committed block,
the cost the policy asks of a registration), the node it asks checks the
operation as validators will, submits it, and answers once a block carries
it.  Every node applies the committed registrations in block order to the
ledger (:attr:`~trustchain.consensus.ledger.Ledger.networks`), so
``network list`` is the same on every node at the same height.

A node that serves the origin zone also gives each registered network its
zone under the origin (hosted or delegated, :mod:`trustchain.dns.networks`),
when the block is committed and, for blocks committed while it was down or
before it served the origin, at start.  Nodes without the origin zone keep
the registry only: replicating the zones themselves is the next issue's.
"""

from __future__ import annotations

import logging
from typing import Any

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
from trustchain.dns.records import DnsRequestError
from trustchain.dns.service import DnsService
from trustchain.wiring.dns import NetworkRegister, name_server

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


class Registry:
    """Applies committed registrations to this node's DNS, where it serves the origin."""

    def __init__(self, runner: ConsensusRunner, dns: DnsService) -> None:
        self._runner = runner
        self._dns = dns

    def serves_origin(self) -> bool:
        return self._dns.networks.serves_origin()

    def check(self, body: dict[str, Any]) -> None:
        """Refuse early what this node's DNS would refuse (a name in use, a bad DS).

        :raises DnsRequestError: naming the problem.
        """
        if self._dns.networks.serves_origin():
            self._dns.networks.check(body["name"], [name_server(d) for d in body["delegate"]],
                                     body["ds"])

    def committed(self, committed: Committed) -> None:
        for raw in committed.block.operations:
            operation = decode_entry(raw).operation
            if operation.kind is OperationKind.NETWORK_REGISTRATION:
                self._apply(operation.body, committed.block.height)

    def catch_up(self) -> None:
        """Give the zones of networks registered while this node did not apply them (it was
        down, or did not serve the origin yet): at start, and before each registry call."""
        if not self._dns.networks.serves_origin():
            return
        known = {n["name"] for n in self._dns.networks.all()}
        for name, body in self._runner.ledger.networks.items():
            if name not in known:
                self._apply(body, self._runner.ledger.height)

    def _apply(self, body: dict[str, Any], height: int) -> None:
        if not self._dns.networks.serves_origin():
            return
        try:
            self._dns.networks.register(body["name"], [name_server(d) for d in body["delegate"]],
                                        body["ds"], body["prefixes"])
        except (DnsRequestError, KeyError, TypeError, ValueError) as exc:
            log.warning("network %s (committed at height %d) has no zone here: %s",
                        body.get("name"), height, exc)

    def list(self) -> list[dict[str, Any]]:
        """Every registered network, with its zone where this node gave it one."""
        self.catch_up()
        zones = {n["name"]: n for n in self._dns.networks.all()}
        out = []
        for name, body in sorted(self._runner.ledger.networks.items()):
            row: dict[str, Any] = {"name": name, "prefixes": body.get("prefixes", []),
                                   "delegate": body.get("delegate", [])}
            if name in zones:
                row.update(zones[name])
            out.append(row)
        return out


def registry_service(registry: Registry, runner: ConsensusRunner) -> Service:
    """``admin.network-register`` and ``admin.network-list`` (admin only)."""

    async def network_register(call: Call) -> dict[str, Any]:
        request = call.parse(RegisterRequest)
        registry.catch_up()
        entry = registration_entry(request)
        registry.check(entry.operation.body)
        height = await runner.committed_height(entry, COMMIT_TIMEOUT)
        row = next((n for n in registry.list() if n["name"] == request.name), None)
        return {"name": request.name, "height": height, "network": row,
                "zone_here": registry.serves_origin()}

    return Service("admin", (
        Method(network_register, stoq="network-register"),
        Method(lambda call: registry.list(), stoq="network-list"),
    ))
