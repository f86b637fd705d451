"""CA targets: CSRs (the issuance check every CSR meets first) and OCSP requests.

The CSR rule: :func:`trustchain.ca.work.check_request` raises
:class:`PolicyError` (a 400 ``badCSR``-style problem) for any bytes, never
a ``cryptography`` exception.  The OCSP rule: :func:`respond_ocsp` answers
every request with DER that parses as an OCSP response (``malformedRequest``
or ``unauthorized`` for bad ones), and raises nothing.
"""

from __future__ import annotations

import ipaddress
import random
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from tests.fuzz.engine import Target, mutate
from trustchain.ca.policy import PolicyError
from trustchain.ca.profiles import PROFILES
from trustchain.ca.revocation import CertStatusInfo, OcspIssuer, respond_ocsp
from trustchain.ca.work import check_request

ZONE = "alpha.trust.example.net."
PREFIXES = ("10.0.0.0/8", "2001:db8::/32")
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)

#: DER fragments worth splicing into a CSR: curve and key OIDs, versions, lengths.
DER_TOKENS = (
    bytes.fromhex("06082a8648ce3d030107"),  # P-256
    bytes.fromhex("06052b81040022"),  # P-384
    bytes.fromhex("06052b81040023"),  # P-521
    bytes.fromhex("06052b8104000a"),  # secp256k1
    bytes.fromhex("06032b6570"),  # Ed25519
    bytes.fromhex("06032b6571"),  # Ed448
    bytes.fromhex("06092a864886f70d010101"),  # rsaEncryption
    bytes.fromhex("020100"), bytes.fromhex("020103"), bytes.fromhex("0201ff"),  # versions
    bytes.fromhex("0500"), bytes.fromhex("3000"), bytes.fromhex("a000"), bytes.fromhex("0101ff"),
    bytes.fromhex("0603551d11"), bytes.fromhex("0603551d13"),  # SAN, basicConstraints OIDs
    bytes.fromhex("8482ffff"), bytes.fromhex("308480"),  # long and indefinite lengths
    b"-----BEGIN CERTIFICATE REQUEST-----\n", b"\n-----END CERTIFICATE REQUEST-----\n",
)

_NAMES = ("www.alpha.trust.example.net", "*.alpha.trust.example.net", "alpha.trust.example.net",
          "evil.example.org", "*.*.alpha.trust.example.net", "-bad.alpha.trust.example.net",
          "x" * 64 + ".alpha.trust.example.net", "WWW.Alpha.Trust.Example.Net.",
          "xn--caf-dma.alpha.trust.example.net", "a..alpha.trust.example.net", "*")


def _keys() -> list[tuple[object, hashes.HashAlgorithm | None]]:
    return [
        (ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()),
        (ec.generate_private_key(ec.SECP384R1()), hashes.SHA384()),
        (ec.generate_private_key(ec.SECP521R1()), hashes.SHA512()),
        (ec.generate_private_key(ec.SECP256K1()), hashes.SHA256()),
        (ed25519.Ed25519PrivateKey.generate(), None),
        (ed448.Ed448PrivateKey.generate(), None),
        (rsa.generate_private_key(65537, 2048), hashes.SHA256()),
        (rsa.generate_private_key(3, 1024), hashes.SHA256()),
    ]


def _san(rng: random.Random) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for _ in range(rng.choice((0, 1, 1, 2, 3))):
        roll = rng.random()
        if roll < 0.6:
            names.append(x509.DNSName(rng.choice(_NAMES)))
        elif roll < 0.8:
            names.append(x509.IPAddress(ipaddress.ip_address(
                rng.choice(("10.1.2.3", "192.0.2.1", "2001:db8::1", "::1")))))
        elif roll < 0.9:
            names.append(x509.IPAddress(ipaddress.ip_network("10.0.0.0/8")))
        else:
            names.append(x509.UniformResourceIdentifier("trustchain://testnet/network/alpha"))
    return names


def simple_csr(encoding: Encoding = Encoding.DER) -> bytes:
    """A valid CSR for www.alpha.trust.example.net with a fresh P-256 key."""
    key = ec.generate_private_key(ec.SECP256R1())
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz")]))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("www.alpha.trust.example.net")]), critical=False)
            .sign(key, hashes.SHA256()).public_bytes(encoding))


def build_csr(rng: random.Random, keys: list[tuple[object, hashes.HashAlgorithm | None]]) -> bytes:
    """A freshly signed CSR with random names, extensions and key."""
    key, algorithm = rng.choice(keys)
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz")]))
    names = _san(rng)
    if names or rng.random() < 0.1:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if rng.random() < 0.2:
        builder = builder.add_extension(x509.BasicConstraints(ca=rng.random() < 0.5,
                                                              path_length=None), critical=True)
    if rng.random() < 0.1:
        builder = builder.add_extension(x509.UnrecognizedExtension(
            x509.ObjectIdentifier("1.2.3.4"), rng.randbytes(rng.randrange(8))), critical=True)
    csr = builder.sign(key, algorithm)  # type: ignore[arg-type]
    return csr.public_bytes(Encoding.PEM if rng.random() < 0.2 else Encoding.DER)


def csr_target() -> Target:
    keys = _keys()
    rng = random.Random(0)
    seeds = [build_csr(rng, keys) for _ in range(24)]

    def run(data: bytes) -> None:
        """Both checks: names and key (server-90d), and key only (network-admin)."""
        refused = None
        for profile in ("server-90d", "network-admin"):
            assert profile in PROFILES
            try:
                check_request(data, ZONE, PREFIXES, profile)
            except PolicyError as exc:
                refused = exc
        if refused is not None:
            raise refused

    def structured(rng: random.Random, seed: bytes) -> bytes:
        return build_csr(rng, keys) if rng.random() < 0.3 else mutate(rng, seed, DER_TOKENS)

    return Target("csr", run, (PolicyError,), seeds, DER_TOKENS, structured)


# --- OCSP ---------------------------------------------------------------------------


class _Signer:
    """Signs OCSP responses with one issuer key (the product's Signer, minus the key store)."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key

    def sign_ocsp(self, builder: ocsp.OCSPResponseBuilder, key_id: str) -> ocsp.OCSPResponse:
        return builder.sign(self._key, hashes.SHA256())


def ocsp_target() -> Target:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz issuer")])
    issuer = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
              .public_key(key.public_key()).serial_number(7)
              .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=9))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .sign(key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(0x1234)
            .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=9))
            .sign(key, hashes.SHA256()))
    issuers = [OcspIssuer(issuer, "issuer-1")]
    seeds = []
    for algorithm in (hashes.SHA1(), hashes.SHA256(), hashes.SHA384(), hashes.SHA512()):
        for nonce in (None, b"\x01" * 16, b"\x02" * 40):
            builder = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, algorithm)
            if nonce is not None:
                builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
            seeds.append(builder.build().public_bytes(Encoding.DER))

    def lookup(found: OcspIssuer, serial: int) -> CertStatusInfo:
        if serial % 3 == 0:
            return CertStatusInfo.revoked(NOW - timedelta(hours=1))
        return CertStatusInfo.good() if serial % 3 == 1 else CertStatusInfo.unknown()

    signer = _Signer(key)

    def run(data: bytes) -> None:
        answer = respond_ocsp(data, issuers=issuers, lookup=lookup, signer=signer,  # type: ignore[arg-type]
                              now=NOW, validity=timedelta(hours=12))
        response = ocsp.load_der_ocsp_response(answer)
        if response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL:
            assert response.serial_number >= 0

    return Target("ocsp", run, (), seeds, DER_TOKENS)
