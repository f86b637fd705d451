"""The genesis root certificate, checked by tools we did not write."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from bootstrap.root import ROOT_PATH_LENGTH, build_root_certificate


@pytest.fixture(params=[ec.SECP384R1(), ec.SECP256R1()], ids=["p384", "p256"])
def root_pem(request, tmp_path: Path, now: datetime) -> Path:
    key = ec.generate_private_key(request.param)
    cert = build_root_certificate(key, "testnet", now)
    path = tmp_path / "root.pem"
    path.write_bytes(cert.public_bytes(Encoding.PEM))
    return path


def test_openssl_accepts_it_as_a_trust_anchor(root_pem: Path, now: datetime) -> None:
    result = subprocess.run(
        ["openssl", "verify", "-x509_strict", "-check_ss_sig", "-attime", str(int(now.timestamp())),
         "-CAfile", root_pem, root_pem],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(": OK")
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", root_pem],
                          capture_output=True, text=True, check=True).stdout
    assert f"CA:TRUE, pathlen:{ROOT_PATH_LENGTH}" in text
    assert "Certificate Sign, CRL Sign" in text


def test_pkilint_pkix_profile_is_clean(root_pem: Path) -> None:
    linter = Path(sys.executable).parent / "lint_pkix_cert"
    result = subprocess.run([linter, "lint", "-s", "WARNING", root_pem],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_profile(now: datetime) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    cert = build_root_certificate(key, "testnet", now.replace(microsecond=123))
    assert cert.not_valid_before_utc == now.replace(microsecond=0)
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days >= 20 * 365
    assert 0 < cert.serial_number < 2**128
    assert cert.issuer == cert.subject
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == ROOT_PATH_LENGTH
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    cert.verify_directly_issued_by(cert)
