"""Certificate profiles: what each kind of certificate the CA issues contains.

Follows the CA/Browser Forum Baseline Requirements (2.x) section 7.1.2 as
``pkilint``'s ``lint_cabf_serverauth_cert`` checks it:

* subscriber certificates (``server-90d``, ``short-lived``, ``node``) have an
  empty subject and a critical subjectAltName, the domain-validated reserved
  policy OID, AKI but no SKI (BR 7.1.2.7.6: "NOT RECOMMENDED"), a critical
  keyUsage of digitalSignature (plus keyEncipherment for RSA keys), the EKU of
  the profile, a CRL distribution point and AIA (OCSP responder and issuer);
* ``network-admin`` is a federated network's admin credential: a TLS client
  certificate from that network's own intermediate whose only name is the
  URI ``trustchain://<this network>/network/<that network>``
  (:func:`trustchain.identity.identity_uri`), whatever names the CSR
  asks for; no DV policy and, as RFC 5280 recommends, an SKI.  The
  intermediate's name constraints (DNS and IP subtrees) do not constrain
  URIs (RFC 5280 4.2.1.10); OpenSSL and ``cryptography`` agree;
* network intermediates (:func:`intermediate_builder`) are technically
  constrained subordinate CAs: pathLen 0, serverAuth/clientAuth EKU, and name
  constraints that permit only the network's DNS subtree and exclude every
  IP address (networks register no address blocks yet).  No directoryName
  constraint: pkilint accepts one, but ``cryptography``'s path validator
  then refuses every chain through the CA (see docs/security.md).

Builders only: nothing here signs (that is :mod:`trustchain.ca.signer`).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

#: CA/B Forum reserved policy identifier: domain validated.
DOMAIN_VALIDATED = x509.ObjectIdentifier("2.23.140.1.2.1")
BACKDATE = timedelta(minutes=5)
INTERMEDIATE_VALIDITY = timedelta(days=3 * 365)

SubjectKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey


@dataclass(frozen=True)
class Profile:
    name: str
    lifetime: timedelta
    usages: tuple[x509.ObjectIdentifier, ...]
    description: str
    #: The certificate names the requesting network's admin identity (a URI), not the
    #: CSR's names (the CSR then only proves possession of the key).
    network_identity: bool = False

    @property
    def server(self) -> bool:
        """A TLS server certificate (the CA/B Forum's rules and DV policy apply)."""
        return ExtendedKeyUsageOID.SERVER_AUTH in self.usages


NETWORK_ADMIN_PROFILE = "network-admin"
PROFILES: dict[str, Profile] = {
    p.name: p for p in (
        Profile("server-90d", timedelta(days=90), (ExtendedKeyUsageOID.SERVER_AUTH,),
                "TLS server, 90 days"),
        Profile("short-lived", timedelta(hours=160), (ExtendedKeyUsageOID.SERVER_AUTH,),
                "TLS server, 160 hours (CA/B short-lived: no revocation needed)"),
        Profile("node", timedelta(days=90),
                (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
                "mutual TLS between nodes: server and client, 90 days"),
        Profile(NETWORK_ADMIN_PROFILE, timedelta(days=90), (ExtendedKeyUsageOID.CLIENT_AUTH,),
                "a federated network's admin credential (TLS client), 90 days",
                network_identity=True),
    )
}
DEFAULT_PROFILE = "server-90d"


@dataclass(frozen=True)
class CaUrls:
    """Where relying parties find an issuer's CRL, OCSP responder and certificate."""

    crl: str
    ocsp: str
    issuer: str


@functools.lru_cache(maxsize=256)
def _ski(cert: x509.Certificate) -> x509.SubjectKeyIdentifier:
    return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value


@functools.lru_cache(maxsize=256)
def _aki(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(_ski(issuer))


_DV_POLICY = x509.CertificatePolicies([x509.PolicyInformation(DOMAIN_VALIDATED, None)])


@functools.lru_cache(maxsize=256)
def _aia(urls: CaUrls, *, ocsp: bool) -> x509.AuthorityInformationAccess:
    access = [x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                     x509.UniformResourceIdentifier(urls.issuer))]
    if ocsp:
        access.insert(0, x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                                x509.UniformResourceIdentifier(urls.ocsp)))
    return x509.AuthorityInformationAccess(access)


@functools.lru_cache(maxsize=256)
def _crl_dp(url: str) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints([x509.DistributionPoint(
        full_name=[x509.UniformResourceIdentifier(url)], relative_name=None, reasons=None,
        crl_issuer=None)])


def _leaf_key_usage(key: SubjectKey) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False,
        key_encipherment=isinstance(key, rsa.RSAPublicKey), data_encipherment=False,
        key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False,
        decipher_only=False)


def subject_alt_names(dns_names: list[str], addresses: list[str],
                      uris: Sequence[str] = ()) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    names += [x509.UniformResourceIdentifier(u) for u in uris]
    return x509.SubjectAlternativeName(names)


def leaf_validity(profile: Profile, issuer: x509.Certificate,
                  now: datetime) -> tuple[datetime, datetime]:
    """(notBefore, notAfter) of a certificate of ``profile`` issued at ``now``.

    Backdated a little for clock skew; the CA/B Forum counts both ends of the
    validity period, so a 90-day profile ends one second early; never beyond
    the issuer's own notAfter.
    """
    not_before = (now - BACKDATE).replace(microsecond=0)
    not_after = not_before + profile.lifetime - timedelta(seconds=1)
    return not_before, min(not_after, issuer.not_valid_after_utc)


def renewal_window(not_before: datetime, not_after: datetime) -> tuple[datetime, datetime]:
    """When a certificate should be renewed: from 2/3 to 5/6 of its lifetime, as ARI
    suggests it (RFC 9773) and as the CA's rate limits exempt a renewal inside it."""
    lifetime = not_after - not_before
    return not_before + lifetime * 2 / 3, not_before + lifetime * 5 / 6


def leaf_builder(
    profile: Profile, *, issuer: x509.Certificate, public_key: SubjectKey,
    dns_names: list[str], addresses: list[str], urls: CaUrls, now: datetime, serial: int,
    uris: Sequence[str] = (),
) -> x509.CertificateBuilder:
    """A subscriber certificate of ``profile``, without SCTs or poison (added by the caller).

    ``serial`` is drawn by the caller (the CA's store makes sure it is never used twice).
    """
    not_before, not_after = leaf_validity(profile, issuer, now)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(_aki(issuer), critical=False)
        .add_extension(_aia(urls, ocsp=True), critical=False)
    )
    if profile.server:
        builder = builder.add_extension(_DV_POLICY, critical=False)
    else:  # RFC 5280 4.2.1.2 SHOULD; only the BRs (TLS servers) advise against it
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key),
                                        critical=False)
    return (
        builder
        .add_extension(x509.ExtendedKeyUsage(list(profile.usages)), critical=False)
        .add_extension(subject_alt_names(dns_names, addresses, uris), critical=True)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_crl_dp(urls.crl), critical=False)
        .add_extension(_leaf_key_usage(public_key), critical=True)
    )


def intermediate_builder(
    *, root: x509.Certificate, public_key: ec.EllipticCurvePublicKey, network: str,
    organisation: str, zone: str, generation: int, root_urls: CaUrls, now: datetime,
    serial: int, prefixes: tuple[str, ...] = (),
) -> x509.CertificateBuilder:
    """A name-constrained TLS subordinate CA for one federated network: its DNS subtree,
    and its registered address blocks (every address excluded when it has none)."""
    not_before = (now - BACKDATE).replace(microsecond=0)
    not_after = min(not_before + INTERMEDIATE_VALIDITY, root.not_valid_after_utc)
    subject = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "XX"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
        x509.NameAttribute(NameOID.COMMON_NAME, f"{network} CA {generation}"),
    ])
    permitted: list[x509.GeneralName] = [x509.DNSName(zone.rstrip("."))]
    permitted += [x509.IPAddress(ipaddress.ip_network(p)) for p in prefixes]
    constraints = x509.NameConstraints(
        permitted_subtrees=permitted,
        excluded_subtrees=None if prefixes else [
            x509.IPAddress(ipaddress.ip_network("0.0.0.0/0")),
            x509.IPAddress(ipaddress.ip_network("::/0"))],
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(root.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            _ski(root)), critical=False)
        .add_extension(_aia(root_urls, ocsp=False), critical=False)
        .add_extension(x509.CertificatePolicies([x509.PolicyInformation(DOMAIN_VALIDATED, None)]),
                       critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_crl_dp(root_urls.crl), critical=False)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(constraints, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
