"""The joiner's proofs for admission by consensus (:mod:`trustchain.wiring.admission`).

A plot is built once, in the join's staging directory, and kept there until
the join completes (an interrupted join reuses it: at the genesis default of
k = 25 it takes many minutes).  Every proof is bound to the operation's
digest and to a committed block the node named (the anchor), so they are
made after asking the node for its latest block, never in advance.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa

from trustchain.consensus.admission import admission_body
from trustchain.consensus.ledger import GENESIS_HASH
from trustchain.consensus.operations import (
    Operation,
    OperationKind,
    space_part,
    time_part,
    work_part,
)
from trustchain.consensus.parameters import ProofParameters
from trustchain.consensus.proofs import Challenge
from trustchain.consensus.proofs.delay import prove_delay
from trustchain.consensus.proofs.space import create_plot, plot_id_for, prove_space
from trustchain.consensus.proofs.work import solve_work
from trustchain.errors import LocalError
from trustchain.fsutil import ensure_private_dir, write_private_file

SEED_FILE = "seed"
#: Bodies tried (``attempt``) for one anchor before giving up: a plot answers about half
#: of all challenges, so 64 misses in a row mean a broken plot, not bad luck.
MAX_ATTEMPTS = 64


def anchor_block(status: dict[str, Any]) -> tuple[int, bytes]:
    """The anchor a node's ``consensus.status`` names: its height and block hash."""
    return status["height"], bytes.fromhex(status["hash"]) if status["hash"] else GENESIS_HASH


def ensure_plot(directory: Path, node_id: str, k: int,
                progress: Callable[[str], None]) -> tuple[Path, bytes]:
    """This joiner's plot of size ``k`` in ``directory`` and its seed (built if missing)."""
    ensure_private_dir(directory)
    seed_path = directory / SEED_FILE
    if not seed_path.exists():
        write_private_file(seed_path, secrets.token_bytes(32).hex().encode())
    seed = bytes.fromhex(seed_path.read_text().strip())
    owner = bytes.fromhex(node_id)
    name = f"plot-k{k}-{plot_id_for(owner, seed).hex()}.plot"
    if not (directory / name).exists():
        progress(f"building a k={k} plot for the proof of space (k=19: seconds; k=25: many "
                 "minutes; kept for a resumed join)")
        for stale in directory.glob("*.tmp"):  # chiapos' working files of an interrupted run
            stale.unlink()
        create_plot(directory, owner, seed, k)
    return directory / name, seed


def plot_request(node_id: str, seed: bytes, status: dict[str, Any]) -> dict[str, Any]:
    """``ca.enrol-plot``'s message: the plot's registration with its proof of work."""
    params = ProofParameters.model_validate(status["parameters"])
    anchor, block = anchor_block(status)
    owner = bytes.fromhex(node_id)
    body = {"plot_id": plot_id_for(owner, seed).hex(), "seed": seed.hex()}
    operation = Operation(kind=OperationKind.PLOT_REGISTRATION, requester=node_id, body=body)
    work = solve_work(Challenge(operation.digest, block), owner, params.work_difficulty_bits)
    return {"node_id": node_id, **body,
            "proofs": {"anchor": anchor, "work": work_part(work).model_dump()}}


def admit_request(*, node_id: str, genesis_pin: str, ed_key: ed25519.Ed25519PublicKey,
                  ml_key: mldsa.MLDSA65PublicKey, stake: int, address: str, plot: Path,
                  seed: bytes, status: dict[str, Any]) -> dict[str, Any]:
    """``ca.enrol-admit``'s message: the admission with proofs of work, time and space.

    :raises LocalError: the plot answered none of :data:`MAX_ATTEMPTS` challenges.
    """
    params = ProofParameters.model_validate(status["parameters"])
    anchor, block = anchor_block(status)
    owner = bytes.fromhex(node_id)
    for attempt in range(MAX_ATTEMPTS):
        body = admission_body(node_id=node_id, genesis=genesis_pin, ed25519_key=ed_key,
                              ml_dsa_key=ml_key, stake=stake, address=address, attempt=attempt)
        operation = Operation(kind=OperationKind.NODE_ADMISSION, requester=node_id, body=body)
        challenge = Challenge(operation.digest, block)
        space = prove_space(plot, challenge)  # first: it is the cheap one to miss
        if space is None:
            continue
        work = solve_work(challenge, owner, params.work_difficulty_bits)
        delay = prove_delay(challenge, params.time_vdf_iterations)
        return {"node_id": node_id, "body": body, "proofs": {
            "anchor": anchor, "work": work_part(work).model_dump(),
            "time": time_part(delay).model_dump(),
            "space": space_part(space, seed).model_dump()}}
    raise LocalError(f"the plot {plot.name} held no proof for {MAX_ATTEMPTS} challenges: "
                     "remove it and join again")
