"""The CA's signing layer: the one module that uses CA private keys.

Like ``cryptography``'s *hazmat* layer, this is a deliberately small, low
layer: everything above it builds unsigned objects (certificate, CRL and
OCSP builders) and asks a :class:`Signer` to sign them with a key named by
its key-store id.  The keys stay encrypted at rest in the key store
(any :class:`PrivateKeys`: the node's is :class:`trustchain.keystore.KeyStore`)
and decrypted only inside this object's memory;
no other CA module ever holds a private key, so a separate signer process
(or an HSM, should an operator want one) could replace this class behind the
same four methods without touching policy code.

The node's signing worker processes (:mod:`transport.workers`) each hold a
*detached* signer: it has no key store, only the keys the node handed it
over the private socket that connects the two processes
(:meth:`Signer.key_material`, :meth:`Signer.install`); asked for any other
key it raises :class:`KeyNotLoaded`, and the node answers with that key.
"""

from __future__ import annotations

from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_der_private_key,
)
from cryptography.x509 import ocsp

from trustchain.errors import KeyStoreError

CaKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
CaPublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


class PrivateKeys(Protocol):
    """Where a signer reads the private keys it signs with (the node's key store)."""

    def private_key(self, key_id: str) -> object:
        """The key ``key_id``, decrypted.

        :raises KeyNotFoundError: the store has no such key.
        """
        ...


def _hash_for(key: CaKey) -> hashes.SHA256 | hashes.SHA384 | None:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None  # Ed25519 signs the message itself
    return hashes.SHA384() if key.curve.key_size >= 384 else hashes.SHA256()


class KeyNotLoaded(KeyStoreError):
    """A detached signer was asked for a key it has not been given."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"key {key_id} is not loaded in this signer")
        self.key_id = key_id

    def __reduce__(self) -> tuple[type[KeyNotLoaded], tuple[str]]:
        return KeyNotLoaded, (self.key_id,)


def _checked(key_id: str, key: object) -> CaKey:
    if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise KeyStoreError(f"key {key_id} cannot sign certificates")
    return key


class Signer:
    """Signs with CA keys held in the node's key store (or handed to it), by key id."""

    def __init__(self, keys: PrivateKeys | None) -> None:
        self._store = keys
        self._keys: dict[str, CaKey] = {}

    @classmethod
    def detached(cls) -> Signer:
        """A signer with no key store: it signs only with keys given to :meth:`install`."""
        return cls(None)

    def _key(self, key_id: str) -> CaKey:
        key = self._keys.get(key_id)
        if key is None:
            if self._store is None:
                raise KeyNotLoaded(key_id)
            key = self._keys[key_id] = _checked(key_id, self._store.private_key(key_id))
        return key

    def key_material(self, key_id: str) -> bytes:
        """The key as unencrypted PKCS#8 DER, for a signing worker of this node.

        The one way a CA key leaves this object: only :mod:`transport.workers`
        calls it, to send the key to its own child process over the socket
        pair that connects them (never to a file, never over a network).
        """
        return self._key(key_id).private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())

    def install(self, key_id: str, material: bytes) -> None:
        """Take a key handed over by :meth:`key_material` (a worker's detached signer)."""
        self._keys[key_id] = _checked(key_id, load_der_private_key(material, password=None))

    def public_key(self, key_id: str) -> CaPublicKey:
        return self._key(key_id).public_key()

    def sign_certificate(self, builder: x509.CertificateBuilder, key_id: str) -> x509.Certificate:
        key = self._key(key_id)
        return builder.sign(key, _hash_for(key))

    def sign_crl(self, builder: x509.CertificateRevocationListBuilder,
                 key_id: str) -> x509.CertificateRevocationList:
        key = self._key(key_id)
        return builder.sign(key, _hash_for(key))

    def sign_ocsp(self, builder: ocsp.OCSPResponseBuilder, key_id: str) -> ocsp.OCSPResponse:
        key = self._key(key_id)
        return builder.sign(key, _hash_for(key))
