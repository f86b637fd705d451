"""Transport credentials: the certificates a node presents on QUIC and HTTPS.

::

    genesis root (offline-capable, pathLen 1)
      └── infrastructure intermediate of this node (pathLen 0, 5 years)
            ├── node certificate   (serverAuth + clientAuth, 90 days)
            └── admin certificate  (clientAuth, 90 days; for the local operator)

Identities are URIs in the subjectAltName, in the style of SPIFFE ids:
``trustchain://<network>/node/<node-id>`` and
``trustchain://<network>/admin/<name>``.  The node certificate also names the
zone origin (every node of a network answers for it, so clients check that
name by default) and ``<node-id>.nodes.<origin>``.

``ensure_transport_credentials`` runs at init and at every start: it issues
what is missing and renews a leaf once less than a third of its lifetime is
left, so a long-running network never presents an expired certificate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bootstrap.root import random_serial, signature_hash
from trustchain.errors import KeyNotFoundError, KeyStoreError
from trustchain.identity import Role, TlsIdentity, identity_uri
from trustchain.keystore import KeyStore, KeyType
from trustchain.storage.node import NodeStore

INFRA_CA_PURPOSE = "infrastructure-ca"
NODE_TLS_PURPOSE = "node-tls"
ADMIN_TLS_PURPOSE = "admin-tls"
#: A joined node's certificate is issued by another node's intermediate, stored under this.
NODE_TLS_ISSUER_PURPOSE = "node-tls-issuer"

INTERMEDIATE_VALIDITY = timedelta(days=5 * 365)
LEAF_VALIDITY = timedelta(days=90)
#: Clock skew allowance: certificates are valid from a little before issuance.
BACKDATE = timedelta(minutes=5)

_KU_CA = x509.KeyUsage(
    digital_signature=False, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
    encipher_only=False, decipher_only=False,
)
_KU_LEAF = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
    encipher_only=False, decipher_only=False,
)


def node_uri(network: str, node_id: str) -> str:
    return identity_uri(network, Role.NODE, node_id)


def admin_uri(network: str, name: str) -> str:
    return identity_uri(network, Role.ADMIN, name)


def node_dns_names(origin: str, node_id: str) -> list[str]:
    zone = origin.rstrip(".")
    return [zone, f"{node_id}.nodes.{zone}"]


def _builder(
    subject: x509.Name, issuer: x509.Certificate | None, public_key: ec.EllipticCurvePublicKey,
    not_before: datetime, lifetime: timedelta,
) -> x509.CertificateBuilder:
    issuer_name = subject if issuer is None else issuer.subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(random_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_before + lifetime)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if issuer is not None:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    return builder


def build_intermediate(
    root_key: ec.EllipticCurvePrivateKey, root: x509.Certificate,
    public_key: ec.EllipticCurvePublicKey, network: str, node_id: str, now: datetime,
) -> x509.Certificate:
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, network),
        x509.NameAttribute(NameOID.COMMON_NAME, f"{network} infrastructure CA {node_id[:8]}"),
    ])
    not_before = (now - BACKDATE).replace(microsecond=0)
    return (
        _builder(subject, root, public_key, not_before, INTERMEDIATE_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_KU_CA, critical=True)
        .sign(root_key, signature_hash(root_key))
    )


def build_leaf(
    issuer_key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate,
    public_key: ec.EllipticCurvePublicKey, *, common_name: str, network: str,
    uri: str, dns_names: Sequence[str], server: bool, now: datetime,
) -> x509.Certificate:
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, network),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    names.append(x509.UniformResourceIdentifier(uri))
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if server:
        usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    not_before = (now - BACKDATE).replace(microsecond=0)
    return (
        _builder(subject, issuer, public_key, not_before, LEAF_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_KU_LEAF, critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(issuer_key, signature_hash(issuer_key))
    )


@dataclass(frozen=True)
class TransportCredentials:
    root: x509.Certificate
    node: TlsIdentity
    #: The local operator's client identity (founding nodes; joined nodes have none yet).
    admin: TlsIdentity | None
    #: The intermediate's key and certificate, on nodes that hold one.
    issuer: TlsIdentity | None


def _needs_renewal(cert: x509.Certificate | None, now: datetime) -> bool:
    if cert is None:
        return True
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    return cert.not_valid_after_utc - now < lifetime / 3


def _key(keystore: KeyStore, purpose: str, now: datetime) -> ec.EllipticCurvePrivateKey:
    record = keystore.active_or_generate(KeyType.ECDSA_P256, purpose, now)
    key = keystore.private_key(record.id)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _has_key(keystore: KeyStore, purpose: str) -> bool:
    try:
        keystore.active(purpose)
    except KeyNotFoundError:
        return False
    return True


def ensure_transport_credentials(
    keystore: KeyStore, store: NodeStore, *, root: x509.Certificate, root_key_purpose: str,
    network: str, origin: str, node_id: str, now: datetime,
) -> TransportCredentials:
    """Return valid transport credentials, issuing or renewing what is needed.

    The genesis root key is used only when the intermediate itself must be
    (re)issued, i.e. at init and every few years.  A node that joined an
    existing network holds no root key: it uses the certificate its
    enrolment obtained (see :func:`joined_credentials`).
    """
    if not _has_key(keystore, root_key_purpose) and not _has_key(keystore, INFRA_CA_PURPOSE):
        return joined_credentials(keystore, store, root=root, now=now)
    infra_key = _key(keystore, INFRA_CA_PURPOSE, now)
    intermediate = store.latest_certificate(INFRA_CA_PURPOSE)
    if (
        intermediate is None
        or intermediate.public_key() != infra_key.public_key()
        or _needs_renewal(intermediate, now)
    ):
        if not _has_key(keystore, root_key_purpose):
            raise KeyStoreError(
                "the infrastructure intermediate must be renewed, which needs the genesis root "
                "key, and it is kept offline: trustchain ca import-root-key FILE, then start again")
        root_key = keystore.private_key(keystore.active(root_key_purpose).id)
        assert isinstance(root_key, ec.EllipticCurvePrivateKey)
        intermediate = build_intermediate(
            root_key, root, infra_key.public_key(), network, node_id, now
        )
        store.add_certificate(INFRA_CA_PURPOSE, intermediate)

    identities = {}
    for purpose, server, uri, dns_names, common_name in (
        (NODE_TLS_PURPOSE, True, node_uri(network, node_id), node_dns_names(origin, node_id),
         f"node {node_id}"),
        (ADMIN_TLS_PURPOSE, False, admin_uri(network, node_id), [], f"admin of node {node_id}"),
    ):
        key = _key(keystore, purpose, now)
        cert = store.latest_certificate(purpose)
        if (
            cert is None
            or cert.public_key() != key.public_key()
            or _needs_renewal(cert, now)
            or cert.issuer != intermediate.subject
        ):
            cert = build_leaf(
                infra_key, intermediate, key.public_key(), common_name=common_name,
                network=network, uri=uri, dns_names=dns_names, server=server, now=now,
            )
            store.add_certificate(purpose, cert)
        identities[purpose] = TlsIdentity(cert, [intermediate], key)
    return TransportCredentials(
        root, identities[NODE_TLS_PURPOSE], identities[ADMIN_TLS_PURPOSE],
        TlsIdentity(intermediate, [], infra_key),
    )


def joined_credentials(
    keystore: KeyStore, store: NodeStore, *, root: x509.Certificate, now: datetime
) -> TransportCredentials:
    """Credentials of a node that joined by enrolment (no root key, no intermediate).

    :raises KeyStoreError: if the node has not completed enrolment.
    """
    cert = store.latest_certificate(NODE_TLS_PURPOSE)
    issuer = store.latest_certificate(NODE_TLS_ISSUER_PURPOSE)
    if cert is None or issuer is None:
        raise KeyStoreError("this node holds no node certificate: complete `trustchain join`")
    key = keystore.private_key(keystore.active(NODE_TLS_PURPOSE).id)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    if cert.public_key() != key.public_key():
        raise KeyStoreError("the stored node certificate does not match the node's TLS key")
    if cert.not_valid_after_utc <= now:
        raise KeyStoreError(
            "the node certificate has expired; renewal through the network arrives with the "
            "federation work: enrol again with `trustchain join`"
        )
    return TransportCredentials(root, TlsIdentity(cert, [issuer], key), None, None)
