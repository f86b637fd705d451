"""The tests' small X.509 PKIs, built one way.

Two kinds:

* :func:`node_pki`: a network shaped like a real node's, made by the product's own
  builders (the genesis root → one node's infrastructure intermediate → node leaves);
* :func:`cert_builder`: a plain ``CertificateBuilder`` for a hand-made root,
  intermediate or leaf that the product would not issue (another profile, a
  precertificate, a deliberately incomplete one).  Each keyword adds one thing and
  nothing is added unasked; the caller adds any other extension and signs it.

Keys are fresh each call; everything else (names, serials, validity) is what the
caller passes, so a test that needs fixed bytes passes a fixed ``not_before`` and
``serial``.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from bootstrap.root import build_root_certificate, signature_hash
from bootstrap.transport_certs import build_intermediate, build_leaf, node_uri
from trustchain.identity import TlsIdentity


def new_key(curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    """A fresh EC private key, P-256 unless another curve is named."""
    return ec.generate_private_key(curve or ec.SECP256R1())


def der_b64(cert: x509.Certificate) -> str:
    """The certificate's DER in base64, as RFC 6962 chains carry it."""
    return base64.b64encode(cert.public_bytes(Encoding.DER)).decode()


def dn(common_name: str, *, organisation: str | None = None) -> x509.Name:
    """``O=organisation, CN=common_name`` (no O when none is given)."""
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation)] if organisation else []
    return x509.Name([*attributes, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


# --- hand-made certificates ---------------------------------------------------------------


def cert_builder(
    subject: str | x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    *,
    issuer: x509.Certificate | x509.Name | None = None,
    not_before: datetime,
    days: int,
    serial: int | None = None,
    ca: bool | None = None,
    path_length: int | None = None,
    key_usage: bool = False,
    subject_key_id: bool = False,
    authority_key_id: bool = False,
    dns_names: Sequence[str] = (),
    poison: bool = False,
) -> x509.CertificateBuilder:
    """A certificate for ``subject`` (a name, or a bare common name) laid out, not signed.

    ``issuer`` is the issuing certificate or just its name; none means self-issued.
    Valid from ``not_before`` for ``days``; ``serial`` is random unless given.
    ``ca`` adds a critical BasicConstraints (with ``path_length``); ``key_usage`` a
    critical KeyUsage to match it (certificate and CRL signing for a CA, digital
    signature otherwise); ``subject_key_id`` and ``authority_key_id`` the key
    identifiers (the latter needs ``issuer`` as a certificate); ``dns_names`` a
    subjectAltName; ``poison`` the critical CT precertificate poison, last.
    """
    subject_name = dn(subject) if isinstance(subject, str) else subject
    issuer_name = (subject_name if issuer is None
                   else issuer.subject if isinstance(issuer, x509.Certificate) else issuer)
    builder = (
        x509.CertificateBuilder().subject_name(subject_name).issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number() if serial is None else serial)
        .not_valid_before(not_before).not_valid_after(not_before + timedelta(days=days))
    )
    if subject_key_id:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key),
                                        critical=False)
    if authority_key_id:
        if not isinstance(issuer, x509.Certificate):
            raise ValueError("an authority key identifier needs the issuer's certificate")
        issuer_key = issuer.public_key()
        assert isinstance(issuer_key, ec.EllipticCurvePublicKey)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key), critical=False)
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=path_length),
                                        critical=True)
    if key_usage:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=not ca, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=bool(ca), crl_sign=bool(ca),
            encipher_only=False, decipher_only=False), critical=True)
    if dns_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False)
    if poison:
        builder = builder.add_extension(x509.PrecertPoison(), critical=True)
    return builder


def signed(builder: x509.CertificateBuilder, signing_key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    """Sign with the hash that goes with the key's curve (SHA-384 for P-384, else SHA-256)."""
    return builder.sign(signing_key, signature_hash(signing_key))


# --- a node-shaped network, built by the product's own builders -------------------------------


def node_leaf(
    issuer_key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate,
    public_key: ec.EllipticCurvePublicKey | None = None,
    *,
    node_id: str,
    network: str,
    now: datetime,
    dns_names: Sequence[str] | None = None,
) -> x509.Certificate:
    """A node's TLS certificate (server and client) as ``build_leaf`` makes it.

    The key is fresh unless ``public_key`` is given; the subjectAltName holds the node's
    ``trustchain://`` URI and ``dns_names`` (``<node_id>.example`` unless given).
    """
    return build_leaf(
        issuer_key, issuer, public_key or new_key().public_key(), common_name=node_id,
        network=network, uri=node_uri(network, node_id),
        dns_names=[f"{node_id}.example"] if dns_names is None else dns_names, server=True, now=now,
    )


@dataclass(frozen=True)
class NodePki:
    """A genesis root and one node's infrastructure intermediate, with their keys."""

    network: str
    now: datetime
    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    ca_key: ec.EllipticCurvePrivateKey
    ca: x509.Certificate

    def leaf(self, node_id: str, public_key: ec.EllipticCurvePublicKey | None = None, *,
             dns_names: Sequence[str] | None = None) -> x509.Certificate:
        """A node certificate issued by the intermediate (see :func:`node_leaf`)."""
        return node_leaf(self.ca_key, self.ca, public_key, node_id=node_id, network=self.network,
                         now=self.now, dns_names=dns_names)

    def identity(self, node_id: str, *, dns_names: Sequence[str]) -> TlsIdentity:
        """A node's TLS identity: a fresh key, its leaf and the intermediate as chain."""
        private = new_key()
        return TlsIdentity(self.leaf(node_id, private.public_key(), dns_names=dns_names),
                           [self.ca], private)


def node_pki(*, now: datetime, network: str = "testnet", node_id: str = "n1") -> NodePki:
    """A fresh P-256 genesis root for ``network`` and ``node_id``'s intermediate under it."""
    root_key = new_key()
    root = build_root_certificate(root_key, network, now)
    ca_key = new_key()
    ca = build_intermediate(root_key, root, ca_key.public_key(), network, node_id, now)
    return NodePki(network, now, root_key, root, ca_key, ca)
