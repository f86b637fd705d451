"""Consensus messages: blocks, proposals, votes, and their signatures.

Every signed message is canonical JSON under a per-kind tag; a precommit's
signed bytes are exactly a stake commit message
(:func:`trustchain.consensus.proofs.stake.commit_message` with the block's
hash as subject), so the precommits that decide a block form a
:class:`~trustchain.consensus.proofs.stake.CommitCertificate` anyone can check.
Signatures are Ed25519, plus ML-DSA-65 for validators that have an ML-DSA
key in the validator set (hybrid: both must verify).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from trustchain.canonical import canonical_json
from trustchain.consensus.proofs.stake import ValidatorStake, commit_message

NIL = b""  # a vote for no block


class VoteKind(StrEnum):
    PREVOTE = "prevote"
    PRECOMMIT = "precommit"


@dataclass(frozen=True)
class Block:
    height: int
    previous: bytes  # hash of the block at height - 1 (32 zero bytes before the first)
    proposer: str
    operations: tuple[bytes, ...] = ()
    _hash: list[bytes] = field(default_factory=list, compare=False, repr=False)

    @property
    def hash(self) -> bytes:
        """SHA-256 of the block's canonical JSON (computed once)."""
        if not self._hash:
            self._hash.append(_block_hash(self))
        return self._hash[0]


def _block_hash(block: Block) -> bytes:
    return hashlib.sha256(canonical_json({
        "tag": "trustchain/block/1", "height": block.height, "previous": block.previous.hex(),
        "proposer": block.proposer, "operations": [op.hex() for op in block.operations],
    })).digest()


def vote_message(chain_id: str, kind: VoteKind, height: int, round_: int, block: bytes) -> bytes:
    if kind is VoteKind.PRECOMMIT:
        return commit_message(chain_id, height, round_, block, block)
    return canonical_json({"tag": "trustchain/prevote/1", "chain": chain_id, "height": height,
                           "round": round_, "block": block.hex()})


def proposal_message(chain_id: str, height: int, round_: int, block: bytes,
                     valid_round: int) -> bytes:
    return canonical_json({"tag": "trustchain/proposal/1", "chain": chain_id, "height": height,
                           "round": round_, "block": block.hex(), "valid_round": valid_round})


class _SignedBytes(ABC):
    """The bytes a message's signatures cover, computed once per chain id (every
    receiver of one message asks for them)."""

    _signed: dict[str, bytes]

    @abstractmethod
    def _compute(self, chain_id: str) -> bytes:
        """The signed bytes of this message on ``chain_id``."""

    def message(self, chain_id: str) -> bytes:
        signed = self._signed.get(chain_id)
        if signed is None:
            signed = self._signed[chain_id] = self._compute(chain_id)
        return signed


@dataclass(frozen=True)
class Vote(_SignedBytes):
    kind: VoteKind
    height: int
    round: int
    block: bytes  # hash, or NIL
    sender: str
    signature: bytes = field(default=b"", compare=False)
    pq_signature: bytes = field(default=b"", compare=False, repr=False)
    _signed: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)

    def _compute(self, chain_id: str) -> bytes:
        return vote_message(chain_id, self.kind, self.height, self.round, self.block)


@dataclass(frozen=True)
class Proposal(_SignedBytes):
    height: int
    round: int
    block: Block
    valid_round: int  # -1, or the round in which the proposer saw 2/3 prevotes for it
    sender: str
    signature: bytes = field(default=b"", compare=False)
    pq_signature: bytes = field(default=b"", compare=False, repr=False)
    _signed: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)

    def _compute(self, chain_id: str) -> bytes:
        return proposal_message(chain_id, self.height, self.round, self.block.hash,
                                self.valid_round)


@dataclass(frozen=True)
class Decision:
    """A decided block with its commit certificate, sent to a validator still at that height.

    Not signed itself: the certificate's precommits (2/3 of the stake) are
    the proof, and the receiver verifies them before accepting the block.
    """

    block: Block
    round: int
    signatures: tuple[tuple[str, bytes], ...]
    sender: str
    pq_signatures: tuple[tuple[str, bytes], ...] = ()

    @property
    def height(self) -> int:
        return self.block.height


Signed = Vote | Proposal
Message = Vote | Proposal | Decision


def sign(message: Signed, key: ed25519.Ed25519PrivateKey, chain_id: str,
         pq_key: mldsa.MLDSA65PrivateKey | None = None) -> Signed:
    data = message.message(chain_id)
    signature = key.sign(data)
    pq_signature = pq_key.sign(data) if pq_key is not None else b""
    if isinstance(message, Vote):
        return Vote(message.kind, message.height, message.round, message.block, message.sender,
                    signature, pq_signature)
    return Proposal(message.height, message.round, message.block, message.valid_round,
                    message.sender, signature, pq_signature)


class SignatureCache:
    """Remembers (key, message, signature) triples that verified.

    Verification is a pure function of those bytes, so a cache changes no
    answer; the simulation shares one between all its nodes so that each
    signature is checked once (documented in docs/performance.md).
    """

    def __init__(self, limit: int = 1_000_000) -> None:
        self._verified: set[tuple[bytes, bytes, bytes]] = set()
        self._limit = limit

    def verify(self, key: ed25519.Ed25519PublicKey, key_bytes: bytes, message: bytes,
               signature: bytes) -> bool:
        fingerprint = (key_bytes, signature, message)
        if fingerprint in self._verified:
            return True
        try:
            key.verify(signature, message)
        except InvalidSignature:
            return False
        if len(self._verified) >= self._limit:
            self._verified.clear()
        self._verified.add(fingerprint)
        return True

    def verify_pq(self, key: mldsa.MLDSA65PublicKey, message: bytes, signature: bytes) -> bool:
        fingerprint = (key.public_bytes_raw(), signature, message)
        if fingerprint in self._verified:
            return True
        try:
            key.verify(signature, message)
        except InvalidSignature:
            return False
        self._verified.add(fingerprint)
        return True

    def checker(self) -> Callable[[ValidatorStake, bytes, bytes], bool]:
        """A signature check for :func:`~trustchain.consensus.proofs.stake.verify_commit`."""
        raw: dict[int, bytes] = {}

        def check(validator: ValidatorStake, message: bytes, signature: bytes) -> bool:
            key = raw.get(id(validator.public_key))
            if key is None:
                key = raw[id(validator.public_key)] = validator.public_key.public_bytes(
                    Encoding.Raw, PublicFormat.Raw)
            return self.verify(validator.public_key, key, message, signature)

        return check
