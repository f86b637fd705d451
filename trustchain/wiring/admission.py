"""Admission by consensus, the node's side of ``trustchain join``; and changes of stake.

A joining machine (anonymous: it has no certificate yet) first enrols as
:mod:`bootstrap.enrolment` describes (its keys, proven by signatures over a
challenge, and a CSR); then

1. ``ca.enrol-plot`` registers its plot (a ``plot-registration`` operation with
   its proof of work): a proof of space can only come from a plot the ledger
   knows is the requester's;
2. ``ca.enrol-admit`` carries its ``node-admission`` operation (its keys, QUIC
   address, the genesis it pinned, the stake it asks for) with proofs of work,
   time and space bound to a recent block.  This node checks them as every
   validator will, gathers the validators' endorsements (the stake proof,
   :mod:`transport.endorsement`), submits the operation and, once a block
   carries it, issues the node certificate the joiner fetches.

Both are idempotent: a joiner that lost its connection runs ``join`` again
and gets the certificate of an admission already committed.  Refusals name
their reason (a forged proof, another genesis, a node already admitted).

``admin.validator`` and ``admin.federation-configure`` are an operator's
consent to a validator's stake, or to new proof parameters; the change is
committed once validators holding more than 2/3 of the stake have consented
on their own nodes (``trustchain federation validator|configure``).
"""

from __future__ import annotations

import json
from typing import Any

from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
)
from pydantic import BaseModel, ConfigDict, Field, field_validator

from bootstrap.enrolment import EnrolmentService
from transport.consensus import ConsensusRunner
from transport.endorsement import Endorsements
from transport.methods import Call, Method, Service
from trustchain.canonical import MAX_SAFE_INTEGER, canonical_json
from trustchain.consensus.operations import (
    Entry,
    Operation,
    OperationKind,
    ProofBundle,
    SpacePart,
    TimePart,
    WorkPart,
)
from trustchain.consensus.proofs import ProofError
from trustchain.errors import BadRequest, CanonicalJSONError, Unavailable
from trustchain.storage.node import Enrolment

#: How long an admission or a plot registration waits for its block.
COMMIT_TIMEOUT = 30.0
#: Admissions gathering endorsements or waiting for their block at once, at most.
MAX_IN_FLIGHT = 8

NodeId = Field(pattern=r"^[0-9a-f]{32}$")


class PlotProofs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    anchor: int = Field(ge=0, le=MAX_SAFE_INTEGER)
    work: WorkPart


class PlotRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    node_id: str = NodeId
    plot_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    seed: str = Field(pattern=r"^(?:[0-9a-f]{2}){1,64}$")
    proofs: PlotProofs


class AdmissionProofs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    anchor: int = Field(ge=0, le=MAX_SAFE_INTEGER)
    work: WorkPart
    time: TimePart
    space: SpacePart


class AdmitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    node_id: str = NodeId
    body: dict[str, Any]
    proofs: AdmissionProofs

    @field_validator("body")
    @classmethod
    def _canonical(cls, body: dict[str, Any]) -> dict[str, Any]:
        """Only what canonical JSON carries: the operation's digest is taken of it."""
        try:
            canonical_json(body)
        except CanonicalJSONError as exc:
            raise ValueError(str(exc)) from None
        return body


class ValidatorRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    node_id: str = NodeId
    stake: int = Field(ge=0, le=2**40)


class ConfigureRequest(BaseModel):
    """The proof parameters to change (the rest stay): see ledger.CONFIGURABLE."""

    model_config = ConfigDict(extra="forbid")
    work_difficulty_bits: int | None = Field(None, ge=0, le=MAX_SAFE_INTEGER)
    time_vdf_iterations: int | None = Field(None, ge=0, le=MAX_SAFE_INTEGER)
    space_plot_k: int | None = Field(None, ge=0, le=MAX_SAFE_INTEGER)


def plot_entry(request: PlotRequest) -> Entry:
    return Entry(operation=Operation(kind=OperationKind.PLOT_REGISTRATION,
                                     requester=request.node_id,
                                     body={"plot_id": request.plot_id, "seed": request.seed}),
                 proofs=ProofBundle(work=request.proofs.work, anchor=request.proofs.anchor))


def admission_entry(request: AdmitRequest) -> Entry:
    proofs = request.proofs
    return Entry(operation=Operation(kind=OperationKind.NODE_ADMISSION,
                                     requester=request.node_id, body=request.body),
                 proofs=ProofBundle(work=proofs.work, time=proofs.time, space=proofs.space,
                                    anchor=proofs.anchor))


def _raw(spki: bytes) -> str:
    return load_der_public_key(spki).public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


class Admissions:
    def __init__(self, runner: ConsensusRunner, endorsements: Endorsements,
                 enrolment: EnrolmentService) -> None:
        self._runner = runner
        self._endorsements = endorsements
        self._enrolment = enrolment
        self._in_flight = 0

    def _enrolled(self, node_id: str) -> Enrolment:
        """The node's enrolment here. :raises BadRequest: none, or rejected."""
        enrolment = self._enrolment.enrolment(node_id)
        if enrolment is None:
            raise BadRequest(f"no enrolment for node {node_id}: ask enrol-challenge and send "
                             "enrol-request first")
        if enrolment.status == "rejected":
            raise BadRequest(f"the enrolment of node {node_id} was rejected")
        return enrolment

    async def plot(self, request: PlotRequest) -> dict[str, Any]:
        self._enrolled(request.node_id)
        ledger = self._runner.ledger
        if ledger.plots.get(request.node_id, {}).get(request.plot_id) == request.seed:
            return {"height": ledger.height, "registered": "before"}
        height = await self._runner.committed_height(plot_entry(request), COMMIT_TIMEOUT)
        return {"height": height, "registered": "now"}

    async def admit(self, request: AdmitRequest) -> dict[str, Any]:
        node_id = request.node_id
        enrolment = self._enrolled(node_id)
        body = request.body
        if (body.get("ed25519"), body.get("ml_dsa_65")) != (
                _raw(enrolment.ed25519_spki), _raw(enrolment.ml_dsa_65_spki)):
            raise BadRequest("the admission's keys are not those this node enrolled")
        if node_id in self._runner.ledger.members:  # committed before (the id is its key's)
            return json.loads(self._enrolment.state(self._enrolment.issue(node_id)))
        if self._in_flight >= MAX_IN_FLIGHT:
            raise Unavailable(f"{MAX_IN_FLIGHT} admissions are under way here; retry shortly")
        self._in_flight += 1
        try:
            entry = await self._endorsements.gather(admission_entry(request))
            await self._runner.committed_height(entry, COMMIT_TIMEOUT)
        finally:
            self._in_flight -= 1
        return json.loads(self._enrolment.state(self._enrolment.issue(node_id)))

    async def consent(self, kind: OperationKind, body: dict[str, Any]) -> dict[str, Any]:
        """This operator's consent to ``kind`` with ``body``; committed if validators
        holding enough stake consented too (each on its own node)."""
        runner = self._runner
        entry = Entry(operation=Operation(kind=kind, requester=runner.engine.node_id,
                                          body=body),
                      proofs=ProofBundle(anchor=runner.ledger.height))
        try:
            runner.ledger.endorsable(entry)
        except ProofError as exc:
            raise BadRequest(str(exc)) from None
        self._endorsements.policy.consent(entry.operation)
        try:
            entry = await self._endorsements.gather(entry)
        except Unavailable as exc:
            return {"status": "waiting", "detail": str(exc)}
        height = await runner.committed_height(entry, COMMIT_TIMEOUT)
        return {"status": "committed", "height": height}


def admission_services(admissions: Admissions) -> list[Service]:
    """``ca.enrol-plot``, ``ca.enrol-admit`` (public: the joiner is anonymous) and
    ``admin.validator``."""

    async def enrol_plot(call: Call) -> dict[str, Any]:
        return await admissions.plot(call.parse(PlotRequest))

    async def enrol_admit(call: Call) -> dict[str, Any]:
        return await admissions.admit(call.parse(AdmitRequest))

    async def validator(call: Call) -> dict[str, Any]:
        request = call.parse(ValidatorRequest)
        return await admissions.consent(OperationKind.VALIDATOR_CHANGE, request.model_dump())

    async def configure(call: Call) -> dict[str, Any]:
        request = call.parse(ConfigureRequest)
        changes = request.model_dump(exclude_none=True)
        return await admissions.consent(OperationKind.FEDERATION_CONFIG, {"parameters": changes})

    return [Service("ca", (Method(enrol_plot, stoq="enrol-plot"),
                           Method(enrol_admit, stoq="enrol-admit"))),
            Service("admin", (Method(validator, stoq="validator"),
                              Method(configure, stoq="federation-configure")))]

