"""The genesis root: the self-signed CA certificate every TrustChain chain ends in.

The root signs the per-network and infrastructure intermediates (each with
``pathLen 0``), so its own path length is 1.  It is long-lived (20 years)
and its key is rarely used, which is why it can be exported and kept
offline once the intermediates exist.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT_VALIDITY = timedelta(days=20 * 365 + 5)
ROOT_PATH_LENGTH = 1


def random_serial() -> int:
    """A positive serial number of 128 random bits (CA/B Forum asks for at least 64)."""
    while True:
        serial = secrets.randbits(128)
        if serial:
            return serial


def signature_hash(
    key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey,
) -> hashes.SHA256 | hashes.SHA384:
    """The hash that goes with an ECDSA curve (SHA-256 for P-256, SHA-384 for P-384)."""
    return hashes.SHA384() if key.curve.key_size >= 384 else hashes.SHA256()


def build_root_certificate(
    key: ec.EllipticCurvePrivateKey, network_name: str, now: datetime
) -> x509.Certificate:
    """Self-sign the genesis root certificate for ``network_name``."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, network_name),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{network_name} TrustChain Genesis Root"),
        ]
    )
    not_before = now.replace(microsecond=0)
    public_key = key.public_key()
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(random_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_before + ROOT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=ROOT_PATH_LENGTH), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, signature_hash(key))
    )
