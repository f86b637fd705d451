"""The ACME envelope parser takes any bytes from the wire and refuses what is not a
flattened JWS by the rules with an ACME problem, never another exception (hypothesis);
and requests signed by joserfc for each algorithm verify, with their key only."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from joserfc import jws as joserfc_jws
from joserfc.jwk import ECKey, OKPKey, RSAKey
from joserfc.registry import HeaderParameter

from trustchain.ca.acme import jws
from trustchain.ca.acme.problems import AcmeProblem

URL = "https://ca.example/acme/new-account"
REGISTRY = joserfc_jws.JWSRegistry(header_registry={
    "nonce": HeaderParameter("nonce", "str"), "url": HeaderParameter("url", "str")},
    algorithms=list(jws.ALGORITHMS))
REGISTRY.max_header_length = 8192


def sign(key: ECKey | RSAKey | OKPKey, alg: str, payload: bytes = b"{}") -> bytes:
    header = {"alg": alg, "nonce": "n0nce", "url": URL, "jwk": key.as_dict(private=False)}
    return json.dumps(joserfc_jws.serialize_json({"protected": header}, payload, key,
                                                 registry=REGISTRY)).encode()


@pytest.mark.filterwarnings("ignore::UserWarning")  # joserfc: "EdDSA is deprecated"
@pytest.mark.parametrize(("alg", "make"), [
    ("RS256", lambda: RSAKey.generate_key(2048)), ("ES256", lambda: ECKey.generate_key("P-256")),
    ("ES384", lambda: ECKey.generate_key("P-384")), ("EdDSA", lambda: OKPKey.generate_key("Ed25519"))])
def test_every_algorithm_verifies_with_its_key_only(alg: str, make) -> None:
    key = make()
    request = jws.parse(sign(key, alg), jws.JOSE_TYPE, URL)
    assert request.jwk is not None and request.nonce == "n0nce" and request.json() == {}
    jws.verify(request, request.jwk)
    with pytest.raises(AcmeProblem) as refused:
        jws.verify(request, make().as_dict(private=False))
    assert refused.value.kind == "malformed"


def test_weak_and_private_keys_are_refused() -> None:
    for jwk in (RSAKey.generate_key(1024).as_dict(private=False),
                ECKey.generate_key("P-256").as_dict(private=True), {"kty": "oct", "k": "AA"}):
        with pytest.raises(AcmeProblem) as refused:
            jws.public_key(jwk)
        assert refused.value.kind == "badPublicKey"


@given(st.binary(max_size=600))
def test_any_bytes_are_a_request_or_an_acme_problem(body: bytes) -> None:
    try:
        jws.parse(body, jws.JOSE_TYPE, URL)
    except AcmeProblem:
        pass


@given(st.dictionaries(st.sampled_from(["alg", "jwk", "kid", "nonce", "url", "crit", "b64"]),
                       st.one_of(st.none(), st.text(max_size=8), st.integers(),
                                 st.just(URL), st.sampled_from(jws.ALGORITHMS),
                                 st.dictionaries(st.text(max_size=3), st.text(max_size=3))),
                       max_size=6),
       st.binary(max_size=40))
def test_any_protected_header_is_checked_without_other_errors(header: dict[str, object],
                                                              payload: bytes) -> None:
    body = json.dumps({"protected": jws.b64url(json.dumps(header).encode()),
                       "payload": jws.b64url(payload), "signature": jws.b64url(b"x" * 64)})
    try:
        request = jws.parse(body.encode(), jws.JOSE_TYPE, URL)
    except AcmeProblem:
        return
    assert request.header["url"] == URL and request.nonce
    try:
        jws.verify(request, request.jwk or {})
        request.json()
    except AcmeProblem:
        pass
