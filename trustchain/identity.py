"""Who is on the other end: a :class:`Peer` proven by its client certificate.

Every service may ask who called it (the CA's issuance policy, the stoq/1
permission table, enrolment), so identity lives here, below them all.

aioquic checks that the client holds the private key of the certificate it
presents (the TLS CertificateVerify) but does not validate the chain; this
module does, with ``cryptography``'s X.509 verifier, against the genesis root
only (never the system store), at the time passed in.

Identities are URIs in the certificate's subjectAltName, under this
TrustChain network's name (:func:`identity_uri`):
``trustchain://<network>/node/<node id>``, ``.../admin/<name>`` and, for the
admin of a federated network registered here, ``.../network/<its name>``
(the CA's ``network-admin`` profile).  A verified chain proves who issued the
certificate; whether a network credential is still good (issued by this CA
for that network, not revoked) is the CA's to check, by the serial that the
:class:`Peer` carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from trustchain.errors import RemoteError


class Role(Enum):
    NODE = "node"
    ADMIN = "admin"
    #: The admin of a federated network registered here (``name`` is that network).
    NETWORK = "network"
    #: An ACME account whose authorizations for the request's names are valid (``name``
    #: is ``acme-account-<id>``): never from a certificate, only from the ACME server.
    ACME = "acme"


@dataclass(frozen=True)
class Peer:
    """Who is on the other end of a connection, as proven by its client certificate."""

    role: Role
    name: str  # node id, admin name, or (Role.NETWORK) the federated network's name
    network: str  # this TrustChain network
    #: The client certificate's serial (the CA checks a network credential's status by it).
    serial: int | None = None
    #: The DER of the certificate that issued it, from the verified chain (a network
    #: credential another node issued is good where that intermediate is a committed one).
    issuer: bytes | None = None


@dataclass(frozen=True)
class TlsIdentity:
    """A certificate, the chain up to (not including) the root, and its private key."""

    certificate: x509.Certificate
    chain: list[x509.Certificate]
    private_key: ec.EllipticCurvePrivateKey



class PeerCertificateError(RemoteError):
    """The client certificate was not issued for this network."""


def identity_uri(network: str, role: Role, name: str) -> str:
    """The subjectAltName URI naming ``name`` in ``role`` in TrustChain network ``network``."""
    return f"trustchain://{network}/{role.value}/{name}"


def identify_peer(
    leaf: x509.Certificate, chain: list[x509.Certificate], *, root: x509.Certificate,
    network: str, now: datetime,
) -> Peer:
    """:raises PeerCertificateError: naming why the certificate is refused."""
    verifier = PolicyBuilder().store(Store([root])).time(now).build_client_verifier()
    try:
        verified = verifier.verify(leaf, chain)
    except VerificationError as exc:
        raise PeerCertificateError(f"client certificate does not verify: {exc}") from None
    prefix = f"trustchain://{network}/"
    for name in verified.subjects or []:
        if isinstance(name, x509.UniformResourceIdentifier) and name.value.startswith(prefix):
            kind, _, ident = name.value[len(prefix):].partition("/")
            if kind in ("node", "admin", "network") and ident and "/" not in ident:
                issuer = verified.chain[1].public_bytes(Encoding.DER)
                return Peer(Role(kind), ident, network, leaf.serial_number, issuer)
    raise PeerCertificateError("client certificate names no TrustChain identity of this network")
