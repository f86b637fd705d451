"""The C2SP static-ct-api read path: checkpoints, Merkle tiles, data tiles.

https://c2sp.org/static-ct-api, https://c2sp.org/tlog-tiles,
https://c2sp.org/signed-note.  The same tree and the same RFC 6962 signatures
as the dynamic API, in an encoding that can be cached forever.  Pure.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from trustchain.ct.structs import DecodeError, TreeHead

TILE_WIDTH = 256
#: Levels a tile path may name (static-ct-api: 0 to 5).
MAX_LEVEL = 5
#: The signed-note signature type of an RFC 6962 tree head signature.
RFC6962_SIGNATURE_TYPE = 0x05

_INDEX = re.compile(r"((?:x[0-9]{3}/)*)([0-9]{3})")  # ASCII digits only
_WIDTH = re.compile(r"[1-9][0-9]{0,2}")


class TileError(ValueError):
    """A tile path that does not name a tile, or a tile that does not exist."""


@dataclass(frozen=True)
class TilePath:
    level: int | None  # None for a data tile
    index: int
    width: int  # 256 for a full tile


def parse_tile_path(path: str) -> TilePath:
    """``<L>/<N>[.p/<W>]`` or ``data/<N>[.p/<W>]`` (the part after ``tile/``)."""
    head, _, rest = path.partition("/")
    if head == "data":
        level = None
    elif len(head) == 1 and "0" <= head <= str(MAX_LEVEL):
        level = int(head)
    else:
        raise TileError(f"tile level must be 0 to {MAX_LEVEL} or 'data'")
    width = TILE_WIDTH
    if ".p/" in rest:
        rest, _, partial = rest.partition(".p/")
        if not _WIDTH.fullmatch(partial) or int(partial) > 255:
            raise TileError("a partial tile width is 1 to 255 without leading zeros")
        width = int(partial)
    match = _INDEX.fullmatch(rest)
    if match is None:
        raise TileError("a tile index is 3-digit elements, all but the last prefixed by x")
    digits = match[1].replace("x", "").replace("/", "") + match[2]
    return TilePath(level, int(digits), width)


def format_index(index: int) -> str:
    """1234067 -> ``x001/x234/067``."""
    digits = f"{index:d}"
    digits = digits.zfill((len(digits) + 2) // 3 * 3)
    parts = [digits[i:i + 3] for i in range(0, len(digits), 3)]
    return "/".join([*("x" + p for p in parts[:-1]), parts[-1]])


def tile_suffix(index: int, width: int) -> str:
    """``<N>[.p/<W>]``: tile ``index`` holding ``width`` entries (a full tile has no suffix)."""
    return format_index(index) + ("" if width == TILE_WIDTH else f".p/{width}")


def tile_hashes(levels: list[list[bytes]], tile: TilePath, tree_size: int) -> bytes:
    """The hashes of a Merkle tile from a tree's complete-subtree levels.

    A tile of level L holds the hashes of subtrees of 256**L leaves; a full
    tile exists once the tree covers all 256 of them, a partial tile of width
    W once it covers W (later hashes never change, so any such tile is final).
    """
    assert tile.level is not None
    height = 8 * tile.level
    start = tile.index * TILE_WIDTH
    covered = tree_size >> height  # complete subtrees of this height
    if start + tile.width > covered or height >= len(levels):
        raise TileError("that tile is not in the tree yet")
    return b"".join(levels[height][start:start + tile.width])


def tile_leaf(timestamped_entry: bytes, precertificate: bytes | None,
              issuers: list[bytes]) -> bytes:
    """One entry of a data tile: the TimestampedEntry, the precertificate if
    any, and the SHA-256 fingerprints of the submitted issuers."""
    out = timestamped_entry
    if precertificate is not None:
        out += len(precertificate).to_bytes(3, "big") + precertificate
    fingerprints = b"".join(hashlib.sha256(der).digest() for der in issuers)
    return out + len(fingerprints).to_bytes(2, "big") + fingerprints


@dataclass(frozen=True)
class TileEntry:
    leaf_input: bytes  # the MerkleTreeLeaf, as get-entries' leaf_input
    certificate: bytes  # the certificate (x509 entries) or the precertificate
    issuers: list[bytes]  # SHA-256 fingerprints


def parse_data_tile(data: bytes) -> list[TileEntry]:
    """Split a data tile into its entries.

    :raises TileError: on any malformed or truncated entry.
    """
    entries, at = [], 0

    def take(size: int) -> bytes:
        nonlocal at
        if size < 0 or at + size > len(data):
            raise TileError("truncated data tile")
        chunk = data[at:at + size]
        at += size
        return chunk

    def vector(length_bytes: int) -> bytes:
        return take(int.from_bytes(take(length_bytes), "big"))

    while at < len(data):
        start = at
        take(8)  # timestamp
        entry_type = int.from_bytes(take(2), "big")
        if entry_type == 0:
            certificate = vector(3)
        elif entry_type == 1:
            take(32)  # issuer_key_hash
            vector(3)  # TBSCertificate
        else:
            raise TileError(f"unknown entry type {entry_type}")
        vector(2)  # extensions
        leaf_input = b"\x00\x00" + data[start:at]
        if entry_type == 1:
            certificate = vector(3)
        fingerprints = vector(2)
        if len(fingerprints) % 32:
            raise TileError("issuer fingerprints are 32 bytes each")
        entries.append(TileEntry(leaf_input, certificate, [
            fingerprints[i:i + 32] for i in range(0, len(fingerprints), 32)]))
    return entries


def key_id(name: str, log_id: bytes) -> bytes:
    """The signed-note key ID of an RFC 6962 log key: SHA-256(name || 0x0A || 0x05 || LogID)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([RFC6962_SIGNATURE_TYPE])
                          + log_id).digest()[:4]


def checkpoint(origin: str, head: TreeHead, log_id: bytes,
               note_signature: Callable[[str], str] | None = None) -> str:
    """A signed checkpoint: origin, size, root, then the RFC6962NoteSignature line, and
    the line ``note_signature`` makes of the body (the log's Ed25519 note key, which
    witnesses verify: they know no RFC 6962 signatures), if given."""
    body = f"{origin}\n{head.size}\n{base64.b64encode(head.root).decode()}\n"
    signature = key_id(origin, log_id) + head.timestamp.to_bytes(8, "big") + head.digitally_signed()
    extra = note_signature(body) if note_signature is not None else ""
    return f"{body}\n\u2014 {origin} {base64.b64encode(signature).decode()}\n{extra}"


def verify_checkpoint(text: str, origin: str, log_id: bytes,
                      public_key: ec.EllipticCurvePublicKey) -> TreeHead:
    """Parse a checkpoint and verify the log's signature line; returns the tree head.

    :raises TileError: if the note is malformed, names another origin, or
        carries no valid signature by this log.
    """
    body, sep, signatures = text.partition("\n\n")
    lines = body.split("\n")
    if not sep or len(lines) != 3 or lines[0] != origin or not lines[1].isdigit():
        raise TileError("not a checkpoint of this log")
    try:
        size, root = int(lines[1]), base64.b64decode(lines[2], validate=True)
    except (binascii.Error, ValueError):
        raise TileError("the checkpoint's root hash is not base64") from None
    wanted = key_id(origin, log_id)
    for line in signatures.rstrip("\n").split("\n"):
        dash, name, blob = (line.split(" ") + ["", ""])[:3]
        if dash != "\u2014" or name != origin:
            continue
        try:
            raw = base64.b64decode(blob, validate=True)
        except (binascii.Error, ValueError):
            continue
        if raw[:4] != wanted:
            continue
        timestamp = int.from_bytes(raw[4:12], "big")
        signed = raw[12:]
        if len(signed) < 4 or signed[:2] != b"\x04\x03":
            raise TileError("the signature is not ECDSA with SHA-256")
        length = int.from_bytes(signed[2:4], "big")
        head = TreeHead(size, timestamp, root, signed[4:4 + length])
        try:
            head.verify(public_key)
        except DecodeError as exc:
            raise TileError(f"the checkpoint signature does not verify: {exc}") from None
        return head
    raise TileError("the checkpoint carries no signature by this log")
