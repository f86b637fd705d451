"""The genesis document: what a TrustChain network is, signed by its founders.

The document is canonical JSON (see :mod:`trustchain.canonical`) of the form::

    {"body": {...}, "signatures": [{"signer", "algorithm", "value"}, ...]}

``body`` names the network and its zone origin, carries the self-signed
genesis root certificate, the initial validator set with stakes, and the
parameters of the four consensus proofs.  Every signer signs the bytes
``b"TrustChain genesis v1\\0" + canonical_json(body)``:

* the genesis root key (ECDSA; SHA-384 for P-384, SHA-256 for P-256),
* each validator's Ed25519 key **and** its ML-DSA-65 key (a hybrid
  signature: forging the validator set needs both schemes broken).

The SHA-256 of the document's bytes is the network's trust anchor (the
*pin*): other nodes and operators compare it out of band.  Verification
accepts only the canonical bytes, so the pin, the signatures and the parsed
content always describe the same document.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa
from cryptography.hazmat.primitives.serialization import Encoding, load_der_public_key
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bootstrap.root import signature_hash
from trustchain.canonical import canonical_json, parse_canonical_json
from trustchain.consensus.parameters import ProofParameters
from trustchain.errors import CanonicalJSONError, GenesisError, PinMismatchError
from trustchain.keystore import key_id_for, spki_der

SIGNING_PREFIX = b"TrustChain genesis v1\0"
ROOT_SIGNER = "root"

B64 = Annotated[str, Field(pattern=r"^[A-Za-z0-9+/]+={0,2}$")]
_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
#: A lower-case absolute domain name with its trailing dot.
ORIGIN_PATTERN = rf"^(?:{_LABEL}\.)+$"
NETWORK_NAME_PATTERN = rf"^{_LABEL}$"


class Validator(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    node_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    ed25519_public_key: B64  # SubjectPublicKeyInfo DER
    ml_dsa_65_public_key: B64  # SubjectPublicKeyInfo DER
    stake: int = Field(ge=1, le=2**53 - 1)


class GenesisBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: Literal[1] = 1
    network_name: str = Field(pattern=NETWORK_NAME_PATTERN)
    origin: str = Field(pattern=ORIGIN_PATTERN, max_length=254)
    created_at: str = Field(pattern=_TIMESTAMP)
    root_certificate: B64  # DER
    validators: list[Validator] = Field(min_length=1, max_length=1000)
    parameters: ProofParameters


Algorithm = Literal["ecdsa-p256-sha256", "ecdsa-p384-sha384", "ed25519", "ml-dsa-65"]


class Signature(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    signer: str = Field(max_length=64)
    algorithm: Algorithm
    value: B64


class GenesisDocument(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    body: GenesisBody
    signatures: list[Signature] = Field(max_length=3000)

    def to_bytes(self) -> bytes:
        return canonical_json(self.model_dump(mode="json"))

    @property
    def root_certificate(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(base64.b64decode(self.body.root_certificate))


def format_timestamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def signing_input(body: GenesisBody) -> bytes:
    return SIGNING_PREFIX + canonical_json(body.model_dump(mode="json"))


def genesis_pin(data: bytes) -> str:
    """The trust anchor: lower-case hex SHA-256 of the document's bytes."""
    return hashlib.sha256(data).hexdigest()


def normalise_pin(pin: str) -> str:
    """Accept ``HEX`` or ``sha256:HEX`` in either case; return lower-case hex.

    :raises GenesisError: if ``pin`` is not a SHA-256 in hex.
    """
    value = pin.strip().lower().removeprefix("sha256:")
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise GenesisError(f"{pin!r} is not a SHA-256 pin (64 hex digits)")
    return value


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _root_algorithm(key: ec.EllipticCurvePublicKey) -> Algorithm:
    return "ecdsa-p384-sha384" if key.curve.key_size >= 384 else "ecdsa-p256-sha256"


class ValidatorKeys:
    """A founding validator's signing keys, as held in its key store."""

    def __init__(
        self, ed25519_key: ed25519.Ed25519PrivateKey, ml_dsa_key: mldsa.MLDSA65PrivateKey,
        stake: int,
    ) -> None:
        self.ed25519_key = ed25519_key
        self.ml_dsa_key = ml_dsa_key
        self.stake = stake

    @property
    def node_id(self) -> str:
        return key_id_for(self.ed25519_key.public_key())

    def validator(self) -> Validator:
        return Validator(
            node_id=self.node_id,
            ed25519_public_key=_b64(spki_der(self.ed25519_key.public_key())),
            ml_dsa_65_public_key=_b64(spki_der(self.ml_dsa_key.public_key())),
            stake=self.stake,
        )


def create_genesis(
    *,
    network_name: str,
    origin: str,
    root_key: ec.EllipticCurvePrivateKey,
    root_certificate: x509.Certificate,
    validators: Iterable[ValidatorKeys],
    parameters: ProofParameters,
    now: datetime,
) -> GenesisDocument:
    """Build and sign a genesis document.

    :raises GenesisError: if the inputs do not form a valid document.
    """
    founders = list(validators)
    try:
        body = GenesisBody(
            network_name=network_name,
            origin=origin,
            created_at=format_timestamp(now),
            root_certificate=_b64(root_certificate.public_bytes(Encoding.DER)),
            validators=[v.validator() for v in founders],
            parameters=parameters,
        )
    except ValidationError as exc:
        raise GenesisError(_first_problem(exc)) from None
    message = signing_input(body)
    signatures = [
        Signature(
            signer=ROOT_SIGNER,
            algorithm=_root_algorithm(root_key.public_key()),
            value=_b64(root_key.sign(message, ec.ECDSA(signature_hash(root_key)))),
        )
    ]
    for founder in founders:
        signatures.append(
            Signature(signer=founder.node_id, algorithm="ed25519",
                      value=_b64(founder.ed25519_key.sign(message)))
        )
        signatures.append(
            Signature(signer=founder.node_id, algorithm="ml-dsa-65",
                      value=_b64(founder.ml_dsa_key.sign(message)))
        )
    document = GenesisDocument(body=body, signatures=signatures)
    check_genesis(document)  # never hand out a document we would not accept
    return document


def verify_genesis(data: bytes, pin: str) -> GenesisDocument:
    """Verify a genesis document against its pin and return it.

    Checks, in order: the SHA-256 of ``data`` equals ``pin``; ``data`` is
    canonical JSON of a well-formed document; the root certificate is a
    self-signed CA certificate; every required signature (root, and each
    validator's Ed25519 and ML-DSA-65) is present exactly once and valid, and
    there are no others.

    :raises PinMismatchError: if the hash differs from the pin.
    :raises GenesisError: for any other defect, naming it.
    """
    expected = normalise_pin(pin)
    actual = genesis_pin(data)
    if not hmac.compare_digest(expected, actual):
        raise PinMismatchError(
            f"genesis document does not match the pin: its SHA-256 is {actual}, the pin {expected}"
        )
    return parse_genesis(data)


def parse_genesis(data: bytes) -> GenesisDocument:
    """Parse and fully check a genesis document whose bytes are already trusted
    to be the intended ones (e.g. because their hash matched a pin)."""
    try:
        raw: Any = parse_canonical_json(data)
        document = GenesisDocument.model_validate(raw)
    except CanonicalJSONError as exc:
        raise GenesisError(f"genesis document: {exc}") from None
    except ValidationError as exc:
        raise GenesisError(_first_problem(exc)) from None
    try:
        check_genesis(document)
    except GenesisError as exc:
        message = str(exc)
        raise GenesisError(
            message if message.startswith("genesis") else f"genesis document: {message}"
        ) from None
    return document


def check_genesis(document: GenesisDocument) -> None:
    """Check the root certificate, the validator set and every signature."""
    body = document.body
    try:
        root = document.root_certificate
    except (ValueError, UnsupportedAlgorithm, binascii.Error, x509.InvalidVersion) as exc:
        raise GenesisError(f"genesis root certificate does not parse: {exc}") from None
    root_key = _check_root(root)

    message = signing_input(body)
    required: dict[tuple[str, str], Any] = {
        (ROOT_SIGNER, _root_algorithm(root_key)): root_key
    }
    for validator in body.validators:
        ed_key = _load_key(validator.ed25519_public_key, ed25519.Ed25519PublicKey, validator, "Ed25519")
        ml_key = _load_key(validator.ml_dsa_65_public_key, mldsa.MLDSA65PublicKey, validator, "ML-DSA-65")
        if key_id_for(ed_key) != validator.node_id:
            raise GenesisError(f"validator {validator.node_id}: node id does not match its Ed25519 key")
        if (validator.node_id, "ed25519") in required:
            raise GenesisError(f"validator {validator.node_id} is listed twice")
        required[(validator.node_id, "ed25519")] = ed_key
        required[(validator.node_id, "ml-dsa-65")] = ml_key

    seen: set[tuple[str, str]] = set()
    for signature in document.signatures:
        slot = (signature.signer, signature.algorithm)
        if slot not in required:
            raise GenesisError(f"unexpected signature by {signature.signer} ({signature.algorithm})")
        if slot in seen:
            raise GenesisError(f"duplicate signature by {signature.signer} ({signature.algorithm})")
        seen.add(slot)
        key = required[slot]
        try:
            value = base64.b64decode(signature.value, validate=True)
        except binascii.Error:
            raise GenesisError(
                f"signature by {signature.signer} ({signature.algorithm}) is not base64"
            ) from None
        try:
            if isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(value, message, ec.ECDSA(signature_hash(key)))
            else:
                key.verify(value, message)
        except InvalidSignature:
            raise GenesisError(
                f"bad signature by {signature.signer} ({signature.algorithm})"
            ) from None
    missing = sorted(set(required) - seen)
    if missing:
        signer, algorithm = missing[0]
        raise GenesisError(f"missing signature by {signer} ({algorithm})")


def _check_root(root: x509.Certificate) -> ec.EllipticCurvePublicKey:
    # cryptography parses certificate fields lazily: any access can raise ValueError.
    try:
        return _check_root_fields(root)
    except (ValueError, UnsupportedAlgorithm, x509.DuplicateExtension) as exc:
        raise GenesisError(f"genesis root certificate is malformed: {exc}") from None


def _check_root_fields(root: x509.Certificate) -> ec.EllipticCurvePublicKey:
    key = root.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in (
        "secp256r1", "secp384r1",
    ):
        raise GenesisError("genesis root key must be ECDSA P-256 or P-384")
    if root.issuer != root.subject:
        raise GenesisError("genesis root certificate is not self-issued")
    try:
        root.verify_directly_issued_by(root)
    except (ValueError, InvalidSignature, TypeError) as exc:
        raise GenesisError(f"genesis root certificate is not validly self-signed: {exc}") from None
    try:
        constraints = root.extensions.get_extension_for_class(x509.BasicConstraints)
        usage = root.extensions.get_extension_for_class(x509.KeyUsage)
    except x509.ExtensionNotFound as exc:
        raise GenesisError(f"genesis root certificate lacks {exc.oid._name}") from None
    if not (constraints.critical and constraints.value.ca):
        raise GenesisError("genesis root certificate is not a CA (basicConstraints)")
    if not usage.value.key_cert_sign:
        raise GenesisError("genesis root certificate may not sign certificates (keyUsage)")
    return key


def _load_key(b64: str, cls: type, validator: Validator, label: str) -> Any:
    try:
        key = load_der_public_key(base64.b64decode(b64))
    except (ValueError, UnsupportedAlgorithm, binascii.Error):
        key = None
    if not isinstance(key, cls):
        raise GenesisError(f"validator {validator.node_id}: invalid {label} public key")
    return key


def _first_problem(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err["loc"]) or "document"
    more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
    return f"genesis document: {where}: {err['msg']}{more}"

