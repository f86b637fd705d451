"""Precertificates (RFC 6962 section 3.1): the TBSCertificate with the poison removed.

``cryptography`` parses certificates but cannot edit DER, so this module
walks the TBSCertificate's DER itself: it finds the extensions field
(``[3] EXPLICIT Extensions``), drops the one extension whose OID is the CT
poison (1.3.6.1.4.1.11129.2.4.3), and re-encodes the lengths of every
enclosing structure.  Anything that is not exactly one well-formed poison
extension in a well-formed TBSCertificate is refused.

For a precertificate signed by a Precertificate Signing Certificate, RFC 6962
section 3.2 also has the issuer field replaced by the PSC's issuer and the
authority key identifier by the one that names the CA; both are done here
the same way.
"""

from __future__ import annotations

from trustchain.errors import RemoteError

#: DER of the poison extension's OID, tag and length included.
POISON_OID = bytes.fromhex("060a2b06010401d679020403")
#: DER of the authority key identifier's OID (2.5.29.35).
AKI_OID = bytes.fromhex("0603551d23")
SEQUENCE, EXTENSIONS_TAG = 0x30, 0xA3


class PrecertError(RemoteError):
    """Not a well-formed precertificate TBS."""


def _tlv(data: bytes, offset: int) -> tuple[int, int, int]:
    """(tag, start of contents, end) of the DER element at ``offset``."""
    if offset + 2 > len(data):
        raise PrecertError("truncated DER")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise PrecertError("multi-byte DER tags are not expected here")
    first = data[offset + 1]
    if first < 0x80:
        length, start = first, offset + 2
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or offset + 2 + count > len(data):
            raise PrecertError("bad DER length")
        length = int.from_bytes(data[offset + 2 : offset + 2 + count], "big")
        if length < 0x80 or data[offset + 2] == 0:
            raise PrecertError("non-minimal DER length")
        start = offset + 2 + count
    end = start + length
    if end > len(data):
        raise PrecertError("DER element runs past its container")
    return tag, start, end


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(tag, element start, contents start, end) of each element in data[start:end]."""
    out = []
    offset = start
    while offset < end:
        tag, contents, element_end = _tlv(data, offset)
        if element_end > end:
            raise PrecertError("DER element runs past its container")
        out.append((tag, offset, contents, element_end))
        offset = element_end
    return out


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _wrap(tag: int, contents: bytes) -> bytes:
    return bytes([tag]) + _length(len(contents)) + contents


def _fields(tbs: bytes) -> list[tuple[int, int, int, int]]:
    tag, contents, end = _tlv(tbs, 0)
    if tag != SEQUENCE or end != len(tbs):
        raise PrecertError("a TBSCertificate is one DER SEQUENCE")
    return _children(tbs, contents, end)


def _extensions(tbs: bytes, fields: list[tuple[int, int, int, int]]
                ) -> list[tuple[int, int, int, int]]:
    found = [f for f in fields if f[0] == EXTENSIONS_TAG]
    if len(found) != 1:
        raise PrecertError("the TBSCertificate has no extensions field")
    _, _, ext_contents, ext_end = found[0]
    seq_tag, seq_contents, seq_end = _tlv(tbs, ext_contents)
    if seq_tag != SEQUENCE or seq_end != ext_end:
        raise PrecertError("malformed extensions field")
    extensions = _children(tbs, seq_contents, seq_end)
    if any(ext_tag != SEQUENCE for ext_tag, _, _, _ in extensions):
        raise PrecertError("an extension is not a SEQUENCE")
    return extensions


def extension_element(tbs: bytes, oid: bytes) -> bytes | None:
    """The whole DER Extension whose OID (tag and length included) is ``oid``, if any."""
    for _, start, inner, stop in _extensions(tbs, _fields(tbs)):
        if tbs[inner:inner + len(oid)] == oid:
            return tbs[start:stop]
    return None


def remove_poison(tbs: bytes, *, issuer: bytes | None = None,
                  authority_key_id: bytes | None = None) -> bytes:
    """The TBSCertificate ``tbs`` (DER) without its CT poison extension.

    :param issuer: the DER Name to put in the issuer field (PSC-signed precerts).
    :param authority_key_id: the DER Extension to replace the authority key
        identifier with, if ``tbs`` has one (PSC-signed precerts).
    :raises PrecertError: unless ``tbs`` is a TBSCertificate with exactly one
        poison extension.
    """
    fields = _fields(tbs)
    kept, poisons = [], 0
    for _, start, inner, stop in _extensions(tbs, fields):
        if tbs[inner : inner + len(POISON_OID)] == POISON_OID:
            poisons += 1
        elif authority_key_id is not None and tbs[inner:inner + len(AKI_OID)] == AKI_OID:
            kept.append(authority_key_id)
        else:
            kept.append(tbs[start:stop])
    if poisons != 1:
        raise PrecertError(f"expected one poison extension, found {poisons}")
    issuer_position = 3 if fields and fields[0][0] == 0xA0 else 2  # after [0] version, serial, sig
    if issuer is not None and (len(fields) <= issuer_position
                               or fields[issuer_position][0] != SEQUENCE):
        raise PrecertError("the TBSCertificate has no issuer field")
    rebuilt = b"".join(
        (_wrap(EXTENSIONS_TAG, _wrap(SEQUENCE, b"".join(kept))) if kept else b"")
        if f_tag == EXTENSIONS_TAG
        else issuer if issuer is not None and position == issuer_position
        else tbs[f_start:f_end]
        for position, (f_tag, f_start, _, f_end) in enumerate(fields)
    )
    return _wrap(SEQUENCE, rebuilt)


def without_extension(tbs: bytes, oid: bytes) -> bytes:
    """The TBSCertificate ``tbs`` without its one extension whose OID DER is ``oid``.

    Used by the CA to check that a final certificate is its precertificate
    with the SCT list in place of the poison (RFC 6962 3.1).

    :raises PrecertError: unless ``tbs`` has exactly one such extension.
    """
    fields = _fields(tbs)
    extensions = _extensions(tbs, fields)
    kept = [tbs[start:stop] for _, start, inner, stop in extensions
            if tbs[inner:inner + len(oid)] != oid]
    if len(kept) != len(extensions) - 1:
        raise PrecertError(f"expected one extension {oid.hex()}, found {len(extensions) - len(kept)}")
    return _wrap(SEQUENCE, b"".join(
        (_wrap(EXTENSIONS_TAG, _wrap(SEQUENCE, b"".join(kept))) if kept else b"")
        if f_tag == EXTENSIONS_TAG else tbs[f_start:f_end]
        for f_tag, f_start, _, f_end in fields))
