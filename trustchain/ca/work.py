"""The CPU-heavy steps of an issuance, as pure functions of picklable values.

An issuance spends most of its CPU on three steps: checking the CSR
(parse, self-signature, policy), signing (and optionally linting) the
precertificate, and verifying the logs' SCTs before signing the final
certificate.  Each is a function here of bytes, strings and a
:class:`~trustchain.ca.signer.Signer`, so the node can run it in a signing
worker process (:mod:`transport.workers`) on another core, or inline; the
answer is the same bytes either way.

A :class:`Layout` describes the certificate completely (CSR, profile,
issuer, serial, names, URLs and the issuance time), so the final
certificate is laid out again from it rather than carried between steps;
:func:`~trustchain.ca.issuance.finish_certificate` then checks, byte for
byte, that its TBSCertificate is the precertificate's with the poison
swapped for the SCT list.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, load_der_public_key

from trustchain.ca.issuance import (
    IssuanceError,
    Precertificate,
    finish_certificate,
    sign_precertificate,
)
from trustchain.ca.lint import check_precertificate
from trustchain.ca.policy import check_csr, check_key, check_possession, load_csr
from trustchain.ca.profiles import DEFAULT_PROFILE, PROFILES, CaUrls, leaf_builder
from trustchain.ca.signer import Signer
from trustchain.ct.structs import SCT
from trustchain.errors import RemoteError


@dataclass(frozen=True)
class Layout:
    """Everything a leaf certificate is made of, bar its key's signature and the SCTs."""

    csr: bytes  # PEM or DER, already checked by :func:`check_request`
    profile: str
    issuer: bytes  # the issuing intermediate, DER
    issuer_key_id: str
    urls: CaUrls
    now: datetime
    serial: int
    dns_names: tuple[str, ...]
    addresses: tuple[str, ...]
    uris: tuple[str, ...] = ()  # the network-admin profile's identity


@dataclass(frozen=True)
class RequestedNames:
    """What a CSR that passed policy asks for, normalised."""

    dns_names: tuple[str, ...]
    addresses: tuple[str, ...]


def check_request(csr: bytes, zone: str, prefixes: tuple[str, ...],
                  profile: str = DEFAULT_PROFILE) -> RequestedNames:
    """:func:`~trustchain.ca.policy.check_csr` (signature, key, names), answering the names;
    for a profile that names the network's identity, only the signature and the key.

    :raises PolicyError: naming the rule the CSR breaks.
    """
    if PROFILES[profile].network_identity:
        check_possession(csr)
        return RequestedNames((), ())
    request = check_csr(csr, zone=zone, prefixes=prefixes)
    return RequestedNames(tuple(request.dns_names), tuple(request.addresses))


@functools.lru_cache(maxsize=64)
def _issuer(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)


@functools.lru_cache(maxsize=64)
def _log_key(spki: bytes) -> tuple[ec.EllipticCurvePublicKey, bytes]:
    """A log's key from its SubjectPublicKeyInfo (DER), and its log ID (RFC 6962 3.2)."""
    key = load_der_public_key(spki)
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise IssuanceError("a log key is not an ECDSA key")
    return key, hashlib.sha256(spki).digest()


@functools.lru_cache(maxsize=4096)
def certificate_builder(layout: Layout) -> x509.CertificateBuilder:
    """The certificate's builder (immutable, without poison or SCTs), remembered between the
    precertificate and the final certificate when both run in the same process."""
    return leaf_builder(PROFILES[layout.profile], issuer=_issuer(layout.issuer),
                        public_key=check_key(load_csr(layout.csr).public_key()),
                        dns_names=list(layout.dns_names), addresses=list(layout.addresses),
                        urls=layout.urls, now=layout.now, serial=layout.serial,
                        uris=layout.uris)


def precertificate(signer: Signer, layout: Layout, lint: bool = False) -> bytes:
    """The signed precertificate (DER), linted first with pkilint when ``lint``.

    :raises LintError: pkilint found something at WARNING or above.
    """
    pre = sign_precertificate(signer, certificate_builder(layout), _issuer(layout.issuer),
                              layout.issuer_key_id)
    if lint:
        check_precertificate(pre.certificate, PROFILES[layout.profile].server)
    return pre.certificate.public_bytes(Encoding.DER)


def final_certificate(signer: Signer, layout: Layout, precertificate_der: bytes,
                      scts: Sequence[tuple[bytes, bytes]]) -> bytes:
    """Verify each SCT (serialized SCT, log key SPKI DER) and sign the final certificate (DER).

    :raises IssuanceError: fewer than two distinct logs, an SCT that does not
        verify over the precertificate's entry, or a final TBS that differs
        from the precertificate's.
    """
    parsed = [(SCT.from_bytes(raw), _log_key(spki)) for raw, spki in scts]
    if len({sct.log_id for sct, _ in parsed}) < 2:
        raise IssuanceError("a certificate needs SCTs from at least two distinct logs")
    pre = Precertificate(certificate_builder(layout), x509.load_der_x509_certificate(precertificate_der),
                         _issuer(layout.issuer), layout.issuer_key_id)
    entry = pre.entry
    for sct, (key, key_log_id) in parsed:
        try:
            sct.verify(entry, key, key_log_id)
        except RemoteError as exc:
            raise IssuanceError(f"an SCT does not verify: {exc}") from None
    return finish_certificate(signer, pre, [raw for raw, _ in scts]).public_bytes(Encoding.DER)
