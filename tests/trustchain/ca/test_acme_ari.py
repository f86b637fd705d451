"""ARI identifiers (RFC 9773 section 4.1) as certbot's acme library computes them, their
parser on any text (hypothesis), and the suggested windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from acme.client import _renewal_info_path_component
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from trustchain.ca.acme import ari
from trustchain.ca.acme.problems import AcmeProblem

NOW = datetime(2026, 12, 3, tzinfo=UTC)


def certificate(serial: int) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "ari")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(serial)
            .not_valid_before(NOW).not_valid_after(NOW + timedelta(days=90))
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
                           critical=False).sign(key, hashes.SHA256()))


@pytest.mark.parametrize("serial", [1, 127, 128, 255, 256, 2**63, 2**159 - 1])
def test_identifiers_match_the_acme_library_and_parse_back(serial: int) -> None:
    cert = certificate(serial)
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    text = ari.cert_id(aki.key_identifier or b"", serial)
    assert text == _renewal_info_path_component(cert)
    assert ari.parse_cert_id(text) == (aki.key_identifier, serial)


@given(st.text(max_size=80))
def test_any_identifier_text_parses_or_is_malformed(text: str) -> None:
    try:
        ari.parse_cert_id(text)
    except AcmeProblem as exc:
        assert exc.kind == "malformed"


def test_windows_in_the_last_third_and_in_the_past_once_revoked() -> None:
    status = ari.CertificateStatus(b"k", NOW, NOW + timedelta(days=90), revoked=False)
    assert ari.window(status, NOW) == (NOW + timedelta(days=60), NOW + timedelta(days=75))
    start, end = ari.window(ari.CertificateStatus(b"k", NOW, NOW + timedelta(days=90), True),
                            NOW + timedelta(days=1))
    assert start < end < NOW + timedelta(days=1)
