"""The independent C2SP verifier (tests/c2sp_verifier.py) against published vectors.

Each vector names where it was published; the verifier must accept them as
given and reject any change.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.c2sp_verifier import parse_vkey, split_note, verify_cosignature, verify_note_signature

# https://github.com/golang/mod/blob/master/sumdb/note/note_test.go (TestOpen)
PETER_KEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_KEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
PETER_TEXT = ("If you think cryptography is the answer to your problem,\n"
              "then you don't know what your problem is.\n")
PETER_SIG = ("\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgK"
             "vqfqdngotpRZb6KE6RyyBwJnAM=\n")
ENOCH_SIG = ("\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01o"
             "OTGwnWLox33WWd1RvMc+QQ=\n")

# https://c2sp.org/signed-note#example (C2SP/C2SP signed-note.md, "Verifier keys")
FOO_KEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
FOO_NOTE = ("This is an example message.\n\n\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6"
            "TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n")

# A real checkpoint of the arche2025h1 staging CT log with real witness
# cosignatures, published as a test vector at
# https://github.com/florolf/tlog-scales/blob/main/tests/test_signing.py
# (TestCheckpointVerification), with the log's and remora's vkeys.
ARCHE_KEY = ("arche2025h1.staging.ct.transparency.dev+ba2f06c0+"
             "AU0vHmlGCS/PdN8b2OaGmKprLI8HKM+dJ472xgFYh15f")
REMORA_KEY = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
ARCHE_BODY = ("arche2025h1.staging.ct.transparency.dev\n1432088532\n"
              "U7WM79jrzyhGZ5/GUBTpM7NzwdyfFx61t3RovgcC4Ro=\n")
ARCHE_SIGNATURES = "".join(f"\u2014 {name} {sig}\n" for name, sig in [
    ("arche2025h1.staging.ct.transparency.dev",
     "zTM8sQAAAZ5W0WdjBAMARjBEAiBjW5IQf9pvsYLfQFX6hoGREPMHbdQ3urbllzalApkptQIgIpwtEroe"
     "W2BXaHAI4kJXFbon5Ch9MNL5zRNZ55lvGt0="),
    ("arche2025h1.staging.ct.transparency.dev",
     "ui8GwCF1+kWqZrxGdhj4aX3gcw7XUlXQQabg/27lefwhUkzbC3NygNI75MdhL1bfTW9g8Ei59RA23oHP"
     "7Ry1k3ZFWwQ="),
    ("transparency.dev/DEV:witness-little-garden",
     "2AQqhwAAAABqEiEgzgFIqqhbUoDwjMWE6UP8nd8/KYTzwZ2rhIgcqoXHAwVkjZr4AscylP3v7sEodkRA"
     "ErumC2q44vdgJY096st5BQ=="),
    ("witness1.smartit.nu/witness1",
     "pIyCDwAAAABqEiEghIp82KWebrw7/oHQwlTAm3g2RKS4+eebl8eO0WH+/iEcxZ75W3u5hNI7TOQtmJbq"
     "mNWVuE0tgh0XwzdZsDsUAQ=="),
    ("remora.n621.de",
     "2net5wAAAABqEiEgPlfF3V06o0Y+fHM+J5J9s27wgxxcOVSpZ/2g/KSiXCg9DEZI+aVCIobWX9sXTynk"
     "5XeU/zZ0WBxtqB0DrAWfBw=="),
    ("witness.stagemole.eu",
     "Z/euoAAAAABqEiEgw0i+7g2ENfDAWHmtRzCfKTHSDwYDJA2NmKeGi9Y8FtEyOUvVr+AJmIY/2TUFucgK"
     "i7lI7cUiOvKFYe/TmN9DAg=="),
])
ARCHE_CHECKPOINT = ARCHE_BODY + "\n" + ARCHE_SIGNATURES
REMORA_TIME = 0x6A122120  # the 8 bytes after remora's key ID

# https://c2sp.org/tlog-cosignature (the example cosignature and signed message)
SPEC_COSIGNATURE = ("jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZ"
                    "qhf5nNo0xUe+mbIUBkBIfZ+qnA==")


def test_go_sumdb_note_vectors_verify() -> None:
    note = PETER_TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert verify_note_signature(note, PETER_KEY)
    assert verify_note_signature(note, ENOCH_KEY)
    assert verify_note_signature(PETER_TEXT + "\n" + PETER_SIG, PETER_KEY)
    assert not verify_note_signature(PETER_TEXT + "\n" + ENOCH_SIG, PETER_KEY)


def test_go_sumdb_note_vkey_parses_as_published() -> None:
    name, key_id, sig_type, public_key = parse_vkey(PETER_KEY)
    assert (name, key_id.hex(), sig_type, len(public_key)) == ("PeterNeumann", "c74f20a3", 1, 32)


def test_c2sp_signed_note_example_verifies() -> None:
    assert verify_note_signature(FOO_NOTE, FOO_KEY)
    assert not verify_note_signature(FOO_NOTE.replace("example message", "example massage"), FOO_KEY)


@pytest.mark.parametrize("mangle", [
    lambda n: n.replace("problem,", "problem;"),  # the text
    lambda n: n.replace("x08go/ZJ", "x08go/ZK"),  # the signature
    lambda n: n.replace("\n\n", "\n"),  # no blank line
    lambda n: n.rstrip("\n"),  # no final newline
    lambda n: n.replace("\u2014", "-"),  # not an em dash
    lambda n: "\x01" + n,  # a control character
])
def test_a_changed_note_does_not_verify(mangle: Callable[[str], str]) -> None:
    assert not verify_note_signature(mangle(PETER_TEXT + "\n" + PETER_SIG), PETER_KEY)


def test_a_bad_line_from_the_known_key_rejects_the_note() -> None:
    """signed-note: "If a signature from a known key fails to verify, clients
    SHOULD reject the whole note"."""
    bad = PETER_SIG.replace("x08go/ZJ", "x08go/ZK")
    assert not verify_note_signature(PETER_TEXT + "\n" + PETER_SIG + bad, PETER_KEY)


def test_real_checkpoint_log_signature_and_cosignature_verify() -> None:
    assert verify_note_signature(ARCHE_CHECKPOINT, ARCHE_KEY)
    assert verify_cosignature(ARCHE_CHECKPOINT, REMORA_KEY) == REMORA_TIME == 1779573024


def test_real_cosignature_rejects_any_change() -> None:
    assert verify_cosignature(ARCHE_CHECKPOINT.replace("1432088532", "1432088533"), REMORA_KEY) is None
    tampered = ARCHE_CHECKPOINT.replace("2net5wAAAABqEiEgPlfF", "2net5wAAAABqEiEhPlfF")  # timestamp
    assert tampered != ARCHE_CHECKPOINT
    assert verify_cosignature(tampered, REMORA_KEY) is None
    # The log's Ed25519 key is not a cosignature key, and a 0x01 vkey for the
    # witness's key has another key ID: no line matches either.
    assert verify_cosignature(ARCHE_CHECKPOINT, ARCHE_KEY) is None
    _, _, _, remora = parse_vkey(REMORA_KEY)
    as_note_key = _vkey("remora.n621.de", 0x01, remora)
    assert not verify_note_signature(ARCHE_CHECKPOINT, as_note_key)


def test_spec_cosignature_example_has_the_documented_layout() -> None:
    """tlog-cosignature's example line decodes as key ID || u64 timestamp ||
    64-byte signature, and its timestamp is the one of its signed message
    example ("time 1679315147")."""
    raw = base64.b64decode(SPEC_COSIGNATURE)
    assert len(raw) == 4 + 8 + 64
    assert int.from_bytes(raw[4:12], "big") == 1679315147
    parsed = split_note("o\n1\nh\n\n\u2014 witness.example.com/w1 " + SPEC_COSIGNATURE + "\n")
    assert parsed is not None and parsed[1][0][0] == "witness.example.com/w1"


def test_cosignature_round_trip_with_a_fresh_key() -> None:
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes_raw()
    name = "witness.example/w1"
    vkey = _vkey(name, 0x04, public)
    body = "example.com/log\n5\n" + base64.b64encode(bytes(32)).decode() + "\nextension\n"
    timestamp = 1700000000
    signed = key.sign(f"cosignature/v1\ntime {timestamp}\n".encode() + body.encode())
    line = base64.b64encode(bytes.fromhex(vkey.split("+")[1]) + timestamp.to_bytes(8, "big")
                            + signed).decode()
    note = body + "\n\u2014 " + name + " " + line + "\n"
    assert verify_cosignature(note, vkey) == timestamp
    # The extension line is signed too (tlog-cosignature: "MUST be included").
    assert verify_cosignature(note.replace("extension", "extensioN"), vkey) is None
    # A timestamp over 2^63 - 1 is refused even if signed.
    huge = 2**63
    signed = key.sign(f"cosignature/v1\ntime {huge}\n".encode() + body.encode())
    line = base64.b64encode(bytes.fromhex(vkey.split("+")[1]) + huge.to_bytes(8, "big")
                            + signed).decode()
    assert verify_cosignature(body + "\n\u2014 " + name + " " + line + "\n", vkey) is None


def _vkey(name: str, sig_type: int, public_key: bytes) -> str:
    key_id = hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()[:4]
    return f"{name}+{key_id.hex()}+{base64.b64encode(bytes([sig_type]) + public_key).decode()}"
