"""Precertificates (RFC 6962 section 3.1): the TBSCertificate with the poison removed.

``cryptography`` parses certificates but cannot edit DER, so this module
walks the TBSCertificate's DER itself: it finds the extensions field
(``[3] EXPLICIT Extensions``), drops the one extension whose OID is the CT
poison (1.3.6.1.4.1.11129.2.4.3), and re-encodes the lengths of every
enclosing structure.  Anything that is not exactly one well-formed poison
extension in a well-formed TBSCertificate is refused.
"""

from __future__ import annotations

from trustchain.errors import RemoteError

#: DER of the poison extension's OID, tag and length included.
POISON_OID = bytes.fromhex("060a2b06010401d679020403")
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


def remove_poison(tbs: bytes) -> bytes:
    """The TBSCertificate ``tbs`` (DER) without its CT poison extension.

    :raises PrecertError: unless ``tbs`` is a TBSCertificate with exactly one
        poison extension.
    """
    tag, contents, end = _tlv(tbs, 0)
    if tag != SEQUENCE or end != len(tbs):
        raise PrecertError("a TBSCertificate is one DER SEQUENCE")
    fields = _children(tbs, contents, end)
    found = [f for f in fields if f[0] == EXTENSIONS_TAG]
    if len(found) != 1:
        raise PrecertError("the TBSCertificate has no extensions field")
    _, ext_start, ext_contents, ext_end = found[0]
    seq_tag, seq_contents, seq_end = _tlv(tbs, ext_contents)
    if seq_tag != SEQUENCE or seq_end != ext_end:
        raise PrecertError("malformed extensions field")
    extensions = _children(tbs, seq_contents, seq_end)
    kept, poisons = [], 0
    for ext_tag, start, inner, stop in extensions:
        if ext_tag != SEQUENCE:
            raise PrecertError("an extension is not a SEQUENCE")
        if tbs[inner : inner + len(POISON_OID)] == POISON_OID:
            poisons += 1
        else:
            kept.append(tbs[start:stop])
    if poisons != 1:
        raise PrecertError(f"expected one poison extension, found {poisons}")
    rebuilt = b"".join(
        tbs[f_start:f_end] if f_tag != EXTENSIONS_TAG
        else (_wrap(EXTENSIONS_TAG, _wrap(SEQUENCE, b"".join(kept))) if kept else b"")
        for f_tag, f_start, _, f_end in fields
    )
    return _wrap(SEQUENCE, rebuilt)
