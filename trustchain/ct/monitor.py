"""What a CT monitor checks in a log's answers, pure: the fetching is the caller's.

A monitor trusts nothing a log says but its key (from a log list): tree
heads must carry the log's signature, consistency and inclusion proofs must
lead to a signed root, and static-ct-api tiles must hash to the signed
checkpoint.  The functions here take the answers as the log gave them (the
JSON of RFC 6962's ``get-*`` methods, the bytes of tiles) and raise a
:class:`~trustchain.errors.RemoteError` for any that does not prove its claim.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
)

from trustchain.ct import merkle, tiles
from trustchain.ct.note import NoteError, parse_checkpoint, parse_note, parse_vkey
from trustchain.ct.note import cosigners as note_cosigners
from trustchain.ct.policy import Policy
from trustchain.ct.precert import PrecertError, without_extension
from trustchain.ct.structs import DecodeError, Entry, EntryType, TreeHead, log_id
from trustchain.ct.tree import MerkleTree
from trustchain.errors import RemoteError

#: Offset of the entry in an RFC 6962 ``MerkleTreeLeaf``: version, leaf type, timestamp.
_LEAF_PREFIX = 1 + 1 + 8
_X509_ENTRY = EntryType.X509.to_bytes(2, "big")
#: The DER of the OID of the embedded SCT list extension (RFC 6962 3.3).
SCT_LIST_OID = bytes.fromhex("060a2b06010401d679020402")


class MonitorError(RemoteError):
    """A log's answers do not prove what they claim."""


@dataclass(frozen=True)
class Found:
    """A certificate's entry in a log."""

    index: int
    leaf_hash: bytes


@dataclass(frozen=True)
class TilesInclusion:
    """A certificate proven to be in a log by its static-ct-api tiles."""

    origin: str  # the checkpoint's origin line, naming the log
    index: int
    tree_size: int  # of the signed checkpoint that covers it
    checkpoint: str  # that checkpoint, as fetched (with any cosignatures)


def _b64(text: str) -> bytes:
    return base64.b64decode(text)


# --- RFC 6962 answers (get-sth, get-entries, get-sth-consistency, get-proof-by-hash) ---


def log_key(log_list: Mapping[str, Any], name: str) -> ec.EllipticCurvePublicKey:
    """The key of log ``name`` (the last segment of its URL) in a log list (Chrome/Apple
    shape, one operator)."""
    entries = {e["url"].rstrip("/").rsplit("/", 1)[1]: e for e in log_list["operators"][0]["logs"]}
    if name not in entries:
        raise MonitorError(f"the node has no log {name!r} (it has {', '.join(entries)})")
    key = load_der_public_key(_b64(entries[name]["key"]))
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise MonitorError(f"the key of log {name!r} is not an ECDSA key")
    return key


def verify_sth(sth: Mapping[str, Any], key: ec.EllipticCurvePublicKey) -> TreeHead:
    """The tree head of a ``get-sth`` answer, its signature checked with the log's key."""
    head = TreeHead(sth["tree_size"], sth["timestamp"], _b64(sth["sha256_root_hash"]),
                    _b64(sth["tree_head_signature"])[4:])  # past hash, signature, length
    try:
        head.verify(key)
    except DecodeError as exc:
        raise MonitorError(str(exc)) from None
    return head


def page_entries(page: Mapping[str, Any]) -> list[Any]:
    """The entries of a ``get-entries`` page asked for below the log's signed size.

    :raises MonitorError: the page is empty (a log that does so would make a client
        paging through it loop for ever).
    """
    entries = page["entries"]
    if not isinstance(entries, list) or not entries:
        raise MonitorError("the log answered get-entries below its signed size with no entries")
    return entries


def leaf_hashes(page: Mapping[str, Any]) -> list[bytes]:
    """The Merkle leaf hashes of a ``get-entries`` page's entries, in order."""
    return [merkle.leaf_hash(_b64(e["leaf_input"])) for e in page_entries(page)]


def verify_consistency(first: int, second: int, head: TreeHead, hashes: Sequence[bytes],
                       proof: Mapping[str, Any]) -> None:
    """Check a ``get-sth-consistency`` answer between the trees of the ``first`` and
    ``second`` of ``hashes`` (the log's first ``second`` leaf hashes), and that a tree as
    large as the signed ``head`` has its root."""
    whole = merkle.root(hashes)
    merkle.verify_consistency(first, second, [_b64(p) for p in proof["consistency"]],
                              merkle.root(hashes[:first]), whole)
    if second == head.size and whole != head.root:
        raise MonitorError("the entries do not match the signed tree head")


def entries_of(der: bytes, issuer: bytes | None = None) -> list[bytes]:
    """What a log's leaf holds, after its timestamp, for the certificate ``der``: its X.509
    entry, and, for a certificate with embedded SCTs whose issuer (DER) is given, the
    precertificate entry it was logged as (RFC 6962 3.1/3.2: its TBSCertificate without
    the SCT list, under the SHA-256 of the issuer's key)."""
    out = [_X509_ENTRY + Entry(EntryType.X509, der).signed_entry()]
    if issuer is None:
        return out
    try:
        tbs = x509.load_der_x509_certificate(der).tbs_certificate_bytes
        body = without_extension(tbs, SCT_LIST_OID)
        spki = x509.load_der_x509_certificate(issuer).public_key().public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    except (ValueError, PrecertError):
        return out  # no embedded SCT list: never logged as a precertificate
    precert = Entry(EntryType.PRECERT, body, hashlib.sha256(spki).digest())
    return out + [EntryType.PRECERT.to_bytes(2, "big") + precert.signed_entry()]


def _matches(leaf_input: bytes, wanted: Sequence[bytes]) -> bool:
    return any(leaf_input[_LEAF_PREFIX:_LEAF_PREFIX + len(w)] == w for w in wanted)


def find_certificate(page: Mapping[str, Any], start: int, der: bytes,
                     issuer: bytes | None = None) -> Found | None:
    """The entry of the certificate ``der`` in a ``get-entries`` page that begins at entry
    ``start``, if it is there (as X.509, or as its precertificate: :func:`entries_of`)."""
    wanted = entries_of(der, issuer)
    for offset, item in enumerate(page_entries(page)):
        leaf_input = _b64(item["leaf_input"])
        if _matches(leaf_input, wanted):
            return Found(start + offset, merkle.leaf_hash(leaf_input))
    return None


def verify_inclusion(found: Found, proof: Mapping[str, Any], head: TreeHead) -> None:
    """Check a ``get-proof-by-hash`` answer for ``found`` against the signed ``head``."""
    merkle.verify_inclusion(found.leaf_hash, proof["leaf_index"], head.size,
                            [_b64(p) for p in proof["audit_path"]], head.root)


# --- static-ct-api (c2sp.org/static-ct-api) ------------------------------------------


def verify_tiles(fetch: Callable[[str], bytes], key: ec.EllipticCurvePublicKey,
                 der: bytes, issuer: bytes | None = None) -> TilesInclusion:
    """Find the certificate ``der`` in a log's data tiles and check it against the signed
    checkpoint; ``fetch(path)`` returns the file at ``path`` under the log's prefix.

    Every level-0 tile is fetched: each data-tile entry must hash to its
    tile hash, and all of them must rebuild the checkpoint's root, so the
    certificate's presence is proven by the log's signature alone.
    """
    text = fetch("checkpoint").decode("utf-8", "replace")
    origin = text.split("\n", 1)[0]
    try:
        head = tiles.verify_checkpoint(text, origin, log_id(key), key)
    except tiles.TileError as exc:
        raise MonitorError(f"checkpoint: {exc}") from None
    tree, found, wanted = MerkleTree(), None, entries_of(der, issuer)
    for index in range((head.size + tiles.TILE_WIDTH - 1) // tiles.TILE_WIDTH):
        width = min(tiles.TILE_WIDTH, head.size - index * tiles.TILE_WIDTH)
        suffix = tiles.tile_suffix(index, width)
        hashes = fetch(f"tile/0/{suffix}")
        try:
            entries = tiles.parse_data_tile(fetch(f"tile/data/{suffix}"))
        except tiles.TileError as exc:
            raise MonitorError(f"data tile {index}: {exc}") from None
        if len(hashes) != merkle.HASH_SIZE * width or len(entries) != width:
            raise MonitorError(f"tile {index} has the wrong width")
        for offset, entry in enumerate(entries):
            position = index * tiles.TILE_WIDTH + offset
            hashed = hashes[merkle.HASH_SIZE * offset:merkle.HASH_SIZE * (offset + 1)]
            if merkle.leaf_hash(entry.leaf_input) != hashed:
                raise MonitorError(f"entry {position} does not match its tile hash")
            if found is None and _matches(entry.leaf_input, wanted):
                found = position
            tree.append(hashed)
    if tree.root() != head.root:
        raise MonitorError("the tiles do not rebuild the checkpoint's root")
    if found is None:
        raise MonitorError(f"the certificate is not in the log at {origin}")
    return TilesInclusion(origin, found, head.size, text)


# --- witnesses (c2sp.org/tlog-cosignature, c2sp.org/tlog-policy) ----------------------


def cosigners(text: str, policy: Policy) -> set[str]:
    """The policy's witnesses whose cosignature/v1 lines on the checkpoint note ``text``
    verify (a line from a key the policy does not name is ignored, as signed-note says)."""
    try:
        note = parse_note(text)
        checkpoint = parse_checkpoint(note.text)
        witnesses = {w.name: parse_vkey(w.vkey.text) for w in policy.witnesses.values()}
    except NoteError as exc:
        raise MonitorError(f"the checkpoint is not a signed note: {exc}") from None
    return note_cosigners(note, checkpoint, witnesses)


def require_quorum(text: str, policy: Policy) -> set[str]:
    """The cosigners of checkpoint ``text``; :raises MonitorError: unless they satisfy the
    policy's quorum."""
    found = cosigners(text, policy)
    if not policy.quorum_satisfied(found):
        origin, size = (text.split("\n") + ["", ""])[:2]
        raise MonitorError(f"the checkpoint of {origin} at size {size} lacks the witness "
                           f"quorum of the policy (cosigned by {len(found)}: "
                           f"{', '.join(sorted(found)) or 'none'})")
    return found
