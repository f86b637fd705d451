"""The consensus targets: operations as blocks carry them, checked as a validator checks them;
and the wire codec of consensus messages (``consensus-codec``).

Validators never vote for a block they cannot check, so
:meth:`trustchain.consensus.ledger.Ledger.valid` must answer True or False
for any bytes in a block's operations (it may use :func:`decode_entry`,
:func:`verify_entry`, the evidence codec and the four proof verifiers,
whose documented errors are :class:`ProofError` and :class:`EvidenceError`),
and never raise.  Seeds are entries of every kind with real proofs: work,
a 1,000-iteration VDF, stake signatures of 3 of 4 validators (one of them
hybrid, with ML-DSA-65), duplicate-vote evidence, and an admission whose
proof of space is random bytes of the right length.

:func:`trustchain.consensus.codec.decode_message` reads what peers send:
it returns a message or raises :class:`ConsensusCodecError`, and what it
returns encodes back to exactly the bytes read (one byte form per message).
Seeds are a prevote, a nil precommit, a proposal with operations, and a
hybrid decision, all really signed.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa

from tests.fuzz.engine import Target
from tests.fuzz.mutators import JSON_TOKENS, mutate_json
from tests.trustchain.consensus.test_operations import CHAIN, PARAMS, PREVIOUS, REQUESTER, SEED
from trustchain.consensus.codec import decode_message, encode_message
from trustchain.consensus.evidence import DuplicateVote, evidence_body
from trustchain.consensus.ledger import Ledger
from trustchain.consensus.messages import NIL, Block, Decision, Proposal, Vote, VoteKind, sign
from trustchain.consensus.operations import (
    Entry,
    Operation,
    OperationKind,
    ProofBundle,
    SpacePart,
    StakePart,
    time_part,
    work_part,
)
from trustchain.consensus.proofs import Challenge
from trustchain.consensus.proofs.delay import prove_delay
from trustchain.consensus.proofs.space import plot_id_for
from trustchain.consensus.proofs.stake import ValidatorStake, sign_commit
from trustchain.consensus.proofs.work import solve_work
from trustchain.errors import ConsensusCodecError


def _entries() -> tuple[dict[str, ValidatorStake], list[Entry]]:
    keys = {f"v{i}": ed25519.Ed25519PrivateKey.generate() for i in range(4)}
    pq = mldsa.MLDSA65PrivateKey.generate()
    validators = {n: ValidatorStake(k.public_key(), 1, pq.public_key() if n == "v0" else None)
                  for n, k in keys.items()}

    def operation(kind: OperationKind, body: dict[str, object]) -> Operation:
        return Operation(kind=kind, requester=REQUESTER.hex(), body=body)

    def stake(op: Operation) -> StakePart:
        return StakePart(height=7, round=0, signatures=[
            (n, base64.b64encode(sign_commit(keys[n], CHAIN, 7, 0, PREVIOUS, op.digest)).decode())
            for n in ("v1", "v2", "v3")])

    def challenge(op: Operation) -> Challenge:
        return Challenge(op.digest, PREVIOUS)

    votes = [sign(Vote(VoteKind.PREVOTE, 7, 0, block, "v0"), keys["v0"], CHAIN, pq)
             for block in (b"\x01" * 32, b"\x02" * 32)]
    first, second = votes
    assert isinstance(first, Vote) and isinstance(second, Vote)
    evidence = operation(OperationKind.EVIDENCE, evidence_body(DuplicateVote(first, second)))
    network = operation(OperationKind.NETWORK_REGISTRATION, {"name": "alpha"})
    plot = operation(OperationKind.PLOT_REGISTRATION,
                     {"seed": SEED.hex(), "plot_id": plot_id_for(REQUESTER, SEED).hex()})
    change = operation(OperationKind.VALIDATOR_CHANGE,
                       {"node_id": "v9", "stake": 5, "ed25519": "11" * 32})
    intermediate = operation(OperationKind.CA_INTERMEDIATE, {"network": "alpha"})
    admission = operation(OperationKind.NODE_ADMISSION, {"node": "n9"})
    entries = [
        Entry(operation=operation(OperationKind.CT_CHECKPOINT, {"log": "a", "size": 1})),
        Entry(operation=evidence),
        Entry(operation=network, proofs=ProofBundle(
            work=work_part(solve_work(challenge(network), REQUESTER, 8)),
            time=time_part(prove_delay(challenge(network), PARAMS.time_vdf_iterations)))),
        Entry(operation=plot, proofs=ProofBundle(
            work=work_part(solve_work(challenge(plot), REQUESTER, 8)))),
        Entry(operation=change, proofs=ProofBundle(stake=stake(change))),
        Entry(operation=intermediate, proofs=ProofBundle(stake=stake(intermediate))),
        Entry(operation=admission, proofs=ProofBundle(
            work=work_part(solve_work(challenge(admission), REQUESTER, 8)),
            time=time_part(prove_delay(challenge(admission), PARAMS.time_vdf_iterations)),
            space=SpacePart(plot_id=plot_id_for(REQUESTER, SEED).hex(), seed=SEED.hex(), k=19,
                            proof=base64.b64encode((hashlib.sha256(b"x").digest() * 5)[:8 * 19]
                                                   ).decode()),
            stake=stake(admission))),
    ]
    return validators, entries


def ledger_target() -> Target:
    validators, entries = _entries()
    ledger = Ledger(CHAIN, validators, PARAMS)
    ledger.plots[REQUESTER.hex()] = {plot_id_for(REQUESTER, SEED).hex(): SEED.hex()}

    def run(data: bytes) -> None:
        verdict = ledger.valid(Block(8, PREVIOUS, "v0", (data,)))
        assert isinstance(verdict, bool)

    seeds = [entry.encode() for entry in entries]
    return Target("consensus", run, (), seeds, JSON_TOKENS, mutate_json, structured_share=0.8)


def codec_target() -> Target:
    keys = {f"v{i}": ed25519.Ed25519PrivateKey.generate() for i in range(3)}
    pq = mldsa.MLDSA65PrivateKey.generate()
    block = Block(8, PREVIOUS, "v1", (b'{"op":1}', bytes(range(40))))
    prevote = sign(Vote(VoteKind.PREVOTE, 8, 0, block.hash, "v0"), keys["v0"], CHAIN, pq)
    nil = sign(Vote(VoteKind.PRECOMMIT, 8, 1, NIL, "v2"), keys["v2"], CHAIN)
    proposal = sign(Proposal(8, 2, block, 0, "v1"), keys["v1"], CHAIN)
    precommits = [sign(Vote(VoteKind.PRECOMMIT, 8, 0, block.hash, n), k, CHAIN,
                       pq if n == "v0" else None) for n, k in keys.items()]
    decision = Decision(block, 0, tuple((v.sender, v.signature) for v in precommits), "v2",
                        (("v0", precommits[0].pq_signature),))

    def run(data: bytes) -> None:
        message = decode_message(data)
        assert encode_message(message) == data

    seeds = [encode_message(m) for m in (prevote, nil, proposal, decision)]
    return Target("consensus-codec", run, (ConsensusCodecError,), seeds, JSON_TOKENS, mutate_json,
                  structured_share=0.7)
