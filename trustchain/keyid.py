"""Key ids: how a key, and so a node (the id of its Ed25519 key), is named.

A key id is derived from the key alone, so anyone holding the public key can
check the name: hex of the first 16 bytes of SHA-256 of its SubjectPublicKeyInfo.
Shared by the key store, the genesis and enrolment, and the consensus (a
joining node's id must be that of the key it is admitted with).
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa

PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | mldsa.MLDSA65PublicKey


def spki_der(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_id_for(public_key: PublicKey) -> str:
    """Hex of the first 16 bytes of SHA-256(SPKI)."""
    return hashlib.sha256(spki_der(public_key)).hexdigest()[:32]
