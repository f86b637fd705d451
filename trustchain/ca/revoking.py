"""The half of the CA that relying parties ask: revocation, CRLs and OCSP.

:class:`Revocations` is mixed into
:class:`~trustchain.ca.authority.CertificateAuthority`, whose fields it
uses; like the rest of the CA it is synchronous, takes the time as an
argument, and reaches storage through :class:`~trustchain.ca.store.CaStore`.
A revocation and its audit record commit in one transaction.

A serial counts as issued for revocation status in every state it can be
in (``precertificate``, ``issued``, ``abandoned``): a precertificate implies
its certificate (BR 7.1.2.9), so OCSP answers for it, ``ca revoke`` takes it,
and revocation by the certificate's key accepts its precertificate, which is
all a subscriber of an abandoned serial can find (in CT logs).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from trustchain.ca import revocation
from trustchain.ca.audit import KIND_CERT_REVOKE
from trustchain.ca.errors import CaError, UnknownCrl
from trustchain.ca.signer import Signer
from trustchain.ca.store import AuditTrail, CaKeys, CaStore, CertificateRecord, Txn

#: CRLs are re-signed this often even when nothing changed, and valid for twice as long
#: (BR 4.9.7: nextUpdate at most 10 days after thisUpdate for subscriber CRLs).
CRL_REFRESH = timedelta(days=1)
CRL_VALIDITY = timedelta(days=7)
ROOT_CRL_VALIDITY = timedelta(days=365)
OCSP_VALIDITY = timedelta(days=4)
#: What cryptography raises for a certificate it cannot take, at load or (lazily) when a
#: field is first read: anyone may send one to revocation by key.
_UNPARSABLE = (ValueError, UnsupportedAlgorithm, x509.InvalidVersion, x509.DuplicateExtension,
               x509.UnsupportedGeneralNameType)


def revocation_message(certificate_der: bytes, reason: revocation.RevocationReason) -> bytes:
    """What a certificate's key signs to revoke it: text, so shell tools can make it."""
    return f"trustchain-revoke/1 {hashlib.sha256(certificate_der).hexdigest()} {reason.value}" \
        .encode()


@dataclass
class CachedCrl:
    der: bytes
    this_update: datetime


class Revocations:
    """Revocation, CRLs and OCSP over the CA's store (the fields are the CA's)."""

    keys: CaKeys
    signer: Signer
    store: CaStore
    audit: AuditTrail
    root: x509.Certificate
    root_key_purpose: str
    #: Public base URL (http://host[:port]) for CRL, OCSP and issuer URLs.
    base_url: str
    #: CRL shards per issuer for new certificates (Boulder-style partitioned CRLs).
    crl_shards: int
    _crls: dict[tuple[str, int], CachedCrl]

    def crl_url(self, key_id: str, shard: int) -> str:
        return f"{self.base_url.rstrip('/')}/ca/crl/{key_id}/{shard}.crl"

    def root_key_id_or_none(self) -> str | None:
        return self.keys.key_id(self.root_key_purpose)

    def revoke(self, serial: int, reason: revocation.RevocationReason, *, actor: str,
               now: datetime, network: str | None = None) -> None:
        """Revoke by serial, with its audit record in the same transaction; with
        ``network``, only a certificate of that network.

        :raises CaError: no such certificate, or it was revoked before.
        """
        record = self.store.certificate(serial)
        if record is None or (network is not None and record.network != network):
            raise CaError(f"no certificate with serial {serial:x}"
                          + (f" in network {network}" if network is not None else ""))
        if record.revoked_at is not None:
            raise CaError(f"serial {serial:x} was already revoked at "
                          f"{record.revoked_at.isoformat()}")

        def write(txn: Txn) -> None:
            if not self.store.revoke(txn, serial, reason.value, now):
                raise CaError(f"serial {serial:x} was already revoked")
            self.audit.append_in(txn, now, KIND_CERT_REVOKE, actor, {
                "serial": f"{serial:x}", "reason": reason.value, "network": record.network})

        self.store.write(write)
        self._crls.pop((record.issuer_key_id, record.crl_shard), None)

    def revoke_by_key(self, certificate_der: bytes, reason: revocation.RevocationReason,
                      signature: bytes, now: datetime) -> int:
        """Revoke a certificate on proof of its private key; return its serial.

        The key signs :func:`revocation_message` (ECDSA with the curve's hash,
        Ed25519, or RSA PKCS#1 v1.5 with SHA-256): ``openssl dgst -sign`` makes it.

        :raises CaError: not our certificate, or the signature does not verify.
        """
        try:
            cert = x509.load_der_x509_certificate(certificate_der)
        except _UNPARSABLE:
            raise CaError("the certificate does not parse") from None
        record = self.store.certificate(cert.serial_number)
        if record is None or not self._issued_here(cert, record):
            raise CaError("this CA did not issue that certificate")
        message = revocation_message(certificate_der, reason)
        key = cert.public_key()
        try:
            if isinstance(key, ec.EllipticCurvePublicKey):
                digest = hashes.SHA384() if key.curve.key_size >= 384 else hashes.SHA256()
                key.verify(signature, message, ec.ECDSA(digest))
            elif isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(signature, message)
            elif isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
            else:
                raise CaError("unsupported key type")
        except InvalidSignature:
            raise CaError("the signature does not verify with the certificate's key") from None
        self.revoke(cert.serial_number, reason, actor="certificate-key", now=now)
        return cert.serial_number

    def _issued_here(self, cert: x509.Certificate, record: CertificateRecord) -> bool:
        """``cert`` is the stored certificate of its serial, or a precertificate of that
        serial signed by the serial's issuer (it implies the certificate, finished or not)."""
        if record.certificate is not None and record.certificate == cert:
            return True
        issuer = self.store.issuer(record.issuer_key_id)
        try:
            cert.extensions.get_extension_for_class(x509.PrecertPoison)
            if issuer is None:
                return False
            cert.verify_directly_issued_by(issuer.certificate)
        except (x509.ExtensionNotFound, TypeError, InvalidSignature, *_UNPARSABLE):
            return False
        return True

    def crl(self, key_id: str, now: datetime, shard: int = 0) -> bytes:
        """The current CRL (one shard) of issuer ``key_id`` (the root or an intermediate), DER.

        Re-signed when a revocation changed it and at least every CRL_REFRESH.
        Each names its own URL in a critical issuing distribution point, so a
        relying party cannot take one shard for another.
        """
        if shard < 0 or (shard >= self.crl_shards and shard not in self.store.crl_shards(key_id)):
            raise UnknownCrl(f"no CRL shard {shard} for issuer {key_id}")
        cached = self._crls.get((key_id, shard))
        if cached is not None and now - cached.this_update < CRL_REFRESH:
            return cached.der
        if key_id == self.root_key_id_or_none():
            issuer, validity = self.root, ROOT_CRL_VALIDITY
            revoked: list[revocation.Revoked] = []  # intermediates are retired, not revoked, today
        else:
            record = self.store.issuer(key_id)
            if record is None:
                raise UnknownCrl(f"no issuer {key_id}")
            issuer, validity = record.certificate, CRL_VALIDITY
            revoked = [revocation.Revoked(r.serial, r.revoked_at,
                                          revocation.RevocationReason(r.reason))
                       for r in self.store.revoked(key_id, now, shard)
                       if r.revoked_at and r.reason]
        crl = revocation.build_crl(
            issuer=issuer, issuer_key_id=key_id, signer=self.signer, revoked=revoked,
            number=self.store.next_crl_number(f"{key_id}/{shard}"), this_update=now,
            next_update=now + validity, distribution_point=self.crl_url(key_id, shard))
        der = crl.public_bytes(Encoding.DER)
        self._crls[(key_id, shard)] = CachedCrl(der, now)
        return der

    def ocsp(self, request: bytes, now: datetime) -> bytes:
        """The OCSP response (DER) to a DER OCSPRequest, signed by the certificate's issuer."""
        issuers = [revocation.OcspIssuer(i.certificate, i.key_id) for i in self.store.issuers()]

        def lookup(issuer: revocation.OcspIssuer, serial: int) -> revocation.CertStatusInfo:
            record = self.store.certificate(serial)
            if record is None or record.issuer_key_id != issuer.key_id:
                return revocation.CertStatusInfo.unknown()
            if record.revoked_at is not None:
                return revocation.CertStatusInfo.revoked(
                    record.revoked_at, revocation.RevocationReason(record.reason or "unspecified"))
            return revocation.CertStatusInfo.good()

        return revocation.respond_ocsp(request, issuers=issuers, lookup=lookup,
                                       signer=self.signer, now=now, validity=OCSP_VALIDITY)
