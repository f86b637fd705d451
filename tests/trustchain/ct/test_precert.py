"""Poison removal: the precertificate TBS minus the poison is the final certificate's TBS."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st

from tests.pki import cert_builder, dn, new_key, signed
from trustchain.ct.precert import PrecertError, remove_poison

KEY = new_key()
NOW = datetime(2026, 11, 25, tzinfo=UTC)


def build(extras: list[x509.ExtensionType], poison_at: int | None, names: int = 1):
    builder = cert_builder("www.example.net", KEY.public_key(), issuer=dn("CA"),
                           serial=123456789, not_before=NOW, days=90)
    items: list[tuple[x509.ExtensionType, bool]] = [(e, False) for e in extras]
    if poison_at is not None:
        items.insert(poison_at, (x509.PrecertPoison(), True))
    for ext, critical in items:
        builder = builder.add_extension(ext, critical=critical)
    return signed(builder, KEY)


EXTRAS = [
    x509.SubjectAlternativeName([x509.DNSName(f"n{i}.example.net") for i in range(40)]),
    x509.BasicConstraints(ca=False, path_length=None),
    x509.KeyUsage(True, False, False, False, False, False, False, False, False),
]


@pytest.mark.parametrize("position", [0, 1, 2, 3])
def test_tbs_without_poison_equals_the_final_tbs(position: int) -> None:
    precert = build(EXTRAS, position)
    final = build(EXTRAS, None)
    assert remove_poison(precert.tbs_certificate_bytes) == final.tbs_certificate_bytes


def test_poison_only_drops_the_extensions_field() -> None:
    precert = build([], 0)
    stripped = remove_poison(precert.tbs_certificate_bytes)
    assert stripped == build([], None).tbs_certificate_bytes


def test_refuses_a_tbs_without_poison_or_garbage() -> None:
    with pytest.raises(PrecertError, match="found 0"):
        remove_poison(build(EXTRAS, None).tbs_certificate_bytes)
    with pytest.raises(PrecertError):
        remove_poison(b"\x30\x03\x02\x01")


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_precert_errors(data: bytes) -> None:
    try:
        remove_poison(data)
    except PrecertError:
        pass


@given(st.integers(0, 2000), st.data())
def test_flipped_bytes_never_crash(seed: int, data) -> None:
    tbs = bytearray(build(EXTRAS, 1).tbs_certificate_bytes)
    index = data.draw(st.integers(0, len(tbs) - 1))
    tbs[index] ^= 1 << (seed % 8)
    try:
        remove_poison(bytes(tbs))
    except PrecertError:
        pass
