"""An RFC 6962 / RFC 9162 verifier written from the RFC text, sharing no code with trustchain.ct.

Used by tests to check the node's logs the way an outside auditor would:
only ``hashlib`` and ``cryptography``'s ECDSA verification, the algorithms of
RFC 9162 sections 2.1.3.2 (inclusion) and 2.1.4.2 (consistency), and the
RFC 6962 section 3.5 TreeHeadSignature layout.
"""

from __future__ import annotations

import base64
import hashlib
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec


class VerificationFailed(Exception):
    pass


def hash_leaf(leaf_input: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf_input).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def check_inclusion(leaf_index: int, tree_size: int, leaf_hash: bytes, path: list[bytes],
                    root: bytes) -> None:
    """RFC 9162 2.1.3.2, step by step."""
    if leaf_index >= tree_size:
        raise VerificationFailed("leaf_index >= tree_size")
    fn, sn, r = leaf_index, tree_size - 1, leaf_hash
    for p in path:
        if sn == 0:
            raise VerificationFailed("path too long")
        if fn & 1 or fn == sn:
            r = hash_children(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = hash_children(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0 or r != root:
        raise VerificationFailed("inclusion proof does not lead to the root")


def check_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                      path: list[bytes]) -> None:
    """RFC 9162 2.1.4.2, step by step."""
    if first == second:
        if path or first_root != second_root:
            raise VerificationFailed("equal sizes need an empty proof and equal roots")
        return
    if first == 0 or first > second:
        raise VerificationFailed("bad sizes")
    if first & (first - 1) == 0:  # a power of two: prepend first_root
        path = [first_root, *path]
    if not path:
        raise VerificationFailed("empty proof")
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationFailed("proof too long")
        if fn & 1 or fn == sn:
            fr = hash_children(c, fr)
            sr = hash_children(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = hash_children(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != first_root or sr != second_root:
        raise VerificationFailed("consistency proof does not match the roots")


def check_sth(sth: dict[str, object], key: ec.EllipticCurvePublicKey) -> None:
    """RFC 6962 3.5: version v1(0), signature_type tree_hash(1), timestamp, size, root."""
    root = base64.b64decode(str(sth["sha256_root_hash"]))
    signed = struct.pack(">BBQQ", 0, 1, int(str(sth["timestamp"])),
                         int(str(sth["tree_size"]))) + root
    blob = base64.b64decode(str(sth["tree_head_signature"]))
    if blob[:2] != b"\x04\x03":  # sha256, ecdsa
        raise VerificationFailed("not ecdsa-with-sha256")
    (length,) = struct.unpack(">H", blob[2:4])
    if len(blob) != 4 + length:
        raise VerificationFailed("bad DigitallySigned length")
    key.verify(blob[4:], signed, ec.ECDSA(hashes.SHA256()))


def check_x509_sct(sct: dict[str, object], certificate: bytes,
                   key: ec.EllipticCurvePublicKey) -> None:
    """RFC 6962 3.2: the add-chain answer signs (v1, certificate_timestamp, timestamp,
    x509_entry, the certificate as a 24-bit-length opaque, extensions)."""
    if sct["sct_version"] != 0:
        raise VerificationFailed("not a v1 SCT")
    extensions = base64.b64decode(str(sct["extensions"]))
    signed = (struct.pack(">BBQH", 0, 0, int(str(sct["timestamp"])), 0)
              + len(certificate).to_bytes(3, "big") + certificate
              + struct.pack(">H", len(extensions)) + extensions)
    blob = base64.b64decode(str(sct["signature"]))
    if blob[:2] != b"\x04\x03":
        raise VerificationFailed("not ecdsa-with-sha256")
    key.verify(blob[4:], signed, ec.ECDSA(hashes.SHA256()))


def leaf_timestamp(leaf_input: bytes) -> int:
    """RFC 6962 3.4: MerkleTreeLeaf is version, leaf_type, then the entry's 64-bit timestamp."""
    if leaf_input[:2] != b"\x00\x00":
        raise VerificationFailed("not a v1 timestamped_entry leaf")
    return int(struct.unpack(">Q", leaf_input[2:10])[0])


def check_precert_sct(sct: dict[str, object], issuer_key_hash: bytes, tbs: bytes,
                      key: ec.EllipticCurvePublicKey) -> None:
    """RFC 6962 3.2 for a precert_entry: issuer_key_hash, then the TBSCertificate (24-bit length)."""
    extensions = base64.b64decode(str(sct["extensions"]))
    signed = (struct.pack(">BBQH", 0, 0, int(str(sct["timestamp"])), 1) + issuer_key_hash
              + len(tbs).to_bytes(3, "big") + tbs
              + struct.pack(">H", len(extensions)) + extensions)
    blob = base64.b64decode(str(sct["signature"]))
    if blob[:2] != b"\x04\x03":
        raise VerificationFailed("not ecdsa-with-sha256")
    key.verify(blob[4:], signed, ec.ECDSA(hashes.SHA256()))


def precert_leaf(leaf_input: bytes) -> tuple[bytes, bytes]:
    """(issuer_key_hash, TBS) of a precert_entry MerkleTreeLeaf (RFC 6962 3.4)."""
    if leaf_input[:2] != b"\x00\x00" or leaf_input[10:12] != b"\x00\x01":
        raise VerificationFailed("not a v1 precert_entry leaf")
    size = int.from_bytes(leaf_input[44:47], "big")
    return leaf_input[12:44], leaf_input[47:47 + size]
