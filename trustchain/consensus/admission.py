"""What a ``node-admission`` operation says, and the rules every validator applies to it.

A joining node asks to be admitted with its consensus keys, the address at
which other nodes reach it, the genesis it pinned and the stake it asks for.
The operation carries all four proofs (:data:`~trustchain.consensus.operations.POLICY`):
work, time and space bound to it and to a recent block, and the
validators' endorsement (their signatures over the operation's digest, the
stake proof).  Validators endorse an admission only once its other proofs
verify and only up to the stake their operators allow (``admission_max_stake``);
the ledger applies a committed admission by recording the member and, if it
was granted stake, adding it to the validator set from the next height.

Pure: keys in, :class:`~trustchain.consensus.proofs.ProofError` out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa

from trustchain.consensus.proofs import ProofError
from trustchain.consensus.proofs.stake import ValidatorStake
from trustchain.keyid import key_id_for

FIELDS = frozenset({"node", "genesis", "ed25519", "ml_dsa_65", "stake", "address", "attempt"})
#: A stake no admission may ask for more of (a sanity bound; operators set the real one).
MAX_STAKE = 2**40
#: ``[ADDR]:PORT`` or ``HOST:PORT``: where the other nodes reach the joiner over QUIC.
_ADDRESS = re.compile(r"^(?:\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9.-]{1,253}):[0-9]{1,5}$")
_ML_DSA_65_PUBLIC = 1952


def admission_body(*, node_id: str, genesis: str, ed25519_key: ed25519.Ed25519PublicKey,
                   ml_dsa_key: mldsa.MLDSA65PublicKey, stake: int, address: str,
                   attempt: int = 0) -> dict[str, Any]:
    """The body of ``node_id``'s admission (``attempt`` varies it: a plot holds a proof of
    space for about half of all challenges, so the joiner tries bodies until one has)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return {"node": node_id, "genesis": genesis, "stake": stake, "address": address,
            "attempt": attempt,
            "ed25519": ed25519_key.public_bytes(Encoding.Raw, PublicFormat.Raw).hex(),
            "ml_dsa_65": ml_dsa_key.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()}


def check_admission(body: Mapping[str, Any], *, requester: str, chain_id: str,
                    members: Mapping[str, Any], validators: Mapping[str, ValidatorStake]) -> None:
    """:raises ProofError: with the reason a joiner is told, unless ``body`` admits a new
    node of this federation, asked for by that node itself."""
    if set(body) != FIELDS:
        raise ProofError(f"node-admission: the fields are {', '.join(sorted(FIELDS))}")
    if body["genesis"] != chain_id:
        raise ProofError(f"node-admission: the joiner pinned genesis {str(body['genesis'])[:64]}, "
                         f"this federation's is {chain_id}")
    node = body["node"]
    if not isinstance(node, str) or node != requester:
        raise ProofError("node-admission: the node must ask for its own admission "
                         "(node = requester)")
    if node in members or node in validators:
        raise ProofError(f"node-admission: node {node} is already a member of the federation")
    stake, attempt = body["stake"], body["attempt"]
    if not (isinstance(stake, int) and 0 <= stake <= MAX_STAKE
            and isinstance(attempt, int) and 0 <= attempt < 2**32):
        raise ProofError(f"node-admission: a stake of 0 to {MAX_STAKE} and an attempt counter")
    if not isinstance(body["address"], str) or not _ADDRESS.fullmatch(body["address"]):
        raise ProofError("node-admission: the node's QUIC address as [ADDR]:PORT")
    ed_key, _ml_key = keys_of(body)
    if key_id_for(ed_key) != node:
        raise ProofError("node-admission: the node id is not that of its Ed25519 key")


def keys_of(body: Mapping[str, Any]) -> tuple[ed25519.Ed25519PublicKey, mldsa.MLDSA65PublicKey]:
    """The joiner's consensus keys. :raises ProofError: unless both are well formed."""
    try:
        ed = ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(body["ed25519"]))
        raw = bytes.fromhex(body["ml_dsa_65"])
        if len(raw) != _ML_DSA_65_PUBLIC:
            raise ValueError("length")
        ml = mldsa.MLDSA65PublicKey.from_public_bytes(raw)
    except (KeyError, TypeError, ValueError):
        raise ProofError("node-admission: an Ed25519 key (32 bytes) and an ML-DSA-65 key "
                         f"({_ML_DSA_65_PUBLIC} bytes), hex") from None
    return ed, ml


def admitted_validator(body: Mapping[str, Any]) -> ValidatorStake | None:
    """The validator a committed admission adds (None: it was granted no stake)."""
    if not body["stake"]:
        return None
    ed, ml = keys_of(body)
    return ValidatorStake(ed, body["stake"], ml)
