"""The signed envelope of every ACME POST (RFC 8555 section 6.2), checked in full.

A request body is a JWS in the flattened JSON serialization, sent as
``application/jose+json``, with exactly a ``protected`` header, a ``payload`` (empty
for POST-as-GET) and one ``signature``; the protected header names the algorithm,
exactly one of ``jwk`` (a new account, or a revocation by the certificate's key) and
``kid`` (an account URL), a ``nonce``, and the ``url`` the request was sent to.

:func:`parse` checks the envelope and its header; the caller then finds the key (the
``jwk``, or the account that ``kid`` names) and :func:`verify` checks the signature.
The signature itself is joserfc's (authlib's JOSE library: RFC 7515/7518/8037, key
types matched to the algorithm, ECDSA as raw r||s), not code of ours.
"""

from __future__ import annotations

import base64
import binascii
import json
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from joserfc import jws as joserfc_jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry, OctKey, OKPKey, RSAKey
from joserfc.registry import HeaderParameter

from trustchain.ca.acme.problems import AcmeProblem

#: The algorithms accepted (RFC 8555 section 6.2: ES256 at least; EdDSA is Ed25519).
ALGORITHMS = ("RS256", "ES256", "ES384", "EdDSA")
JOSE_TYPE = "application/jose+json"
MIN_RSA_BITS = 2048
#: ACME's header fields, known to joserfc (required or not: :func:`parse` decides).
_REGISTRY = joserfc_jws.JWSRegistry(header_registry={
    "nonce": HeaderParameter("ACME anti-replay nonce", "str"),
    "url": HeaderParameter("the request's URL", "str")}, algorithms=ALGORITHMS)
# joserfc's default header bound (512 bytes) is below an RSA account key's jwk; the edge
# bounds the whole body (64 KiB) already.
_REGISTRY.max_header_length = 8192
_REGISTRY.max_signature_length = 2048


@dataclass(frozen=True)
class SignedRequest:
    """A parsed, not yet verified, request."""

    jws: Mapping[str, str]  # the flattened JWS as sent
    header: Mapping[str, Any]  # its protected header
    payload: bytes  # empty for POST-as-GET

    @property
    def nonce(self) -> str:
        return str(self.header["nonce"])

    @property
    def kid(self) -> str | None:
        kid = self.header.get("kid")
        return kid if isinstance(kid, str) else None

    @property
    def jwk(self) -> Mapping[str, Any] | None:
        jwk = self.header.get("jwk")
        return jwk if isinstance(jwk, dict) else None

    def json(self) -> dict[str, Any] | None:
        """The payload as a JSON object, or None for POST-as-GET.

        :raises AcmeProblem: malformed, not a JSON object.
        """
        if not self.payload:
            return None
        try:
            value = json.loads(self.payload)
        except (ValueError, UnicodeDecodeError):
            raise AcmeProblem("malformed", "the payload is not JSON") from None
        if not isinstance(value, dict):
            raise AcmeProblem("malformed", "the payload is not a JSON object")
        return value


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    """base64url without padding, as JOSE writes it (padding, or other alphabets, refused).

    :raises ValueError: not that.
    """
    if not isinstance(text, str) or "=" in text or any(c in text for c in "+/ \n"):
        raise ValueError("not base64url without padding")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


def parse(body: bytes, content_type: str | None, url: str) -> SignedRequest:
    """The request's JWS envelope, checked (everything but the signature).

    :raises AcmeProblem: 415 for another content type; malformed, badSignatureAlgorithm,
        badNonce or unauthorized (a ``url`` other than ``url``) otherwise.
    """
    if (content_type or "").strip().lower() != JOSE_TYPE:
        raise AcmeProblem("malformed", f"the request's Content-Type must be {JOSE_TYPE}",
                          status=415)
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise AcmeProblem("malformed", "the body is not a JWS in JSON") from None
    if not isinstance(envelope, dict) or set(envelope) != {"protected", "payload", "signature"} \
            or not all(isinstance(v, str) for v in envelope.values()):
        raise AcmeProblem("malformed", "a JWS in the flattened JSON serialization with only "
                                       "protected, payload and signature")
    try:
        header = json.loads(b64url_decode(envelope["protected"]))
        payload = b64url_decode(envelope["payload"])
        b64url_decode(envelope["signature"])
    except (ValueError, UnicodeDecodeError):
        raise AcmeProblem("malformed", "the JWS's parts are not base64url JSON") from None
    if not isinstance(header, dict):
        raise AcmeProblem("malformed", "the protected header is not a JSON object")
    if header.get("alg") not in ALGORITHMS:
        raise AcmeProblem("badSignatureAlgorithm",
                          f"algorithm {str(header.get('alg'))[:20]!r} is not accepted",
                          extra={"algorithms": list(ALGORITHMS)})
    if ("jwk" in header) == ("kid" in header):
        raise AcmeProblem("malformed", "the protected header has exactly one of jwk and kid")
    if "kid" in header and not isinstance(header["kid"], str) or \
            "jwk" in header and not isinstance(header["jwk"], dict):
        raise AcmeProblem("malformed", "kid is an account URL, jwk a JSON Web Key")
    if set(header) - {"alg", "jwk", "kid", "nonce", "url"}:
        raise AcmeProblem("malformed", "the protected header has fields ACME does not "
                                       "define here")
    if not isinstance(header.get("nonce"), str) or not header["nonce"]:
        raise AcmeProblem("badNonce", "the protected header has no nonce")
    if header.get("url") != url:
        raise AcmeProblem("unauthorized", "the protected header's url is not the URL this "
                                          "request was sent to")
    return SignedRequest(envelope, header, payload)


def parse_inner(payload: bytes, url: str) -> SignedRequest:
    """The inner JWS of a key change (RFC 8555 section 7.3.5): signed by the new key, its
    ``jwk`` in the header, the outer request's ``url``, and no nonce.

    :raises AcmeProblem: malformed, or unauthorized for another url.
    """
    try:
        envelope = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise AcmeProblem("malformed", "the key change's payload is not a JWS") from None
    if not isinstance(envelope, dict) or set(envelope) != {"protected", "payload", "signature"} \
            or not all(isinstance(v, str) for v in envelope.values()):
        raise AcmeProblem("malformed", "the key change's payload is a flattened JWS")
    try:
        header = json.loads(b64url_decode(envelope["protected"]))
        inner = b64url_decode(envelope["payload"])
    except (ValueError, UnicodeDecodeError):
        raise AcmeProblem("malformed", "the inner JWS's parts are not base64url") from None
    if not isinstance(header, dict) or header.get("alg") not in ALGORITHMS \
            or not isinstance(header.get("jwk"), dict) or "kid" in header \
            or "nonce" in header or set(header) - {"alg", "jwk", "url"}:
        raise AcmeProblem("malformed", "the inner JWS has alg, jwk (the new key) and url, "
                                       "no kid and no nonce")
    if header.get("url") != url:
        raise AcmeProblem("unauthorized", "the inner JWS's url is not the key change URL")
    return SignedRequest(envelope, header, inner)


def public_key(jwk: Mapping[str, Any]) -> ECKey | RSAKey | OKPKey:
    """An account key: EC P-256 or P-384, RSA of 2048 bits or more, or Ed25519; public.

    :raises AcmeProblem: badPublicKey.
    """
    if not isinstance(jwk, Mapping) or any(k in jwk for k in ("d", "p", "q", "dp", "dq", "qi")):
        raise AcmeProblem("badPublicKey", "the jwk is not a public key")
    try:
        with warnings.catch_warnings():  # (weak keys warn; they are refused below)
            warnings.simplefilter("ignore")
            key = JWKRegistry.import_key(dict(jwk))
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise AcmeProblem("badPublicKey", f"the jwk is not a key: {exc}") from None
    if isinstance(key, ECKey) and key.curve_name in ("P-256", "P-384"):
        return key
    if isinstance(key, RSAKey) and key.public_key.key_size >= MIN_RSA_BITS:
        return key
    if isinstance(key, OKPKey) and key.curve_name == "Ed25519":
        return key
    raise AcmeProblem("badPublicKey", "account keys are EC P-256 or P-384, RSA of 2048 bits "
                                      "or more, or Ed25519")


def verify(request: SignedRequest, jwk: Mapping[str, Any]) -> None:
    """Check the request's signature with ``jwk``.

    :raises AcmeProblem: badPublicKey, or malformed (the signature does not verify, or
        the algorithm does not fit the key).
    """
    key = public_key(jwk)
    try:
        with warnings.catch_warnings():  # "EdDSA is deprecated via RFC 9864": ACME uses it
            warnings.simplefilter("ignore")
            joserfc_jws.deserialize_json(dict(request.jws), key,  # type: ignore[call-overload]
                                         registry=_REGISTRY)
    except (JoseError, ValueError, TypeError) as exc:
        raise AcmeProblem("malformed", f"the JWS signature does not verify with the "
                                       f"account key ({type(exc).__name__})") from None


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 thumbprint (SHA-256, base64url): the key's identity, and in key
    authorizations (RFC 8555 section 8.1)."""
    return str(public_key(jwk).thumbprint())


def canonical_jwk(jwk: Mapping[str, Any]) -> dict[str, Any]:
    """The key's required public members only (what is stored and shown)."""
    return dict(public_key(jwk).as_dict(private=False))


#: MACs an External Account Binding may use (RFC 8555 7.3.4).
EAB_ALGORITHMS = ("HS256", "HS384", "HS512")
_EAB_REGISTRY = joserfc_jws.JWSRegistry(header_registry={
    "url": HeaderParameter("the newAccount URL", "str")}, algorithms=EAB_ALGORITHMS)
_EAB_REGISTRY.max_header_length = 8192


def verify_eab(binding: Any, url: str, account_jwk: Mapping[str, Any],
               key_of: Callable[[str], bytes | None]) -> str:
    """An External Account Binding (RFC 8555 7.3.4): a flattened JWS MAC'd with the EAB
    key ``kid`` names (``key_of``), its ``url`` the newAccount URL, no nonce, its payload
    the account's own key.  Returns that ``kid``.

    :raises AcmeProblem: malformed, or unauthorized (an unknown kid, a bad MAC).
    """
    if not isinstance(binding, dict) or set(binding) != {"protected", "payload", "signature"} \
            or not all(isinstance(v, str) for v in binding.values()):
        raise AcmeProblem("malformed", "externalAccountBinding is a flattened JWS")
    try:
        header = json.loads(b64url_decode(binding["protected"]))
        payload = json.loads(b64url_decode(binding["payload"]))
    except (ValueError, UnicodeDecodeError):
        raise AcmeProblem("malformed", "the binding's parts are not base64url JSON") from None
    if not isinstance(header, dict) or header.get("alg") not in EAB_ALGORITHMS or \
            not isinstance(header.get("kid"), str) or "nonce" in header or \
            set(header) - {"alg", "kid", "url"}:
        raise AcmeProblem("malformed", "the binding's header has alg (HS256, HS384 or "
                                       "HS512), kid and url, and no nonce")
    if header.get("url") != url:
        raise AcmeProblem("unauthorized", "the binding's url is not the newAccount URL")
    if not isinstance(payload, dict) or thumbprint(payload) != thumbprint(account_jwk):
        raise AcmeProblem("malformed", "the binding's payload is not the account's key")
    secret = key_of(header["kid"])
    if secret is None:
        raise AcmeProblem("unauthorized", "no External Account Binding key has that kid")
    try:
        joserfc_jws.deserialize_json(dict(binding), OctKey.import_key(secret),  # type: ignore[call-overload]
                                     registry=_EAB_REGISTRY)
    except (JoseError, ValueError, TypeError):
        raise AcmeProblem("unauthorized", "the binding's MAC does not verify") from None
    return str(header["kid"])
