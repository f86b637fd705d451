"""Bootstrap targets: genesis documents and enrolment requests.

* ``genesis``: :func:`bootstrap.genesis.verify_genesis` against the pin of the
  very bytes given (so the checks after the pin run); the rule is a document,
  or :class:`GenesisError`.  Seeds are real documents (P-256 and P-384 roots,
  one and two hybrid validators) whose JSON, base64 and DER the mutators change.
* ``enrolment``: :meth:`EnrolmentService.request` on a service whose open
  challenge is the seeds' (a fresh one before each example); the rule is an
  enrolment state, or :class:`BadRequest`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa
from cryptography.x509.oid import NameOID

from bootstrap.enrolment import EnrolmentService, build_request
from bootstrap.genesis import ProofParameters, ValidatorKeys, create_genesis, genesis_pin, verify_genesis
from bootstrap.root import build_root_certificate
from tests.fuzz.engine import Target
from tests.fuzz.mutators import JSON_TOKENS, mutate_json
from tests.fuzz.node import at_exit, scratch_dir
from tests.pki import node_pki
from trustchain.errors import BadRequest, GenesisError
from trustchain.identity import TlsIdentity
from trustchain.storage.database import open_database
from trustchain.storage.migrations import migrate
from trustchain.storage.node import NODE_SCHEMA, NodeStore

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
CHALLENGE = b"\x07" * 32


def genesis_target() -> Target:
    seeds = []
    for curve, founders in ((ec.SECP256R1(), 1), (ec.SECP384R1(), 2)):
        root_key = ec.generate_private_key(curve)
        document = create_genesis(
            network_name="testnet", origin="trust.example.net.", root_key=root_key,
            root_certificate=build_root_certificate(root_key, "testnet", NOW),
            validators=[ValidatorKeys(ed25519.Ed25519PrivateKey.generate(),
                                      mldsa.MLDSA65PrivateKey.generate(), 10 * (i + 1))
                        for i in range(founders)],
            parameters=ProofParameters(), now=NOW)
        seeds.append(document.to_bytes())

    def run(data: bytes) -> None:
        verify_genesis(data, genesis_pin(data))

    return Target("genesis", run, (GenesisError,), seeds, JSON_TOKENS, mutate_json,
                  structured_share=0.8)


def enrolment_target() -> Target:
    pki = node_pki(now=NOW)
    db = open_database(scratch_dir())
    at_exit(db.close)
    migrate(db, NODE_SCHEMA)
    service = EnrolmentService(
        NodeStore(db), network="testnet", origin="trust.example.net.",
        issuer=TlsIdentity(pki.ca, [], pki.ca_key), now=lambda: NOW,
        random_bytes=lambda n: CHALLENGE[:n])
    seeds = []
    for curve in (ec.SECP256R1(), ec.SECP384R1()):
        tls = ec.generate_private_key(curve)
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "joiner")]))
               .sign(tls, hashes.SHA256()))
        request = build_request(CHALLENGE, csr, ed25519.Ed25519PrivateKey.generate(),
                                mldsa.MLDSA65PrivateKey.generate())
        seeds.append(request.model_dump_json().encode())

    def run(data: bytes) -> None:
        service.challenge(b"", None)  # the seeds' challenge is open again
        service.request(data, None)

    return Target("enrolment", run, (BadRequest,), seeds, JSON_TOKENS, mutate_json,
                  structured_share=0.8)
