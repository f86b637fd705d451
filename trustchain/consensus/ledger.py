"""The replicated state the consensus orders, and the application the state machine asks.

Pure: :class:`Ledger` is a :class:`~trustchain.consensus.tendermint.BlockSource`.
It proposes the operations waiting in its pool (plus any the caller's
``maker`` builds for the block being proposed), accepts a block only if
every operation is well formed, carries exactly the proofs :data:`POLICY`
asks for and each verifies against the block it extends, and applies
decided blocks: admitted nodes, registered networks and plots, validator
stakes, agreed CA intermediates and CT checkpoints (recorded for the CA and
distribution code), and evidence, which removes the offender from the
validator set from the next height on (its stake is slashed to nothing).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from trustchain.consensus.evidence import EvidenceError, evidence_from_body
from trustchain.consensus.messages import Block
from trustchain.consensus.operations import (
    Entry,
    Operation,
    OperationKind,
    decode_entry,
    verify_entry,
)
from trustchain.consensus.parameters import ProofParameters
from trustchain.consensus.proofs import ProofError
from trustchain.consensus.proofs.space import plot_id_for
from trustchain.consensus.proofs.stake import ValidatorStake

MAX_OPERATIONS = 100
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_REGISTRATION_FIELDS = frozenset({"name", "delegate", "ds", "prefixes"})
#: Proofs may answer any of the last this many committed blocks (``ProofBundle.anchor``).
ANCHOR_WINDOW = 1000
#: The block hash before the first block.
GENESIS_HASH = bytes(32)


class Ledger:
    def __init__(self, chain_id: str, validators: Mapping[str, ValidatorStake],
                 parameters: ProofParameters,
                 maker: Callable[[int, bytes], list[Entry]] | None = None) -> None:
        self.chain_id = chain_id
        self.validators = dict(validators)
        self.parameters = parameters
        #: Registered networks: name -> the registration's body (delegation, DS, prefixes).
        self.networks: dict[str, dict[str, Any]] = {}
        #: Last committed height, and the hashes of the last ANCHOR_WINDOW blocks.
        self.height = 0
        self.hashes: dict[int, bytes] = {0: GENESIS_HASH}
        #: requester (hex) -> plot id (hex) -> seed (hex)
        self.plots: dict[str, dict[str, str]] = {}
        self.slashed: set[str] = set()
        #: Admitted nodes: node name -> requester (hex).
        self.members: dict[str, str] = {}
        #: Agreed CA intermediates (network -> the operation's body) and CT checkpoints to
        #: cosign (log -> body): recorded here for the CA and distribution code to act on.
        self.intermediates: dict[str, dict[str, Any]] = {}
        self.checkpoints: dict[str, dict[str, Any]] = {}
        self.pool: dict[bytes, Entry] = {}
        self._maker = maker

    def submit(self, entry: Entry) -> None:
        """Queue an operation for the next block this validator proposes."""
        self.pool.setdefault(entry.operation.digest, entry)

    # --- BlockSource -----------------------------------------------------------------

    def pending(self) -> bool:
        return bool(self.pool) or self._maker is not None

    def propose(self, height: int, previous: bytes) -> tuple[bytes, ...]:
        made = self._maker(height, previous) if self._maker else []
        pooled = []
        for entry in list(self.pool.values()):
            try:
                self._check(entry, previous)
            except (ProofError, EvidenceError):  # stale (e.g. its offender is already gone)
                del self.pool[entry.operation.digest]
                continue
            pooled.append(entry)
        entries = [*made, *pooled][:MAX_OPERATIONS]
        return tuple(e.encode() for e in entries)

    def valid(self, block: Block) -> bool:
        if len(block.operations) > MAX_OPERATIONS:
            return False
        seen: set[bytes] = set()
        try:
            for raw in block.operations:
                entry = decode_entry(raw)
                if entry.operation.digest in seen:
                    return False
                seen.add(entry.operation.digest)
                self._check(entry, block.previous)
        except (ProofError, EvidenceError):
            return False
        return True

    def committed(self, block: Block) -> Mapping[str, ValidatorStake] | None:
        """Apply a decided block; the new validator set if it changed."""
        before = dict(self.validators)
        self.height = block.height
        self.hashes[block.height] = block.hash
        self.hashes.pop(block.height - ANCHOR_WINDOW - 1, None)
        for raw in block.operations:
            entry = decode_entry(raw)
            self.pool.pop(entry.operation.digest, None)
            self._apply(entry.operation)
        return self.validators if self.validators != before else None

    def check(self, entry: Entry) -> None:
        """Whether ``entry`` could go in the next block, as validators will check it.

        :raises ProofError: naming what is wrong.
        """
        self._check(entry, self.hashes[self.height])

    # --- rules -------------------------------------------------------------------------

    def _check(self, entry: Entry, previous: bytes) -> None:
        operation = entry.operation
        body = operation.body
        anchor = entry.proofs.anchor
        if anchor is not None:
            bound = self.hashes.get(anchor)
            if bound is None or anchor > self.height:
                raise ProofError(f"proofs answer block {anchor}, which is not among the last "
                                 f"{ANCHOR_WINDOW} committed (now {self.height})")
            previous = bound
        verify_entry(entry, previous=previous, parameters=self.parameters,
                     validators=self.validators, chain_id=self.chain_id,
                     plot_seeds=self.plots.get(operation.requester, {}))
        if operation.kind is OperationKind.EVIDENCE:
            evidence = evidence_from_body(body)
            evidence.verify(self.chain_id, self.validators)  # offender still a validator
        elif operation.kind is OperationKind.NETWORK_REGISTRATION:
            name = body.get("name")
            if not isinstance(name, str) or not _LABEL.fullmatch(name) or name in self.networks:
                raise ProofError("network-registration: a new network name (one DNS label) "
                                 "is required")
            if set(body) - _REGISTRATION_FIELDS or any(
                    not isinstance(body.get(f, []), list) or len(body.get(f, [])) > 16
                    or not all(isinstance(v, str) and len(v) <= 512 for v in body.get(f, []))
                    for f in _REGISTRATION_FIELDS - {"name"}):
                raise ProofError("network-registration: name, and lists of at most 16 strings "
                                 "for delegate, ds and prefixes")
        elif operation.kind is OperationKind.PLOT_REGISTRATION:
            try:
                seed, plot_id = bytes.fromhex(body["seed"]), body["plot_id"]
            except (KeyError, TypeError, ValueError):
                raise ProofError("plot-registration: plot_id and seed (hex)") from None
            if plot_id_for(bytes.fromhex(operation.requester), seed).hex() != plot_id:
                raise ProofError("plot-registration: the plot id is not the requester's")
        elif operation.kind is OperationKind.NODE_ADMISSION:
            if not isinstance(body.get("node"), str) or body["node"] in self.members:
                raise ProofError("node-admission: a new node name is required")
        elif operation.kind in (OperationKind.CA_INTERMEDIATE, OperationKind.CT_CHECKPOINT):
            subject = "network" if operation.kind is OperationKind.CA_INTERMEDIATE else "log"
            if not isinstance(body.get(subject), str):
                raise ProofError(f"{operation.kind}: names its {subject}")
        elif operation.kind is OperationKind.VALIDATOR_CHANGE:
            stake = body.get("stake")
            if not isinstance(stake, int) or stake < 0 or not isinstance(body.get("node_id"), str):
                raise ProofError("validator-change: node_id and a stake >= 0")
            if stake and body["node_id"] not in self.validators:
                try:
                    ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(body["ed25519"]))
                except (KeyError, TypeError, ValueError):
                    raise ProofError("validator-change: a new validator needs its ed25519 key "
                                     "(32 bytes, hex)") from None

    def _apply(self, operation: Operation) -> None:
        body = operation.body
        if operation.kind is OperationKind.EVIDENCE:
            offender = evidence_from_body(body).offender
            if offender in self.validators and len(self.validators) > 1:
                del self.validators[offender]
                self.slashed.add(offender)
        elif operation.kind is OperationKind.NETWORK_REGISTRATION:
            self.networks[body["name"]] = dict(body)
        elif operation.kind is OperationKind.PLOT_REGISTRATION:
            self.plots.setdefault(operation.requester, {})[body["plot_id"]] = body["seed"]
        elif operation.kind is OperationKind.NODE_ADMISSION:
            self.members[body["node"]] = operation.requester
        elif operation.kind is OperationKind.CA_INTERMEDIATE:
            self.intermediates[body["network"]] = dict(body)
        elif operation.kind is OperationKind.CT_CHECKPOINT:
            self.checkpoints[body["log"]] = dict(body)
        elif operation.kind is OperationKind.VALIDATOR_CHANGE:
            node_id, stake = body["node_id"], body["stake"]
            if stake == 0:
                self.validators.pop(node_id, None)
            else:
                key = self.validators[node_id].public_key if node_id in self.validators else \
                    ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(body["ed25519"]))
                self.validators[node_id] = ValidatorStake(key, stake)

