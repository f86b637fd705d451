"""Chains whose certificates parse but whose fields do not decode: BadSubmission (a 400),
never a cryptography exception (found by the fuzz suite, issue 14)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from tests.pki import der_b64, node_pki
from trustchain.ct.log import BadSubmission, ExpiryRange, check_submission
from trustchain.ct.precert import EXTENSIONS_TAG, SEQUENCE, _children, _extensions, _fields, _tlv, _wrap

NOW = datetime.now(UTC)
PKI = node_pki(now=NOW)
ROOTS = (PKI.root.public_bytes(Encoding.DER),)
KEY_USAGE = bytes.fromhex("0603551d0f")
BASIC_CONSTRAINTS = bytes.fromhex("0603551d13")


def with_extension_twice(der: bytes, oid: bytes) -> bytes:
    """The certificate with its extension ``oid`` listed twice (the signature no longer
    matches, but the extensions are read before any signature is checked)."""
    _, start, end = _tlv(der, 0)
    tbs_part, *rest = _children(der, start, end)
    tbs = der[tbs_part[1]:tbs_part[3]]
    fields = _fields(tbs)
    extensions = [tbs[s:e] for _, s, _, e in _extensions(tbs, fields)]
    twice = extensions + [next(x for x in extensions if oid in x[:12])]
    new_tbs = _wrap(SEQUENCE, b"".join(
        _wrap(EXTENSIONS_TAG, _wrap(SEQUENCE, b"".join(twice))) if tag == EXTENSIONS_TAG
        else tbs[f_start:f_end] for tag, f_start, _, f_end in fields))
    return _wrap(SEQUENCE, new_tbs + b"".join(der[s:e] for _, s, _, e in rest))


def b64(der: bytes) -> str:
    return base64.b64encode(der).decode()


@pytest.mark.parametrize("oid", [KEY_USAGE, BASIC_CONSTRAINTS])
def test_a_ca_with_a_duplicate_extension_is_a_bad_submission(oid: bytes) -> None:
    ca = with_extension_twice(PKI.ca.public_bytes(Encoding.DER), oid)
    with pytest.raises(BadSubmission, match="Duplicate"):
        check_submission([der_b64(PKI.leaf("n2")), b64(ca)], ROOTS, ExpiryRange())


@pytest.mark.parametrize("precert", [False, True])
def test_a_leaf_with_a_duplicate_extension_is_a_bad_submission(precert: bool) -> None:
    leaf = with_extension_twice(PKI.leaf("n3").public_bytes(Encoding.DER), KEY_USAGE)
    with pytest.raises(BadSubmission):
        check_submission([b64(leaf), der_b64(PKI.ca)], ROOTS, ExpiryRange(), precert)
