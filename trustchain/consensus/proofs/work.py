"""Proof of work: hashcash bound to the operation, the requester and the latest block.

``SHA-256(tag ‖ B ‖ D ‖ requester ‖ nonce)`` must begin with at least ``d``
zero bits; ``d`` comes from the genesis parameters.  Expected cost: ``2**d``
hashes to find, one to check.
"""

from __future__ import annotations

from dataclasses import dataclass

from trustchain.consensus.proofs import Challenge, ProofError

TAG = b"trustchain/work/1"
MAX_REQUESTER = 64
MAX_BITS = 64


@dataclass(frozen=True)
class WorkProof:
    nonce: int  # 0 .. 2**64 - 1


def work_hash(challenge: Challenge, requester: bytes, nonce: int) -> bytes:
    return challenge.derive(TAG, requester, nonce.to_bytes(8, "big"))


def leading_zero_bits(digest: bytes) -> int:
    value = int.from_bytes(digest, "big")
    return len(digest) * 8 - value.bit_length()


def solve_work(challenge: Challenge, requester: bytes, bits: int, start: int = 0) -> WorkProof:
    """Search nonces from ``start`` until one meets ``bits`` (2**bits tries on average)."""
    if not 0 <= bits <= MAX_BITS:
        raise ValueError(f"difficulty must be 0..{MAX_BITS} bits")
    nonce = start
    while leading_zero_bits(work_hash(challenge, requester, nonce)) < bits:
        nonce += 1
        if nonce >= 2**64:
            nonce = 0
    return WorkProof(nonce)


def verify_work(proof: WorkProof, challenge: Challenge, requester: bytes, bits: int) -> None:
    """:raises ProofError: unless the proof meets ``bits`` for this challenge and requester."""
    if not 0 <= proof.nonce < 2**64:
        raise ProofError("work: the nonce is not a 64-bit unsigned integer")
    if not 1 <= len(requester) <= MAX_REQUESTER:
        raise ProofError("work: bad requester identifier")
    found = leading_zero_bits(work_hash(challenge, requester, proof.nonce))
    if found < bits:
        raise ProofError(f"work: {found} leading zero bits, {bits} required")
