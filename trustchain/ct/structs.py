"""RFC 6962 wire structures (TLS presentation language), pure.

The structures a log signs and hashes: the ``MerkleTreeLeaf`` of an entry,
the signed certificate timestamp (SCT) and the signed tree head (STH), with
the ``leaf_index`` SCT extension that static-ct-api (C2SP) requires.  Logs
sign with ECDSA P-256 and SHA-256 (``digitally-signed``, hash 4, signature 3);
a log's ID is the SHA-256 of its SubjectPublicKeyInfo.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from enum import IntEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from trustchain.errors import RemoteError

SHA256, ECDSA = 4, 3
V1 = 0


class EntryType(IntEnum):
    X509 = 0
    PRECERT = 1


class DecodeError(RemoteError):
    """Bytes that do not encode an RFC 6962 structure."""


def _u(value: int, size: int) -> bytes:
    if not 0 <= value < 1 << (8 * size):
        raise ValueError(f"{value} does not fit in {size} bytes")
    return value.to_bytes(size, "big")


def _opaque(data: bytes, length_size: int) -> bytes:
    return _u(len(data), length_size) + data


def log_id(public_key: ec.EllipticCurvePublicKey) -> bytes:
    return hashlib.sha256(public_key.public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).digest()


@dataclass(frozen=True)
class Entry:
    """What a log records for one submission."""

    entry_type: EntryType
    #: X509: the leaf certificate (DER).  PRECERT: the TBSCertificate without the poison.
    body: bytes
    #: PRECERT: SHA-256 of the issuer's SubjectPublicKeyInfo.
    issuer_key_hash: bytes = b""

    def signed_entry(self) -> bytes:
        if self.entry_type is EntryType.X509:
            return _opaque(self.body, 3)
        if len(self.issuer_key_hash) != 32:
            raise ValueError("a precertificate entry needs a 32-byte issuer key hash")
        return self.issuer_key_hash + _opaque(self.body, 3)


def leaf_index_extension(index: int) -> bytes:
    """static-ct-api: extension type 0 (leaf_index), a 40-bit index."""
    return _u(0, 1) + _opaque(_u(index, 5), 2)


def parse_leaf_index(extensions: bytes) -> int | None:
    offset = 0
    while offset < len(extensions):
        if offset + 3 > len(extensions):
            raise DecodeError("truncated SCT extension")
        kind = extensions[offset]
        size = int.from_bytes(extensions[offset + 1 : offset + 3], "big")
        data = extensions[offset + 3 : offset + 3 + size]
        if len(data) != size:
            raise DecodeError("truncated SCT extension")
        if kind == 0:
            if size != 5:
                raise DecodeError("leaf_index extension must be 5 bytes")
            return int.from_bytes(data, "big")
        offset += 3 + size
    return None


def timestamped_entry(timestamp: int, entry: Entry, extensions: bytes) -> bytes:
    return (_u(timestamp, 8) + _u(entry.entry_type, 2) + entry.signed_entry()
            + _opaque(extensions, 2))


def merkle_tree_leaf(timestamp: int, entry: Entry, extensions: bytes) -> bytes:
    """The bytes whose RFC 6962 leaf hash goes into the tree (version v1, timestamped_entry)."""
    return _u(V1, 1) + _u(0, 1) + timestamped_entry(timestamp, entry, extensions)


def _digitally_signed(signature: bytes) -> bytes:
    return _u(SHA256, 1) + _u(ECDSA, 1) + _opaque(signature, 2)


def _parse_digitally_signed(data: bytes) -> bytes:
    if len(data) < 4 or data[0] != SHA256 or data[1] != ECDSA:
        raise DecodeError("not an ECDSA/SHA-256 digitally-signed structure")
    size = int.from_bytes(data[2:4], "big")
    if len(data) != 4 + size:
        raise DecodeError("digitally-signed length does not match")
    return data[4:]


@dataclass(frozen=True)
class SCT:
    log_id: bytes
    timestamp: int
    extensions: bytes
    signature: bytes  # DER ECDSA signature

    def signed_data(self, entry: Entry) -> bytes:
        return (_u(V1, 1) + _u(0, 1) + _u(self.timestamp, 8) + _u(entry.entry_type, 2)
                + entry.signed_entry() + _opaque(self.extensions, 2))

    def to_bytes(self) -> bytes:
        """The TLS ``SignedCertificateTimestamp`` (as in an SCT list or add-chain's answer)."""
        return (_u(V1, 1) + self.log_id + _u(self.timestamp, 8) + _opaque(self.extensions, 2)
                + _digitally_signed(self.signature))

    @classmethod
    def from_bytes(cls, data: bytes) -> SCT:
        try:
            version, log, timestamp = data[0], data[1:33], struct.unpack(">Q", data[33:41])[0]
            ext_size = int.from_bytes(data[41:43], "big")
            extensions = data[43 : 43 + ext_size]
            signature = _parse_digitally_signed(data[43 + ext_size :])
        except (IndexError, struct.error):
            raise DecodeError("truncated SCT") from None
        if version != V1 or len(log) != 32 or len(extensions) != ext_size:
            raise DecodeError("not a v1 SCT")
        return cls(log, timestamp, extensions, signature)

    @property
    def leaf_index(self) -> int | None:
        return parse_leaf_index(self.extensions)

    def verify(self, entry: Entry, key: ec.EllipticCurvePublicKey,
               key_log_id: bytes | None = None) -> None:
        """:raises DecodeError: if the signature or log ID (``key_log_id``: the key's, if
        known) does not match."""
        if self.log_id != (key_log_id or log_id(key)):
            raise DecodeError("the SCT is from another log")
        try:
            key.verify(self.signature, self.signed_data(entry), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise DecodeError("the SCT signature does not verify") from None


def sign_sct(key: ec.EllipticCurvePrivateKey, timestamp: int, entry: Entry,
             extensions: bytes, key_log_id: bytes | None = None) -> SCT:
    """An SCT by the log whose key is ``key`` (``key_log_id``: its log ID, if known)."""
    unsigned = SCT(key_log_id or log_id(key.public_key()), timestamp, extensions, b"")
    return SCT(unsigned.log_id, timestamp, extensions,
               key.sign(unsigned.signed_data(entry), ec.ECDSA(hashes.SHA256())))


@dataclass(frozen=True)
class TreeHead:
    size: int
    timestamp: int
    root: bytes
    signature: bytes = b""  # DER ECDSA signature

    def signed_data(self) -> bytes:
        return _u(V1, 1) + _u(1, 1) + _u(self.timestamp, 8) + _u(self.size, 8) + self.root

    def sign(self, key: ec.EllipticCurvePrivateKey) -> TreeHead:
        return TreeHead(self.size, self.timestamp, self.root,
                        key.sign(self.signed_data(), ec.ECDSA(hashes.SHA256())))

    def verify(self, key: ec.EllipticCurvePublicKey) -> None:
        try:
            key.verify(self.signature, self.signed_data(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise DecodeError("the tree head signature does not verify") from None

    def digitally_signed(self) -> bytes:
        return _digitally_signed(self.signature)
