"""C2SP signed notes, checkpoints and Ed25519 cosignatures. Pure.

* https://c2sp.org/signed-note (v1.0.0): "Format" (the note text, a blank line,
  then ``— <name> base64(key ID || signature)`` lines; valid UTF-8, no control
  character but newline; a limit on signature lines of at least 16),
  "Signatures" (unknown keys are ignored, a known key's signature must verify,
  key ID = SHA-256(name || 0x0A || type || public key)[:4]), "Ed25519
  signatures" (type 0x01) and "Verifier keys" (``<name>+<hex ID>+base64(type
  || key)``).  The private-key text ``PRIVATE+KEY+<name>+<hex ID>+base64(0x01
  || seed)`` is golang.org/x/mod/sumdb/note's, which the spec does not define.
* https://c2sp.org/tlog-checkpoint (v1.0.0): "Note text" (origin, decimal size
  without leading zeros, base64 root hash, optional non-empty extension lines).
* https://c2sp.org/tlog-cosignature (v1.0.1, Ed25519 only): "Format" (key ID
  type 0x04, signature = u64 big-endian timestamp || 64-byte Ed25519
  signature) and "Signed message" (``cosignature/v1``, ``time <t>``, then the
  checkpoint text).

Every parser of wire data raises only :class:`NoteError`.  Keys are built
from bytes handed in: nothing here draws randomness or reads the clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from trustchain.errors import RemoteError

#: Signature type bytes (signed-note "Signature types").
SIGNATURE_ED25519 = 0x01
SIGNATURE_COSIGNATURE_V1 = 0x04
#: Signature lines accepted in one note: the spec's floor is 16; 100 is Go's limit.
MAX_SIGNATURES = 100
#: Bytes in one note: room for 100 post-quantum signatures (~5 kB each) and a text.
MAX_NOTE_BYTES = 1 << 20
#: Checkpoint sizes and cosignature timestamps are u63 (Go int64, SQLite INTEGER).
MAX_U63 = (1 << 63) - 1

_DASH = "\u2014 "
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")  # ASCII digits only; 19 digits bound it
_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_HEX_ID = re.compile(r"[0-9a-f]{8}")
_COSIGNATURE_HEADER = b"cosignature/v1\n"


class NoteError(RemoteError):
    """A signed note, checkpoint, key or cosignature is malformed or does not verify."""


class UnverifiedNoteError(NoteError):
    """No signature by a trusted key verifies, or one by a trusted key fails."""


def _b64decode(text: str) -> bytes:
    """Standard padded base64 in its one canonical spelling (zero padding bits)."""
    if not _B64.fullmatch(text):
        raise NoteError("not standard base64")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError("not standard base64") from None
    # A second spelling of the same hash would let one checkpoint have two texts.
    if base64.b64encode(raw).decode() != text:
        raise NoteError("not canonical base64")
    return raw


def parse_decimal(text: str) -> int:
    """An ASCII decimal with no leading zeros, at most 2**63 - 1."""
    if not _DECIMAL.fullmatch(text) or int(text) > MAX_U63:
        raise NoteError(f"not a decimal without leading zeros below 2**63: {text[:40]!r}")
    return int(text)


def _is_space(char: str) -> bool:
    # Go's unicode.IsSpace: the Z categories plus the ASCII and Latin-1 spaces.
    return char.isspace() or unicodedata.category(char) in ("Zs", "Zl", "Zp")


def is_valid_key_name(name: str) -> bool:
    """Key names are non-empty, with no Unicode space and no ``+`` (signed-note "Format")."""
    return bool(name) and "+" not in name and not any(_is_space(c) for c in name) \
        and not _has_control(name) and _is_utf8(name)


def _is_utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeError:  # a Python str may hold lone surrogates
        return False
    return True


def parse_hash(text: str) -> bytes:
    """A SHA-256 hash in canonical standard base64 (root hashes, proof lines)."""
    raw = _b64decode(text)
    if len(raw) != 32:
        raise NoteError("a hash is 32 bytes")
    return raw


def _has_control(text: str) -> bool:
    return any(c < " " and c != "\n" for c in text)


def key_id(name: str, signature_type: int, public_key: bytes) -> bytes:
    """SHA-256(name || 0x0A || signature type || public key)[:4] (signed-note "Signatures")."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([signature_type]) + public_key).digest()[:4]


@dataclass(frozen=True)
class Signature:
    """One signature line: the key's name and 4-byte ID, and the signature after the ID."""

    name: str
    key_id: bytes
    signature: bytes

    def __post_init__(self) -> None:
        if not is_valid_key_name(self.name) or len(self.key_id) != 4 or not self.signature:
            raise NoteError("a signature has a valid key name, a 4-byte key ID and signature bytes")

    def line(self) -> str:
        """``— <name> base64(key ID || signature)`` and a newline."""
        return f"{_DASH}{self.name} {base64.b64encode(self.key_id + self.signature).decode()}\n"


@dataclass(frozen=True)
class Note:
    """A note's text (ending in a newline) and its signature lines, in order."""

    text: str
    signatures: tuple[Signature, ...]

    def encode(self) -> str:
        return self.text + "\n" + "".join(s.line() for s in self.signatures)


class NoteVerifier(Protocol):
    """A key that checks signatures over note texts: Ed25519 logs, cosigning witnesses."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> bytes: ...

    def verify(self, text: bytes, signature: bytes) -> bool:
        """Whether ``signature`` (after the key ID) is this key's over ``text``."""
        ...


class NoteSigner(Protocol):
    """A key that signs note texts (one signature line each)."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> bytes: ...

    def sign(self, text: str) -> Signature: ...


def _check_text(text: str) -> None:
    if not _is_utf8(text):
        raise NoteError("a note is not valid UTF-8")
    if _has_control(text):
        raise NoteError("a note holds a control character other than newline")


def parse_note(data: bytes | str) -> Note:
    """Split a signed note into its text and signature lines; verifies nothing.

    :raises NoteError: if it breaks signed-note "Format" (also: more than
        :data:`MAX_SIGNATURES` lines, or more than :data:`MAX_NOTE_BYTES`).
    """
    if isinstance(data, str):
        try:
            data = data.encode()
        except UnicodeError:  # lone surrogates
            raise NoteError("a note is not valid UTF-8") from None
    if len(data) > MAX_NOTE_BYTES:
        raise NoteError(f"a note is larger than {MAX_NOTE_BYTES} bytes")
    try:
        message = data.decode()
    except UnicodeError:
        raise NoteError("a note is not valid UTF-8") from None
    _check_text(message)
    # The text ends at the last blank line; it may itself hold blank lines.
    split = message.rfind("\n\n")
    if split < 0:
        raise NoteError("a note has no blank line before its signatures")
    text, block = message[:split + 1], message[split + 2:]
    if not block.endswith("\n"):
        raise NoteError("a note needs at least one signature line ending in a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"a note has more than {MAX_SIGNATURES} signatures")
    signatures = []
    for line in lines:
        if not line.startswith(_DASH):
            raise NoteError("a signature line must start with an em dash and a space")
        name, _, encoded = line[len(_DASH):].partition(" ")
        if not is_valid_key_name(name) or not encoded:
            raise NoteError("a signature line needs a key name and a signature")
        # Go also takes non-zero padding bits; no encoder makes them, and refusing
        # them means a parsed note re-encodes to exactly the bytes received.
        raw = _b64decode(encoded)
        if len(raw) < 5:
            raise NoteError("a signature holds a 4-byte key ID and at least one byte")
        signatures.append(Signature(name, raw[:4], raw[4:]))
    return Note(text, tuple(signatures))


def verify_note(note: Note, verifiers: Iterable[NoteVerifier]) -> list[Signature]:
    """The signatures of ``note`` by ``verifiers`` (one per key), all checked.

    Signatures whose (name, key ID) no verifier has are ignored (signed-note
    "Signatures").  Every signature that does match a verifier is checked, and
    one that fails rejects the whole note: the spec's SHOULD, and
    tlog-witness's 403 rule.

    :raises UnverifiedNoteError: if none verifies, or a trusted key's fails.
    :raises NoteError: if two different verifiers share a name and key ID.
    """
    known: dict[tuple[str, bytes], list[NoteVerifier]] = {}
    for verifier in verifiers:
        group = known.setdefault((verifier.name, verifier.key_id), [])
        if verifier not in group:
            group.append(verifier)
    verified: dict[tuple[str, bytes], Signature] = {}
    text = note.text.encode()
    for signature in note.signatures:
        pair = (signature.name, signature.key_id)
        matches = known.get(pair)
        if matches is None:
            continue
        if len(matches) > 1:
            raise NoteError(f"ambiguous key {signature.name}+{signature.key_id.hex()}")
        if not matches[0].verify(text, signature.signature):
            raise UnverifiedNoteError(
                f"invalid signature for key {signature.name}+{signature.key_id.hex()}")
        verified.setdefault(pair, signature)
    if not verified:
        raise UnverifiedNoteError("the note has no signature by a trusted key")
    return list(verified.values())


def sign_note(text: str, signers: Sequence[NoteSigner], existing: Sequence[Signature] = ()) -> str:
    """A signed note: ``text``, then ``existing`` signature lines, then one per signer.

    :raises NoteError: if ``text`` could not be parsed back as a note's text.
    """
    if not text.endswith("\n"):
        raise NoteError("a note's text ends in a newline")
    _check_text(text)
    if not signers and not existing:
        raise NoteError("a note needs at least one signature")
    ours = {(s.name, s.key_id) for s in signers}
    lines = [s for s in existing if (s.name, s.key_id) not in ours]  # replaced by ours
    lines += [s.sign(text) for s in signers]
    return Note(text, tuple(lines)).encode()


def _raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _ed25519_verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def _check_name(name: str) -> None:
    if not is_valid_key_name(name):
        raise NoteError(f"invalid key name {name[:60]!r}")


@dataclass(frozen=True)
class Ed25519Verifier:
    """A signed-note Ed25519 key (type 0x01): checks signatures over the note text."""

    name: str
    public_key: bytes

    def __post_init__(self) -> None:
        _check_name(self.name)
        if len(self.public_key) != 32:
            raise NoteError("an Ed25519 public key is 32 bytes")

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, SIGNATURE_ED25519, self.public_key)

    def verify(self, text: bytes, signature: bytes) -> bool:
        return len(signature) == 64 and _ed25519_verify(self.public_key, signature, text)

    def vkey(self) -> str:
        return _vkey(self.name, self.key_id, SIGNATURE_ED25519, self.public_key)


@dataclass(frozen=True)
class Ed25519Signer:
    """A signed-note Ed25519 signing key (type 0x01)."""

    name: str
    private_key: Ed25519PrivateKey

    def __post_init__(self) -> None:
        _check_name(self.name)

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> Ed25519Signer:
        if len(seed) != 32:
            raise NoteError("an Ed25519 seed is 32 bytes")
        return cls(name, Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def key_id(self) -> bytes:
        return self.verifier().key_id

    def verifier(self) -> Ed25519Verifier:
        return Ed25519Verifier(self.name, _raw_public(self.private_key))

    def sign(self, text: str) -> Signature:
        return Signature(self.name, self.key_id, self.private_key.sign(text.encode()))

    def skey(self) -> str:
        """``PRIVATE+KEY+<name>+<hex ID>+base64(0x01 || seed)`` (Go's format)."""
        seed = self.private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return "PRIVATE+KEY+" + _vkey(self.name, self.key_id, SIGNATURE_ED25519, seed)


def _vkey(name: str, kid: bytes, signature_type: int, key: bytes) -> str:
    return f"{name}+{kid.hex()}+{base64.b64encode(bytes([signature_type]) + key).decode()}"


def _split_key(text: str) -> tuple[str, bytes, int, bytes]:
    """``<name>+<hex ID>+base64(type || key)`` -> (name, ID, type, key); the key may hold '+'."""
    name, _, rest = text.partition("+")
    hex_id, sep, encoded = rest.partition("+")
    if not sep or not is_valid_key_name(name) or not _HEX_ID.fullmatch(hex_id):
        raise NoteError("a key is <name>+<8 lower-case hex digits>+<base64>")
    raw = _b64decode(encoded)
    if len(raw) < 2:
        raise NoteError("a key holds a type byte and key material")
    return name, bytes.fromhex(hex_id), raw[0], raw[1:]


def parse_vkey(vkey: str) -> Ed25519Verifier | CosignatureV1Verifier:
    """A verifier key: Ed25519 (type 0x01) or an Ed25519 cosigner (type 0x04).

    :raises NoteError: for another type, a key that is not 32 bytes, or an ID
        that is not the key's.
    """
    name, kid, signature_type, key = _split_key(vkey)
    verifier: Ed25519Verifier | CosignatureV1Verifier
    if signature_type == SIGNATURE_ED25519:
        verifier = Ed25519Verifier(name, key)
    elif signature_type == SIGNATURE_COSIGNATURE_V1:
        verifier = CosignatureV1Verifier(name, key)
    else:
        raise NoteError(f"unsupported signature type 0x{signature_type:02x}")
    if verifier.key_id != kid:
        raise NoteError("the key ID does not match the key")
    return verifier


def parse_skey(skey: str) -> Ed25519Signer:
    """A signer key in Go's ``PRIVATE+KEY+<name>+<hex ID>+base64(0x01 || seed)`` format.

    :raises NoteError: if malformed, not Ed25519, or the ID is not the key's.
    """
    if not skey.startswith("PRIVATE+KEY+"):
        raise NoteError("a signer key starts with PRIVATE+KEY+")
    name, kid, signature_type, seed = _split_key(skey[len("PRIVATE+KEY+"):])
    if signature_type != SIGNATURE_ED25519:
        raise NoteError(f"unsupported signature type 0x{signature_type:02x}")
    signer = Ed25519Signer.from_seed(name, seed)
    if signer.key_id != kid:
        raise NoteError("the key ID does not match the key")
    return signer


# --- tlog-checkpoint ----------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint's text: origin, tree size, root hash, extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for line in (self.origin, *self.extensions):
            if not line or "\n" in line or _has_control(line) or not _is_utf8(line):
                raise NoteError("checkpoint lines are non-empty text without control characters")
        if not 0 <= self.size <= MAX_U63 or len(self.root_hash) != 32:
            raise NoteError("a checkpoint has a size below 2**63 and a 32-byte root hash")

    def text(self) -> str:
        """The note text (the parser accepts only this spelling, so it round-trips)."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode(),
                 *self.extensions]
        return "".join(line + "\n" for line in lines)


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a checkpoint's note text (tlog-checkpoint "Note text").

    The origin is any non-empty line: the spec's "schema-less URL" is a SHOULD
    that clients MUST NOT assume.

    :raises NoteError: if the text is not a checkpoint.
    """
    _check_text(text)
    if not text.endswith("\n"):
        raise NoteError("a checkpoint ends in a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3 or not all(lines):
        raise NoteError("a checkpoint is at least three lines, none of them empty")
    return Checkpoint(lines[0], parse_decimal(lines[1]), parse_hash(lines[2]), tuple(lines[3:]))


# --- tlog-cosignature (Ed25519, cosignature/v1) --------------------------------


def cosignature_message(checkpoint_text: str, timestamp: int) -> bytes:
    """``cosignature/v1\\ntime <t>\\n`` then the checkpoint's text (tlog-cosignature)."""
    return _COSIGNATURE_HEADER + f"time {timestamp}\n".encode() + checkpoint_text.encode()


def _check_timestamp(timestamp: int) -> None:
    if not 0 <= timestamp <= MAX_U63:
        raise NoteError("a cosignature timestamp is 0 to 2**63 - 1")


@dataclass(frozen=True)
class CosignatureV1Verifier:
    """An Ed25519 cosigner's key (type 0x04): checks timestamped cosignatures.

    A note verifier too: a client may append a witness's response to the
    checkpoint and pass this to :func:`verify_note` (tlog-witness).
    """

    name: str
    public_key: bytes

    def __post_init__(self) -> None:
        _check_name(self.name)
        if len(self.public_key) != 32:
            raise NoteError("an Ed25519 public key is 32 bytes")

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, SIGNATURE_COSIGNATURE_V1, self.public_key)

    def verify(self, text: bytes, signature: bytes) -> bool:
        if len(signature) != 72:  # u64 timestamp || 64-byte Ed25519 signature
            return False
        timestamp = int.from_bytes(signature[:8], "big")
        if timestamp > MAX_U63:
            return False
        message = _COSIGNATURE_HEADER + f"time {timestamp}\n".encode() + text
        return _ed25519_verify(self.public_key, signature[8:], message)

    def vkey(self) -> str:
        return _vkey(self.name, self.key_id, SIGNATURE_COSIGNATURE_V1, self.public_key)


@dataclass(frozen=True)
class CosignatureV1Signer:
    """An Ed25519 cosigner (a witness key): signs checkpoints at a given time."""

    name: str
    private_key: Ed25519PrivateKey

    def __post_init__(self) -> None:
        _check_name(self.name)

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> CosignatureV1Signer:
        if len(seed) != 32:
            raise NoteError("an Ed25519 seed is 32 bytes")
        return cls(name, Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def key_id(self) -> bytes:
        return self.verifier().key_id

    def verifier(self) -> CosignatureV1Verifier:
        return CosignatureV1Verifier(self.name, _raw_public(self.private_key))

    def cosign(self, checkpoint: Checkpoint, timestamp: int) -> Signature:
        """The cosignature of ``checkpoint`` made at ``timestamp`` (POSIX seconds)."""
        _check_timestamp(timestamp)
        signed = self.private_key.sign(cosignature_message(checkpoint.text(), timestamp))
        return Signature(self.name, self.key_id, timestamp.to_bytes(8, "big") + signed)


def cosignature_timestamp(signature: Signature) -> int:
    """The time a cosignature/v1 says it was made.

    :raises NoteError: if it is not 72 bytes or the time exceeds 2**63 - 1.
    """
    if len(signature.signature) != 72:
        raise NoteError("a cosignature/v1 is a timestamp and a 64-byte signature")
    timestamp = int.from_bytes(signature.signature[:8], "big")
    _check_timestamp(timestamp)
    return timestamp


def parse_signature_line(line: str) -> Signature:
    """One ``— <name> <base64>`` line, with or without its final newline.

    :raises NoteError: if malformed.
    """
    if line.endswith("\n"):
        line = line[:-1]
    if "\n" in line:
        raise NoteError("a signature line is one line")
    # Parse it as the signature block of a note with an empty text.
    (signature,) = parse_note("\n\n" + line + "\n").signatures
    return signature


def verify_cosignature(verifier: CosignatureV1Verifier, checkpoint: Checkpoint,
                       line: str | Signature) -> int:
    """Check one cosignature line by ``verifier`` over ``checkpoint``; returns its timestamp.

    :raises NoteError: if the line is malformed, names another key, or does not verify.
    """
    signature = parse_signature_line(line) if isinstance(line, str) else line
    if (signature.name, signature.key_id) != (verifier.name, verifier.key_id):
        raise NoteError("the cosignature is not by this key")
    timestamp = cosignature_timestamp(signature)
    if not verifier.verify(checkpoint.text().encode(), signature.signature):
        raise UnverifiedNoteError("the cosignature does not verify")
    return timestamp



def cosigners(note: Note, checkpoint: Checkpoint,
              witnesses: Mapping[str, NoteVerifier]) -> set[str]:
    """The names (keys of ``witnesses``) whose cosignature/v1 line on ``note`` verifies over
    ``checkpoint``; lines of other keys, and lines that do not verify, are passed over
    (signed-note: a verifier ignores signatures from keys it does not know)."""
    found = set()
    for name, verifier in witnesses.items():
        if not isinstance(verifier, CosignatureV1Verifier):
            continue
        for signature in note.signatures:
            if (signature.name, signature.key_id) != (verifier.name, verifier.key_id):
                continue
            try:
                verify_cosignature(verifier, checkpoint, signature)
            except NoteError:
                continue  # a bad line does not count; another may be good
            found.add(name)
            break
    return found
