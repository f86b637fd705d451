"""ACME Renewal Information (RFC 9773): the certificate identifier and the suggested
renewal window. Pure.

A certificate's ARI identifier is ``base64url(AKI keyIdentifier) "." base64url(serial)``,
the serial as the bytes of its DER INTEGER (two's complement, big-endian, with a
leading zero byte when its high bit is set).  The window suggested is the last third
of the validity but a sixth (from 2/3 to 5/6 of the lifetime); a revoked certificate
gets a window already past, so a client renews at once (section 4.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from trustchain.ca.acme import jws
from trustchain.ca.acme.problems import AcmeProblem
from trustchain.ca.profiles import renewal_window

#: How long a client should wait before asking again, before the jitter.
RETRY_AFTER = timedelta(hours=6)


@dataclass(frozen=True)
class CertificateStatus:
    """What ARI needs of a certificate this CA issued."""

    authority_key_id: bytes
    not_before: datetime
    not_after: datetime
    revoked: bool


def serial_bytes(serial: int) -> bytes:
    """The content octets of the serial's DER INTEGER."""
    return serial.to_bytes(serial.bit_length() // 8 + 1, "big", signed=True)


def cert_id(authority_key_id: bytes, serial: int) -> str:
    return f"{jws.b64url(authority_key_id)}.{jws.b64url(serial_bytes(serial))}"


def parse_cert_id(text: str) -> tuple[bytes, int]:
    """(AKI key identifier, serial) of an ARI identifier.

    :raises AcmeProblem: malformed.
    """
    aki_text, dot, serial_text = text.partition(".")
    try:
        if not dot or not aki_text or not serial_text:
            raise ValueError("two parts")
        aki, serial = jws.b64url_decode(aki_text), jws.b64url_decode(serial_text)
    except ValueError:
        raise AcmeProblem("malformed", "a certificate identifier is base64url(AKI) '.' "
                                       "base64url(serial)") from None
    if not serial or len(serial) > 21 or (len(serial) > 1 and serial[0] == 0
                                          and not serial[1] & 0x80):
        raise AcmeProblem("malformed", "the serial is not a DER INTEGER's content")
    return aki, int.from_bytes(serial, "big", signed=True)


def window(status: CertificateStatus, now: datetime) -> tuple[datetime, datetime]:
    if status.revoked:
        return now - timedelta(days=1), now - timedelta(seconds=1)
    return renewal_window(status.not_before, status.not_after)
