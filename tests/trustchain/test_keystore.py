from __future__ import annotations

import base64
import json
import stat
from datetime import datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support import PASSPHRASE, assert_no_plaintext_private_keys
from trustchain.errors import (
    CorruptKeyError,
    KeyNotFoundError,
    KeyStoreError,
    PassphraseError,
    WrongPassphraseError,
)
from trustchain.keystore import KdfParams, KeyStatus, KeyStore, KeyType


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return KeyStore.create(tmp_path / "keys", PASSPHRASE)


ASYMMETRIC = [t for t in KeyType if t is not KeyType.HMAC_SHA256]


@pytest.mark.parametrize("key_type", ASYMMETRIC)
def test_generate_and_reload_every_type(
    store: KeyStore, tmp_path: Path, now: datetime, key_type: KeyType
) -> None:
    record = store.generate(key_type, "test", now)
    assert record.type is key_type and record.status is KeyStatus.ACTIVE
    reopened = KeyStore.open(tmp_path / "keys", PASSPHRASE)
    key = reopened.private_key(record.id)
    message = b"signed by the key store"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        key.public_key().verify(key.sign(message, ec.ECDSA(hashes.SHA256())), message,
                                ec.ECDSA(hashes.SHA256()))
    else:
        key.public_key().verify(key.sign(message), message)
    assert record.load_public_key() == key.public_key()


def test_files_are_private_and_hold_no_plaintext(store: KeyStore, tmp_path: Path, now: datetime) -> None:
    for key_type in ASYMMETRIC:
        store.generate(key_type, "test", now)
    store.add_secret(b"s" * 32, "tsig:xfr", now)
    directory = tmp_path / "keys"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for path in directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert_no_plaintext_private_keys(tmp_path)


def test_default_kdf_is_rfc9106_argon2id(tmp_path: Path, store: KeyStore) -> None:
    header = json.loads((tmp_path / "keys" / "keystore.json").read_text())
    kdf = header["kdf"]
    assert (kdf["algorithm"], kdf["iterations"], kdf["lanes"], kdf["memory_cost_kib"]) == (
        "argon2id", 3, 4, 65536,
    )
    assert len(base64.b64decode(kdf["salt"])) == 16


def test_weak_kdf_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        KdfParams(memory_cost_kib=1024)


def test_wrong_passphrase(store: KeyStore, tmp_path: Path) -> None:
    with pytest.raises(WrongPassphraseError):
        KeyStore.open(tmp_path / "keys", "not the passphrase")


def test_short_passphrase_refused(tmp_path: Path) -> None:
    with pytest.raises(PassphraseError, match="at least 8"):
        KeyStore.create(tmp_path / "keys", "short")


def test_second_create_refused(store: KeyStore, tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="already holds"):
        KeyStore.create(tmp_path / "keys", PASSPHRASE)


def _edit(path: Path, edit: object) -> None:
    doc = json.loads(path.read_text())
    edit(doc)  # type: ignore[operator]
    path.write_text(json.dumps(doc))


def _flip_b64(value: str) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[len(raw) // 2] ^= 1
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    "tamper",
    [
        lambda d: d["private_key"].update(ciphertext=_flip_b64(d["private_key"]["ciphertext"])),
        lambda d: d["private_key"].update(nonce=_flip_b64(d["private_key"]["nonce"])),
        lambda d: d["wrapped_data_key"].update(
            ciphertext=_flip_b64(d["wrapped_data_key"]["ciphertext"])),
        lambda d: d["record"].update(type="ecdsa-p384"),  # type is bound as associated data
    ],
)
def test_tampering_is_detected(store: KeyStore, now: datetime, tamper: object) -> None:
    record = store.generate(KeyType.ECDSA_P256, "test", now)
    _edit(store.directory / f"{record.id}.json", tamper)
    with pytest.raises(CorruptKeyError):
        store.private_key(record.id)


def test_swapped_key_material_is_detected(store: KeyStore, now: datetime) -> None:
    """Moving one key's encrypted blob under another key's id fails authentication."""
    a = store.generate(KeyType.ED25519, "a", now)
    b = store.generate(KeyType.ED25519, "b", now)
    blob = json.loads((store.directory / f"{b.id}.json").read_text())
    _edit(store.directory / f"{a.id}.json", lambda d: d.update(
        wrapped_data_key=blob["wrapped_data_key"], private_key=blob["private_key"]))
    with pytest.raises(CorruptKeyError):
        store.private_key(a.id)


def test_edited_public_key_is_detected(store: KeyStore, now: datetime) -> None:
    a = store.generate(KeyType.ED25519, "a", now)
    b = store.generate(KeyType.ED25519, "b", now)
    _edit(store.directory / f"{a.id}.json", lambda d: d["record"].update(public_key=b.public_key))
    with pytest.raises(CorruptKeyError, match="does not match"):
        store.private_key(a.id)


def test_garbage_key_file(store: KeyStore, now: datetime) -> None:
    record = store.generate(KeyType.ED25519, "a", now)
    (store.directory / f"{record.id}.json").write_text("{not json")
    with pytest.raises(CorruptKeyError):
        store.private_key(record.id)


def test_lookup_by_purpose_and_retire(store: KeyStore, now: datetime) -> None:
    old = store.generate(KeyType.ECDSA_P256, "ct-log", now)
    new = store.generate(KeyType.ECDSA_P256, "ct-log", now.replace(year=now.year + 1))
    assert store.active("ct-log").id == new.id
    retired = store.retire(new.id, now)
    assert retired.status is KeyStatus.RETIRED and retired.retired_at == now
    assert store.active("ct-log").id == old.id
    store.private_key(new.id)  # a retired key still verifies old signatures
    with pytest.raises(KeyNotFoundError):
        store.active("dnssec-ksk")


@pytest.mark.parametrize("key_id", ["../keystore", "ABC", "0" * 31, "0" * 32])
def test_unknown_or_malformed_ids(store: KeyStore, key_id: str) -> None:
    with pytest.raises(KeyNotFoundError):
        store.private_key(key_id)


def test_metadata_readable_without_passphrase(store: KeyStore, now: datetime) -> None:
    record = store.generate(KeyType.ML_DSA_65, "consensus", now)
    assert KeyStore.list_records(store.directory) == [record]


def test_shared_secrets(store: KeyStore, tmp_path: Path, now: datetime) -> None:
    record = store.add_secret(b"0123456789abcdef" * 2, "tsig:xfr", now)
    assert record.type is KeyType.HMAC_SHA256 and store.active("tsig:xfr").id == record.id
    assert KeyStore.open(tmp_path / "keys", PASSPHRASE).secret(record.id) == b"0123456789abcdef" * 2
    with pytest.raises(KeyStoreError, match="shared secret"):
        store.private_key(record.id)
    with pytest.raises(KeyStoreError, match="128 bits"):
        store.add_secret(b"short", "tsig:y", now)
    _edit(store.directory / f"{record.id}.json",
          lambda d: d["private_key"].update(ciphertext=_flip_b64(d["private_key"]["ciphertext"])))
    with pytest.raises(CorruptKeyError):
        store.secret(record.id)
