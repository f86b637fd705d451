"""Transport certificates, checked by validators we did not write."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.verification import PolicyBuilder, Store

from bootstrap.genesis import parse_genesis
from bootstrap.init import ROOT_KEY_PURPOSE, InitResult
from bootstrap.transport_certs import (
    ADMIN_TLS_PURPOSE,
    INFRA_CA_PURPOSE,
    NODE_TLS_PURPOSE,
    TransportCredentials,
    ensure_transport_credentials,
)
from tests.support import PASSPHRASE
from trustchain.keystore import KeyStore
from trustchain.storage.database import open_database
from trustchain.storage.node import NodeStore


def _credentials(data_dir: Path, node: InitResult, now: datetime) -> TransportCredentials:
    keystore = KeyStore.open(data_dir / "keys", PASSPHRASE)
    with open_database(data_dir) as db:
        return ensure_transport_credentials(
            keystore, NodeStore(db), root=node.genesis.root_certificate,
            root_key_purpose=ROOT_KEY_PURPOSE, network="testnet", origin="trust.example.net.",
            node_id=node.node_id, now=now,
        )


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(Encoding.PEM) for c in certs)


def test_openssl_verifies_both_leaves(node: InitResult, data_dir: Path, tmp_path: Path) -> None:
    creds = _credentials(data_dir, node, datetime.now(UTC))
    (tmp_path / "root.pem").write_bytes(_pem(creds.root))
    (tmp_path / "chain.pem").write_bytes(_pem(*creds.node.chain))
    for name, identity, purpose in (("node", creds.node, "sslserver"),
                                    ("node", creds.node, "sslclient"),
                                    ("admin", creds.admin, "sslclient")):
        (tmp_path / f"{name}.pem").write_bytes(_pem(identity.certificate))
        result = subprocess.run(
            ["openssl", "verify", "-x509_strict", "-purpose", purpose,
             "-CAfile", tmp_path / "root.pem", "-untrusted", tmp_path / "chain.pem",
             tmp_path / f"{name}.pem"],
            capture_output=True, text=True,
        )
        assert result.returncode == 0, (name, purpose, result.stdout, result.stderr)
    # The admin certificate is not a server certificate.
    result = subprocess.run(
        ["openssl", "verify", "-purpose", "sslserver", "-CAfile", tmp_path / "root.pem",
         "-untrusted", tmp_path / "chain.pem", tmp_path / "admin.pem"],
        capture_output=True, text=True,
    )
    assert result.returncode != 0


def test_cryptography_verifier_accepts_the_chain(node: InitResult, data_dir: Path) -> None:
    now = datetime.now(UTC)
    creds = _credentials(data_dir, node, now)
    store = Store([creds.root])
    server = PolicyBuilder().store(store).time(now).build_server_verifier(
        x509.DNSName("trust.example.net"))
    chain = server.verify(creds.node.certificate, creds.node.chain)
    assert chain[-1] == creds.root
    client = PolicyBuilder().store(store).time(now).build_client_verifier()
    verified = client.verify(creds.admin.certificate, creds.admin.chain)
    assert x509.UniformResourceIdentifier(
        f"trustchain://testnet/admin/{node.node_id}") in verified.subjects


def test_pkilint_pkix_chain(node: InitResult, data_dir: Path, tmp_path: Path) -> None:
    """pkilint finds nothing but one known false positive.

    pkilint checks URIs with the `validators` package, which accepts only a
    fixed list of schemes (it rejects spiffe:// too); our SPIFFE-style
    identity URIs are valid RFC 3986 URIs, so that one finding is expected.
    """
    creds = _credentials(data_dir, node, datetime.now(UTC))
    linter = Path(sys.executable).parent / "lint_pkix_cert"
    for cert in (creds.node.chain[0], creds.node.certificate, creds.admin.certificate):
        path = tmp_path / "cert.pem"
        path.write_bytes(_pem(cert))
        result = subprocess.run([linter, "lint", "-s", "WARNING", "-f", "JSON", path],
                                capture_output=True, text=True)
        findings = [
            f for r in json.loads(result.stdout)["results"] for f in r["finding_descriptions"]
            if not (f["code"] == "pkix.invalid_uri_syntax"
                    and f["message"].startswith('Invalid URI syntax: "trustchain://'))
        ]
        assert findings == [], result.stdout


def test_issued_at_init_and_stable_across_starts(node: InitResult, data_dir: Path) -> None:
    with open_database(data_dir) as db:
        store = NodeStore(db)
        at_init = {p: store.latest_certificate(p) for p in
                   (INFRA_CA_PURPOSE, NODE_TLS_PURPOSE, ADMIN_TLS_PURPOSE)}
    assert all(at_init.values())
    creds = _credentials(data_dir, node, datetime.now(UTC))
    assert creds.node.certificate == at_init[NODE_TLS_PURPOSE]  # nothing re-issued
    names = creds.node.certificate.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [
        "trust.example.net", f"{node.node_id}.nodes.trust.example.net"]


def test_leaf_renewed_when_two_thirds_expired(node: InitResult, data_dir: Path) -> None:
    first = _credentials(data_dir, node, datetime.now(UTC))
    later = datetime.now(UTC) + timedelta(days=61)
    renewed = _credentials(data_dir, node, later)
    assert renewed.node.certificate != first.node.certificate
    assert renewed.node.certificate.not_valid_after_utc > later + timedelta(days=60)
    assert renewed.node.chain == first.node.chain  # the intermediate lasts years


def test_genesis_root_is_the_anchor(node: InitResult, data_dir: Path) -> None:
    genesis = parse_genesis((data_dir / "genesis.json").read_bytes())
    creds = _credentials(data_dir, node, datetime.now(UTC))
    assert creds.root == genesis.root_certificate
    creds.node.chain[0].verify_directly_issued_by(creds.root)
    with pytest.raises(ValueError):
        creds.node.certificate.verify_directly_issued_by(creds.root)
