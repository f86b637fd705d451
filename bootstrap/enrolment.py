"""Enrolment: how a new machine becomes a node of an existing network.

This breaks the transport/certificate cycle without ever trusting blindly:

1. The joiner has the genesis document and its pin (out of band).  It
   verifies the genesis, creates its keys, and connects to a node over
   server-authenticated TLS, checking the node against the pinned genesis
   root.  It has no certificate yet, so it is anonymous.
2. ``enrol.challenge`` gives it a fresh random challenge (single use, short
   lived).  ``enrol.request`` sends a CSR for its transport key (the CSR's
   self-signature proves possession of that key) and its consensus public
   keys with Ed25519 and ML-DSA-65 signatures over the challenge and those
   keys (proving possession of both, and freshness).
3. The request waits for admission: by consensus (``enrol.plot`` and
   ``enrol.admit``, :mod:`trustchain.wiring.admission`: the joiner's four
   proofs, committed as a ``node-admission`` operation), or by the decision
   of this node's operator (``trustchain node approve``, admin only; such a
   node is not a member of the federation's ledger and never a validator).
   The node then issues the joiner's node certificate from its
   infrastructure intermediate.
4. ``enrol.status`` hands out the certificate chain (public data).  The
   joiner reconnects with mutual TLS.

Message formats are canonical JSON validated by the models below.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa
from cryptography.hazmat.primitives.serialization import Encoding, load_der_public_key
from pydantic import BaseModel, ConfigDict, Field

from bootstrap.transport_certs import build_leaf, node_dns_names, node_uri
from trustchain.canonical import canonical_json
from trustchain.errors import BadRequest
from trustchain.identity import Peer, TlsIdentity
from trustchain.keystore import key_id_for, spki_der
from trustchain.stoq.router import parse_message
from trustchain.storage.node import Enrolment, NodeStore

SIGNING_PREFIX = b"TrustChain enrolment v1\0"
CHALLENGE_LIFETIME = timedelta(minutes=5)
MAX_OPEN_CHALLENGES = 10_000
MAX_PENDING = 1_000

B64 = Annotated[str, Field(pattern=r"^[A-Za-z0-9+/]+={0,2}$", max_length=20_000)]


class ChallengeResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")
    challenge: B64
    expires_at: str


class EnrolmentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    challenge: B64
    csr: B64  # DER
    ed25519_public_key: B64  # SubjectPublicKeyInfo DER
    ml_dsa_65_public_key: B64  # SubjectPublicKeyInfo DER
    ed25519_signature: B64
    ml_dsa_65_signature: B64


class EnrolmentState(BaseModel):
    model_config = ConfigDict(extra="forbid")
    node_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    status: Literal["pending", "approved", "rejected"]
    certificate_chain: list[B64] = Field(default_factory=list)  # DER, leaf first


class NodeIdRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    node_id: str = Field(pattern=r"^[0-9a-f]{32}$")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def signing_input(challenge: bytes, csr_der: bytes, ed_spki: bytes, ml_spki: bytes) -> bytes:
    return SIGNING_PREFIX + b"".join(
        hashlib.sha256(part).digest() for part in (challenge, csr_der, ed_spki, ml_spki)
    )


def build_request(
    challenge: bytes, csr: x509.CertificateSigningRequest,
    ed25519_key: ed25519.Ed25519PrivateKey, ml_dsa_key: mldsa.MLDSA65PrivateKey,
) -> EnrolmentRequest:
    """The joiner's side: sign the challenge together with everything it vouches for."""
    csr_der = csr.public_bytes(Encoding.DER)
    ed_spki = spki_der(ed25519_key.public_key())
    ml_spki = spki_der(ml_dsa_key.public_key())
    message = signing_input(challenge, csr_der, ed_spki, ml_spki)
    return EnrolmentRequest(
        challenge=_b64(challenge), csr=_b64(csr_der), ed25519_public_key=_b64(ed_spki),
        ml_dsa_65_public_key=_b64(ml_spki),
        ed25519_signature=_b64(ed25519_key.sign(message)),
        ml_dsa_65_signature=_b64(ml_dsa_key.sign(message)),
    )


class EnrolmentService:
    """The admitting node's side, behind the ``enrol.*`` and ``admin.*`` methods.

    ``now`` and ``random_bytes`` are passed in so the logic is testable with a
    scripted clock.  Challenges live in memory (a restart voids them; the
    joiner asks again); enrolments live in the node database.
    """

    def __init__(
        self, store: NodeStore, *, network: str, origin: str, issuer: TlsIdentity | None,
        now: Callable[[], datetime], random_bytes: Callable[[int], bytes],
    ) -> None:
        self._store = store
        self._network = network
        self._origin = origin
        self._issuer = issuer
        self._now = now
        self._random = random_bytes
        self._challenges: dict[bytes, datetime] = {}

    # --- public methods ------------------------------------------------------

    def challenge(self, message: bytes, peer: Peer | None) -> bytes:
        now = self._now()
        self._challenges = {c: t for c, t in self._challenges.items() if t > now}
        if len(self._challenges) >= MAX_OPEN_CHALLENGES:
            raise BadRequest("too many open enrolment challenges; try again shortly")
        challenge = self._random(32)
        expires = now + CHALLENGE_LIFETIME
        self._challenges[challenge] = expires
        return canonical_json(ChallengeResponse(
            challenge=_b64(challenge), expires_at=expires.isoformat()).model_dump())

    def request(self, message: bytes, peer: Peer | None) -> bytes:
        req = parse_message(EnrolmentRequest, message)
        try:
            challenge = base64.b64decode(req.challenge)
            csr_der = base64.b64decode(req.csr)
            ed_spki = base64.b64decode(req.ed25519_public_key)
            ml_spki = base64.b64decode(req.ml_dsa_65_public_key)
            ed_sig = base64.b64decode(req.ed25519_signature)
            ml_sig = base64.b64decode(req.ml_dsa_65_signature)
        except binascii.Error:
            raise BadRequest("invalid base64") from None
        expires = next(
            (t for c, t in self._challenges.items() if hmac.compare_digest(c, challenge)), None
        )
        if expires is None or expires <= self._now():
            raise BadRequest("unknown or expired challenge: ask enrol.challenge for a new one")
        del self._challenges[challenge]  # single use, even if the rest fails
        try:
            csr = x509.load_der_x509_csr(csr_der)
            csr_ok = csr.is_signature_valid
            csr_key = csr.public_key()
            ed_key = load_der_public_key(ed_spki)
            ml_key = load_der_public_key(ml_spki)
        except (ValueError, UnsupportedAlgorithm, x509.InvalidVersion):
            raise BadRequest("the CSR or a public key does not parse") from None
        if not csr_ok:
            raise BadRequest("the CSR's signature is invalid")
        if not (isinstance(csr_key, ec.EllipticCurvePublicKey) and csr_key.curve.name == "secp256r1"):
            raise BadRequest("the transport key must be ECDSA P-256")
        if not isinstance(ed_key, ed25519.Ed25519PublicKey):
            raise BadRequest("ed25519_public_key is not an Ed25519 key")
        if not isinstance(ml_key, mldsa.MLDSA65PublicKey):
            raise BadRequest("ml_dsa_65_public_key is not an ML-DSA-65 key")
        signed = signing_input(challenge, csr_der, ed_spki, ml_spki)
        try:
            ed_key.verify(ed_sig, signed)
            ml_key.verify(ml_sig, signed)
        except InvalidSignature:
            raise BadRequest("a signature over the challenge is invalid") from None
        node_id = key_id_for(ed_key)
        existing = self._store.enrolment(node_id)
        if existing is not None and existing.status != "pending":
            return self.state(existing)
        if existing is None and self._store.count_enrolments("pending") >= MAX_PENDING:
            raise BadRequest("too many pending enrolments; try again later")
        self._store.put_enrolment(Enrolment(
            node_id=node_id, status="pending", csr_der=csr_der, ed25519_spki=ed_spki,
            ml_dsa_65_spki=ml_spki, requested_at=self._now().isoformat(), decided_at=None,
            chain_der=[],
        ))
        return canonical_json(EnrolmentState(node_id=node_id, status="pending").model_dump())

    def status(self, message: bytes, peer: Peer | None) -> bytes:
        return self.state(self._lookup(message))

    def _lookup(self, message: bytes) -> Enrolment:
        """The enrolment named by a ``{"node_id": ...}`` message."""
        req = parse_message(NodeIdRequest, message)
        enrolment = self._store.enrolment(req.node_id)
        if enrolment is None:
            raise BadRequest(f"no enrolment for node {req.node_id}")
        return enrolment

    # --- admin methods -------------------------------------------------------

    def list(self, message: bytes, peer: Peer | None) -> bytes:
        return canonical_json([
            {"node_id": e.node_id, "status": e.status, "requested_at": e.requested_at,
             "decided_at": e.decided_at}
            for e in self._store.enrolments()
        ])

    def approve(self, message: bytes, peer: Peer | None) -> bytes:
        return self.state(self.issue(self._lookup(message).node_id))

    def enrolment(self, node_id: str) -> Enrolment | None:
        return self._store.enrolment(node_id)

    def issue(self, node_id: str) -> Enrolment:
        """Issue the node certificate of a pending enrolment (at once if already issued):
        after the operator's approval, or once the node's admission is committed.

        :raises BadRequest: no such enrolment, or this node cannot issue.
        """
        enrolment = self._store.enrolment(node_id)
        if enrolment is None:
            raise BadRequest(f"no enrolment for node {node_id}")
        if enrolment.status == "approved":
            return enrolment
        if self._issuer is None:
            raise BadRequest("this node holds no issuing intermediate; approve on a founding node")
        csr = x509.load_der_x509_csr(enrolment.csr_der)
        public_key = csr.public_key()
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        leaf = build_leaf(
            self._issuer.private_key, self._issuer.certificate, public_key,
            common_name=f"node {node_id}", network=self._network,
            uri=node_uri(self._network, node_id),
            dns_names=node_dns_names(self._origin, node_id), server=True, now=self._now(),
        )
        approved = Enrolment(
            **{**enrolment.__dict__, "status": "approved", "decided_at": self._now().isoformat(),
               "chain_der": [leaf.public_bytes(Encoding.DER),
                             self._issuer.certificate.public_bytes(Encoding.DER)]}
        )
        self._store.put_enrolment(approved)
        return approved

    def reject(self, message: bytes, peer: Peer | None) -> bytes:
        enrolment = self._lookup(message)
        if enrolment.status == "approved":
            raise BadRequest("already approved (revocation arrives with the CA issue)")
        rejected = Enrolment(**{**enrolment.__dict__, "status": "rejected",
                                "decided_at": self._now().isoformat()})
        self._store.put_enrolment(rejected)
        return self.state(rejected)

    @staticmethod
    def state(enrolment: Enrolment) -> bytes:
        """What ``enrol.status`` answers for ``enrolment``."""
        return canonical_json(EnrolmentState(
            node_id=enrolment.node_id, status=enrolment.status,  # type: ignore[arg-type]
            certificate_chain=[_b64(d) for d in enrolment.chain_der],
        ).model_dump())
