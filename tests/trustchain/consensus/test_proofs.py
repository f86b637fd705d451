"""The four proofs: each verifies when honest, and every forged field is rejected.

Random forgeries are drawn by hypothesis with a fixed seed (derandomize): a
forged work proof has a 2**-16 chance of meeting 16 bits by luck, and a
test must not depend on luck.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from trustchain.consensus.proofs import Challenge, ProofError
from trustchain.consensus.proofs.delay import DelayProof, prove_delay, verify_delay
from trustchain.consensus.proofs.space import (
    SpaceProof,
    create_plot,
    plot_id_for,
    prove_space,
    verify_space,
)
from trustchain.consensus.proofs.stake import (
    CommitCertificate,
    ValidatorStake,
    sign_commit,
    verify_commit,
)
from trustchain.consensus.proofs.work import leading_zero_bits, solve_work, verify_work

D = hashlib.sha256(b"register network alpha").digest()
B = hashlib.sha256(b"block 41").digest()
CHALLENGE = Challenge(D, B)
REQUESTER = bytes.fromhex("00112233445566778899aabbccddeeff")
hashes = st.binary(min_size=32, max_size=32)
fixed = settings(derandomize=True, max_examples=60, deadline=None)


# --- work ---------------------------------------------------------------------------------

BITS = 16


@pytest.fixture(scope="module")
def work():
    return solve_work(CHALLENGE, REQUESTER, BITS)


def test_work_verifies(work) -> None:
    verify_work(work, CHALLENGE, REQUESTER, BITS)


@fixed
@given(digest=hashes, block=hashes, requester=st.binary(min_size=1, max_size=64),
       nonce=st.integers(0, 2**64 - 1))
def test_forged_work_is_rejected(work, digest: bytes, block: bytes, requester: bytes,
                                 nonce: int) -> None:
    for challenge, who, proof in ((Challenge(digest, B), REQUESTER, work),
                                  (Challenge(D, block), REQUESTER, work),
                                  (CHALLENGE, requester, work),
                                  (CHALLENGE, REQUESTER, replace(work, nonce=nonce))):
        if (challenge, who, proof) == (CHALLENGE, REQUESTER, work):
            continue
        with pytest.raises(ProofError, match="work:"):
            verify_work(proof, challenge, who, BITS)


def test_work_needs_enough_bits(work) -> None:
    with pytest.raises(ProofError, match="required"):
        verify_work(work, CHALLENGE, REQUESTER, 40)
    for bad in (-1, 2**64):
        with pytest.raises(ProofError, match="64-bit"):
            verify_work(replace(work, nonce=bad), CHALLENGE, REQUESTER, BITS)
    assert leading_zero_bits(b"\x00\x0f" + b"\xff" * 30) == 12


# --- time ---------------------------------------------------------------------------------

T = 1_000


@pytest.fixture(scope="module")
def delay() -> DelayProof:
    return prove_delay(CHALLENGE, T)


def test_delay_verifies(delay: DelayProof) -> None:
    verify_delay(delay, CHALLENGE, T)


def test_delay_for_another_challenge_or_count_is_rejected(delay: DelayProof) -> None:
    with pytest.raises(ProofError, match="iterations"):
        verify_delay(delay, CHALLENGE, T + 1)
    with pytest.raises(ProofError, match="does not verify"):  # relabelled: the math says no
        verify_delay(replace(delay, iterations=T + 1), CHALLENGE, T + 1)
    for other in (Challenge(hashlib.sha256(D).digest(), B), Challenge(D, hashlib.sha256(B).digest())):
        with pytest.raises(ProofError, match="time:"):
            verify_delay(delay, other, T)


def test_every_single_bit_flip_of_a_delay_proof_is_rejected(delay: DelayProof) -> None:
    """Including the high bits of the last byte, which chiavdf itself ignores."""
    blob = delay.output + delay.proof
    for position in range(len(blob)):
        for bit in range(8):
            flipped = bytearray(blob)
            flipped[position] ^= 1 << bit
            forged = replace(delay, output=bytes(flipped[:100]), proof=bytes(flipped[100:]))
            with pytest.raises(ProofError, match="time:"):
                verify_delay(forged, CHALLENGE, T)


@fixed
@given(output=st.binary(max_size=120), proof=st.binary(max_size=120))
def test_arbitrary_delay_bytes_are_rejected_cleanly(output: bytes, proof: bytes) -> None:
    with pytest.raises(ProofError, match="time:"):
        verify_delay(DelayProof(T, output, proof), CHALLENGE, T)


# --- space --------------------------------------------------------------------------------

K = 19
SEED = b"plot seed 1"


@pytest.fixture(scope="module")
def plot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return create_plot(tmp_path_factory.mktemp("plots"), REQUESTER, SEED, K)


@pytest.fixture(scope="module")
def answered(plot: Path) -> tuple[Challenge, SpaceProof]:
    """The first operation digest for which the plot holds a proof (about one in two)."""
    for i in range(64):
        challenge = Challenge(hashlib.sha256(b"op %d" % i).digest(), B)
        proof = prove_space(plot, challenge)
        if proof is not None:
            return challenge, proof
    raise AssertionError("no proof in 64 challenges")


def test_space_verifies(answered: tuple[Challenge, SpaceProof]) -> None:
    challenge, proof = answered
    assert proof.plot_id == plot_id_for(REQUESTER, SEED) and proof.k == K
    verify_space(proof, challenge, owner=REQUESTER, seed=SEED, k=K)


def test_space_proof_for_another_owner_plot_or_size_is_rejected(
    answered: tuple[Challenge, SpaceProof]
) -> None:
    challenge, proof = answered
    for kwargs, message in (({"owner": b"someone else", "seed": SEED, "k": K}, "registered"),
                            ({"owner": REQUESTER, "seed": b"other seed", "k": K}, "registered"),
                            ({"owner": REQUESTER, "seed": SEED, "k": K + 1}, "required")):
        with pytest.raises(ProofError, match=message):
            verify_space(proof, challenge, **kwargs)  # type: ignore[arg-type]


def test_space_proof_for_another_challenge_is_rejected(
    answered: tuple[Challenge, SpaceProof]
) -> None:
    challenge, proof = answered
    for other in (Challenge(hashlib.sha256(challenge.digest).digest(), B),
                  Challenge(challenge.digest, hashlib.sha256(B).digest())):
        with pytest.raises(ProofError, match="does not verify"):
            verify_space(proof, other, owner=REQUESTER, seed=SEED, k=K)


@fixed
@given(position=st.integers(0, 8 * K - 1), bit=st.integers(0, 7))
def test_a_flipped_bit_in_a_space_proof_is_rejected(
    answered: tuple[Challenge, SpaceProof], position: int, bit: int
) -> None:
    challenge, proof = answered
    flipped = bytearray(proof.proof)
    flipped[position] ^= 1 << bit
    with pytest.raises(ProofError, match="space:"):
        verify_space(replace(proof, proof=bytes(flipped)), challenge, owner=REQUESTER,
                     seed=SEED, k=K)


@fixed
@given(blob=st.binary(max_size=200))
def test_arbitrary_space_bytes_are_rejected(answered: tuple[Challenge, SpaceProof],
                                            blob: bytes) -> None:
    challenge, proof = answered
    with pytest.raises(ProofError, match="space:"):
        verify_space(replace(proof, proof=blob), challenge, owner=REQUESTER, seed=SEED, k=K)


# --- stake --------------------------------------------------------------------------------

KEYS = {f"v{i}": ed25519.Ed25519PrivateKey.generate() for i in range(4)}
CHAIN = "testnet"


def validators(stakes: dict[str, int]) -> dict[str, ValidatorStake]:
    return {n: ValidatorStake(KEYS[n].public_key(), s) for n, s in stakes.items()}


def certificate(signers: list[str], *, subject: bytes = D, height: int = 42,
                round_: int = 0) -> CommitCertificate:
    return CommitCertificate(CHAIN, height, round_, B, subject, tuple(
        (n, sign_commit(KEYS[n], CHAIN, height, round_, B, subject)) for n in signers))


EQUAL = validators({"v0": 1, "v1": 1, "v2": 1, "v3": 1})


def test_more_than_two_thirds_of_the_stake_commits() -> None:
    assert verify_commit(certificate(["v0", "v1", "v2"]), EQUAL, chain_id=CHAIN, block=B,
                         subject=D) == 3
    with pytest.raises(ProofError, match="more than 2/3"):
        verify_commit(certificate(["v0", "v1"]), EQUAL, chain_id=CHAIN, block=B, subject=D)
    # By stake, not by head count: 10 of 13 is more than 2/3, 3 of 13 is not.
    weighted = validators({"v0": 10, "v1": 1, "v2": 1, "v3": 1})
    assert verify_commit(certificate(["v0"]), weighted, chain_id=CHAIN, block=B, subject=D) == 10
    with pytest.raises(ProofError, match="more than 2/3"):
        verify_commit(certificate(["v1", "v2", "v3"]), weighted, chain_id=CHAIN, block=B,
                      subject=D)


def test_exactly_two_thirds_is_not_enough() -> None:
    six = {f"v{i}": 1 for i in range(3)} | {"v3": 3}
    with pytest.raises(ProofError, match="more than 2/3"):  # 4 of 6 == 2/3 exactly
        verify_commit(certificate(["v0", "v3"]), validators(six), chain_id=CHAIN, block=B,
                      subject=D)


def test_duplicated_unknown_and_bad_signers_are_rejected() -> None:
    good = certificate(["v0", "v1"])
    doubled = replace(good, signatures=good.signatures + good.signatures[:1])
    with pytest.raises(ProofError, match="signed twice"):
        verify_commit(doubled, EQUAL, chain_id=CHAIN, block=B, subject=D)
    outsider = certificate(["v0", "v1", "v2"])
    with pytest.raises(ProofError, match="not a validator"):
        verify_commit(outsider, validators({"v0": 1, "v1": 1, "v3": 1}), chain_id=CHAIN,
                      block=B, subject=D)
    swapped = replace(outsider, signatures=(outsider.signatures[0],
                                            ("v1", outsider.signatures[2][1]),
                                            outsider.signatures[2]))
    with pytest.raises(ProofError, match="does not verify"):
        verify_commit(swapped, EQUAL, chain_id=CHAIN, block=B, subject=D)


@fixed
@given(other=hashes, height=st.integers(0, 2**40), round_=st.integers(0, 100))
def test_a_certificate_proves_only_what_was_signed(other: bytes, height: int,
                                                   round_: int) -> None:
    cert = certificate(["v0", "v1", "v2"])
    if other != D:
        with pytest.raises(ProofError, match="another subject"):
            verify_commit(cert, EQUAL, chain_id=CHAIN, block=B, subject=other)
    if other != B:
        with pytest.raises(ProofError, match="another block"):
            verify_commit(cert, EQUAL, chain_id=CHAIN, block=other, subject=D)
        with pytest.raises(ProofError, match="does not verify"):  # relabelled: signatures say no
            verify_commit(replace(cert, block=other), EQUAL, chain_id=CHAIN, block=other,
                          subject=D)
    with pytest.raises(ProofError, match="another chain"):
        verify_commit(cert, EQUAL, chain_id="othernet", block=B, subject=D)
    if (height, round_) != (42, 0):  # the signatures cover height and round
        with pytest.raises(ProofError, match="does not verify"):
            verify_commit(replace(cert, height=height, round=round_), EQUAL, chain_id=CHAIN,
                          block=B, subject=D)
