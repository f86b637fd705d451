"""The node's one key store: software-only, every private key encrypted at rest.

Layout (directory ``0700``, files ``0600``)::

    keys/keystore.json     KDF parameters and a passphrase check value
    keys/<key-id>.json     one file per key

Envelope encryption, per key:

* a random 256-bit *data key* encrypts the key's PKCS#8 DER with AES-256-GCM;
  the associated data binds the ciphertext to the key id and key type;
* the data key is wrapped with AES-256-GCM under the *key-encryption key*,
  with the key id as associated data;
* the key-encryption key is derived from the node passphrase with Argon2id
  (RFC 9106's second recommended setting: 3 passes, 4 lanes, 64 MiB) and a
  random salt stored in ``keystore.json``.  It exists only in memory.

Changing the passphrase therefore only re-wraps data keys.  Public metadata
(id, type, purpose, status, public key) is readable without the passphrase,
so ``trustchain status`` needs none.  When a private key is loaded its public
key is recomputed and compared with the file, so swapped or edited metadata
is detected.  ``cryptography``'s ``BestAvailableEncryption`` is deliberately
not used: it derives its key with only 2,048 PBKDF2 iterations.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trustchain.errors import (
    CorruptKeyError,
    KeyNotFoundError,
    KeyStoreError,
    PassphraseError,
    WrongPassphraseError,
)
from trustchain.fsutil import ensure_private_dir, write_private_file
from trustchain.keyid import PublicKey, key_id_for, spki_der  # re-exported: key ids are the key's

KEYSTORE_FILE = "keystore.json"
_KEYSTORE_FORMAT = "trustchain-keystore/1"
_KEY_FORMAT = "trustchain-key/1"
_CHECK_PLAINTEXT = b"trustchain key store passphrase check"
_MIN_PASSPHRASE_LENGTH = 8
_KEY_ID = re.compile(r"[0-9a-f]{32}")

PrivateKey = (
    ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | mldsa.MLDSA65PrivateKey
)


class KeyType(StrEnum):
    ECDSA_P256 = "ecdsa-p256"
    ECDSA_P384 = "ecdsa-p384"
    ED25519 = "ed25519"
    ML_DSA_65 = "ml-dsa-65"
    #: A shared secret (TSIG); it has no public half.
    HMAC_SHA256 = "hmac-sha256"


class KeyStatus(StrEnum):
    ACTIVE = "active"
    RETIRED = "retired"


_GENERATORS: dict[KeyType, Callable[[], PrivateKey]] = {
    KeyType.ECDSA_P256: lambda: ec.generate_private_key(ec.SECP256R1()),
    KeyType.ECDSA_P384: lambda: ec.generate_private_key(ec.SECP384R1()),
    KeyType.ED25519: ed25519.Ed25519PrivateKey.generate,
    KeyType.ML_DSA_65: mldsa.MLDSA65PrivateKey.generate,
}


def key_type_of(key: PrivateKey | PublicKey) -> KeyType:
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        curve = key.curve.name
        if curve == "secp256r1":
            return KeyType.ECDSA_P256
        if curve == "secp384r1":
            return KeyType.ECDSA_P384
        raise KeyStoreError(f"unsupported curve {curve}")
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return KeyType.ED25519
    if isinstance(key, (mldsa.MLDSA65PrivateKey, mldsa.MLDSA65PublicKey)):
        return KeyType.ML_DSA_65
    raise KeyStoreError(f"unsupported key type {type(key).__name__}")



def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


B64 = Annotated[str, Field(pattern=r"^[A-Za-z0-9+/]*={0,2}$")]


class _Sealed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    nonce: B64
    ciphertext: B64

    def open(self, key: bytes, aad: bytes) -> bytes:
        return AESGCM(key).decrypt(
            base64.b64decode(self.nonce), base64.b64decode(self.ciphertext), aad
        )

    @classmethod
    def seal(cls, key: bytes, plaintext: bytes, aad: bytes) -> _Sealed:
        nonce = secrets.token_bytes(12)
        return cls(nonce=_b64(nonce), ciphertext=_b64(AESGCM(key).encrypt(nonce, plaintext, aad)))


class KdfParams(BaseModel):
    """Argon2id parameters.  Defaults: RFC 9106 section 4, second recommended option."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    algorithm: str = Field("argon2id", pattern="^argon2id$")
    salt: B64 = ""
    iterations: int = Field(3, ge=1, le=100)
    lanes: int = Field(4, ge=1, le=64)
    memory_cost_kib: int = Field(65536, ge=8192, le=4 * 1024 * 1024)

    def derive(self, passphrase: str) -> bytes:
        return Argon2id(
            salt=base64.b64decode(self.salt),
            length=32,
            iterations=self.iterations,
            lanes=self.lanes,
            memory_cost=self.memory_cost_kib,
        ).derive(passphrase.encode("utf-8"))


class _KeystoreFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: str = Field(pattern=f"^{_KEYSTORE_FORMAT}$")
    kdf: KdfParams
    check: _Sealed


class KeyRecord(BaseModel):
    """Public facts about one key; everything here is readable without the passphrase."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[0-9a-f]{32}$")
    type: KeyType
    purpose: str = Field(pattern=r"^[a-z0-9][a-z0-9.:-]{0,99}$")
    status: KeyStatus
    created_at: datetime
    retired_at: datetime | None = None
    public_key: B64  # SubjectPublicKeyInfo DER

    def load_public_key(self) -> PublicKey:
        key = serialization.load_der_public_key(base64.b64decode(self.public_key))
        return key  # type: ignore[return-value]


class _KeyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: str = Field(pattern=f"^{_KEY_FORMAT}$")
    record: KeyRecord
    wrapped_data_key: _Sealed
    private_key: _Sealed


def _wrap_aad(key_id: str) -> bytes:
    return f"{_KEY_FORMAT}\0data-key\0{key_id}".encode()


def _payload_aad(key_id: str, key_type: KeyType) -> bytes:
    return f"{_KEY_FORMAT}\0private-key\0{key_id}\0{key_type}".encode()


def check_passphrase_strength(passphrase: str) -> None:
    if len(passphrase) < _MIN_PASSPHRASE_LENGTH:
        raise PassphraseError(
            f"the passphrase must be at least {_MIN_PASSPHRASE_LENGTH} characters long"
        )


class KeyStore:
    """An unlocked key store.  Obtain one with :meth:`create` or :meth:`open`."""

    def __init__(self, directory: Path, kek: bytes) -> None:
        self.directory = directory
        self._kek = kek

    # --- opening ------------------------------------------------------------

    @classmethod
    def create(
        cls, directory: Path, passphrase: str, kdf: KdfParams | None = None
    ) -> KeyStore:
        """Create an empty key store protected by ``passphrase``.

        :raises KeyStoreError: if ``directory`` already holds a key store.
        """
        check_passphrase_strength(passphrase)
        if (directory / KEYSTORE_FILE).exists():
            raise KeyStoreError(f"{directory} already holds a key store")
        params = (kdf or KdfParams()).model_copy(update={"salt": _b64(secrets.token_bytes(16))})
        kek = params.derive(passphrase)
        header = _KeystoreFile(
            format=_KEYSTORE_FORMAT,
            kdf=params,
            check=_Sealed.seal(kek, _CHECK_PLAINTEXT, _KEYSTORE_FORMAT.encode()),
        )
        ensure_private_dir(directory)
        write_private_file(
            directory / KEYSTORE_FILE, header.model_dump_json(indent=2).encode(), exclusive=True
        )
        return cls(directory, kek)

    @classmethod
    def open(cls, directory: Path, passphrase: str) -> KeyStore:
        """Unlock the key store in ``directory``.  Reads only; writes nothing.

        :raises WrongPassphraseError: if ``passphrase`` does not unlock it.
        """
        path = directory / KEYSTORE_FILE
        try:
            header = _KeystoreFile.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            raise KeyStoreError(f"{directory}: no key store") from None
        except ValidationError as exc:
            raise CorruptKeyError(f"{path}: damaged key store header: {exc}") from None
        kek = header.kdf.derive(passphrase)
        try:
            if header.check.open(kek, _KEYSTORE_FORMAT.encode()) != _CHECK_PLAINTEXT:
                raise InvalidTag
        except InvalidTag:
            raise WrongPassphraseError(
                f"the passphrase does not unlock the key store in {directory}"
            ) from None
        return cls(directory, kek)

    # --- public metadata (no passphrase needed) -----------------------------

    @staticmethod
    def list_records(directory: Path) -> list[KeyRecord]:
        """All keys in ``directory``, oldest first.  Needs no passphrase."""
        records = [KeyStore._read(path).record for path in directory.glob("*.json")
                   if path.name != KEYSTORE_FILE]
        return sorted(records, key=lambda r: (r.created_at, r.id))

    def records(self) -> list[KeyRecord]:
        return self.list_records(self.directory)

    def record(self, key_id: str) -> KeyRecord:
        return self._read(self._path(key_id)).record

    def active(self, purpose: str) -> KeyRecord:
        """The newest active key for ``purpose``.

        :raises KeyNotFoundError: if there is none.
        """
        candidates = [
            r for r in self.records() if r.purpose == purpose and r.status is KeyStatus.ACTIVE
        ]
        if not candidates:
            raise KeyNotFoundError(f"no active key for {purpose!r}")
        return candidates[-1]

    def active_or_generate(self, key_type: KeyType, purpose: str, now: datetime) -> KeyRecord:
        """The newest active key for ``purpose``, made (and stored) first if there is none."""
        try:
            return self.active(purpose)
        except KeyNotFoundError:
            return self.generate(key_type, purpose, now)

    # --- private keys -------------------------------------------------------

    def generate(self, key_type: KeyType, purpose: str, now: datetime) -> KeyRecord:
        """Generate a key of ``key_type``, store it encrypted and return its record."""
        return self.add(_GENERATORS[key_type](), purpose, now)

    def add(self, private_key: PrivateKey, purpose: str, now: datetime) -> KeyRecord:
        """Store an existing private key (for imports); returns its record."""
        public_key = private_key.public_key()
        key_type = key_type_of(private_key)
        record = KeyRecord(
            id=key_id_for(public_key),
            type=key_type,
            purpose=purpose,
            status=KeyStatus.ACTIVE,
            created_at=now,
            public_key=_b64(spki_der(public_key)),
        )
        plaintext = private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return self._store(record, plaintext)

    def add_secret(self, secret: bytes, purpose: str, now: datetime) -> KeyRecord:
        """Store a shared secret (HMAC-SHA256, e.g. a TSIG key) under ``purpose``.

        Its id is derived from the purpose, so one purpose holds one secret.
        """
        if len(secret) < 16:
            raise KeyStoreError("a shared secret must have at least 128 bits")
        record = KeyRecord(
            id=hashlib.sha256(b"trustchain secret\0" + purpose.encode()).hexdigest()[:32],
            type=KeyType.HMAC_SHA256, purpose=purpose, status=KeyStatus.ACTIVE,
            created_at=now, public_key="",
        )
        return self._store(record, secret)

    def secret(self, key_id: str) -> bytes:
        """Decrypt a shared secret stored with :meth:`add_secret`."""
        path = self._path(key_id)
        key_file = self._read(path)
        if key_file.record.type is not KeyType.HMAC_SHA256:
            raise KeyStoreError(f"key {key_id} is not a shared secret")
        return self._decrypt(path, key_file)

    def _store(self, record: KeyRecord, plaintext: bytes) -> KeyRecord:
        key_type = record.type
        data_key = AESGCM.generate_key(bit_length=256)
        key_file = _KeyFile(
            format=_KEY_FORMAT,
            record=record,
            wrapped_data_key=_Sealed.seal(self._kek, data_key, _wrap_aad(record.id)),
            private_key=_Sealed.seal(data_key, plaintext, _payload_aad(record.id, key_type)),
        )
        try:
            write_private_file(
                self._path(record.id), key_file.model_dump_json(indent=2).encode(), exclusive=True
            )
        except FileExistsError:
            raise KeyStoreError(f"key {record.id} is already in the key store") from None
        return record

    def private_key(self, key_id: str) -> PrivateKey:
        """Decrypt and return the private key ``key_id``.

        :raises KeyNotFoundError: if there is no such key.
        :raises CorruptKeyError: if the file fails authentication or its
            public key does not match its private key.
        """
        path = self._path(key_id)
        key_file = self._read(path)
        record = key_file.record
        if record.type is KeyType.HMAC_SHA256:
            raise KeyStoreError(f"key {key_id} is a shared secret, not a private key")
        der = self._decrypt(path, key_file)
        key = serialization.load_der_private_key(der, password=None)
        if spki_der(key.public_key()) != base64.b64decode(record.public_key):  # type: ignore[arg-type]
            raise CorruptKeyError(f"{path}: public key does not match the private key")
        return key  # type: ignore[return-value]

    def _decrypt(self, path: Path, key_file: _KeyFile) -> bytes:
        record = key_file.record
        if record.id != path.stem:
            raise CorruptKeyError(f"{path}: holds key {record.id}, not {path.stem}")
        try:
            data_key = key_file.wrapped_data_key.open(self._kek, _wrap_aad(record.id))
            return key_file.private_key.open(data_key, _payload_aad(record.id, record.type))
        except InvalidTag:
            raise CorruptKeyError(f"{path}: failed authentication (tampered or damaged)") from None

    def export_key(self, key_id: str, destination: Path) -> KeyRecord:
        """Move key ``key_id`` out of the store into ``destination`` (mode 0600), still sealed.

        For keys kept offline (the genesis root): the file stays encrypted
        under this store's passphrase-derived key, so only this store can use
        it again (:meth:`import_key`).  The copy is written and read back
        before the key leaves the store.
        """
        path = self._path(key_id)
        key_file = self._read(path)
        self._decrypt(path, key_file)  # only a key that opens leaves
        write_private_file(destination, path.read_bytes(), exclusive=True)
        if destination.read_bytes() != path.read_bytes():
            raise KeyStoreError(f"{destination}: the exported copy does not read back")
        path.unlink()
        return key_file.record

    def import_key(self, source: Path) -> KeyRecord:
        """Bring back a key file made by :meth:`export_key` (checked to open with this store).

        :raises KeyStoreError: if it is not such a file, or the key is already here.
        """
        try:
            key_file = _KeyFile.model_validate_json(source.read_bytes())
        except (OSError, ValidationError) as exc:
            raise KeyStoreError(f"{source}: not a TrustChain key file ({exc})") from None
        record = key_file.record
        target = self._path(record.id)
        if target.exists():
            raise KeyStoreError(f"key {record.id} is already in the key store")
        try:
            self._decrypt(target.with_name(f"{record.id}.json"), key_file)
        except CorruptKeyError:
            raise KeyStoreError(f"{source}: does not open with this key store's passphrase "
                                "(exported from another node?)") from None
        write_private_file(target, source.read_bytes(), exclusive=True)
        return record

    def retire(self, key_id: str, now: datetime) -> KeyRecord:
        """Mark a key retired (kept for verifying old signatures, not used for new ones)."""
        path = self._path(key_id)
        key_file = self._read(path)
        record = key_file.record.model_copy(
            update={"status": KeyStatus.RETIRED, "retired_at": now}
        )
        key_file.record = record
        write_private_file(path, key_file.model_dump_json(indent=2).encode())
        return record

    # --- files --------------------------------------------------------------

    def _path(self, key_id: str) -> Path:
        if not _KEY_ID.fullmatch(key_id):
            raise KeyNotFoundError(f"{key_id!r} is not a key id")
        return self.directory / f"{key_id}.json"

    @staticmethod
    def _read(path: Path) -> _KeyFile:
        try:
            return _KeyFile.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            raise KeyNotFoundError(f"no key {path.stem}") from None
        except ValidationError as exc:
            raise CorruptKeyError(f"{path}: damaged key file: {exc.errors()[0]['msg']}") from None
