"""The CT target: ``add-chain`` and ``add-pre-chain`` bodies, checked as a log checks them.

A body goes through the same steps as over HTTP and stoq/1: the JSON
arguments (:func:`~transport.methods.json_args`), the method's model, then
:func:`trustchain.ct.log.check_submission` against the log's roots.  The
rule: an entry whose leaf can be built, or :class:`BadSubmission` (or the
edge's :class:`BadRequest`).  The seeds are real chains (certificates and
precertificates, signed directly or by a Precertificate Signing Certificate)
whose DER the mutator changes inside the base64.
"""

from __future__ import annotations

import base64
import json
import random
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding

from tests.fuzz.ca import DER_TOKENS
from tests.fuzz.engine import Target, mutate
from tests.fuzz.mutators import JSON_TOKENS, mutate_json
from tests.pki import cert_builder, der_b64, new_key, node_pki, signed
from transport.methods import Call, json_args
from trustchain.ct.log import PRECERT_SIGNING, BadSubmission, ExpiryRange, check_submission
from trustchain.ct.structs import merkle_tree_leaf
from trustchain.errors import BadRequest
from trustchain.wiring.ct import Submission

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def _chains() -> tuple[tuple[bytes, ...], list[tuple[list[str], bool]]]:
    pki = node_pki(now=NOW)
    ca, ca_key = pki.ca, pki.ca_key
    psc_key = new_key()
    psc = signed(cert_builder("PSC", psc_key.public_key(), issuer=ca, serial=5, not_before=NOW,
                              days=30, ca=True, path_length=0, authority_key_id=True)
                 .add_extension(x509.ExtendedKeyUsage([PRECERT_SIGNING]), critical=False), ca_key)
    key = new_key().public_key()

    def leaf(issuer: x509.Certificate, issuer_key: object, poison: bool) -> x509.Certificate:
        return signed(cert_builder("leaf", key, issuer=issuer, serial=1234, not_before=NOW,
                                   days=30, authority_key_id=True, dns_names=["p.example"],
                                   poison=poison), issuer_key)  # type: ignore[arg-type]

    ed_leaf = signed(cert_builder("ed", ed25519.Ed25519PrivateKey.generate().public_key(),  # type: ignore[arg-type]
                                  issuer=ca, not_before=NOW, days=10, serial=77), ca_key)
    chains = [
        ([der_b64(leaf(ca, ca_key, False)), der_b64(ca)], False),
        ([der_b64(leaf(ca, ca_key, False)), der_b64(ca), der_b64(pki.root)], False),
        ([der_b64(pki.leaf("n2")), der_b64(ca)], False),
        ([der_b64(ed_leaf), der_b64(ca)], False),
        ([der_b64(leaf(ca, ca_key, True)), der_b64(ca)], True),
        ([der_b64(leaf(psc, psc_key, True)), der_b64(psc), der_b64(ca)], True),
        ([der_b64(ca)], False),
    ]
    return (pki.root.public_bytes(Encoding.DER),), chains


def chain_target() -> Target:
    roots, chains = _chains()
    expiries = (ExpiryRange(), ExpiryRange(NOW, NOW + timedelta(days=20)))
    seeds = [json.dumps({"log": "a", "chain": chain, "precert": precert}).encode()
             for chain, precert in chains]

    def run(data: bytes) -> None:
        args = json_args(data)
        submission = Call(args, data, None).parse(Submission)
        precert = args.get("precert") is True
        checked = check_submission(submission.chain, roots, expiries[len(data) % 2], precert)
        merkle_tree_leaf(1, checked.entry, b"")  # the leaf the log would hash

    def structured(rng: random.Random, seed: bytes) -> bytes:
        """Mostly one certificate's DER mutated, else any JSON value."""
        if rng.random() < 0.3:
            return mutate_json(rng, seed)
        document = json.loads(seed)
        chain = document["chain"]
        i = rng.randrange(len(chain))
        chain[i] = base64.b64encode(mutate(rng, base64.b64decode(chain[i]), DER_TOKENS)).decode()
        return json.dumps(document).encode()

    return Target("ct-chain", run, (BadSubmission, BadRequest), seeds, JSON_TOKENS, structured,
                  structured_share=0.8)
