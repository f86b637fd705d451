"""Operations that blocks carry, their proof bundles, and the policy of which proofs each needs.

An operation is canonical JSON (kind, requester, body); its digest ``D`` is
the SHA-256 of those bytes.  Its proofs answer the :class:`Challenge` of
``D`` and the hash of the block the new block extends, so a bundle made for
one block is useless in any other.  Which proofs an operation needs is
:data:`POLICY`; validators check every required proof (and refuse extra
material) before they vote for a block that carries the operation.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trustchain.canonical import MAX_SAFE_INTEGER, canonical_json
from trustchain.consensus.parameters import ProofParameters
from trustchain.consensus.proofs import Challenge, ProofError
from trustchain.consensus.proofs.delay import DelayProof, verify_delay
from trustchain.consensus.proofs.space import SpaceProof, verify_space
from trustchain.consensus.proofs.stake import CommitCertificate, ValidatorStake, verify_commit
from trustchain.consensus.proofs.work import WorkProof, verify_work
from trustchain.errors import CanonicalJSONError

MAX_OPERATION_BYTES = 64 * 1024


class OperationKind(StrEnum):
    NODE_ADMISSION = "node-admission"
    NETWORK_REGISTRATION = "network-registration"
    PLOT_REGISTRATION = "plot-registration"
    VALIDATOR_CHANGE = "validator-change"
    FEDERATION_CONFIG = "federation-config"
    CA_INTERMEDIATE = "ca-intermediate"
    CT_CHECKPOINT = "ct-checkpoint"
    EVIDENCE = "evidence"
    #: A node's DNS addresses and DNSSEC keys, and whether it serves the federation's zones.
    NODE_DNS = "node-dns"
    #: Records added to or deleted from one of the federation's zones.
    ZONE_CHANGE = "zone-change"
    #: A key-signing key holder's RRSIGs over the federation zones' DNSKEY RRsets.
    DNSKEY_SIGNATURES = "dnskey-signatures"
    #: A certificate revoked at some node, for the node that issued it.
    CA_REVOCATION = "ca-revocation"
    #: A node leaving the federation's DNS: out of the NS sets, later its keys and names.
    NODE_LEAVE = "node-leave"
    #: A node's CT logs (keys, prefixes, expiry shards): one operator of the log list.
    NODE_LOGS = "node-logs"
    #: Two checkpoints of one log, signed with its key, one size, two roots: it is untrusted.
    LOG_FORK = "log-fork"
    #: A log checkpoint cosigned by witnesses of more than 2/3 of the stake: final.
    LOG_FINAL = "log-final"


#: Which proofs each kind of operation must carry.  Admissions cost work, time
#: and space and need the validators' endorsement; anything that changes who
#: decides needs more than 2/3 of the stake; evidence proves itself.
POLICY: dict[OperationKind, frozenset[str]] = {
    OperationKind.NODE_ADMISSION: frozenset({"work", "time", "space", "stake"}),
    OperationKind.NETWORK_REGISTRATION: frozenset({"work", "time"}),
    OperationKind.PLOT_REGISTRATION: frozenset({"work"}),
    OperationKind.VALIDATOR_CHANGE: frozenset({"stake"}),
    OperationKind.FEDERATION_CONFIG: frozenset({"stake"}),
    OperationKind.CA_INTERMEDIATE: frozenset({"node"}),  # and the root's signature in it
    OperationKind.CT_CHECKPOINT: frozenset(),
    OperationKind.EVIDENCE: frozenset(),
    OperationKind.NODE_DNS: frozenset({"node"}),
    OperationKind.ZONE_CHANGE: frozenset({"node"}),
    OperationKind.DNSKEY_SIGNATURES: frozenset({"node"}),
    OperationKind.CA_REVOCATION: frozenset({"node"}),
    OperationKind.NODE_LEAVE: frozenset({"node"}),
    OperationKind.NODE_LOGS: frozenset({"node"}),
    OperationKind.LOG_FORK: frozenset(),  # the two signed checkpoints prove it
    OperationKind.LOG_FINAL: frozenset(),  # its cosignatures prove it
}
#: Domain separation of a node's signature over an operation (never a vote's bytes).
NODE_OPERATION_TAG = "trustchain/node-operation/1"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Operation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: OperationKind
    requester: str = Field(pattern=r"^(?:[0-9a-f]{2}){1,64}$")  # hex identifier of who asks
    body: dict[str, Any] = Field(default_factory=dict)

    def encode(self) -> bytes:
        return canonical_json({"kind": self.kind.value, "requester": self.requester,
                               "body": self.body})

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.encode()).digest()


class WorkPart(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    nonce: int = Field(ge=0, le=MAX_SAFE_INTEGER)


class TimePart(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    iterations: int = Field(ge=1, le=MAX_SAFE_INTEGER)
    output: str  # base64
    proof: str


class SpacePart(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    plot_id: str  # hex
    seed: str  # hex: the seed registered with the plot
    k: int = Field(ge=0, le=255)
    proof: str  # base64


class StakePart(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    height: int = Field(ge=0, le=MAX_SAFE_INTEGER)
    round: int = Field(ge=0, le=MAX_SAFE_INTEGER)
    signatures: list[tuple[str, str]]  # (validator id, base64 signature)
    #: (validator id, base64 ML-DSA-65 signature) of the validators that have that key.
    pq_signatures: list[tuple[str, str]] = Field(default_factory=list)


class NodePart(BaseModel):
    """A federation node's Ed25519 signature (its consensus key) over the operation, as of
    the anchor block: the operations a node makes for itself or its operator."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    node: str = Field(pattern=r"^[0-9a-f]{32}$")
    signature: str = Field(max_length=128)  # base64


def node_operation_message(chain_id: str, block: bytes, digest: bytes) -> bytes:
    """What a node signs for :class:`NodePart`: the operation as of the block ``block``."""
    return canonical_json({"tag": NODE_OPERATION_TAG, "chain": chain_id, "block": block.hex(),
                           "operation": digest.hex()})


class ProofBundle(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    work: WorkPart | None = None
    time: TimePart | None = None
    space: SpacePart | None = None
    stake: StakePart | None = None
    node: NodePart | None = None
    #: The committed height whose block the proofs answer (absent: the block that the
    #: carrying block extends).  A live network needs it: a proof that takes seconds to
    #: make cannot know which block will carry it, only a recent one it has seen.
    anchor: int | None = Field(None, ge=0, le=MAX_SAFE_INTEGER)

    def present(self) -> frozenset[str]:
        return frozenset(name for name in ("work", "time", "space", "stake", "node")
                         if getattr(self, name) is not None)


class Entry(BaseModel):
    """What a block carries: an operation and its proofs."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    operation: Operation
    proofs: ProofBundle = Field(default_factory=ProofBundle)

    def encode(self) -> bytes:
        return canonical_json(self.model_dump(mode="json"))


def decode_entry(data: bytes) -> Entry:
    """The entry a block carries, in its canonical JSON form only: its digest is taken of
    that form, so any other bytes (whitespace, a float, an integer beyond 2**53) would be a
    second encoding of one operation, or one that cannot be hashed at all.

    :raises ProofError: for bytes that are not an entry in canonical form.
    """
    if len(data) > MAX_OPERATION_BYTES:
        raise ProofError("operation too large")
    try:
        entry = Entry.model_validate_json(data)
        canonical = entry.encode()
    except ValidationError as exc:
        raise ProofError(f"not an operation: {exc.errors()[0]['msg']}") from None
    except CanonicalJSONError as exc:
        raise ProofError(f"not an operation: {exc}") from None
    if canonical != data:
        raise ProofError("not an operation: not in canonical JSON form")
    return entry


def _bytes(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise ProofError(f"{what}: not base64") from None


def verify_entry(entry: Entry, *, previous: bytes, parameters: ProofParameters,
                 validators: Mapping[str, ValidatorStake], chain_id: str,
                 plot_seeds: Mapping[str, str], gathering: frozenset[str] = frozenset(),
                 node_keys: Mapping[str, ed25519.Ed25519PublicKey] | None = None) -> None:
    """Check that ``entry`` carries exactly the proofs its kind needs and each verifies.

    :param previous: the hash of the block the carrying block extends (``B``).
    :param plot_seeds: plot id (hex) -> seed (hex) of the plots registered to
        the requester (a proof of space must come from one of them).
    :param gathering: proofs still being gathered, neither required nor allowed yet (the
        stake of an operation that validators are asked to endorse).
    :param node_keys: node id -> Ed25519 key of the federation's nodes (validators and
        admitted members), for the ``node`` proof.
    :raises ProofError: naming the first proof that is missing, extra or wrong.
    """
    operation = entry.operation
    needed = POLICY[operation.kind] - gathering
    present = entry.proofs.present()
    if needed - present:
        raise ProofError(f"{operation.kind}: missing proofs: {', '.join(sorted(needed - present))}")
    if present - needed:
        raise ProofError(f"{operation.kind}: unexpected proofs: {', '.join(sorted(present - needed))}")
    challenge = Challenge(operation.digest, previous)
    requester = bytes.fromhex(operation.requester)
    proofs = entry.proofs
    if proofs.work is not None:
        verify_work(WorkProof(proofs.work.nonce), challenge, requester,
                    parameters.work_difficulty_bits)
    if proofs.time is not None:
        verify_delay(DelayProof(proofs.time.iterations, _bytes(proofs.time.output, "time"),
                                _bytes(proofs.time.proof, "time")), challenge,
                     parameters.time_vdf_iterations)
    if proofs.space is not None:
        space = proofs.space
        if plot_seeds.get(space.plot_id) != space.seed:
            raise ProofError("space: no such plot is registered to this requester")
        try:
            plot_id, seed = bytes.fromhex(space.plot_id), bytes.fromhex(space.seed)
        except ValueError:
            raise ProofError("space: plot id and seed are hex") from None
        verify_space(SpaceProof(plot_id, space.k, _bytes(space.proof, "space")), challenge,
                     owner=requester, seed=seed, k=parameters.space_plot_k)
    if proofs.node is not None:
        key = (node_keys or {}).get(proofs.node.node)
        if proofs.node.node != operation.requester or key is None:
            raise ProofError("node: the requester must be a node of the federation, and sign")
        try:
            key.verify(_bytes(proofs.node.signature, "node"),
                       node_operation_message(chain_id, previous, operation.digest))
        except InvalidSignature:
            raise ProofError("node: the signature does not verify") from None
    if proofs.stake is not None:
        stake = proofs.stake
        certificate = CommitCertificate(chain_id, stake.height, stake.round, previous,
                                        operation.digest,
                                        tuple((n, _bytes(s, "stake")) for n, s in stake.signatures),
                                        tuple((n, _bytes(s, "stake")) for n, s in stake.pq_signatures))
        verify_commit(certificate, validators, chain_id=chain_id, block=previous,
                      subject=operation.digest, numerator=parameters.stake_quorum_numerator,
                      denominator=parameters.stake_quorum_denominator)


def work_part(proof: WorkProof) -> WorkPart:
    return WorkPart(nonce=proof.nonce)


def time_part(proof: DelayProof) -> TimePart:
    return TimePart(iterations=proof.iterations, output=_b64(proof.output), proof=_b64(proof.proof))


def space_part(proof: SpaceProof, seed: bytes) -> SpacePart:
    return SpacePart(plot_id=proof.plot_id.hex(), seed=seed.hex(), k=proof.k,
                     proof=_b64(proof.proof))
