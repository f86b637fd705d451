"""An independent verifier of C2SP signed notes and Ed25519 cosignatures.

Test support, written from the specs alone to check trustchain's own code:
https://c2sp.org/signed-note and https://c2sp.org/tlog-cosignature.  It is
kept small and literal; the quoted lines are the spec text it follows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

ED25519 = 0x01  # signed-note: "0x01 — Ed25519 signatures as specified by this document."
COSIGNATURE_V1 = 0x04  # "0x04 — Timestamped Ed25519 checkpoint cosignatures"


def parse_vkey(vkey: str) -> tuple[str, bytes, int, bytes]:
    """(name, key ID, signature type, public key) of
    "<key name>+hex(32-bit key ID)+base64(signature type || public key)"."""
    name, _, rest = vkey.partition("+")
    key_id_hex, _, key_b64 = rest.partition("+")  # base64 may itself contain '+'
    raw = base64.b64decode(key_b64, validate=True)
    if not name or len(key_id_hex) != 8 or not raw:
        raise ValueError(f"not a vkey: {vkey!r}")
    return name, bytes.fromhex(key_id_hex), raw[0], raw[1:]


def split_note(note: str) -> tuple[str, list[tuple[str, bytes]]] | None:
    """(text, [(key name, decoded signature)]), or None if malformed.

    "A signed note consists of a text ending in newline (U+000A), followed by a
    blank line (only a newline), followed by one or more signature lines of this
    form: em dash (U+2014), space (U+0020), key name, space, base64-encoded
    signature, newline."  "The note text includes the final newline but not the
    separating blank line. [...] the text is separated from the signatures by
    the last empty line in the note."
    """
    # "MUST NOT contain any ASCII control characters (those below U+0020) other than newline."
    if any(ch < " " and ch != "\n" for ch in note):
        return None
    cut = note.rfind("\n\n")
    if cut < 0 or not note.endswith("\n"):
        return None
    text, block = note[:cut + 1], note[cut + 2:]
    signatures = []
    for line in block[:-1].split("\n"):
        dash, _, rest = line.partition(" ")
        name, _, encoded = rest.partition(" ")
        # "Key names MUST be non-empty and MUST NOT contain any Unicode spaces or plus"
        if dash != "\u2014" or not name or "+" in name or any(c.isspace() for c in name):
            return None
        try:
            # "Signatures are the base64 encoding of 4+n bytes."
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            return None
        if len(raw) < 4:
            return None
        signatures.append((name, raw))
    return text, signatures


def _key_id(name: str, sig_type: int, public_key: bytes) -> bytes:
    # "key ID = SHA-256(key name || 0x0A || signature type || public key)[:4]"
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()[:4]


def _ed25519_ok(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def _matching(note: str, vkey: str, sig_type: int) -> tuple[str, bytes, list[bytes]] | None:
    """The note text, the public key, and the signature bodies (after the key
    ID) of the lines from this vkey; None if the note or vkey do not fit."""
    name, key_id, vkey_type, public_key = parse_vkey(vkey)
    # "The key name and ID MUST match those used in the signatures."
    if vkey_type != sig_type or len(public_key) != 32 or key_id != _key_id(name, sig_type, public_key):
        return None
    parsed = split_note(note)
    if parsed is None:
        return None
    text, signatures = parsed
    # "Verifiers MUST ignore signatures from unknown keys, even if they share a
    # name or ID (but not both) with a known key."
    return text, public_key, [raw[4:] for n, raw in signatures if n == name and raw[:4] == key_id]


def verify_note_signature(note_text: str, vkey: str) -> bool:
    """Whether the note carries a valid Ed25519 (type 0x01) signature by vkey.

    "If a signature from a known key fails to verify, clients SHOULD reject the
    whole note": one bad line from this key makes it False.
    """
    found = _matching(note_text, vkey, ED25519)
    if found is None or not found[2]:
        return False
    text, public_key, bodies = found
    # "Ed25519 signatures are generated according to [RFC 8032] over the note text."
    return all(_ed25519_ok(public_key, body, text.encode()) for body in bodies)


def verify_cosignature(note_text: str, witness_vkey: str) -> int | None:
    """The timestamp of a valid tlog-cosignature/v1 (type 0x04) line by the
    witness on this checkpoint, or None."""
    found = _matching(note_text, witness_vkey, COSIGNATURE_V1)
    if found is None:
        return None
    text, public_key, bodies = found
    timestamps = []
    for body in bodies:
        # "struct { u64 timestamp; [...] opaque ed25519_signature[64]; }" "serialized
        # in sequence, with the timestamp encoded in big-endian order."
        if len(body) != 8 + 64:
            return None
        timestamp = int.from_bytes(body[:8], "big")
        if timestamp > 2**63 - 1:  # "It MUST NOT exceed 2^63 - 1"
            return None
        # "two newline (U+000A) terminated lines (one header line and one timestamp
        # line) followed by the whole note body of the cosigned checkpoint"; "The
        # header line MUST be the fixed string `cosignature/v1`"; "the string `time`,
        # a single space (0x20), and `timestamped_signature.timestamp` encoded as an
        # ASCII decimal with no leading zeroes."
        message = f"cosignature/v1\ntime {timestamp}\n{text}".encode()
        if not _ed25519_ok(public_key, body[8:], message):
            return None
        timestamps.append(timestamp)
    return timestamps[0] if timestamps else None
