"""Proof of stake: a commit certificate, signatures by more than the quorum of the stake.

Validators sign (chain id, height, round, block hash, subject) with Ed25519,
and those with an ML-DSA-65 key also with ML-DSA-65 (both must verify);
``subject`` is what they attest: the block itself in a commit, or an
operation's digest D for that operation's stake proof (so a certificate for
one operation is worth nothing for another).  A certificate verifies when the
distinct, known validators that signed it hold strictly more than
``numerator/denominator`` of the current set's total stake (2/3 from the
genesis: with n >= 3f + 1 by stake, two such sets always share an honest
validator).  Duplicate signers, unknown signers and bad signatures are
refused outright, not skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa

from trustchain.canonical import canonical_json
from trustchain.consensus.proofs import DIGEST_SIZE, ProofError

TAG = "trustchain/stake/1"


@dataclass(frozen=True)
class ValidatorStake:
    public_key: ed25519.Ed25519PublicKey
    stake: int
    #: Where configured, the validator's ML-DSA-65 key: its votes then carry both
    #: signatures and count only if both verify (hybrid, post-quantum).
    pq_key: mldsa.MLDSA65PublicKey | None = None


@dataclass(frozen=True)
class CommitCertificate:
    chain_id: str
    height: int
    round: int
    block: bytes  # hash of the block
    subject: bytes  # what is attested (the block hash for a commit, D for an operation)
    signatures: tuple[tuple[str, bytes], ...]  # (validator node id, Ed25519 signature)
    #: (validator node id, ML-DSA-65 signature) of the validators that have an ML-DSA key.
    pq_signatures: tuple[tuple[str, bytes], ...] = ()


def commit_message(chain_id: str, height: int, round_: int, block: bytes, subject: bytes) -> bytes:
    return canonical_json({"tag": TAG, "chain": chain_id, "height": height, "round": round_,
                           "block": block.hex(), "subject": subject.hex()})


def sign_commit(key: ed25519.Ed25519PrivateKey, chain_id: str, height: int, round_: int,
                block: bytes, subject: bytes) -> bytes:
    return key.sign(commit_message(chain_id, height, round_, block, subject))


def _verify_signature(validator: ValidatorStake, message: bytes, signature: bytes) -> bool:
    try:
        validator.public_key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def verify_pq(key: mldsa.MLDSA65PublicKey, message: bytes, signature: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def verify_commit(certificate: CommitCertificate, validators: Mapping[str, ValidatorStake], *,
                  chain_id: str, block: bytes, subject: bytes, numerator: int = 2,
                  denominator: int = 3,
                  check: Callable[[ValidatorStake, bytes, bytes], bool] = _verify_signature,
                  pq_check: Callable[[mldsa.MLDSA65PublicKey, bytes, bytes], bool] | None = None,
                  ) -> int:
    """Check a certificate for ``(chain_id, block, subject)``; return the stake that signed.

    ``check(validator, message, signature)`` verifies one signature; a caller
    may pass one that remembers signatures it already verified.

    :raises ProofError: for another chain, block or subject, an unknown or
        repeated signer, a bad signature, or too little stake.
    """
    if certificate.chain_id != chain_id:
        raise ProofError("stake: a certificate of another chain")
    if certificate.block != block or len(block) != DIGEST_SIZE:
        raise ProofError("stake: a certificate for another block")
    if certificate.subject != subject:
        raise ProofError("stake: a certificate for another subject")
    if certificate.height < 0 or certificate.round < 0:
        raise ProofError("stake: negative height or round")
    pq_check = pq_check or verify_pq
    message = commit_message(chain_id, certificate.height, certificate.round, block, subject)
    pq = dict(certificate.pq_signatures)
    if len(pq) != len(certificate.pq_signatures):
        raise ProofError("stake: a validator's ML-DSA signature is listed twice")
    seen: set[str] = set()
    signed = 0
    for node_id, signature in certificate.signatures:
        if node_id in seen:
            raise ProofError(f"stake: validator {node_id} signed twice")
        seen.add(node_id)
        validator = validators.get(node_id)
        if validator is None:
            raise ProofError(f"stake: {node_id} is not a validator of the current set")
        if not check(validator, message, signature):
            raise ProofError(f"stake: the signature of {node_id} does not verify")
        if validator.pq_key is not None and not pq_check(validator.pq_key, message,
                                                         pq.get(node_id, b"")):
            raise ProofError(f"stake: the ML-DSA-65 signature of {node_id} is missing or wrong")
        signed += validator.stake
    total = sum(v.stake for v in validators.values())
    if signed * denominator <= total * numerator:
        raise ProofError(f"stake: signers hold {signed} of {total}; more than "
                         f"{numerator}/{denominator} is required")
    return signed
