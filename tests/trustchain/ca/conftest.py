"""The CA tests' shared PKI: a genesis-style root and one network's intermediate."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from bootstrap.root import build_root_certificate
from trustchain.ca.profiles import CaUrls, intermediate_builder
from trustchain.ca.signer import Signer
from trustchain.keystore import KdfParams, KeyStore, KeyType

ZONE = "alpha.trust.example.net."
PASSPHRASE = "issuance test passphrase"


@dataclass
class Pki:
    signer: Signer
    root: x509.Certificate
    root_key_id: str
    intermediate: x509.Certificate
    intermediate_key_id: str
    urls: CaUrls
    keystore: KeyStore


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    now = datetime.now(UTC)
    keystore = KeyStore.create(tmp_path_factory.mktemp("ca") / "keys", PASSPHRASE,
                               KdfParams(iterations=1, lanes=1, memory_cost_kib=8192))
    root_record = keystore.generate(KeyType.ECDSA_P384, "genesis-root", now)
    root_key = keystore.private_key(root_record.id)
    assert isinstance(root_key, ec.EllipticCurvePrivateKey)
    root = build_root_certificate(root_key, "testnet", now)
    signer = Signer(keystore)
    record = keystore.generate(KeyType.ECDSA_P256, "ca-issuer:alpha", now)
    public = record.load_public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    base = "http://n1.nodes.trust.example.net"
    root_urls = CaUrls(f"{base}/ca/crl/{root_record.id}.crl", f"{base}/ocsp",
                       f"{base}/ca/issuers/{root_record.id}.der")
    intermediate = signer.sign_certificate(intermediate_builder(
        root=root, public_key=public, network="alpha", organisation="testnet", zone=ZONE,
        generation=1, root_urls=root_urls, now=now, serial=1001), root_record.id)
    urls = CaUrls(f"{base}/ca/crl/{record.id}.crl", f"{base}/ocsp",
                  f"{base}/ca/issuers/{record.id}.der")
    return Pki(signer, root, root_record.id, intermediate, record.id, urls, keystore)
