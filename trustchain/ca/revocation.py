"""Revocation documents: CRLs (RFC 5280 section 5) and OCSP responses (RFC 6960).

A pure core: the revocation records, the time and the OCSP request bytes come
in; a signed CRL or the DER of an OCSP response goes out.  Nothing here reads
a clock, a socket or a database: the caller passes ``now`` and a ``lookup``
function, and every signature goes through :class:`trustchain.ca.signer.Signer`.

Profile choices, following the CA/Browser Forum Baseline Requirements (BR)
where they are stricter than the RFCs:

* only the reason codes of BR section 7.2.2 may be used, and ``unspecified``
  is expressed by *omitting* the reasonCode (CRL) / revocationReason (OCSP);
* CRLs are v2 with a CRL Number and an Authority Key Identifier; a shard of a
  partitioned CRL carries a critical Issuing Distribution Point naming its URL
  (as Let's Encrypt's Boulder does);
* OCSP responses are signed by the issuing CA itself (no delegated responder
  certificate), so they carry no certificates, and name the responder by the
  SHA-1 hash of its key (RFC 6960 section 4.2.1, which pkilint requires).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from urllib.parse import unquote, urlsplit

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from trustchain.ca.signer import Signer

#: RFC 5280 section 5.2.3 (CRL Number) and 4.1.2.2 (serial numbers): at most 20 octets.
MAX_TWENTY_OCTETS = 2**159
#: RFC 8954 section 2.1: the nonce is 1 to 32 octets long.
MAX_NONCE_LENGTH = 32

_STATUS = ocsp.OCSPResponseStatus
_CERT_STATUS = ocsp.OCSPCertStatus


# --- reasons -----------------------------------------------------------------------------------------

class RevocationReason(StrEnum):
    """The RFC 5280 section 5.3.1 reasons a subscriber or operator may give (BR section 7.2.2).

    ``certificateHold`` (and the attribute-authority and CA-only codes) are
    not offered: the BR forbid them for subscriber certificates.  Values are
    the RFC's camelCase names, which are also :class:`x509.ReasonFlags` values.
    """

    UNSPECIFIED = "unspecified"
    KEY_COMPROMISE = "keyCompromise"
    AFFILIATION_CHANGED = "affiliationChanged"
    SUPERSEDED = "superseded"
    CESSATION_OF_OPERATION = "cessationOfOperation"
    PRIVILEGE_WITHDRAWN = "privilegeWithdrawn"

    @property
    def cli_name(self) -> str:
        """The kebab-case spelling used on the command line (``key-compromise``)."""
        return re.sub(r"([A-Z])", r"-\1", self.value).lower()

    @classmethod
    def parse(cls, text: str) -> RevocationReason:
        """Parse a kebab-case (``key-compromise``) or RFC camelCase (``keyCompromise``) name."""
        for reason in cls:
            if text in (reason.value, reason.cli_name):
                return reason
        allowed = ", ".join(reason.cli_name for reason in cls)
        raise ValueError(f"unknown revocation reason {text!r}: use one of {allowed} "
                         "(or the RFC 5280 camelCase name)")

    @property
    def flag(self) -> x509.ReasonFlags:
        return x509.ReasonFlags(self.value)

    @property
    def encoded_flag(self) -> x509.ReasonFlags | None:
        """The flag to put in a CRL entry or OCSP response: none for ``unspecified`` (BR 7.2.2, 7.3)."""
        return None if self is RevocationReason.UNSPECIFIED else self.flag


# --- shared checks -----------------------------------------------------------------------------------

def _utc(moment: datetime, what: str) -> datetime:
    """An aware datetime in UTC; naive datetimes are refused rather than guessed."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (UTC)")
    return moment.astimezone(UTC)


def _check_serial(serial: int) -> None:
    """RFC 5280 section 4.1.2.2: a positive integer of at most 20 octets."""
    if not 0 < serial < MAX_TWENTY_OCTETS:
        raise ValueError(f"serial number {serial} is not a positive integer of at most 20 octets")


@dataclass(frozen=True)
class Revoked:
    """One revoked certificate: its serial, when it was revoked (UTC) and why."""

    serial: int
    revoked_at: datetime
    reason: RevocationReason = RevocationReason.UNSPECIFIED

    def __post_init__(self) -> None:
        _check_serial(self.serial)
        object.__setattr__(self, "revoked_at", _utc(self.revoked_at, "revoked_at"))
        if not isinstance(self.reason, RevocationReason):
            raise TypeError("reason must be a RevocationReason")


# --- CRLs --------------------------------------------------------------------------------------------

def _issuer_ski(issuer: x509.Certificate) -> x509.SubjectKeyIdentifier:
    """The issuer's SKI (for the AKI, RFC 5280 section 5.2.1), checking it may sign CRLs (4.2.1.3)."""
    try:
        usage = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.crl_sign:
        raise ValueError("the issuer's key usage does not include cRLSign")
    try:
        return issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        raise ValueError("the issuer has no subject key identifier") from None


def _issuing_distribution_point(
    url: str | None, only_contains_user_certs: bool
) -> x509.IssuingDistributionPoint | None:
    """RFC 5280 section 5.2.5; BR 7.2.2: a partitioned CRL names its one HTTP URL as fullName."""
    if url is None and not only_contains_user_certs:
        return None
    names: list[x509.GeneralName] | None = None
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"distribution point {url!r} is not an http(s) URL")
        names = [x509.UniformResourceIdentifier(url)]
    return x509.IssuingDistributionPoint(
        full_name=names, relative_name=None, only_contains_user_certs=only_contains_user_certs,
        only_contains_ca_certs=False, only_some_reasons=None, indirect_crl=False,
        only_contains_attribute_certs=False,
    )


def _crl_entry(entry: Revoked) -> x509.RevokedCertificate:
    """RFC 5280 section 5.1.2.6 and 5.3.1 (reasonCode non-critical, omitted for unspecified)."""
    builder = x509.RevokedCertificateBuilder().serial_number(entry.serial).revocation_date(
        entry.revoked_at
    )
    flag = entry.reason.encoded_flag
    if flag is not None:
        builder = builder.add_extension(x509.CRLReason(flag), critical=False)
    return builder.build()


def _sorted_entries(revoked: Iterable[Revoked], this_update: datetime) -> list[Revoked]:
    """Entries by serial; one per serial, none revoked after the CRL's thisUpdate."""
    entries = sorted(revoked, key=lambda entry: entry.serial)
    for previous, entry in zip(entries, entries[1:], strict=False):
        if previous.serial == entry.serial:
            raise ValueError(f"serial {entry.serial} is listed twice")
    for entry in entries:
        if entry.revoked_at > this_update:
            raise ValueError(f"serial {entry.serial} is revoked after this CRL's thisUpdate")
    return entries


def build_crl(
    *,
    issuer: x509.Certificate,
    issuer_key_id: str,
    signer: Signer,
    revoked: Iterable[Revoked],
    number: int,
    this_update: datetime,
    next_update: datetime,
    distribution_point: str | None = None,
    only_contains_user_certs: bool = False,
) -> x509.CertificateRevocationList:
    """Build and sign a v2 CRL (RFC 5280 section 5) for ``issuer``.

    Carries a CRL Number (5.2.3), an Authority Key Identifier from the
    issuer's SKI (5.2.1) and, for a shard of a partitioned CRL, a critical
    Issuing Distribution Point (5.2.5) naming ``distribution_point``; set
    ``only_contains_user_certs`` when the CRL's scope excludes CA certificates
    (BR 7.2.2).  Entries are sorted by serial.  The BR limit on the window
    (at most 10 days for a subscriber CRL, 12 months for an ARL) is the
    caller's policy; this checks only that ``next_update`` is later.
    """
    this_update = _utc(this_update, "this_update")
    next_update = _utc(next_update, "next_update")
    if next_update <= this_update:
        raise ValueError("next_update must be later than this_update")
    if not 0 <= number < MAX_TWENTY_OCTETS:
        raise ValueError("the CRL number must be a non-negative integer of at most 20 octets")
    ski = _issuer_ski(issuer)
    if signer.public_key(issuer_key_id) != issuer.public_key():
        raise ValueError(f"key {issuer_key_id} is not the issuer's key")
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    idp = _issuing_distribution_point(distribution_point, only_contains_user_certs)
    if idp is not None:
        builder = builder.add_extension(idp, critical=True)
    for entry in _sorted_entries(revoked, this_update):
        builder = builder.add_revoked_certificate(_crl_entry(entry))
    return signer.sign_crl(builder, issuer_key_id)


# --- OCSP --------------------------------------------------------------------------------------------

def _der_element(data: bytes, pos: int) -> tuple[int, int, int]:
    """One DER TLV at ``pos`` (X.690 section 8.1): (tag, start of contents, end)."""
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first < 0x80:
        return tag, pos, pos + first
    count = first & 0x7F
    length = int.from_bytes(data[pos:pos + count], "big")
    return tag, pos + count, pos + count + length


def _subject_and_key_bits(certificate: x509.Certificate) -> tuple[bytes, bytes]:
    """The exact DER of the subject and the subjectPublicKey bits, as RFC 6960 section 4.1.1 hashes them.

    Read from the certificate's own TBS bytes (RFC 5280 section 4.1) rather
    than re-encoded, so the hashes match what any client computes.
    """
    tbs = certificate.tbs_certificate_bytes
    _, pos, _ = _der_element(tbs, 0)
    if tbs[pos] == 0xA0:  # the explicit [0] version, absent from v1 certificates
        pos = _der_element(tbs, pos)[2]
    for _ in range(4):  # serialNumber, signature, issuer, validity
        pos = _der_element(tbs, pos)[2]
    subject_end = _der_element(tbs, pos)[2]
    _, spki_start, _ = _der_element(tbs, subject_end)
    algorithm_end = _der_element(tbs, spki_start)[2]
    bits_tag, bits_start, bits_end = _der_element(tbs, algorithm_end)
    if bits_tag != 0x03 or tbs[bits_start] != 0:
        raise ValueError("the issuer's subjectPublicKey is not a whole-octet BIT STRING")
    return tbs[pos:subject_end], tbs[bits_start + 1:bits_end]


#: CertID hashes we answer for: SHA-1 (what openssl and most clients send) and SHA-2.
_CERT_ID_HASHES = frozenset({"sha1", "sha256", "sha384", "sha512"})


def _digest(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    context = hashes.Hash(algorithm)
    context.update(data)
    return context.finalize()


@dataclass(frozen=True)
class OcspIssuer:
    """A CA this responder answers for: its certificate and its signing key's key-store id.

    The CA signs its OCSP responses itself (RFC 6960 section 4.2.2.2, first
    case), so no delegated responder certificate exists.
    """

    certificate: x509.Certificate
    key_id: str
    _subject_der: bytes = field(init=False, repr=False, compare=False)
    _key_bits: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        subject, key_bits = _subject_and_key_bits(self.certificate)
        object.__setattr__(self, "_subject_der", subject)
        object.__setattr__(self, "_key_bits", key_bits)

    def matches(self, algorithm: hashes.HashAlgorithm, name_hash: bytes, key_hash: bytes) -> bool:
        """RFC 6960 section 4.1.1: the CertID names this issuer by name hash AND key hash."""
        return (
            _digest(algorithm, self._subject_der) == name_hash
            and _digest(algorithm, self._key_bits) == key_hash
        )


@dataclass(frozen=True)
class CertStatusInfo:
    """What the CA knows of one serial: good, revoked (when, why) or unknown (RFC 6960 section 4.2.1)."""

    status: ocsp.OCSPCertStatus
    revoked_at: datetime | None = None
    reason: RevocationReason | None = None

    def __post_init__(self) -> None:
        if self.status is _CERT_STATUS.REVOKED:
            if self.revoked_at is None:
                raise ValueError("a revoked status needs the revocation time")
            object.__setattr__(self, "revoked_at", _utc(self.revoked_at, "revoked_at"))
            if self.reason is None:
                object.__setattr__(self, "reason", RevocationReason.UNSPECIFIED)
        elif self.revoked_at is not None or self.reason is not None:
            raise ValueError("only a revoked status has a revocation time and reason")

    @classmethod
    def good(cls) -> CertStatusInfo:
        return cls(_CERT_STATUS.GOOD)

    @classmethod
    def unknown(cls) -> CertStatusInfo:
        return cls(_CERT_STATUS.UNKNOWN)

    @classmethod
    def revoked(cls, revoked_at: datetime,
                reason: RevocationReason = RevocationReason.UNSPECIFIED) -> CertStatusInfo:
        return cls(_CERT_STATUS.REVOKED, revoked_at, reason)


@dataclass(frozen=True)
class _Query:
    """The one CertID of a request (RFC 6960 section 4.1.1) and its nonce, if any."""

    algorithm: hashes.HashAlgorithm
    name_hash: bytes
    key_hash: bytes
    serial: int
    nonce: bytes | None


def unsuccessful_ocsp_response(status: ocsp.OCSPResponseStatus) -> bytes:
    """An unsigned error response (RFC 6960 section 2.3): no responseBytes.

    Adapters use it too, e.g. ``INTERNAL_ERROR`` when their lookup fails.
    """
    if status is _STATUS.SUCCESSFUL:
        raise ValueError("a successful response must be signed")
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(serialization.Encoding.DER)


def _request_nonce(request: ocsp.OCSPRequest) -> bytes | None:
    """The nonce (RFC 8954 section 2.1: 1..32 octets); ValueError for a critical extension we don't know."""
    nonce = None
    for extension in request.extensions:
        if isinstance(extension.value, x509.OCSPNonce):
            nonce = extension.value.nonce
            if not 1 <= len(nonce) <= MAX_NONCE_LENGTH:
                raise ValueError(f"nonce of {len(nonce)} octets")
        elif extension.critical:
            raise ValueError(f"unsupported critical extension {extension.oid.dotted_string}")
    return nonce


def _parse_request(request_der: bytes) -> _Query | ocsp.OCSPResponseStatus:
    """Parse an OCSPRequest (RFC 6960 section 4.1.1), or say why it gets an error response.

    ``cryptography`` accepts exactly one CertID per request and refuses more;
    that and every other parse failure is ``malformedRequest``, so the catch
    is deliberately broad: these bytes come straight from the network.  A
    CertID hashed with an algorithm we don't support cannot name one of our
    issuers: ``unauthorized`` (section 2.3: not able to answer authoritatively).
    """
    try:
        request = ocsp.load_der_ocsp_request(bytes(request_der))
        nonce = _request_nonce(request)
        serial = request.serial_number
        name_hash, key_hash = request.issuer_name_hash, request.issuer_key_hash
    except Exception:
        return _STATUS.MALFORMED_REQUEST
    if serial < 0:  # RFC 5280 section 4.1.2.2: never a certificate's serial
        return _STATUS.MALFORMED_REQUEST
    try:
        algorithm = request.hash_algorithm
    except UnsupportedAlgorithm:
        return _STATUS.UNAUTHORIZED
    if algorithm.name not in _CERT_ID_HASHES:
        return _STATUS.UNAUTHORIZED
    return _Query(algorithm, name_hash, key_hash, serial, nonce)


def _find_issuer(query: _Query, issuers: Sequence[OcspIssuer]) -> OcspIssuer | None:
    """The issuer the CertID names (RFC 6960 section 4.1.1), if it is one of ours."""
    for issuer in issuers:
        if issuer.matches(query.algorithm, query.name_hash, query.key_hash):
            return issuer
    return None


def _signed_response(query: _Query, issuer: OcspIssuer, info: CertStatusInfo, signer: Signer,
                     now: datetime, validity: timedelta) -> bytes:
    """A BasicOCSPResponse (RFC 6960 section 4.2.1) echoing the request's CertID and nonce."""
    reason = info.reason.encoded_flag if info.reason is not None else None
    builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
        issuer_name_hash=query.name_hash, issuer_key_hash=query.key_hash, serial_number=query.serial,
        algorithm=query.algorithm, cert_status=info.status, this_update=now,
        next_update=now + validity, revocation_time=info.revoked_at, revocation_reason=reason,
    ).responder_id(ocsp.OCSPResponderEncoding.HASH, issuer.certificate)
    if query.nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(query.nonce), critical=False)
    return signer.sign_ocsp(builder, issuer.key_id).public_bytes(serialization.Encoding.DER)


def respond_ocsp(
    request_der: bytes,
    *,
    issuers: Sequence[OcspIssuer],
    lookup: Callable[[OcspIssuer, int], CertStatusInfo],
    signer: Signer,
    now: datetime,
    validity: timedelta,
) -> bytes:
    """Answer one DER OCSP request (RFC 6960) with the DER of the response.

    * bytes that are not one well-formed request for one certificate, a
      negative serial, a nonce outside 1..32 octets (RFC 8954) or an unknown
      critical extension: ``malformedRequest``, unsigned;
    * a CertID naming none of ``issuers`` (by issuer name hash and key hash,
      with the request's hash algorithm) or using a hash we don't support:
      ``unauthorized``, unsigned;
    * otherwise ``lookup(issuer, serial)`` decides good / revoked / unknown,
      and the issuing CA signs the response directly (no delegated responder,
      so no certificates are included), with thisUpdate ``now``, nextUpdate
      ``now + validity``, the responder named by key hash and the request's
      nonce echoed.  (``cryptography`` stamps producedAt from the system
      clock when it signs; it offers no way to pass it in.)

    Only the request bytes are untrusted: errors from ``lookup`` or the
    signer propagate, so the adapter can log them and answer
    ``internalError`` or ``tryLater`` (:func:`unsuccessful_ocsp_response`).
    """
    now = _utc(now, "now")
    if validity <= timedelta(0):
        raise ValueError("validity must be positive")
    query = _parse_request(request_der)
    if isinstance(query, ocsp.OCSPResponseStatus):
        return unsuccessful_ocsp_response(query)
    issuer = _find_issuer(query, issuers)
    if issuer is None:
        return unsuccessful_ocsp_response(_STATUS.UNAUTHORIZED)
    return _signed_response(query, issuer, lookup(issuer, query.serial), signer, now, validity)


def named_issuer(request_der: bytes, issuers: Sequence[OcspIssuer]) -> OcspIssuer | None:
    """Which of ``issuers`` a well-formed OCSP request names (None: none, or malformed)."""
    query = _parse_request(request_der)
    return None if isinstance(query, ocsp.OCSPResponseStatus) else _find_issuer(query, issuers)


_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def ocsp_request_from_get_path(path_component: str) -> bytes:
    """The DER request in an RFC 6960 appendix A.1 GET: ``{url}/{url-encoding of base-64 of DER}``.

    Percent escapes (``%2F``, ``%2B``, ``%3D``) are decoded first; ``+`` stays
    a ``+`` (it is a path, not a query string).  Missing padding is tolerated;
    anything else that is not base64 raises ValueError.
    """
    text = unquote(path_component, errors="strict")
    if not _BASE64.fullmatch(text):
        raise ValueError("the OCSP GET path is not base64")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"the OCSP GET path is not base64: {exc}") from None
