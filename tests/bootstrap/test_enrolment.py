"""The admitting node's enrolment logic, with a scripted clock and no sockets."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootstrap.enrolment import EnrolmentService, EnrolmentState, build_request
from tests.pki import node_pki
from trustchain.errors import BadRequest
from trustchain.identity import TlsIdentity, identify_peer
from trustchain.keystore import key_id_for
from trustchain.storage.database import open_database
from trustchain.storage.migrations import migrate
from trustchain.storage.node import NODE_SCHEMA, NodeStore


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def setup(tmp_path: Path):
    clock = Clock()
    pki = node_pki(now=clock.now)
    db = open_database(tmp_path)
    migrate(db, NODE_SCHEMA)
    counter = iter(range(10**6))
    service = EnrolmentService(
        NodeStore(db), network="testnet", origin="trust.example.net.",
        issuer=TlsIdentity(pki.ca, [], pki.ca_key), now=clock,
        random_bytes=lambda n: next(counter).to_bytes(n, "big"),
    )
    yield service, clock, pki.root
    db.close()


def _joiner():
    tls = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "joiner")]))
           .sign(tls, hashes.SHA256()))
    return tls, csr, ed25519.Ed25519PrivateKey.generate(), mldsa.MLDSA65PrivateKey.generate()


def _challenge(service: EnrolmentService) -> bytes:
    return base64.b64decode(json.loads(service.challenge(b"", None))["challenge"])


def test_request_approve_issue(setup) -> None:
    service, clock, root = setup
    tls, csr, ed, ml = _joiner()
    request = build_request(_challenge(service), csr, ed, ml)
    state = EnrolmentState.model_validate_json(
        service.request(request.model_dump_json().encode(), None))
    assert state.status == "pending" and state.node_id == key_id_for(ed.public_key())
    status = json.dumps({"node_id": state.node_id}).encode()
    assert EnrolmentState.model_validate_json(service.status(status, None)).certificate_chain == []
    approved = EnrolmentState.model_validate_json(service.approve(status, None))
    assert approved.status == "approved"
    leaf, ca = (x509.load_der_x509_certificate(base64.b64decode(d))
                for d in approved.certificate_chain)
    assert leaf.public_key() == tls.public_key()
    peer = identify_peer(leaf, [ca], root=root, network="testnet", now=clock.now)
    assert peer.name == state.node_id
    assert json.loads(service.list(b"", None))[0]["status"] == "approved"


def test_challenge_is_single_use_and_expires(setup) -> None:
    service, clock, _ = setup
    tls, csr, ed, ml = _joiner()
    challenge = _challenge(service)
    body = build_request(challenge, csr, ed, ml).model_dump_json().encode()
    service.request(body, None)
    with pytest.raises(BadRequest, match="unknown or expired"):
        service.request(body, None)  # replayed
    late = build_request(_challenge(service), csr, ed, ml).model_dump_json().encode()
    clock.now += timedelta(minutes=6)
    with pytest.raises(BadRequest, match="unknown or expired"):
        service.request(late, None)


def test_signatures_bind_the_keys_and_the_csr(setup) -> None:
    service, _, _ = setup
    tls, csr, ed, ml = _joiner()
    other_tls, other_csr, _, _ = _joiner()
    request = build_request(_challenge(service), csr, ed, ml)
    swapped = request.model_copy(update={"csr": base64.b64encode(
        other_csr.public_bytes(Encoding.DER)).decode()})
    with pytest.raises(BadRequest, match="signature over the challenge"):
        service.request(swapped.model_dump_json().encode(), None)


def test_only_p256_transport_keys(setup) -> None:
    service, _, _ = setup
    _, _, ed, ml = _joiner()
    rsa_like = ec.generate_private_key(ec.SECP384R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "j")]))
           .sign(rsa_like, hashes.SHA384()))
    body = build_request(_challenge(service), csr, ed, ml).model_dump_json().encode()
    with pytest.raises(BadRequest, match="P-256"):
        service.request(body, None)


def test_approve_unknown_node(setup) -> None:
    service, _, _ = setup
    with pytest.raises(BadRequest, match="no enrolment"):
        service.approve(json.dumps({"node_id": "0" * 32}).encode(), None)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.one_of(
    st.binary(max_size=300),
    st.dictionaries(st.sampled_from(["challenge", "csr", "ed25519_public_key",
                                     "ml_dsa_65_public_key", "ed25519_signature",
                                     "ml_dsa_65_signature", "node_id", "x"]),
                    st.one_of(st.text(max_size=40), st.integers(), st.none()), max_size=7)
    .map(lambda d: json.dumps(d).encode()),
))
def test_arbitrary_input_is_a_bad_request_never_a_crash(setup, data: bytes) -> None:
    service, _, _ = setup
    for method in (service.request, service.status, service.approve, service.reject):
        try:
            method(data, None)
        except BadRequest:
            pass


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(blobs=st.lists(st.binary(max_size=200), min_size=5, max_size=5), keep=st.integers(0, 31))
def test_garbage_behind_a_valid_challenge_is_a_bad_request(setup, blobs, keep: int) -> None:
    """Past the challenge check, every field may still be garbage (or real, per `keep` bits)."""
    service, _, _ = setup
    _, csr, ed, ml = _joiner()
    real = build_request(_challenge(service), csr, ed, ml).model_dump()
    fields = ["csr", "ed25519_public_key", "ml_dsa_65_public_key", "ed25519_signature",
              "ml_dsa_65_signature"]
    for bit, (name, blob) in enumerate(zip(fields, blobs, strict=True)):
        if not keep >> bit & 1 and blob:
            real[name] = base64.b64encode(blob).decode()
    try:
        service.request(json.dumps(real).encode(), None)
    except BadRequest:
        pass
