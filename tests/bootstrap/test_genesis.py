from __future__ import annotations

import base64
import json
from datetime import datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootstrap.genesis import (
    GenesisDocument,
    ProofParameters,
    ValidatorKeys,
    create_genesis,
    genesis_pin,
    normalise_pin,
    parse_genesis,
    verify_genesis,
)
from bootstrap.root import build_root_certificate
from tests.pki import cert_builder, der_b64, signed
from trustchain.canonical import canonical_json
from trustchain.errors import GenesisError, PinMismatchError


def _founder(stake: int = 10) -> ValidatorKeys:
    return ValidatorKeys(
        ed25519.Ed25519PrivateKey.generate(), mldsa.MLDSA65PrivateKey.generate(), stake
    )


@pytest.fixture(scope="module")
def setup() -> tuple[ec.EllipticCurvePrivateKey, list[ValidatorKeys], GenesisDocument]:
    now = datetime.fromisoformat("2026-11-25T12:00:00+00:00")
    root_key = ec.generate_private_key(ec.SECP384R1())
    founders = [_founder(10), _founder(20), _founder(30)]
    document = create_genesis(
        network_name="testnet", origin="trust.example.net.", root_key=root_key,
        root_certificate=build_root_certificate(root_key, "testnet", now),
        validators=founders, parameters=ProofParameters(), now=now,
    )
    return root_key, founders, document


def _resign(doc: dict, keys: tuple[ec.EllipticCurvePrivateKey, list[ValidatorKeys]]) -> bytes:
    """Re-sign a modified body with the real keys (a forger with the keys)."""
    from cryptography.hazmat.primitives import hashes

    from bootstrap.genesis import GenesisBody, signing_input

    body = GenesisBody.model_validate(doc["body"])
    message = signing_input(body)
    root_key, founders = keys
    sigs = [{"signer": "root", "algorithm": "ecdsa-p384-sha384",
             "value": base64.b64encode(root_key.sign(message, ec.ECDSA(hashes.SHA384()))).decode()}]
    for f in founders:
        sigs.append({"signer": f.node_id, "algorithm": "ed25519",
                     "value": base64.b64encode(f.ed25519_key.sign(message)).decode()})
        sigs.append({"signer": f.node_id, "algorithm": "ml-dsa-65",
                     "value": base64.b64encode(f.ml_dsa_key.sign(message)).decode()})
    doc["signatures"] = sigs
    return canonical_json(doc)


def test_round_trip(setup) -> None:
    _, founders, document = setup
    data = document.to_bytes()
    verified = verify_genesis(data, genesis_pin(data))
    assert verified == document
    assert [v.node_id for v in verified.body.validators] == [f.node_id for f in founders]
    assert len(verified.signatures) == 1 + 2 * len(founders)


def test_pin_formats(setup) -> None:
    data = setup[2].to_bytes()
    pin = genesis_pin(data)
    for form in (pin, pin.upper(), f"sha256:{pin}", f"  {pin}\n"):
        verify_genesis(data, form)
    for bad in ("", "abc", pin[:-1], pin + "0", "g" * 64):
        with pytest.raises(GenesisError, match="not a SHA-256 pin"):
            normalise_pin(bad)


@pytest.fixture(scope="module")
def genesis_bytes(setup) -> bytes:
    return setup[2].to_bytes()


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_flipping_any_byte_fails(genesis_bytes: bytes, data) -> None:
    original = genesis_bytes
    pin = genesis_pin(original)
    index = data.draw(st.integers(0, len(original) - 1))
    bit = data.draw(st.integers(0, 7))
    tampered = bytearray(original)
    tampered[index] ^= 1 << bit
    with pytest.raises(PinMismatchError):
        verify_genesis(bytes(tampered), pin)
    # Even an attacker who can also change the pin gets no document past the checks.
    try:
        document = verify_genesis(bytes(tampered), genesis_pin(bytes(tampered)))
    except GenesisError:
        return
    # The only flips that survive are ones that change nothing signed and keep the
    # form canonical, which canonical JSON and the signatures leave no room for.
    raise AssertionError(f"tampered document accepted: byte {index} bit {bit}: {document}")


def _mutated(setup, mutate) -> bytes:
    doc = json.loads(setup[2].to_bytes())
    mutate(doc)
    return canonical_json(doc)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["body"].update(network_name="othernet"), "bad signature by root"),
        (lambda d: d["body"]["validators"][0].update(stake=1000), "bad signature"),
        (lambda d: d["signatures"].pop(), "missing signature"),
        (lambda d: d["signatures"].append(d["signatures"][1]), "duplicate signature"),
        (lambda d: d["signatures"].append(
            dict(d["signatures"][1], signer="f" * 32)), "unexpected signature"),
        (lambda d: d["signatures"][0].update(algorithm="ecdsa-p256-sha256"), "unexpected signature"),
        (lambda d: d["body"].update(version=2), "version"),
        (lambda d: d["body"].update(extra="x"), "Extra inputs"),
        (lambda d: d["body"].update(origin="Trust.Example.NET"), "origin"),
        (lambda d: d["body"].update(validators=[]), "validators"),
        (lambda d: d["body"]["validators"][0].update(node_id="0" * 32), "node id does not match"),
        (lambda d: d["body"]["validators"][1].update(
            ed25519_public_key=d["body"]["validators"][0]["ed25519_public_key"]), "node id"),
        (lambda d: d["body"]["validators"][0].update(
            ml_dsa_65_public_key=d["body"]["validators"][0]["ed25519_public_key"]), "ML-DSA-65"),
        (lambda d: d["body"].update(root_certificate="AAAA"), "root certificate"),
        (lambda d: d["body"]["parameters"].update(stake_quorum_numerator=1), "quorum"),
    ],
)
def test_defects_are_named(setup, mutate, message: str) -> None:
    data = _mutated(setup, mutate)
    with pytest.raises(GenesisError, match=message):
        verify_genesis(data, genesis_pin(data))


def test_validator_signatures_are_required_even_when_root_signs(setup) -> None:
    """A root-key holder alone cannot change the validator set."""
    root_key, founders, _ = setup
    intruder = _founder(1000)

    def add_intruder(doc: dict) -> None:
        doc["body"]["validators"].append(intruder.validator().model_dump())

    doc = json.loads(setup[2].to_bytes())
    add_intruder(doc)
    data = _resign(doc, (root_key, founders))  # intruder's own keys never sign
    with pytest.raises(GenesisError, match=f"missing signature by {intruder.node_id}"):
        verify_genesis(data, genesis_pin(data))
    data = _resign(doc, (root_key, founders + [intruder]))
    assert verify_genesis(data, genesis_pin(data)).body.validators[-1].stake == 1000


def test_non_canonical_bytes_rejected(setup) -> None:
    pretty = json.dumps(json.loads(setup[2].to_bytes()), indent=1).encode()
    with pytest.raises(GenesisError, match="canonical"):
        verify_genesis(pretty, genesis_pin(pretty))


def test_root_must_be_a_self_signed_ca(setup, now: datetime) -> None:
    root_key, founders, _ = setup
    # Self-signed with the root's key, but no BasicConstraints: not a CA.
    leaf = signed(cert_builder("not a CA", root_key.public_key(), serial=1, not_before=now,
                               days=365), root_key)
    doc = json.loads(setup[2].to_bytes())
    doc["body"]["root_certificate"] = der_b64(leaf)
    data = _resign(doc, (root_key, founders))
    with pytest.raises(GenesisError, match="lacks"):
        verify_genesis(data, genesis_pin(data))


def test_parse_genesis_file_from_disk(node, data_dir: Path) -> None:
    data = (data_dir / "genesis.json").read_bytes()
    assert genesis_pin(data) == node.pin
    assert parse_genesis(data).body.origin == "trust.example.net."
