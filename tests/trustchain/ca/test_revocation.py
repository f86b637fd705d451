"""CRLs and OCSP responses: structure, pkilint, openssl as verifier and client, hostile input."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.pki import cert_builder, dn, new_key, signed
from tests.support import PASSPHRASE, REPO
from trustchain.ca.revocation import (
    CertStatusInfo,
    OcspIssuer,
    RevocationReason,
    Revoked,
    build_crl,
    named_issuer,
    ocsp_request_from_get_path,
    respond_ocsp,
    unsuccessful_ocsp_response,
)
from trustchain.ca.signer import Signer
from trustchain.keystore import KdfParams, KeyStore, KeyType

#: openssl checks thisUpdate/nextUpdate and certificate validity against the real clock.
NOW = datetime.now(UTC).replace(microsecond=0)
VALIDITY = timedelta(hours=12)
CRL_URL = "http://crl.trust.example/inter/3.crl"
OCSP_URL = "http://ocsp.trust.example/"
LINT_CRL = REPO / ".venv" / "bin" / "lint_crl"
LINT_OCSP = REPO / ".venv" / "bin" / "lint_ocsp_response"
OPENSSL = "/usr/bin/openssl"
STATUS = ocsp.OCSPResponseStatus


# --- a small real hierarchy --------------------------------------------------------------------------

@dataclass(frozen=True)
class Pki:
    directory: Path
    root: x509.Certificate
    intermediate: x509.Certificate
    inter_key_id: str
    leaf: x509.Certificate
    signer: Signer
    issuer: OcspIssuer


def make_pki(directory: Path) -> Pki:
    """Root (P-256, pathLen 1) → intermediate (pathLen 0, key in a KeyStore) → server leaf."""
    cheap = KdfParams(iterations=1, lanes=1, memory_cost_kib=8192)
    keystore = KeyStore.create(directory / "keys", PASSPHRASE, cheap)
    signer = Signer(keystore)
    since = NOW - timedelta(hours=1)
    root_key = new_key()
    root = signed(cert_builder(
        dn("Test Root", organisation="testnet"), root_key.public_key(), not_before=since,
        days=3650, ca=True, path_length=1, key_usage=True, subject_key_id=True), root_key)
    record = keystore.generate(KeyType.ECDSA_P256, "ca-intermediate", NOW)
    inter_public = record.load_public_key()
    assert isinstance(inter_public, ec.EllipticCurvePublicKey)
    intermediate = signed(cert_builder(
        dn("Test Issuing CA", organisation="testnet"), inter_public, issuer=root,
        not_before=since, days=1825, ca=True, path_length=0, key_usage=True, subject_key_id=True,
        authority_key_id=True), root_key)
    leaf = signer.sign_certificate(
        cert_builder(dn("www.trust.example", organisation="testnet"), new_key().public_key(),
                     issuer=intermediate, not_before=since, days=90, ca=False, key_usage=True,
                     subject_key_id=True, authority_key_id=True, dns_names=["www.trust.example"])
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            [x509.UniformResourceIdentifier(CRL_URL)], None, None, None)]), critical=False)
        .add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
            x509.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(OCSP_URL))]),
            critical=False),
        record.id,
    )
    for name, cert in (("root", root), ("inter", intermediate), ("leaf", leaf)):
        (directory / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "chain.pem").write_bytes(
        (directory / "inter.pem").read_bytes() + (directory / "root.pem").read_bytes())
    return Pki(directory, root, intermediate, record.id, leaf, signer,
               OcspIssuer(intermediate, record.id))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def work(pki: Pki, tmp_path: Path) -> Iterator[Path]:
    """A per-test directory next to the PEM files openssl needs."""
    for name in ("root", "inter", "leaf", "chain"):
        (tmp_path / f"{name}.pem").write_bytes((pki.directory / f"{name}.pem").read_bytes())
    yield tmp_path


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=30)


def crl_for(pki: Pki, revoked: list[Revoked], **kwargs: object) -> x509.CertificateRevocationList:
    options: dict[str, object] = {"number": 7, "this_update": NOW, "next_update": NOW + timedelta(days=7),
                                  "distribution_point": CRL_URL, "only_contains_user_certs": True}
    options.update(kwargs)
    return build_crl(issuer=pki.intermediate, issuer_key_id=pki.inter_key_id, signer=pki.signer,
                     revoked=revoked, **options)  # type: ignore[arg-type]


def respond(pki: Pki, request: bytes, statuses: dict[int, CertStatusInfo] | None = None) -> bytes:
    def lookup(issuer: OcspIssuer, serial: int) -> CertStatusInfo:
        assert issuer is pki.issuer
        return (statuses or {}).get(serial, CertStatusInfo.unknown())

    return respond_ocsp(request, issuers=[pki.issuer], lookup=lookup, signer=pki.signer, now=NOW,
                        validity=VALIDITY)


def request_for(cert: x509.Certificate, issuer: x509.Certificate,
                algorithm: hashes.HashAlgorithm | None = None,
                extension: x509.ExtensionType | None = None, critical: bool = False) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm or hashes.SHA1())
    if extension is not None:
        builder = builder.add_extension(extension, critical)
    return builder.build().public_bytes(serialization.Encoding.DER)


# --- reasons and records -----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "reason"), [
    ("unspecified", RevocationReason.UNSPECIFIED),
    ("key-compromise", RevocationReason.KEY_COMPROMISE),
    ("keyCompromise", RevocationReason.KEY_COMPROMISE),
    ("affiliation-changed", RevocationReason.AFFILIATION_CHANGED),
    ("superseded", RevocationReason.SUPERSEDED),
    ("cessation-of-operation", RevocationReason.CESSATION_OF_OPERATION),
    ("cessationOfOperation", RevocationReason.CESSATION_OF_OPERATION),
    ("privilege-withdrawn", RevocationReason.PRIVILEGE_WITHDRAWN),
])
def test_reason_spellings(text: str, reason: RevocationReason) -> None:
    assert RevocationReason.parse(text) is reason
    assert reason.flag.value == reason.value


@pytest.mark.parametrize("text", ["certificate-hold", "certificateHold", "ca-compromise", "KEY-COMPROMISE",
                                  "key_compromise", "", "remove-from-crl"])
def test_forbidden_or_unknown_reasons_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="key-compromise, affiliation-changed, superseded"):
        RevocationReason.parse(text)


def test_reason_flags() -> None:
    assert RevocationReason.UNSPECIFIED.encoded_flag is None
    assert RevocationReason.SUPERSEDED.encoded_flag is x509.ReasonFlags.superseded


def test_revoked_record_checks() -> None:
    local = datetime(2026, 1, 1, 13, tzinfo=UTC).astimezone()
    assert Revoked(1, local).revoked_at.tzinfo is UTC
    for bad in (lambda: Revoked(0, NOW), lambda: Revoked(2**159, NOW),
                lambda: Revoked(5, datetime(2026, 1, 1))):
        with pytest.raises(ValueError):
            bad()
    with pytest.raises(ValueError, match="revocation time"):
        CertStatusInfo(ocsp.OCSPCertStatus.REVOKED)
    with pytest.raises(ValueError, match="only a revoked"):
        CertStatusInfo(ocsp.OCSPCertStatus.GOOD, NOW)


# --- CRLs --------------------------------------------------------------------------------------------

def test_crl_structure(pki: Pki) -> None:
    revoked = [Revoked(900, NOW - timedelta(hours=2), RevocationReason.KEY_COMPROMISE),
               Revoked(12, NOW - timedelta(days=1)),
               Revoked(400, NOW, RevocationReason.SUPERSEDED)]
    crl = crl_for(pki, revoked)
    key = pki.intermediate.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and crl.is_signature_valid(key)
    assert crl.issuer == pki.intermediate.subject
    assert (crl.last_update_utc, crl.next_update_utc) == (NOW, NOW + timedelta(days=7))
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 7
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = pki.intermediate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    assert idp.critical and idp.value.full_name == [x509.UniformResourceIdentifier(CRL_URL)]
    assert idp.value.only_contains_user_certs
    assert [entry.serial_number for entry in crl] == [12, 400, 900]
    reasons = {}
    for entry in crl:
        try:
            reasons[entry.serial_number] = entry.extensions.get_extension_for_class(x509.CRLReason)
        except x509.ExtensionNotFound:
            pass
    assert set(reasons) == {400, 900}  # BR 7.2.2: no reasonCode for unspecified
    assert reasons[900].value.reason is x509.ReasonFlags.key_compromise and not reasons[900].critical
    der = crl.public_bytes(serialization.Encoding.DER)
    assert x509.load_der_x509_crl(der).get_revoked_certificate_by_serial_number(400) is not None


def test_crl_without_distribution_point_has_no_idp(pki: Pki) -> None:
    crl = crl_for(pki, [], distribution_point=None, only_contains_user_certs=False)
    with pytest.raises(x509.ExtensionNotFound):
        crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    assert len(crl) == 0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"next_update": NOW}, "later than"),
    ({"next_update": NOW - timedelta(seconds=1)}, "later than"),
    ({"number": -1}, "CRL number"),
    ({"number": 2**159}, "CRL number"),
    ({"this_update": datetime(2026, 1, 1)}, "timezone-aware"),
    ({"distribution_point": "ldap://crl.example/x"}, "not an http"),
    ({"revoked": [Revoked(3, NOW), Revoked(3, NOW)]}, "listed twice"),
    ({"revoked": [Revoked(3, NOW + timedelta(seconds=1))]}, "after this CRL"),
])
def test_crl_inputs_are_checked(pki: Pki, kwargs: dict[str, object], message: str) -> None:
    revoked = kwargs.pop("revoked", [])
    with pytest.raises(ValueError, match=message):
        crl_for(pki, revoked, **kwargs)  # type: ignore[arg-type]


def test_crl_needs_a_crl_signing_issuer_and_its_key(pki: Pki) -> None:
    with pytest.raises(ValueError, match="cRLSign"):
        build_crl(issuer=pki.leaf, issuer_key_id=pki.inter_key_id, signer=pki.signer, revoked=[],
                  number=1, this_update=NOW, next_update=NOW + timedelta(days=1))
    with pytest.raises(ValueError, match="not the issuer's key"):
        build_crl(issuer=pki.root, issuer_key_id=pki.inter_key_id, signer=pki.signer, revoked=[],
                  number=1, this_update=NOW, next_update=NOW + timedelta(days=1))


@pytest.mark.parametrize("entries", [0, 2])
def test_crl_passes_pkilint_br(pki: Pki, work: Path, entries: int) -> None:
    revoked = [Revoked(pki.leaf.serial_number, NOW, RevocationReason.KEY_COMPROMISE),
               Revoked(77, NOW - timedelta(days=2))][:entries]
    (work / "crl.der").write_bytes(crl_for(pki, revoked).public_bytes(serialization.Encoding.DER))
    result = run(LINT_CRL, "lint", "-t", "CRL", "-p", "BR", "-s", "WARNING", "crl.der", cwd=work)
    assert (result.returncode, result.stdout.strip(), result.stderr.strip()) == (0, "", "")


def test_pkilint_does_report_a_br_violation(pki: Pki, work: Path) -> None:
    """The clean results above mean something: a 30-day subscriber CRL breaks BR 4.9.7."""
    crl = crl_for(pki, [], next_update=NOW + timedelta(days=30))
    (work / "crl.der").write_bytes(crl.public_bytes(serialization.Encoding.DER))
    result = run(LINT_CRL, "lint", "-t", "CRL", "-p", "BR", "-s", "WARNING", "crl.der", cwd=work)
    assert "cabf.crl_invalid_validity_period" in result.stdout


def _write_crl(work: Path, crl: x509.CertificateRevocationList) -> None:
    (work / "crl.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))


def test_openssl_verifies_crl_and_sees_the_leaf_revoked(pki: Pki, work: Path) -> None:
    _write_crl(work, crl_for(pki, [Revoked(pki.leaf.serial_number, NOW, RevocationReason.KEY_COMPROMISE)]))
    checked = run(OPENSSL, "crl", "-in", "crl.pem", "-CAfile", "chain.pem", "-noout", cwd=work)
    assert checked.returncode == 0 and "verify OK" in checked.stderr
    verify = [OPENSSL, "verify", "-crl_check", "-CRLfile", "crl.pem", "-CAfile", "root.pem",
              "-untrusted", "inter.pem", "leaf.pem"]
    revoked = run(*verify, cwd=work)
    assert revoked.returncode != 0 and "certificate revoked" in revoked.stdout + revoked.stderr

    _write_crl(work, crl_for(pki, [Revoked(pki.leaf.serial_number + 1, NOW)]))
    good = run(*verify, cwd=work)
    assert good.returncode == 0 and "leaf.pem: OK" in good.stdout

    # The Issuing Distribution Point is what marks a shard: openssl will not use
    # another shard's CRL for this certificate.
    _write_crl(work, crl_for(pki, [], distribution_point="http://crl.trust.example/inter/4.crl"))
    other_shard = run(*verify, cwd=work)
    assert other_shard.returncode != 0 and "different CRL scope" in other_shard.stderr


def test_openssl_rejects_a_crl_from_another_key(pki: Pki, work: Path, tmp_path: Path) -> None:
    other = make_pki(tmp_path / "other")
    (work / "crl.pem").write_bytes(crl_for(other, []).public_bytes(serialization.Encoding.PEM))
    checked = run(OPENSSL, "crl", "-in", "crl.pem", "-CAfile", "chain.pem", "-noout", cwd=work)
    assert "verify OK" not in checked.stderr


# --- OCSP with openssl as the client -----------------------------------------------------------------

def openssl_ocsp(pki: Pki, work: Path, status: CertStatusInfo, *options: str) -> str:
    """openssl makes the request, we answer it, openssl checks the answer.

    openssl ignores ``-reqin`` once ``-cert`` builds a request of its own, so
    two checks: the signature and the nonce against the very request we
    answered, then the status for the certificate (same CertID hash, no nonce).
    """
    made = run(OPENSSL, "ocsp", "-issuer", "inter.pem", *options, "-cert", "leaf.pem",
               "-reqout", "req.der", cwd=work)
    assert made.returncode == 0, made.stderr
    response = respond(pki, (work / "req.der").read_bytes(), {pki.leaf.serial_number: status})
    (work / "resp.der").write_bytes(response)
    trust = ("-CAfile", "root.pem", "-VAfile", "inter.pem")
    verified = run(OPENSSL, "ocsp", "-respin", "resp.der", "-reqin", "req.der", *trust, cwd=work)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "Response verify OK" in verified.stderr
    digest = [o for o in options if o != "-no_nonce"]
    checked = run(OPENSSL, "ocsp", "-respin", "resp.der", "-issuer", "inter.pem", *digest, "-cert",
                  "leaf.pem", "-no_nonce", *trust, cwd=work)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Response verify OK" in checked.stderr
    return checked.stdout


def test_openssl_rejects_a_response_to_another_nonce(pki: Pki, work: Path) -> None:
    openssl_ocsp(pki, work, CertStatusInfo.good())
    other = run(OPENSSL, "ocsp", "-issuer", "inter.pem", "-cert", "leaf.pem", "-reqout", "other.der",
                cwd=work)
    assert other.returncode == 0
    checked = run(OPENSSL, "ocsp", "-respin", "resp.der", "-reqin", "other.der", "-CAfile", "root.pem",
                  "-VAfile", "inter.pem", cwd=work)
    assert checked.returncode != 0 and "Nonce Verify error" in checked.stderr


def signed_by(response: ocsp.OCSPResponse, issuer: x509.Certificate) -> bool:
    key = issuer.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and response.signature_hash_algorithm is not None
    try:
        key.verify(response.signature, response.tbs_response_bytes,
                   ec.ECDSA(response.signature_hash_algorithm))
    except InvalidSignature:
        return False
    return True


@pytest.mark.parametrize("options", [(), ("-no_nonce",), ("-sha256",), ("-sha256", "-no_nonce")])
def test_openssl_client_good(pki: Pki, work: Path, options: tuple[str, ...]) -> None:
    output = openssl_ocsp(pki, work, CertStatusInfo.good(), *options)
    assert "leaf.pem: good" in output
    request = ocsp.load_der_ocsp_request((work / "req.der").read_bytes())
    response = ocsp.load_der_ocsp_response((work / "resp.der").read_bytes())
    nonces = [e.value for e in response.extensions if isinstance(e.value, x509.OCSPNonce)]
    if "-no_nonce" in options:
        assert nonces == []
    else:
        assert nonces == [request.extensions.get_extension_for_class(x509.OCSPNonce).value]
    assert response.hash_algorithm.name == ("sha256" if "-sha256" in options else "sha1")


def test_openssl_client_revoked_with_reason(pki: Pki, work: Path) -> None:
    revoked_at = NOW - timedelta(hours=3)
    output = openssl_ocsp(pki, work, CertStatusInfo.revoked(revoked_at, RevocationReason.KEY_COMPROMISE))
    assert "leaf.pem: revoked" in output and "Reason: keyCompromise" in output


def test_openssl_client_revoked_unspecified_has_no_reason(pki: Pki, work: Path) -> None:
    output = openssl_ocsp(pki, work, CertStatusInfo.revoked(NOW - timedelta(hours=3)), "-no_nonce")
    assert "leaf.pem: revoked" in output and "Reason" not in output


def test_openssl_client_unknown(pki: Pki, work: Path) -> None:
    assert "leaf.pem: unknown" in openssl_ocsp(pki, work, CertStatusInfo.unknown())


def test_response_fields(pki: Pki) -> None:
    nonce = bytes(range(32))
    request = request_for(pki.leaf, pki.intermediate, extension=x509.OCSPNonce(nonce))
    response = ocsp.load_der_ocsp_response(respond(pki, request, {
        pki.leaf.serial_number: CertStatusInfo.revoked(NOW - timedelta(days=1), RevocationReason.SUPERSEDED),
    }))
    assert response.response_status is STATUS.SUCCESSFUL
    assert signed_by(response, pki.intermediate)
    assert response.certificates == []  # signed by the CA itself: no responder certificate
    assert response.responder_key_hash == x509.SubjectKeyIdentifier.from_public_key(
        pki.intermediate.public_key()).digest
    assert response.responder_name is None
    assert (response.this_update_utc, response.next_update_utc) == (NOW, NOW + VALIDITY)
    assert response.serial_number == pki.leaf.serial_number
    assert response.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert response.revocation_reason is x509.ReasonFlags.superseded
    assert response.revocation_time_utc == NOW - timedelta(days=1)
    assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce


@pytest.mark.parametrize("algorithm", [hashes.SHA384(), hashes.SHA512()])
def test_sha2_cert_ids_are_matched(pki: Pki, algorithm: hashes.HashAlgorithm) -> None:
    response = ocsp.load_der_ocsp_response(respond(
        pki, request_for(pki.leaf, pki.intermediate, algorithm),
        {pki.leaf.serial_number: CertStatusInfo.good()}))
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert response.hash_algorithm.name == algorithm.name


@pytest.mark.parametrize("status", [
    CertStatusInfo.good(), CertStatusInfo.unknown(),
    CertStatusInfo.revoked(NOW - timedelta(minutes=5), RevocationReason.KEY_COMPROMISE),
    CertStatusInfo.revoked(NOW - timedelta(minutes=5)),
])
def test_ocsp_response_passes_pkilint(pki: Pki, work: Path, status: CertStatusInfo) -> None:
    request = request_for(pki.leaf, pki.intermediate, extension=x509.OCSPNonce(b"n" * 16))
    (work / "resp.der").write_bytes(respond(pki, request, {pki.leaf.serial_number: status}))
    result = run(LINT_OCSP, "lint", "-s", "WARNING", "resp.der", cwd=work)
    assert (result.returncode, result.stdout.strip(), result.stderr.strip()) == (0, "", "")


# --- requests we must not answer ---------------------------------------------------------------------

def status_of(response: bytes) -> ocsp.OCSPResponseStatus:
    return ocsp.load_der_ocsp_response(response).response_status


def test_unknown_issuer_is_unauthorized(pki: Pki, tmp_path: Path) -> None:
    other = make_pki(tmp_path / "other")
    assert status_of(respond(pki, request_for(other.leaf, other.intermediate))) is STATUS.UNAUTHORIZED
    # Right issuer name, wrong key: both hashes must match.
    assert status_of(respond(pki, request_for(pki.leaf, pki.root))) is STATUS.UNAUTHORIZED
    # A hash we do not support cannot name one of our issuers.
    sha224 = request_for(pki.leaf, pki.intermediate, hashes.SHA224())
    assert status_of(respond(pki, sha224)) is STATUS.UNAUTHORIZED
    no_issuers = respond_ocsp(request_for(pki.leaf, pki.intermediate), issuers=[],
                              lookup=lambda i, s: CertStatusInfo.good(), signer=pki.signer, now=NOW,
                              validity=VALIDITY)
    assert status_of(no_issuers) is STATUS.UNAUTHORIZED


def test_which_issuer_a_request_names(pki: Pki, tmp_path: Path) -> None:
    """Another node's intermediate, named by a request this node cannot answer itself, is
    found so that the request goes to the node that operates it."""
    other = make_pki(tmp_path / "other")
    theirs = OcspIssuer(other.intermediate, "node-3")
    found = named_issuer(request_for(other.leaf, other.intermediate), [pki.issuer, theirs])
    assert found is theirs
    assert named_issuer(request_for(pki.leaf, pki.root), [theirs]) is None
    assert named_issuer(b"\x30\x03garbage", [theirs]) is None


def test_malformed_requests(pki: Pki, work: Path) -> None:
    valid = request_for(pki.leaf, pki.intermediate)
    two = run(OPENSSL, "ocsp", "-issuer", "inter.pem", "-cert", "leaf.pem", "-cert", "leaf.pem",
              "-reqout", "two.der", cwd=work)
    assert two.returncode == 0
    bad = [
        b"", b"garbage", b"\x30", b"\x30\x80", valid[:-1], valid[:10], valid + b"\x00",
        (work / "two.der").read_bytes(),
        request_for(pki.leaf, pki.intermediate, extension=x509.OCSPNonce(b"x" * 33)),
        request_for(pki.leaf, pki.intermediate, extension=x509.OCSPNonce(b"")),
        request_for(pki.leaf, pki.intermediate, extension=x509.UnrecognizedExtension(
            x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"), critical=True),
    ]
    for request in bad:
        response = respond(pki, request)
        assert status_of(response) is STATUS.MALFORMED_REQUEST, request
        assert response == unsuccessful_ocsp_response(STATUS.MALFORMED_REQUEST)
    ignorable = request_for(pki.leaf, pki.intermediate, extension=x509.UnrecognizedExtension(
        x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"))
    assert status_of(respond(pki, ignorable)) is STATUS.SUCCESSFUL


def test_caller_errors_are_not_network_errors(pki: Pki) -> None:
    request = request_for(pki.leaf, pki.intermediate)
    with pytest.raises(ValueError, match="validity"):
        respond_ocsp(request, issuers=[pki.issuer], lookup=lambda i, s: CertStatusInfo.good(),
                     signer=pki.signer, now=NOW, validity=timedelta(0))
    with pytest.raises(ValueError, match="signed"):
        unsuccessful_ocsp_response(STATUS.SUCCESSFUL)


# --- GET requests (RFC 6960 appendix A.1) ------------------------------------------------------------

def test_get_path_round_trip(pki: Pki) -> None:
    # Find a request whose base64 has all of '+', '/' and '=' in it.
    for _ in range(200):
        der = request_for(pki.leaf, pki.intermediate, extension=x509.OCSPNonce(
            x509.random_serial_number().to_bytes(20, "big")))
        text = base64.b64encode(der).decode()
        if "+" in text and "/" in text and text.endswith("="):
            break
    else:
        pytest.fail("no request with + / = in its base64")
    assert ocsp_request_from_get_path(quote(text, safe="")) == der
    assert ocsp_request_from_get_path(text) == der
    assert ocsp_request_from_get_path(text.rstrip("=")) == der
    assert ocsp_request_from_get_path(text.replace("/", "%2f")) == der


@pytest.mark.parametrize("path", ["", "!!!", "a b", "abcde", "%ZZ", "%FF%FE", "YQ==YQ==", "YWJj====",
                                  "-_-_", "\u00e9t\u00e9"])
def test_get_path_rejects_garbage(path: str) -> None:
    with pytest.raises(ValueError):
        ocsp_request_from_get_path(path)


# --- hostile bytes -----------------------------------------------------------------------------------

_ANSWERS = {STATUS.SUCCESSFUL, STATUS.MALFORMED_REQUEST, STATUS.UNAUTHORIZED}


def _answered(pki: Pki, request: bytes) -> None:
    response = ocsp.load_der_ocsp_response(respond(pki, request))
    assert response.response_status in _ANSWERS
    if response.response_status is STATUS.SUCCESSFUL:
        assert signed_by(response, pki.intermediate)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_get_an_answer(pki: Pki, data: bytes) -> None:
    _answered(pki, data)


@settings(max_examples=200, deadline=None)
@given(edits=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255), st.sampled_from("rid")),
                      min_size=1, max_size=4), cut=st.integers(0, 220))
def test_mutated_requests_get_an_answer(pki: Pki, edits: list[tuple[int, int, str]], cut: int) -> None:
    data = bytearray(request_for(pki.leaf, pki.intermediate, extension=x509.OCSPNonce(b"q" * 16)))
    for position, value, kind in edits:
        position %= len(data) + 1
        if kind == "r" and position < len(data):
            data[position] = value
        elif kind == "i":
            data.insert(position, value)
        elif position < len(data):
            del data[position]
    _answered(pki, bytes(data[:cut] if cut < len(data) else data))
