"""Certificate search over the CT logs, pure: what a logged entry certifies, and what a
search query asks for.

:func:`describe` reads a log entry (an ``X509`` entry's certificate, or a ``PRECERT``
entry's precertificate, the first certificate of its stored chain) into the fields the
search index keeps: serial, DNS names, issuer and validity.  :func:`parse_query` turns
what someone typed into a :class:`Query`:

* a domain name finds certificates for that exact name and every name under it
  (``example.net`` finds ``example.net``, ``www.example.net`` and ``*.example.net``);
  ``%.example.net`` (crt.sh's spelling) or ``*.example.net`` finds only the names under
  it.  Case and a final dot do not matter; an internationalised name is searched in its
  ``xn--`` form;
* a serial in hex (``0x`` and ``:`` separators allowed, at most 20 octets) finds the
  certificate of that serial.  Text that is both (``cafe``) is searched both ways.

Names are kept label-reversed (``www.example.net`` as ``net.example.www``) so that
"every name under ``example.net``" is one range of an index: from ``net.example.`` up
to, not including, ``net.example/`` (``/`` follows ``.`` in ASCII).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.x509.oid import NameOID

from trustchain.ct.log import PRECERT_SIGNING, UNDECODABLE
from trustchain.ct.structs import EntryType

#: Longest query text read (a DNS name is at most 253 characters; a 20-octet serial with
#: colons is 59).
MAX_QUERY = 255
#: Names of one certificate put in the index (a CA issues far fewer; a logged entry
#: from anywhere could hold thousands).
MAX_NAMES = 200
_LABEL = re.compile(r"[a-z0-9_*]([a-z0-9_-]{0,61}[a-z0-9_])?")
_HEX = re.compile(r"[0-9a-f]{1,40}")
_SEPARATED_HEX = re.compile(r"[0-9a-f]{1,2}(:[0-9a-f]{1,2})+")


class QueryError(ValueError):
    """A query this search does not understand (answered with 400)."""


@dataclass(frozen=True)
class Query:
    """What to look for: a name (label-reversed, :func:`reverse_name`), a serial, or both."""

    #: The query as normalised, to show back.
    text: str
    #: The domain name, lower case, without its final dot (None: not a name).
    name: str | None = None
    #: Only names strictly under :attr:`name` (``%.example.net``), not the name itself.
    strict: bool = False
    #: The serial number (None: not a serial).
    serial: int | None = None


@dataclass(frozen=True)
class Described:
    """What one log entry certifies, as the index keeps it."""

    serial: int
    #: DNS names (subjectAltName, then a DNS-like common name), lower case, in order, once.
    names: tuple[str, ...]
    #: The issuer's distinguished name (RFC 4514).
    issuer: str
    not_before: datetime
    not_after: datetime
    precert: bool


def reverse_name(name: str) -> str:
    """``www.example.net`` -> ``net.example.www``."""
    return ".".join(reversed(name.split(".")))


def under_range(name: str) -> tuple[str, str]:
    """The half-open range of reversed names strictly under ``name``."""
    reversed_name = reverse_name(name)
    return reversed_name + ".", reversed_name + "/"


def normalise_name(text: str) -> str | None:
    """``text`` as a DNS name to search or index (lower case, no final dot, A-labels),
    or None if it is not one.  ``*`` may be a whole label (wildcard certificates)."""
    name = text.strip().rstrip(".").lower()
    if not name or len(name) > 253:
        return None
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    labels = name.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        return None
    if any("*" in label and label != "*" for label in labels):
        return None
    return name


def parse_serial(text: str) -> int | None:
    """A serial written in hex (``0x``, ``:`` separators allowed), or None."""
    value = text.strip().lower()
    if value.startswith("0x"):
        value = value[2:]
    if _SEPARATED_HEX.fullmatch(value):
        value = "".join(part.zfill(2) for part in value.split(":"))
    if not _HEX.fullmatch(value):
        return None
    return int(value, 16)


def parse_query(text: str) -> Query:
    """What ``text`` asks for (see the module's rules).

    :raises QueryError: empty, longer than :data:`MAX_QUERY`, or neither a name nor a serial.
    """
    if len(text) > MAX_QUERY:
        raise QueryError(f"a query is at most {MAX_QUERY} characters")
    stripped = text.strip()
    if not stripped:
        raise QueryError("type a domain name or a serial number in hex")
    strict = stripped.startswith(("%.", "*."))
    candidate = stripped[2:] if strict else stripped
    name = normalise_name(candidate)
    if name is not None and "*" in name.split("."):
        name = None  # a wildcard is a label of a certificate, not of a query
    serial = None if strict or "." in stripped else parse_serial(stripped)
    if name is None and serial is None:
        raise QueryError(f"{stripped[:80]!r} is neither a domain name (like example.net or "
                         "%.example.net) nor a serial number in hex")
    shown = f"%.{name}" if strict and name is not None else (name or stripped.lower())
    return Query(shown, name, strict and name is not None, serial)


def _dns_like(value: str) -> str | None:
    name = normalise_name(value)
    return name if name is not None and "." in name else None


def _names(cert: x509.Certificate) -> tuple[str, ...]:
    names: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names += [n for n in (_dns_like(v) for v in san.get_values_for_type(x509.DNSName)) if n]
    except x509.ExtensionNotFound:
        pass
    for attribute in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        if isinstance(attribute.value, str) and (name := _dns_like(attribute.value)):
            names.append(name)
    return tuple(dict.fromkeys(names))[:MAX_NAMES]


def describe(entry_type: EntryType, body: bytes, chain: list[bytes]) -> Described | None:
    """What an entry certifies; None if its certificate does not decode (a log takes
    anything a chain check passes: the index skips what it cannot read)."""
    try:
        if entry_type == EntryType.X509:
            cert = x509.load_der_x509_certificate(body)
            issuer = cert.issuer
        else:
            if not chain:
                return None
            cert = x509.load_der_x509_certificate(chain[0])
            issuer = cert.issuer
            if len(chain) > 1:  # signed by a Precertificate Signing Certificate: its CA
                signer = x509.load_der_x509_certificate(chain[1])
                try:
                    usage = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
                    if PRECERT_SIGNING in usage.value:
                        issuer = signer.issuer
                except x509.ExtensionNotFound:
                    pass
        return Described(cert.serial_number, _names(cert), issuer.rfc4514_string(),
                         cert.not_valid_before_utc, cert.not_valid_after_utc,
                         entry_type == EntryType.PRECERT)
    except UNDECODABLE:
        return None
