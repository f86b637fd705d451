"""C2SP signed notes, checkpoints and cosignatures: published vectors, rules, fuzzing."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from trustchain.ct import note
from trustchain.ct.note import (
    Checkpoint,
    CosignatureV1Signer,
    Ed25519Signer,
    NoteError,
    Signature,
    UnverifiedNoteError,
)

# --- published vectors ---------------------------------------------------------
# golang.org/x/mod/sumdb/note, note_test.go (TestNewVerifier, TestSign, TestOpen):
# https://github.com/golang/mod/blob/02c991387e35f9e4c0a9b7ce137717055f8d716d/sumdb/note/note_test.go
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = ("If you think cryptography is the answer to your problem,\n"
           "then you don't know what your problem is.\n")
PETER_SIG = ("\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqf"
             "qdngotpRZb6KE6RyyBwJnAM=\n")
ENOCH_SIG = ("\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01o"
             "OTGwnWLox33WWd1RvMc+QQ=\n")

# c2sp.org/signed-note, "Verifier keys" / "Example":
# https://github.com/C2SP/C2SP/blob/5ba5ee8/signed-note.md
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = ("This is an example message.\n\n\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfX"
             "ppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n")
# c2sp.org/signed-note, the opening example (a text with a blank line in it).
SPEC_POEM = ("Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned \u00e8 subito "
             "sera.\n\n\u2014 quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITL"
             "lC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n")

# transparency-dev/formats, note/note_cosigv1_test.go (TestCoSigV1NewVerifier, TestCoSigV1Timestamp):
# https://github.com/transparency-dev/formats/blob/091ce41666c09683aa9350785e572be27f0c026d/note/note_cosigv1_test.go
REMORA_COSIG_VKEY = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
PLUS_IN_KEY_VKEY = "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6"
COSIG_1727964367 = ("ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWW"
                    "OworDcFiEBYJXORmnFBOBA==")

# c2sp.org/tlog-cosignature, the example checkpoint and its signed message ("time 1679315147"):
# https://github.com/C2SP/C2SP/blob/5ba5ee8/tlog-cosignature.md
SPEC_CHECKPOINT = ("example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n"
                   "\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4U"
                   "RYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
                   "\u2014 witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWX"
                   "EhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n")


def test_go_signer_key_signs_the_published_note_byte_for_byte() -> None:
    signer = note.parse_skey(PETER_SKEY)
    assert signer.skey() == PETER_SKEY
    assert signer.verifier().vkey() == PETER_VKEY
    assert note.sign_note(GO_TEXT, [signer]) == GO_TEXT + "\n" + PETER_SIG
    # An existing signature by the same key is replaced, as in Go's TestSign.
    stale = Signature("PeterNeumann", bytes.fromhex("c74f20a3"), b"BAD")
    assert note.sign_note(GO_TEXT, [signer], [stale]) == GO_TEXT + "\n" + PETER_SIG


def test_go_open_vectors() -> None:
    peter, enoch = note.parse_vkey(PETER_VKEY), note.parse_vkey(ENOCH_VKEY)
    parsed = note.parse_note(GO_TEXT + "\n" + PETER_SIG + ENOCH_SIG)
    assert parsed.text == GO_TEXT
    assert [s.name for s in note.verify_note(parsed, [peter])] == ["PeterNeumann"]
    assert [s.name for s in note.verify_note(parsed, [peter, enoch])] == ["PeterNeumann", "EnochRoot"]
    with pytest.raises(UnverifiedNoteError):
        note.verify_note(parsed, [])
    # A corrupted signature by a known key rejects the whole note.
    bad = GO_TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(UnverifiedNoteError, match="invalid signature"):
        note.verify_note(note.parse_note(bad), [peter])
    # ... and one by an unknown key is ignored.
    enoch_bad = ENOCH_SIG[:60] + "ABCD" + ENOCH_SIG[60:]
    assert note.verify_note(note.parse_note(GO_TEXT + "\n" + PETER_SIG + enoch_bad), [peter])
    # Too many signatures: Go's limit of 100.
    with pytest.raises(NoteError, match="more than 100"):
        note.parse_note(GO_TEXT + "\n" + PETER_SIG * 101)
    assert note.verify_note(note.parse_note(GO_TEXT + "\n" + PETER_SIG * 100), [peter])


@pytest.mark.parametrize("message", [
    GO_TEXT,
    GO_TEXT + "\n",
    GO_TEXT + "\n" + PETER_SIG[:-1],
    "\x01" + GO_TEXT + "\n" + PETER_SIG,
    "\u2014 Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6K"
    "E6RyyBwJnAM=\n",
    GO_TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
])
def test_go_malformed_notes(message: str) -> None:
    with pytest.raises(NoteError):
        note.parse_note(message)


def test_invalid_utf8_is_malformed() -> None:
    with pytest.raises(NoteError, match="UTF-8"):
        note.parse_note(b"\xff" + (GO_TEXT + "\n" + PETER_SIG).encode())


def test_go_verifier_key_manglings_are_refused() -> None:
    assert note.parse_vkey(PETER_VKEY).key_id == bytes.fromhex("c74f20a3")
    raw = PETER_VKEY.encode()
    for i in range(len(raw) + 1):
        for j in range(i + 1, len(raw) + 1):
            if (i, j) != (0, len(raw)):
                with pytest.raises(NoteError):
                    note.parse_vkey(raw[i:j].decode())
    for i in range(len(raw)):
        mangled = raw[:i] + bytes([raw[i] + 1]) + raw[i + 1:]
        with pytest.raises(NoteError):
            note.parse_vkey(mangled.decode())
    # Go's wrong-length key and unknown algorithm, each with an adjusted key ID.
    for vkey in ("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
                 "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"):
        with pytest.raises(NoteError):
            note.parse_vkey(vkey)


def test_go_signer_key_manglings_are_refused() -> None:
    raw = PETER_SKEY.encode()
    for i in range(len(raw)):
        mangled = raw[:i] + bytes([raw[i] + 1]) + raw[i + 1:]
        with pytest.raises(NoteError):
            note.parse_skey(mangled.decode())
    with pytest.raises(NoteError):
        note.parse_skey(PETER_SKEY[len("PRIVATE+KEY+"):])


def test_signed_note_spec_example() -> None:
    verifier = note.parse_vkey(SPEC_VKEY)
    (signature,) = note.verify_note(note.parse_note(SPEC_NOTE), [verifier])
    assert signature.key_id == bytes.fromhex("530d903a")


def test_the_text_ends_at_the_last_blank_line() -> None:
    poem = note.parse_note(SPEC_POEM)
    assert poem.text.endswith("\n\ned \u00e8 subito sera.\n")
    assert poem.signatures[0].name == "quasimodo.example/salvatore"
    assert poem.encode() == SPEC_POEM


def test_cosignature_key_ids_and_timestamps_from_published_vectors() -> None:
    remora = note.parse_vkey(REMORA_COSIG_VKEY)
    assert isinstance(remora, note.CosignatureV1Verifier)
    assert remora.key_id == bytes.fromhex("da77ade7")  # type 0x04, not 0x01
    assert remora.vkey() == REMORA_COSIG_VKEY
    assert note.key_id(remora.name, 0x01, remora.public_key) != remora.key_id
    plus = note.parse_vkey(PLUS_IN_KEY_VKEY)  # a '+' inside the base64 part
    assert isinstance(plus, note.Ed25519Verifier) and plus.vkey() == PLUS_IN_KEY_VKEY
    raw = base64.b64decode(COSIG_1727964367)
    assert note.cosignature_timestamp(Signature("x", raw[:4], raw[4:])) == 1727964367
    cosigned = note.parse_note(SPEC_CHECKPOINT)
    assert note.cosignature_timestamp(cosigned.signatures[1]) == 1679315147
    with pytest.raises(NoteError):  # the log's own signature is no cosignature/v1
        note.cosignature_timestamp(cosigned.signatures[0])


# --- Ed25519 signing and verification ------------------------------------------

SEED = bytes(range(32))


def test_sign_and_verify_round_trip_and_unknown_keys_are_ignored() -> None:
    alice = Ed25519Signer.from_seed("example.com/alice", SEED)
    bob = Ed25519Signer.from_seed("example.com/bob", bytes(32))
    signed = note.sign_note("hello\n", [alice, bob])
    parsed = note.parse_note(signed)
    assert [s.name for s in note.verify_note(parsed, [alice.verifier()])] == ["example.com/alice"]
    # Same name, other key (so another key ID): ignored, not a failure.
    impostor = Ed25519Signer.from_seed("example.com/alice", bytes(32)).verifier()
    with pytest.raises(UnverifiedNoteError, match="no signature"):
        note.verify_note(parsed, [impostor])
    # The text is what is signed.
    tampered = note.parse_note(signed.replace("hello", "hellO"))
    with pytest.raises(UnverifiedNoteError):
        note.verify_note(tampered, [alice.verifier()])


def test_two_verifiers_with_one_name_and_id_are_ambiguous() -> None:
    alice = Ed25519Signer.from_seed("a", SEED)

    class Twin:
        name, key_id = alice.name, alice.key_id

        def verify(self, text: bytes, signature: bytes) -> bool:
            return False

    with pytest.raises(NoteError, match="ambiguous"):
        note.verify_note(note.parse_note(note.sign_note("x\n", [alice])), [alice.verifier(), Twin()])


@pytest.mark.parametrize("name", ["", "a b", "a+b", "a\u00a0b", "a\u2028b", "a\tb"])
def test_bad_key_names(name: str) -> None:
    with pytest.raises(NoteError):
        Ed25519Signer.from_seed(name, SEED)


@pytest.mark.parametrize("text", ["no newline", "a\x00b\n", "tab\there\n"])
def test_sign_refuses_texts_that_would_not_parse(text: str) -> None:
    with pytest.raises(NoteError):
        note.sign_note(text, [Ed25519Signer.from_seed("a", SEED)])


# --- checkpoints ---------------------------------------------------------------

ROOT = hashlib.sha256(b"root").digest()


def test_checkpoint_parses_and_round_trips() -> None:
    parsed = note.parse_checkpoint(note.parse_note(SPEC_CHECKPOINT).text)
    assert parsed.origin == "example.com/behind-the-sofa" and parsed.size == 20852163
    assert parsed.root_hash == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert parsed.text() + "\n" == SPEC_CHECKPOINT[:SPEC_CHECKPOINT.index("\u2014")]
    with_ext = Checkpoint("o", 0, ROOT, ("ext one", "ext two"))
    assert note.parse_checkpoint(with_ext.text()) == with_ext


B64_ROOT = base64.b64encode(ROOT).decode()


@pytest.mark.parametrize("text", [
    f"o\n1\n{B64_ROOT}",  # no final newline
    f"o\n01\n{B64_ROOT}\n",  # leading zero
    f"o\n-1\n{B64_ROOT}\n",
    f"o\n+1\n{B64_ROOT}\n",
    f"o\n\u0661\n{B64_ROOT}\n",  # a non-ASCII digit
    f"o\n{2**63}\n{B64_ROOT}\n",
    f"o\n1\n{B64_ROOT[:-1]}\n",  # not padded
    f"o\n1\n{base64.b64encode(ROOT[:31]).decode()}\n",  # 31 bytes
    f"o\n1\n{B64_ROOT[:-2]}{chr(ord(B64_ROOT[-2]) + 1)}=\n",  # padding bits set
    f"\n1\n{B64_ROOT}\n",  # empty origin
    f"o\n1\n{B64_ROOT}\n\n",  # empty extension line
    "o\n1\n",
])
def test_bad_checkpoints(text: str) -> None:
    with pytest.raises(NoteError):
        note.parse_checkpoint(text)


# --- cosignature/v1 --------------------------------------------------------------

WITNESS = CosignatureV1Signer.from_seed("witness.example/w1", bytes([7]) * 32)
CHECKPOINT = Checkpoint("example.com/log", 5, ROOT)


def test_cosignature_message_is_the_spec_layout() -> None:
    assert note.cosignature_message("example.com/behind-the-sofa\n20852163\nCsUY=\n", 1679315147) == (
        b"cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUY=\n")


def test_cosign_and_verify() -> None:
    signature = WITNESS.cosign(CHECKPOINT, 1700000000)
    assert signature.key_id == note.key_id(WITNESS.name, 0x04, WITNESS.verifier().public_key)
    assert len(signature.signature) == 72
    assert signature.signature[:8] == (1700000000).to_bytes(8, "big")
    line = signature.line()
    assert note.verify_cosignature(WITNESS.verifier(), CHECKPOINT, line) == 1700000000
    # A client appends the line to the checkpoint and verifies it as a note.
    cosigned = note.parse_note(CHECKPOINT.text() + "\n" + line)
    assert note.verify_note(cosigned, [WITNESS.verifier()]) == [signature]
    # Another checkpoint, another key, a changed timestamp: no.
    with pytest.raises(UnverifiedNoteError):
        note.verify_cosignature(WITNESS.verifier(), Checkpoint("example.com/log", 6, ROOT), line)
    other = CosignatureV1Signer.from_seed("witness.example/w1", bytes(32)).verifier()
    with pytest.raises(NoteError, match="not by this key"):
        note.verify_cosignature(other, CHECKPOINT, line)
    shifted = Signature(signature.name, signature.key_id,
                        (1700000001).to_bytes(8, "big") + signature.signature[8:])
    with pytest.raises(UnverifiedNoteError):
        note.verify_cosignature(WITNESS.verifier(), CHECKPOINT, shifted)


def test_a_plain_ed25519_key_does_not_verify_a_cosignature() -> None:
    same_key = Ed25519Signer(WITNESS.name, WITNESS.private_key).verifier()
    cosigned = note.parse_note(CHECKPOINT.text() + "\n" + WITNESS.cosign(CHECKPOINT, 1).line())
    with pytest.raises(UnverifiedNoteError):
        note.verify_note(cosigned, [same_key])  # key ID type 0x01 != 0x04


@pytest.mark.parametrize("timestamp", [-1, 2**63])
def test_cosignature_timestamps_are_u63(timestamp: int) -> None:
    with pytest.raises(NoteError):
        WITNESS.cosign(CHECKPOINT, timestamp)


# --- fuzzing: parsers of wire data raise NoteError and nothing else ----------------

def _signed_note() -> str:
    key = Ed25519Signer("k", Ed25519PrivateKey.from_private_bytes(SEED))
    return note.sign_note(CHECKPOINT.text(), [key]) + WITNESS.cosign(CHECKPOINT, 9).line()


VALID = _signed_note().encode()


@st.composite
def mutated(draw: st.DrawFn, valid: bytes = VALID) -> bytes:
    """A valid input with a few bytes flipped, cut, or inserted."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[at:at + draw(st.integers(1, 8))]
        else:
            data[at:at] = draw(st.sampled_from([b"\n", b"\n\n", b" ", b"+", b"=", "\u2014".encode(),
                                                b"\x00", b"\xff", b"0"]))
    return bytes(data)


@given(st.one_of(st.binary(max_size=300), mutated(), st.text(max_size=200).map(str.encode)))
def test_parse_note_raises_only_note_error(data: bytes) -> None:
    try:
        parsed = note.parse_note(data)
    except NoteError:
        return
    assert parsed.encode().encode() == data  # what parses re-encodes exactly
    try:
        note.verify_note(parsed, [Ed25519Signer.from_seed("k", SEED).verifier(), WITNESS.verifier()])
    except NoteError:
        pass


@given(st.one_of(st.text(max_size=120), mutated(CHECKPOINT.text().encode()).map(
    lambda b: b.decode("utf-8", "replace"))))
def test_parse_checkpoint_raises_only_note_error(text: str) -> None:
    try:
        parsed = note.parse_checkpoint(text)
    except NoteError:
        return
    assert parsed.text() == text  # one spelling per checkpoint


@given(st.one_of(st.text(max_size=100), mutated(PETER_VKEY.encode()).map(
    lambda b: b.decode("utf-8", "replace"))))
def test_parse_keys_raise_only_note_error(text: str) -> None:
    for parse in (note.parse_vkey, note.parse_skey, note.parse_signature_line):
        try:
            parse(text)
        except NoteError:
            pass


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cc"]), min_size=1,
               max_size=40).filter(note.is_valid_key_name),
       st.text(max_size=60).map(lambda t: t.replace("\r", "") + "\n"), st.binary(min_size=32,
                                                                                 max_size=32))
def test_any_signed_text_verifies(name: str, text: str, seed: bytes) -> None:
    signer = Ed25519Signer.from_seed(name, seed)
    try:
        signed = note.sign_note(text, [signer])
    except NoteError:
        return  # a control character in the text
    parsed = note.parse_note(signed)
    assert parsed.text == text
    assert note.verify_note(parsed, [signer.verifier()])


@pytest.mark.parametrize("fields", [
    ("", 1, ROOT, ()), ("a\nb", 1, ROOT, ()), ("o", -1, ROOT, ()), ("o", 2**63, ROOT, ()),
    ("o", 1, ROOT[:31], ()), ("o", 1, ROOT, ("",)), ("o", 1, ROOT, ("x\ny",)), ("o\ud800", 1, ROOT, ()),
])
def test_a_checkpoint_that_would_not_parse_cannot_be_built(
        fields: tuple[str, int, bytes, tuple[str, ...]]) -> None:
    with pytest.raises(NoteError):
        Checkpoint(*fields)


@pytest.mark.parametrize("text", ["a\ud800+c74f20a3+AAAA", "\ud800"])
def test_lone_surrogates_are_refused(text: str) -> None:
    with pytest.raises(NoteError):
        note.parse_vkey(text)
    with pytest.raises(NoteError):
        note.parse_note(text + "\n\n\u2014 a AAAAAAA=\n")
    with pytest.raises(NoteError):
        note.parse_checkpoint(text + "\n1\n" + B64_ROOT + "\n")
