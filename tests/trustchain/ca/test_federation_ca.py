"""The CA across the federation (trustchain.ca.federation): which intermediates the
federation takes (signed by the genesis root, constrained to the network's zone) and
revocations, as every node applies them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from bootstrap.root import build_root_certificate
from tests.pki import new_key, signed
from trustchain.ca.federation import CaRefused, FederationCa
from trustchain.ca.profiles import CaUrls, intermediate_builder

NOW = datetime(2026, 12, 1, tzinfo=UTC)
URLS = CaUrls("http://ca.example/crl", "http://ca.example/ocsp", "http://ca.example/root.der")


def state() -> tuple[FederationCa, ec.EllipticCurvePrivateKey]:
    root_key = new_key()
    ca = FederationCa(build_root_certificate(root_key, "testnet", NOW), "fed.example.")
    ca.apply("network-registration", "n1", {"name": "alpha", "delegate": [], "ds": [],
                                            "prefixes": []}, 1)
    return ca, root_key


def intermediate(ca: FederationCa, signing_key: ec.EllipticCurvePrivateKey,
                 zone: str = "alpha.fed.example") -> str:
    builder = intermediate_builder(root=ca.root, public_key=new_key().public_key(),
                                   network="alpha", organisation="testnet", zone=zone,
                                   generation=1, root_urls=URLS, now=NOW, serial=7)
    return signed(builder, signing_key).public_bytes(Encoding.DER).hex()


def test_an_intermediate_the_root_signed_is_every_nodes_to_know() -> None:
    ca, root_key = state()
    body = {"network": "alpha", "certificate": intermediate(ca, root_key)}
    ca.check("ca-intermediate", "n3", body)
    ca.apply("ca-intermediate", "n3", body, 2)
    assert set(ca.intermediates["alpha"]) == {"n3"}


def test_intermediates_the_federation_refuses() -> None:
    ca, root_key = state()
    with pytest.raises(CaRefused, match="genesis root signed"):
        ca.check("ca-intermediate", "n3", {"network": "alpha",
                                           "certificate": intermediate(ca, new_key())})
    with pytest.raises(CaRefused, match="alone"):
        ca.check("ca-intermediate", "n3", {"network": "alpha", "certificate": intermediate(
            ca, root_key, zone="fed.example")})  # the whole origin: wider than alpha's
    with pytest.raises(CaRefused, match="no network"):
        ca.check("ca-intermediate", "n3", {"network": "beta",
                                           "certificate": intermediate(ca, root_key)})


def test_a_revocation_is_applied_once() -> None:
    ca, _ = state()
    body = {"serial": "abc123", "reason": "keyCompromise"}
    ca.check("ca-revocation", "n1", body)
    ca.apply("ca-revocation", "n1", body, 5)
    assert ca.revoked[0xABC123].height == 5
    with pytest.raises(CaRefused, match="revoked already"):
        ca.check("ca-revocation", "n2", body)
    with pytest.raises(CaRefused, match="reason"):
        ca.check("ca-revocation", "n2", {"serial": "1", "reason": "certificateHold"})


def test_a_credential_issued_elsewhere_is_good_from_the_networks_intermediates_alone() -> None:
    """A network-admin credential of alpha issued at another node: good when one of alpha's
    committed intermediates issued it and no committed revocation names its serial."""
    ca, root_key = state()
    ca.apply("network-registration", "n1", {"name": "beta", "delegate": [], "ds": [],
                                            "prefixes": []}, 1)
    alpha = intermediate(ca, root_key)
    beta = intermediate(ca, root_key, zone="beta.fed.example")
    ca.apply("ca-intermediate", "n3", {"network": "alpha", "certificate": alpha}, 2)
    ca.apply("ca-intermediate", "n3", {"network": "beta", "certificate": beta}, 3)
    assert ca.credential_refusal("alpha", bytes.fromhex(alpha), 0x51) is None
    # beta's intermediate may put any URI in a credential: it does not speak for alpha
    assert "no intermediate of network alpha" in str(
        ca.credential_refusal("alpha", bytes.fromhex(beta), 0x51))
    assert ca.credential_refusal("alpha", None, 0x51) is not None
    ca.apply("ca-revocation", "n2", {"serial": "51", "reason": "keyCompromise"}, 4)
    assert "revoked" in str(ca.credential_refusal("alpha", bytes.fromhex(alpha), 0x51))
    assert [c.public_bytes(Encoding.DER).hex() for c in ca.certificates()] == sorted(
        [alpha, beta], key=bytes.fromhex)
