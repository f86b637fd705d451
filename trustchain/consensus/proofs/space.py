"""Proof of space: a plot the requester registered answers a challenge from (B, D) (``chiapos``).

A plot is a file of about ``0.8 * 2**k`` kilobytes of tables that take hours
to build at realistic sizes (``k`` = 32: 100 GiB) and make looking up a
proof for any challenge fast; without the file, producing one means
rebuilding it.  ``chiapos`` is Chia Network's implementation; nothing of it
is ours.  The plot id binds the plot to its owner: ``plot_id = SHA-256(tag ‖
owner ‖ seed)``, and a plot is usable only once registered (an operation
the consensus commits) for that owner with the network's ``k``.  For any one
challenge a plot holds a proof about half the time; an owner without one
waits for the next block.

Tests use ``k`` = 19 (8 MB, 2 s to plot; ``chiapos`` builds nothing smaller);
the genesis default is 25 (about 600 MB); production networks should use 32.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import chiapos

from trustchain.consensus.proofs import Challenge, ProofError

TAG = b"trustchain/space/1"
PLOT_TAG = b"trustchain/plot/1"
MIN_K, MAX_K = 19, 50
#: A proof is 64 x-values of k bits: 8 * k bytes.
MAX_PROOF = 8 * MAX_K


@dataclass(frozen=True)
class SpaceProof:
    plot_id: bytes
    k: int
    proof: bytes


def plot_id_for(owner: bytes, seed: bytes) -> bytes:
    return hashlib.sha256(PLOT_TAG + len(owner).to_bytes(1, "big") + owner + seed).digest()


def space_challenge(challenge: Challenge, plot_id: bytes) -> bytes:
    return challenge.derive(TAG, plot_id)


def create_plot(directory: Path, owner: bytes, seed: bytes, k: int) -> Path:
    """Build a plot file for ``owner`` in ``directory`` (slow for large ``k``)."""
    if not MIN_K <= k <= MAX_K:
        raise ValueError(f"k must be {MIN_K}..{MAX_K}")
    plot_id = plot_id_for(owner, seed)
    name = f"plot-k{k}-{plot_id.hex()}.plot"
    chiapos.DiskPlotter().create_plot_disk(str(directory), str(directory), str(directory), name,
                                           k, b"trustchain", plot_id, 300, 32, 8192, 1, False)
    return directory / name


def prove_space(plot: Path, challenge: Challenge) -> SpaceProof | None:
    """The plot's proof for this challenge, or None if it holds none (about half the time)."""
    prover = chiapos.DiskProver(str(plot))
    plot_id = bytes(prover.get_id())
    seed = space_challenge(challenge, plot_id)
    if not prover.get_qualities_for_challenge(seed):
        return None
    return SpaceProof(plot_id, prover.get_size(), bytes(prover.get_full_proof(seed, 0)))


def verify_space(proof: SpaceProof, challenge: Challenge, *, owner: bytes, seed: bytes,
                 k: int) -> None:
    """:raises ProofError: unless the proof answers this challenge from ``owner``'s
    registered plot (``seed``) of size ``k``."""
    if proof.k != k:
        raise ProofError(f"space: a k={proof.k} plot, k={k} required")
    if proof.plot_id != plot_id_for(owner, seed):
        raise ProofError("space: the plot is not the one registered for this requester")
    if len(proof.proof) != 8 * k:
        raise ProofError(f"space: a k={k} proof is {8 * k} bytes")
    quality = chiapos.Verifier().validate_proof(proof.plot_id, k,
                                                space_challenge(challenge, proof.plot_id),
                                                proof.proof)
    if quality is None:
        raise ProofError("space: the proof does not verify for this challenge")
