"""The CA's signing layer: the one module that uses CA private keys.

Like ``cryptography``'s *hazmat* layer, this is a deliberately small, low
layer: everything above it builds unsigned objects (certificate, CRL and
OCSP builders) and asks a :class:`Signer` to sign them with a key named by
its key-store id.  The keys stay encrypted at rest in the key store
(:mod:`trustchain.keystore`) and decrypted only inside this object's memory;
no other CA module ever holds a private key, so a separate signer process
(or an HSM, should an operator want one) could replace this class behind the
same four methods without touching policy code.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509 import ocsp

from trustchain.errors import KeyStoreError
from trustchain.keystore import KeyStore, PublicKey

CaKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def _hash_for(key: CaKey) -> hashes.SHA256 | hashes.SHA384 | None:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None  # Ed25519 signs the message itself
    return hashes.SHA384() if key.curve.key_size >= 384 else hashes.SHA256()


class Signer:
    """Signs with CA keys held in the node's key store, by key id."""

    def __init__(self, keystore: KeyStore) -> None:
        self._keystore = keystore
        self._keys: dict[str, CaKey] = {}

    def _key(self, key_id: str) -> CaKey:
        key = self._keys.get(key_id)
        if key is None:
            loaded = self._keystore.private_key(key_id)
            if not isinstance(loaded, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
                raise KeyStoreError(f"key {key_id} cannot sign certificates")
            key = self._keys[key_id] = loaded
        return key

    def public_key(self, key_id: str) -> PublicKey:
        return self._keystore.record(key_id).load_public_key()

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
