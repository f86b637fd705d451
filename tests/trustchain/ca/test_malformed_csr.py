"""Malformed CSRs are refused by policy (a 400 problem), never a cryptography exception
(issue 14: a 500 or a stoq/1 reset with INTERNAL_ERROR)."""

from __future__ import annotations

import pytest

from tests.fuzz.ca import simple_csr
from transport.problem import problem_for
from trustchain.ca.policy import PolicyError
from trustchain.ca.work import check_request

ZONE = "alpha.trust.example.net."
P256 = bytes.fromhex("06082a8648ce3d030107")


def csr() -> bytes:
    return simple_csr()


def point_flipped(der: bytes) -> bytes:
    """The EC point (BIT STRING 03 42 00 04 X Y) with one byte of X flipped."""
    at = der.index(bytes.fromhex("03420004")) + 10
    return der[:at] + bytes([der[at] ^ 0x01]) + der[at + 1:]


def unknown_curve(der: bytes) -> bytes:
    """The named curve 1.2.840.10045.3.1.7 (P-256) changed to ...3.1.8, which has no name."""
    return der.replace(P256, P256[:-1] + b"\x08")


def version_4(der: bytes) -> bytes:
    """The CertificationRequestInfo's version INTEGER 0 (v1) changed to 3 (a 'v4')."""
    at = der.index(bytes.fromhex("020100"))
    return der[:at] + bytes.fromhex("020103") + der[at + 3:]


@pytest.mark.parametrize("malform", [point_flipped, unknown_curve, version_4],
                         ids=["ec-point-flipped", "unknown-curve", "version-4"])
@pytest.mark.parametrize("profile", ["server-90d", "network-admin"])
def test_a_malformed_csr_is_a_policy_refusal(malform, profile: str) -> None:
    good = csr()
    check_request(good, ZONE, (), profile)
    with pytest.raises(PolicyError) as refused:
        check_request(malform(good), ZONE, (), profile)
    problem = problem_for(refused.value)
    assert problem is not None and problem.status == 400


def test_the_refusal_says_what_does_not_parse() -> None:
    with pytest.raises(PolicyError, match="public key does not parse"):
        check_request(point_flipped(csr()), ZONE, ())
    with pytest.raises(PolicyError, match="does not parse: .*version"):
        check_request(version_4(csr()), ZONE, ())
