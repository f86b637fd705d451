"""The replicated state the consensus orders, and the application the state machine asks.

Pure: :class:`Ledger` is a :class:`~trustchain.consensus.tendermint.BlockSource`.
It proposes the operations waiting in its pool (plus any the caller's
``maker`` builds for the block being proposed), accepts a block only if
every operation is well formed, carries exactly the proofs :data:`POLICY`
asks for and each verifies against the block it extends, and applies
decided blocks: admitted nodes, registered networks and plots, validator
stakes, the proofs' parameters (``federation-config``), CT checkpoints
(recorded for the distribution code), and evidence, which removes the
offender from the validator set from the next height on (its stake is
slashed to nothing).  The federation's zones and CA are an
:class:`Application` beside it (:mod:`trustchain.wiring.federation`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric import ed25519
from pydantic import ValidationError

from trustchain.consensus.admission import MAX_STAKE, admitted_validator, check_admission, keys_of
from trustchain.consensus.evidence import EvidenceError, evidence_from_body
from trustchain.consensus.messages import Block
from trustchain.consensus.operations import (
    POLICY,
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

#: Operations a block carries at most, and their bytes at most (a proposal carries the
#: block whole, within a stoq/1 message; see transport.consensus).
MAX_OPERATIONS = 1000
#: 256 KiB: hex in a proposal, and base64 of that in a catch-up answer, with a commit
#: certificate of 16 hybrid signatures, stay within stoq/1's default 1 MiB message.
MAX_BLOCK_BYTES = 256 * 1024
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_REGISTRATION_FIELDS = frozenset({"name", "delegate", "ds", "prefixes"})
#: Proofs may answer any of the last this many committed blocks (``ProofBundle.anchor``).
ANCHOR_WINDOW = 1000
#: What a ``federation-config`` operation may change: the cost of the proofs.  The stake
#: quorum stays the genesis's (Tendermint's safety rests on it).
CONFIGURABLE = frozenset({"work_difficulty_bits", "time_vdf_iterations", "space_plot_k"})
#: The kinds the ledger applies itself (the others need an :class:`Application`).
_OWN_KINDS = frozenset({
    OperationKind.NODE_ADMISSION, OperationKind.NETWORK_REGISTRATION,
    OperationKind.PLOT_REGISTRATION, OperationKind.VALIDATOR_CHANGE,
    OperationKind.FEDERATION_CONFIG, OperationKind.CT_CHECKPOINT, OperationKind.EVIDENCE,
    OperationKind.LOG_FORK})
#: The block hash before the first block.
GENESIS_HASH = bytes(32)


def _claim(operation: Operation) -> tuple[str, str] | None:
    """What an operation takes that no other operation of the same block may take too
    (each is checked against the ledger before the block, not after the one before it)."""
    body = operation.body
    if operation.kind is OperationKind.NETWORK_REGISTRATION:
        return ("network", str(body.get("name")))
    if operation.kind is OperationKind.NODE_ADMISSION:
        return ("node", str(body.get("node")))
    if operation.kind is OperationKind.VALIDATOR_CHANGE:
        return ("validator", str(body.get("node_id")))
    if operation.kind is OperationKind.FEDERATION_CONFIG:
        return ("configuration", "")
    if operation.kind in (OperationKind.NODE_DNS, OperationKind.NODE_LEAVE):
        return ("node-dns", operation.requester)  # what a node is in the zones: one a block
    if operation.kind in (OperationKind.DNSKEY_SIGNATURES, OperationKind.NODE_LOGS):
        return (operation.kind.value, operation.requester)
    return None


class Application(Protocol):
    """Replicated state kept beside the ledger's own (the federation's zones): checked and
    applied in block order like the rest, pure and deterministic."""

    #: The kinds it takes part in (it is also told of the ones the ledger applies itself).
    kinds: frozenset[OperationKind]

    def check(self, operation: Operation, validators: Mapping[str, ValidatorStake]) -> None:
        """:raises ProofError: naming why ``operation`` may not go in a block (``validators``:
        the set as of the state it is checked against, for what weighs stake)."""
        ...

    def apply(self, operation: Operation, height: int,
              validators: Mapping[str, ValidatorStake]) -> None: ...


class Ledger:
    def __init__(self, chain_id: str, validators: Mapping[str, ValidatorStake],
                 parameters: ProofParameters,
                 maker: Callable[[int, bytes], list[Entry]] | None = None,
                 application: Application | None = None) -> None:
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
        #: Nodes admitted by consensus: node id -> the admission's body (keys, address, stake).
        self.members: dict[str, dict[str, Any]] = {}
        #: CT checkpoints to cosign (log -> body): recorded here for the distribution code.
        self.checkpoints: dict[str, dict[str, Any]] = {}
        #: Digests of the anchored operations committed within the anchor window: their
        #: proofs would verify again, so a second copy must be refused by digest.
        self.recent: dict[bytes, int] = {}
        self.pool: dict[bytes, Entry] = {}
        #: Until the next commit: verdicts on proposed blocks (by hash), decoded entries.
        self._verdicts: dict[bytes, bool] = {}
        self._decoded: dict[bytes, Entry] = {}
        self._maker = maker
        self.application = application

    def submit(self, entry: Entry) -> None:
        """Queue an operation for the next block this validator proposes."""
        self.pool.setdefault(entry.operation.digest, entry)

    # --- BlockSource -----------------------------------------------------------------

    def pending(self) -> bool:
        return bool(self.pool) or self._maker is not None

    def propose(self, height: int, previous: bytes) -> tuple[bytes, ...]:
        made = self._maker(height, previous) if self._maker else []
        entries = list(made)
        claimed = {_claim(e.operation) for e in made}
        size = sum(len(e.encode()) for e in made)
        for entry in list(self.pool.values()):
            if len(entries) >= MAX_OPERATIONS:
                break
            claim = _claim(entry.operation)
            if claim is not None and claim in claimed:
                continue  # a rival for the same name or node waits for the next block
            try:
                self._check(entry, previous)
            except (ProofError, EvidenceError):  # stale (e.g. its offender is already gone)
                del self.pool[entry.operation.digest]
                continue
            raw = entry.encode()
            if size + len(raw) > MAX_BLOCK_BYTES:
                break
            size += len(raw)
            claimed.add(claim)
            entries.append(entry)
        return tuple(e.encode() for e in entries)

    def valid(self, block: Block) -> bool:
        """Whether every operation of ``block`` may be applied, in order.  The verdict is
        kept until the next commit: a validator is asked about one proposed block several
        times a height (the proposal, the lock, the decision), and it cannot change before
        the ledger does."""
        verdict = self._verdicts.get(block.hash)
        if verdict is None:
            verdict = self._verdicts[block.hash] = self._valid(block)
        return verdict

    def _valid(self, block: Block) -> bool:
        if len(block.operations) > MAX_OPERATIONS or \
                sum(map(len, block.operations)) > MAX_BLOCK_BYTES:
            return False
        seen: set[bytes] = set()
        claimed: set[tuple[str, str]] = set()
        try:
            for raw in block.operations:
                entry = self._decoded.get(raw) or decode_entry(raw)
                self._decoded[raw] = entry
                claim = _claim(entry.operation)
                if entry.operation.digest in seen or (claim is not None and claim in claimed):
                    return False
                seen.add(entry.operation.digest)
                if claim is not None:
                    claimed.add(claim)
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
        horizon = block.height - ANCHOR_WINDOW - 1
        if self.recent and min(self.recent.values()) < horizon:
            self.recent = {d: h for d, h in self.recent.items() if h >= horizon}
        decoded, self._decoded, self._verdicts = self._decoded, {}, {}
        for raw in block.operations:
            entry = decoded.get(raw) or decode_entry(raw)
            self.pool.pop(entry.operation.digest, None)
            self._apply(entry.operation)
            if entry.proofs.anchor is not None:
                self.recent[entry.operation.digest] = block.height
        return self.validators if self.validators != before else None

    def check(self, entry: Entry) -> None:
        """Whether ``entry`` could go in the next block, as validators will check it.

        :raises ProofError: naming what is wrong.
        """
        self._check(entry, self.hashes[self.height])

    def endorsable(self, entry: Entry) -> tuple[int, bytes]:
        """Check ``entry`` as :meth:`check` does but for its stake proof, which validators
        are being asked for; the anchor (height, block hash) their signatures must name.

        :raises ProofError: naming what is wrong (also for an operation without an anchor
            or whose kind needs no endorsement).
        """
        anchor = entry.proofs.anchor
        if anchor is None or "stake" not in POLICY[entry.operation.kind]:
            raise ProofError(f"{entry.operation.kind}: nothing for validators to endorse "
                             "(an operation whose policy asks for stake, with an anchor)")
        if entry.proofs.stake is not None:
            raise ProofError("endorse: the operation already carries its stake proof")
        self._check(entry, self.hashes[self.height], gathering=frozenset({"stake"}))
        return anchor, self.hashes[anchor]

    # --- rules -------------------------------------------------------------------------

    def _check(self, entry: Entry, previous: bytes, gathering: frozenset[str] = frozenset()) -> None:
        operation = entry.operation
        body = operation.body
        anchor = entry.proofs.anchor
        if anchor is not None:
            bound = self.hashes.get(anchor)
            if bound is None or anchor > self.height:
                raise ProofError(f"proofs answer block {anchor}, which is not among the last "
                                 f"{ANCHOR_WINDOW} committed (now {self.height})")
            previous = bound
        if entry.proofs.node is not None and anchor is None:
            raise ProofError(f"{operation.kind}: a node's operation names its anchor block")
        verify_entry(entry, previous=previous, parameters=self.parameters,
                     validators=self.validators, chain_id=self.chain_id,
                     plot_seeds=self.plots.get(operation.requester, {}), gathering=gathering,
                     node_keys=self.node_keys() if entry.proofs.node is not None else None)
        stake = entry.proofs.stake
        if stake is not None and anchor is not None and stake.height != anchor:
            raise ProofError(f"stake: signatures for block {stake.height}, the proofs answer "
                             f"block {anchor}")
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
            check_admission(body, requester=operation.requester, chain_id=self.chain_id,
                            members=self.members, validators=self.validators)
            if body["node"] in self.slashed:
                raise ProofError(f"node-admission: node {body['node']} was removed for "
                                 "equivocating")
        elif operation.kind is OperationKind.CT_CHECKPOINT:
            if not isinstance(body.get("log"), str):
                raise ProofError(f"{operation.kind}: names its log")
        elif operation.kind is OperationKind.LOG_FORK:
            # The evidence itself is the application's to check (the logs are its state).
            if not isinstance(body.get("operator"), str):
                raise ProofError(f"{operation.kind}: names the log's operator")
        elif operation.kind is OperationKind.VALIDATOR_CHANGE:
            self._check_change(body)
        elif operation.kind is OperationKind.FEDERATION_CONFIG:
            self._configured(body)
        application = self.application
        if application is not None and operation.kind in application.kinds:
            application.check(operation, self.validators)
        elif operation.kind not in _OWN_KINDS:
            raise ProofError(f"{operation.kind}: not taken by this federation")
        if anchor is not None and operation.digest in self.recent:
            raise ProofError(f"{operation.kind}: this very operation was committed at height "
                             f"{self.recent[operation.digest]}")

    def node_keys(self) -> dict[str, ed25519.Ed25519PublicKey]:
        """The Ed25519 key of every node of the federation (validators, admitted members),
        slashed nodes excepted."""
        keys = {node: v.public_key for node, v in self.validators.items()}
        for node, body in self.members.items():
            if node not in keys and node not in self.slashed:
                keys[node] = keys_of(body)[0]
        return keys

    def _configured(self, body: dict[str, Any]) -> ProofParameters:
        """The proof parameters a ``federation-config`` operation sets.

        :raises ProofError: unless it changes some of :data:`CONFIGURABLE` to valid values.
        """
        changes = body.get("parameters")
        if set(body) != {"parameters"} or not isinstance(changes, dict) or not changes \
                or set(changes) - CONFIGURABLE:
            raise ProofError("federation-config: parameters to change, among "
                             f"{', '.join(sorted(CONFIGURABLE))}")
        try:
            configured = ProofParameters.model_validate(
                {**self.parameters.model_dump(), **changes})
        except ValidationError as exc:
            raise ProofError(f"federation-config: {exc.errors()[0]['msg']}") from None
        if configured == self.parameters:
            raise ProofError("federation-config: the parameters are so already")
        return configured

    def _check_change(self, body: dict[str, Any]) -> None:
        node_id, stake = body.get("node_id"), body.get("stake")
        if set(body) != {"node_id", "stake"} or not isinstance(node_id, str) \
                or not isinstance(stake, int) or not 0 <= stake <= MAX_STAKE:
            raise ProofError(f"validator-change: node_id and a stake of 0 to {MAX_STAKE}")
        if node_id not in self.validators and node_id not in self.members:
            raise ProofError(f"validator-change: {node_id} is neither a validator nor an "
                             "admitted node (a node joins first: trustchain join)")
        if node_id in self.slashed:
            raise ProofError(f"validator-change: {node_id} was removed for equivocating")
        if stake == 0 and node_id not in self.validators:
            raise ProofError(f"validator-change: {node_id} is not a validator")
        if stake == 0 and len(self.validators) == 1:
            raise ProofError("validator-change: the federation's last validator stays")

    def _apply(self, operation: Operation) -> None:
        body = operation.body
        if operation.kind in (OperationKind.EVIDENCE, OperationKind.LOG_FORK):
            # A double vote, or a log of its that signed a split view: the node is removed.
            offender = (evidence_from_body(body).offender if operation.kind
                        is OperationKind.EVIDENCE else str(body["operator"]))
            if offender in self.validators and len(self.validators) > 1:
                del self.validators[offender]
                self.slashed.add(offender)
        elif operation.kind is OperationKind.NETWORK_REGISTRATION:
            self.networks[body["name"]] = dict(body)
        elif operation.kind is OperationKind.PLOT_REGISTRATION:
            self.plots.setdefault(operation.requester, {})[body["plot_id"]] = body["seed"]
        elif operation.kind is OperationKind.NODE_ADMISSION:
            self.members[body["node"]] = dict(body)
            validator = admitted_validator(body)
            if validator is not None:  # from the next height: the set changes after this block
                self.validators[body["node"]] = validator
        elif operation.kind is OperationKind.CT_CHECKPOINT:
            self.checkpoints[body["log"]] = dict(body)
        elif operation.kind is OperationKind.FEDERATION_CONFIG:
            # Operations in later blocks are checked against these (those made for the
            # old ones and still waiting are dropped from the pool as they fail).
            self.parameters = self._configured(body)
        elif operation.kind is OperationKind.VALIDATOR_CHANGE:
            node_id, stake = body["node_id"], body["stake"]
            if stake == 0:
                self.validators.pop(node_id, None)
            elif node_id in self.validators:
                self.validators[node_id] = replace(self.validators[node_id], stake=stake)
            else:  # an admitted node, with the keys it was admitted with
                ed, ml = keys_of(self.members[node_id])
                self.validators[node_id] = ValidatorStake(ed, stake, ml)
        if self.application is not None and operation.kind in self.application.kinds:
            self.application.apply(operation, self.height, self.validators)

