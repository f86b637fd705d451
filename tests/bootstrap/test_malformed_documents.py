"""Genesis documents and enrolment requests that break in the middle of their checks:
GenesisError and BadRequest, never a decoding exception (found by the fuzz suite,
issue 14)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from bootstrap.enrolment import EnrolmentService, build_request
from bootstrap.genesis import ProofParameters, ValidatorKeys, create_genesis, genesis_pin, verify_genesis
from bootstrap.root import build_root_certificate
from tests.pki import node_pki
from trustchain.canonical import canonical_json, parse_canonical_json
from trustchain.errors import BadRequest, CanonicalJSONError, GenesisError
from trustchain.identity import TlsIdentity
from trustchain.storage.database import open_database
from trustchain.storage.migrations import migrate
from trustchain.storage.node import NODE_SCHEMA, NodeStore

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def genesis() -> dict:
    root_key = ec.generate_private_key(ec.SECP256R1())
    document = create_genesis(
        network_name="testnet", origin="trust.example.net.", root_key=root_key,
        root_certificate=build_root_certificate(root_key, "testnet", NOW),
        validators=[ValidatorKeys(ed25519.Ed25519PrivateKey.generate(),
                                  mldsa.MLDSA65PrivateKey.generate(), 10)],
        parameters=ProofParameters(), now=NOW)
    return json.loads(document.to_bytes())


def verify(document: dict) -> None:
    data = canonical_json(document)
    verify_genesis(data, genesis_pin(data))


@pytest.mark.parametrize("value", ["A", "AAAAA", "AAAAAA="])
def test_a_signature_that_is_not_base64_is_a_genesis_error(genesis: dict, value: str) -> None:
    """The value matched the base64 alphabet but not its padding: binascii.Error."""
    document = json.loads(json.dumps(genesis))
    document["signatures"][0]["value"] = value
    with pytest.raises(GenesisError, match="not base64"):
        verify(document)


def test_a_lone_surrogate_is_not_canonical_json(genesis: dict) -> None:
    data = b'"\\ud800"'
    with pytest.raises(GenesisError, match="surrogate"):
        verify_genesis(data, genesis_pin(data))
    with pytest.raises(CanonicalJSONError, match="surrogate"):
        canonical_json({"a": "\ud800"})


def test_an_integer_too_long_for_int_is_not_json() -> None:
    """More than 4,300 digits: Python's int() refuses them with a plain ValueError."""
    data = b"[" + b"9" * 5000 + b"]"
    with pytest.raises(CanonicalJSONError, match="not valid JSON"):
        parse_canonical_json(data)
    with pytest.raises(GenesisError):
        verify_genesis(data, genesis_pin(data))


def test_an_enrolment_csr_of_version_4_is_a_bad_request(tmp_path: Path) -> None:
    """x509.InvalidVersion is not a ValueError: it escaped the request's parse."""
    db = open_database(tmp_path)
    migrate(db, NODE_SCHEMA)
    pki = node_pki(now=NOW)
    challenge = b"\x07" * 32
    service = EnrolmentService(NodeStore(db), network="testnet", origin="trust.example.net.",
                               issuer=TlsIdentity(pki.ca, [], pki.ca_key), now=lambda: NOW,
                               random_bytes=lambda n: challenge[:n])
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "joiner")]))
           .sign(key, hashes.SHA256()))
    request = json.loads(build_request(challenge, csr, ed25519.Ed25519PrivateKey.generate(),
                                       mldsa.MLDSA65PrivateKey.generate()).model_dump_json())
    der = csr.public_bytes(Encoding.DER)
    at = der.index(bytes.fromhex("020100"))
    request["csr"] = base64.b64encode(der[:at] + bytes.fromhex("020103") + der[at + 3:]).decode()
    service.challenge(b"", None)
    try:
        with pytest.raises(BadRequest, match="does not parse"):
            service.request(json.dumps(request).encode(), None)
    finally:
        db.close()
