"""Issuance policy, pure: may this requester have a certificate for these names?

:func:`check_csr` takes a PEM or DER CSR and the requesting network's
registered DNS subtree and answers with what to certify, or raises
:class:`PolicyError` naming the first rule broken:

* the CSR's self-signature verifies (proof of possession of the key);
* the key is ECDSA P-256 or P-384, Ed25519, or RSA of at least 2,048 bits
  (exponent 65537);
* it asks for at least one and at most ``MAX_NAMES`` names, DNS names and IP
  addresses in a subjectAltName extension request (the subject is ignored,
  as CAs do today); every DNS name is a valid preferred-syntax host name (one
  leading ``*.`` label allowed) inside the network's subtree; every IP address
  inside one of the address blocks the network registered (none registered:
  none allowed, and its intermediate excludes every address);
* no other extension requests than subjectAltName, keyUsage,
  extendedKeyUsage and basicConstraints (cA false) are honoured; the profile
  decides those, so they are ignored, never copied.

:func:`may_request` is the authorisation rule for mutual-TLS requesters.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from trustchain.ca.profiles import SubjectKey
from trustchain.errors import RemoteError
from trustchain.identity import Peer, Role

MAX_NAMES = 100
MAX_CSR_BYTES = 64 * 1024
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
#: What ``cryptography`` raises for a CSR it cannot take: when loading it (a version other
#: than 1), or lazily, at the first use of a field (a key that is no point on its curve, an
#: unknown curve or key type, duplicate or undecodable extensions).
_MALFORMED = (ValueError, UnsupportedAlgorithm, x509.InvalidVersion, x509.DuplicateExtension,
              x509.UnsupportedGeneralNameType)


class PolicyError(RemoteError):
    """The request breaks issuance policy (the message says which rule)."""


class NotAuthorised(PolicyError):
    """The requester may not act for that network (HTTP and stoq/1: 403)."""


@dataclass(frozen=True)
class CertRequest:
    """What a valid CSR asks for, normalised."""

    public_key: SubjectKey
    dns_names: list[str]
    addresses: list[str]


def load_csr(data: bytes) -> x509.CertificateSigningRequest:
    if len(data) > MAX_CSR_BYTES:
        raise PolicyError(f"a CSR is at most {MAX_CSR_BYTES} bytes")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_csr(data)
        return x509.load_der_x509_csr(data)
    except _MALFORMED as exc:
        raise PolicyError(f"the CSR does not parse: {exc}") from None


def check_key(key: object) -> SubjectKey:
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1 | ec.SECP384R1):
            raise PolicyError(f"ECDSA keys must be P-256 or P-384, not {key.curve.name}")
        return key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048 or key.key_size % 8:
            raise PolicyError(f"RSA keys must be at least 2048 bits (this one: {key.key_size})")
        if key.public_numbers().e != 65537:
            raise PolicyError("RSA keys must use the public exponent 65537")
        return key
    raise PolicyError("allowed keys: ECDSA P-256/P-384, Ed25519, RSA >= 2048 bits")


def normalise_dns_name(name: str) -> str:
    """Lower-case, no trailing dot; :raises PolicyError: unless a valid host name."""
    text = name.lower().rstrip(".")
    if not text.isascii() or len(text) > 253:
        raise PolicyError(f"{name!r} is not a valid DNS name (IDNs go in A-label form)")
    labels = text.split(".")
    if labels[0] == "*":
        labels = labels[1:]
        if len(labels) < 2:
            raise PolicyError(f"{name!r}: a wildcard needs at least two labels after it")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise PolicyError(f"{name!r} is not a valid DNS name")
    return text


def within(name: str, zone: str) -> bool:
    """``name`` is ``zone`` or below it (label-wise, not by string suffix)."""
    zone = zone.lower().rstrip(".")
    bare = name[2:] if name.startswith("*.") else name
    return bare == zone or bare.endswith("." + zone)


def check_possession(data: bytes) -> tuple[x509.CertificateSigningRequest, SubjectKey]:
    """The CSR parses, its self-signature verifies and its key is allowed.

    :raises PolicyError: naming the rule broken.
    """
    csr = load_csr(data)
    try:
        valid, key = csr.is_signature_valid, csr.public_key()
    except _MALFORMED as exc:
        raise PolicyError(f"the CSR's public key does not parse: {exc}") from None
    if not valid:
        raise PolicyError("the CSR's signature does not verify (no proof of the private key)")
    return csr, check_key(key)


def check_csr(data: bytes, *, zone: str, prefixes: tuple[str, ...] = ()) -> CertRequest:
    """Apply the policy in the module docstring to a CSR for the network whose DNS subtree is ``zone``."""
    csr, key = check_possession(data)
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise PolicyError("the CSR asks for no names (no subjectAltName extension request)") \
            from None
    except _MALFORMED as exc:
        raise PolicyError(f"the CSR's extension requests do not parse: {exc}") from None
    try:
        constraints = csr.extensions.get_extension_for_class(x509.BasicConstraints).value
        if constraints.ca:
            raise PolicyError("a CSR may not ask for a CA certificate")
    except x509.ExtensionNotFound:
        pass
    dns_names: list[str] = []
    for raw in san.get_values_for_type(x509.DNSName):
        name = normalise_dns_name(raw)
        if not within(name, zone):
            raise PolicyError(f"{name} is outside this network's domain {zone.rstrip('.')}")
        if name not in dns_names:
            dns_names.append(name)
    blocks = [ipaddress.ip_network(p) for p in prefixes]
    addresses: list[str] = []
    for address in san.get_values_for_type(x509.IPAddress):
        if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            raise PolicyError("an IP address name must be one address, not a network")
        if not any(address.version == b.version and address in b for b in blocks):
            raise PolicyError(f"{address} is outside this network's address blocks "
                              f"({', '.join(prefixes) or 'none registered'})")
        if str(address) not in addresses:
            addresses.append(str(address))
    others = [n for n in san if not isinstance(n, x509.DNSName | x509.IPAddress)]
    if others:
        raise PolicyError("only DNS names and IP addresses can be certified")
    if not dns_names and not addresses:
        raise PolicyError("the CSR asks for no names")
    if len(dns_names) > MAX_NAMES:
        raise PolicyError(f"at most {MAX_NAMES} names per certificate")
    return CertRequest(key, dns_names, addresses)


def may_request(peer: Peer | None, *, network: str, own_network: str) -> None:
    """Mutual-TLS authorisation for issuance and revocation in ``network``.

    This TrustChain network's operator (an admin certificate) acts for every
    network registered here; a federated network's admin credential (role
    ``network``, the ``network-admin`` profile) acts for that network only.
    Nodes do not request certificates this way.  Whether a network credential
    is still good is checked by the CA (:meth:`CertificateAuthority.authorise`).

    :raises NotAuthorised: for anyone else.
    """
    if peer is None:
        raise NotAuthorised("certificate requests need a client certificate (or ACME)")
    if peer.network == own_network and (
            peer.role is Role.ADMIN or (peer.role is Role.NETWORK and peer.name == network)
            or peer.role is Role.ACME):  # (its names validated by the ACME server)
        return
    raise NotAuthorised(f"{peer.role.value} {peer.name} may not act for network {network}")
