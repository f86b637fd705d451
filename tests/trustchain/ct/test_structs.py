from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from trustchain.ct.structs import (
    SCT,
    DecodeError,
    Entry,
    EntryType,
    TreeHead,
    leaf_index_extension,
    log_id,
    merkle_tree_leaf,
    parse_leaf_index,
    sign_sct,
)

KEY = ec.generate_private_key(ec.SECP256R1())
CERT = b"\x30\x03\x02\x01\x05"  # stands for a DER certificate: the layout is what is tested


def test_x509_leaf_layout() -> None:
    leaf = merkle_tree_leaf(0x0102030405060708, Entry(EntryType.X509, CERT), b"")
    assert leaf == (b"\x00\x00" + bytes.fromhex("0102030405060708") + b"\x00\x00"
                    + b"\x00\x00\x05" + CERT + b"\x00\x00")


def test_precert_leaf_layout() -> None:
    entry = Entry(EntryType.PRECERT, CERT, issuer_key_hash=b"\xaa" * 32)
    leaf = merkle_tree_leaf(1, entry, leaf_index_extension(7))
    assert leaf[10:12] == b"\x00\x01" and leaf[12:44] == b"\xaa" * 32
    assert leaf.endswith(b"\x00\x08" + b"\x00\x00\x05" + b"\x00\x00\x00\x00\x07")
    with pytest.raises(ValueError):
        Entry(EntryType.PRECERT, CERT).signed_entry()


def test_sct_round_trip_and_verification() -> None:
    entry = Entry(EntryType.X509, CERT)
    sct = sign_sct(KEY, 1_700_000_000_000, entry, leaf_index_extension(42))
    parsed = SCT.from_bytes(sct.to_bytes())
    assert parsed == sct and parsed.leaf_index == 42
    parsed.verify(entry, KEY.public_key())
    with pytest.raises(DecodeError, match="does not verify"):
        parsed.verify(Entry(EntryType.X509, CERT + b"x"), KEY.public_key())
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(DecodeError, match="another log"):
        parsed.verify(entry, other)
    assert sct.log_id == log_id(KEY.public_key())


def test_tree_head_signature() -> None:
    head = TreeHead(10, 1_700_000_000_000, b"\x01" * 32).sign(KEY)
    head.verify(KEY.public_key())
    with pytest.raises(DecodeError):
        TreeHead(11, head.timestamp, head.root, head.signature).verify(KEY.public_key())


@given(st.binary(max_size=200))
def test_sct_parser_on_arbitrary_bytes(data: bytes) -> None:
    try:
        sct = SCT.from_bytes(data)
    except DecodeError:
        return
    assert sct.to_bytes() == data


@given(st.binary(max_size=60))
def test_extension_parser_on_arbitrary_bytes(data: bytes) -> None:
    try:
        parse_leaf_index(data)
    except DecodeError:
        pass
