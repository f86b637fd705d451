"""Issuance: precertificate, SCTs, final certificate (RFC 6962 section 3.1).

The CA signs a precertificate (the final certificate's TBS plus the critical
poison extension), has it logged, and only then signs the certificate, with
the logs' SCTs embedded in place of the poison.  :func:`finish_certificate`
checks that the two TBSCertificates are identical but for that one
extension, byte for byte, before the certificate exists outside this module.
Signing goes through :class:`trustchain.ca.signer.Signer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509

from trustchain.ca.signer import Signer
from trustchain.ct.log import issuer_key_hash
from trustchain.ct.precert import POISON_OID, remove_poison, without_extension
from trustchain.ct.structs import Entry, EntryType
from trustchain.errors import RemoteError

#: RFC 6962 3.3: the embedded SignedCertificateTimestampList extension.
SCT_LIST_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
_SCT_LIST_OID_DER = bytes.fromhex("060a2b06010401d679020402")


class IssuanceError(RemoteError):
    """The CA could not complete an issuance (the message says which step)."""


@dataclass(frozen=True)
class Precertificate:
    builder: x509.CertificateBuilder  # the final certificate, minus SCTs
    certificate: x509.Certificate  # signed, with the poison
    issuer: x509.Certificate
    issuer_key_id: str

    @property
    def entry(self) -> Entry:
        """The CT log entry the logs sign for it (precert_entry)."""
        return Entry(EntryType.PRECERT, remove_poison(self.certificate.tbs_certificate_bytes),
                     issuer_key_hash(self.issuer))


def _der_octet_string(data: bytes) -> bytes:
    size = len(data)
    if size < 0x80:
        return b"\x04" + bytes([size]) + data
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return b"\x04" + bytes([0x80 | len(length)]) + length + data


def sct_list_extension(scts: Sequence[bytes]) -> x509.UnrecognizedExtension:
    """RFC 6962 3.3: an OCTET STRING holding the TLS-encoded SignedCertificateTimestampList."""
    if not scts:
        raise IssuanceError("a certificate needs at least one SCT")
    serialized = b"".join(len(s).to_bytes(2, "big") + s for s in scts)
    if len(serialized) > 0xFFFF:
        raise IssuanceError("the SCT list is too long")
    return x509.UnrecognizedExtension(
        SCT_LIST_OID, _der_octet_string(len(serialized).to_bytes(2, "big") + serialized))


def sign_precertificate(signer: Signer, builder: x509.CertificateBuilder,
                        issuer: x509.Certificate, issuer_key_id: str) -> Precertificate:
    """Sign ``builder`` (the final certificate minus SCTs) with the poison added."""
    poisoned = builder.add_extension(x509.PrecertPoison(), critical=True)
    return Precertificate(builder, signer.sign_certificate(poisoned, issuer_key_id), issuer,
                          issuer_key_id)


def finish_certificate(signer: Signer, pre: Precertificate,
                       scts: Sequence[bytes]) -> x509.Certificate:
    """Sign the final certificate with ``scts`` (serialized SCTs) embedded.

    :raises IssuanceError: if its TBS differs from the precertificate's by
        anything but the poison/SCT-list swap.
    """
    final = signer.sign_certificate(pre.builder.add_extension(sct_list_extension(scts),
                                                              critical=False), pre.issuer_key_id)
    if (without_extension(final.tbs_certificate_bytes, _SCT_LIST_OID_DER)
            != without_extension(pre.certificate.tbs_certificate_bytes, POISON_OID)):
        raise IssuanceError("the final certificate does not match its precertificate")
    return final
