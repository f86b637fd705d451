"""Operations with their proof bundles, as validators check them before voting; the ledger.

A node admission carries all four proofs, made for real here (a k=19 plot,
a 1,000-iteration VDF, 8 bits of work, signatures of 3 of 4 validators).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa
from hypothesis import given, settings
from hypothesis import strategies as st

from trustchain.consensus.admission import admission_body
from trustchain.consensus.evidence import DuplicateVote, evidence_body
from trustchain.consensus.ledger import Ledger
from trustchain.consensus.messages import Block, Vote, VoteKind, sign
from trustchain.consensus.operations import (
    Entry,
    Operation,
    OperationKind,
    ProofBundle,
    StakePart,
    decode_entry,
    space_part,
    time_part,
    verify_entry,
    work_part,
)
from trustchain.consensus.parameters import ProofParameters
from trustchain.consensus.proofs import Challenge, ProofError
from trustchain.consensus.proofs.delay import prove_delay
from trustchain.consensus.proofs.space import create_plot, plot_id_for, prove_space
from trustchain.consensus.proofs.stake import ValidatorStake, sign_commit
from trustchain.consensus.proofs.work import solve_work
from trustchain.keystore import key_id_for

CHAIN = "testnet"
PARAMS = ProofParameters(work_difficulty_bits=8, time_vdf_iterations=1_000, space_plot_k=19)
KEYS = {f"v{i}": ed25519.Ed25519PrivateKey.generate() for i in range(4)}
VALIDATORS = {n: ValidatorStake(k.public_key(), 1) for n, k in KEYS.items()}
PREVIOUS = hashlib.sha256(b"block 7").digest()
JOINER_ED = ed25519.Ed25519PrivateKey.generate()
JOINER_ML = mldsa.MLDSA65PrivateKey.generate()
REQUESTER = bytes.fromhex(key_id_for(JOINER_ED.public_key()))  # a node's id is its key's
SEED = b"admission plot"


def joiner_body(attempt: int = 0, *, stake: int = 0, genesis: str = CHAIN,
                node: str | None = None) -> dict[str, object]:
    body = admission_body(node_id=REQUESTER.hex(), genesis=genesis,
                          ed25519_key=JOINER_ED.public_key(), ml_dsa_key=JOINER_ML.public_key(),
                          stake=stake, address="[2001:db8::9]:853", attempt=attempt)
    return {**body, "node": node} if node else body


def stake_part(digest: bytes, signers: list[str], previous: bytes = PREVIOUS) -> StakePart:
    import base64

    return StakePart(height=7, round=0, signatures=[
        (n, base64.b64encode(sign_commit(KEYS[n], CHAIN, 7, 0, previous, digest)).decode())
        for n in signers])


def check(entry: Entry, previous: bytes = PREVIOUS, plots: dict[str, str] | None = None) -> None:
    verify_entry(entry, previous=previous, parameters=PARAMS, validators=VALIDATORS,
                 chain_id=CHAIN, plot_seeds=plots or {})


@pytest.fixture(scope="module")
def plot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return create_plot(tmp_path_factory.mktemp("plot"), REQUESTER, SEED, 19)


def admission(plot: Path, **fields: object) -> tuple[Entry, dict[str, str]]:
    """A node admission whose plot holds a proof for its challenge (varying the body)."""
    for attempt in range(64):
        operation = Operation(kind=OperationKind.NODE_ADMISSION, requester=REQUESTER.hex(),
                              body=joiner_body(attempt, **fields))  # type: ignore[arg-type]
        challenge = Challenge(operation.digest, PREVIOUS)
        space = prove_space(plot, challenge)
        if space is None:
            continue
        bundle = ProofBundle(
            work=work_part(solve_work(challenge, REQUESTER, PARAMS.work_difficulty_bits)),
            time=time_part(prove_delay(challenge, PARAMS.time_vdf_iterations)),
            space=space_part(space, SEED),
            stake=stake_part(operation.digest, ["v0", "v1", "v2"]))
        return Entry(operation=operation, proofs=bundle), {plot_id_for(REQUESTER, SEED).hex():
                                                            SEED.hex()}
    raise AssertionError("no proof of space in 64 tries")


def test_an_admission_with_all_four_proofs_verifies(plot: Path) -> None:
    entry, plots = admission(plot)
    check(entry, plots=plots)
    assert decode_entry(entry.encode()) == entry  # what blocks carry round-trips
    ledger = Ledger(CHAIN, VALIDATORS, PARAMS)
    ledger.plots[REQUESTER.hex()] = plots
    block = Block(8, PREVIOUS, "v0", (entry.encode(),))
    assert ledger.valid(block)
    assert ledger.committed(block) is None  # admitted without stake: not a validator
    assert ledger.members == {REQUESTER.hex(): entry.operation.body}
    assert not ledger.valid(block)  # admitted once
    with pytest.raises(ProofError, match="already a member"):
        ledger._check(entry, PREVIOUS)


def test_an_admission_with_stake_adds_a_hybrid_validator(plot: Path) -> None:
    entry, plots = admission(plot, stake=5)
    ledger = Ledger(CHAIN, VALIDATORS, PARAMS)
    ledger.plots[REQUESTER.hex()] = plots
    changed = ledger.committed(Block(8, PREVIOUS, "v0", (entry.encode(),)))
    assert changed is not None and changed[REQUESTER.hex()].stake == 5
    assert changed[REQUESTER.hex()].pq_key == JOINER_ML.public_key()  # its votes: both keys


def test_admissions_for_another_genesis_or_node_are_refused(plot: Path) -> None:
    ledger = Ledger(CHAIN, VALIDATORS, PARAMS)
    cases = {"pinned genesis": {"genesis": "f" * 64}, "its own admission": {"node": "bb" * 16}}
    for reason, change in cases.items():
        body = {**joiner_body(), **change}
        entry = Entry(operation=Operation(kind=OperationKind.NODE_ADMISSION,
                                          requester=REQUESTER.hex(), body=body))
        with pytest.raises(ProofError, match=reason):
            ledger._check(entry, PREVIOUS, gathering=frozenset({"work", "time", "space",
                                                                "stake"}))


def test_a_validator_change_needs_a_member_and_cannot_be_replayed() -> None:
    ledger = Ledger(CHAIN, VALIDATORS, PARAMS)
    ledger.hashes[7], ledger.height = PREVIOUS, 7
    stranger = Operation(kind=OperationKind.VALIDATOR_CHANGE, requester="aa",
                         body={"node_id": "cc" * 16, "stake": 3})
    with pytest.raises(ProofError, match="neither a validator nor an admitted node"):
        ledger.check(Entry(operation=stranger, proofs=ProofBundle(
            stake=stake_part(stranger.digest, ["v0", "v1", "v2"]), anchor=7)))
    change = Operation(kind=OperationKind.VALIDATOR_CHANGE, requester="aa",
                       body={"node_id": "v0", "stake": 2})
    entry = Entry(operation=change, proofs=ProofBundle(
        stake=stake_part(change.digest, ["v0", "v1", "v2"]), anchor=7))
    ledger.check(entry)
    changed = ledger.committed(Block(8, PREVIOUS, "v0", (entry.encode(),)))
    assert changed is not None and changed["v0"].stake == 2
    with pytest.raises(ProofError, match="this very operation was committed at height 8"):
        ledger.check(entry)  # its stake proof still verifies: refused by digest


def test_each_missing_or_foreign_proof_refuses_the_admission(plot: Path) -> None:
    entry, plots = admission(plot)
    for name in ("work", "time", "space", "stake"):
        stripped = entry.model_copy(update={"proofs": entry.proofs.model_copy(update={name: None})})
        with pytest.raises(ProofError, match=f"missing proofs: {name}"):
            check(stripped, plots=plots)
    with pytest.raises(ProofError, match="space: no such plot"):
        check(entry, plots={})  # the plot was never registered to this requester
    with pytest.raises(ProofError):  # every proof is bound to the block it extends
        check(entry, previous=hashlib.sha256(b"another block").digest(), plots=plots)
    weak = entry.model_copy(update={"proofs": entry.proofs.model_copy(
        update={"stake": stake_part(entry.operation.digest, ["v0", "v1"])})})
    with pytest.raises(ProofError, match="more than 2/3"):
        check(weak, plots=plots)


def test_policy_refuses_missing_and_extra_proofs() -> None:
    operation = Operation(kind=OperationKind.NETWORK_REGISTRATION, requester=REQUESTER.hex(),
                          body={"name": "alpha"})
    challenge = Challenge(operation.digest, PREVIOUS)
    work = work_part(solve_work(challenge, REQUESTER, 8))
    with pytest.raises(ProofError, match="missing proofs: time"):
        check(Entry(operation=operation, proofs=ProofBundle(work=work)))
    full = ProofBundle(work=work, time=time_part(prove_delay(challenge, 1_000)))
    check(Entry(operation=operation, proofs=full))
    with pytest.raises(ProofError, match="unexpected proofs: stake"):
        check(Entry(operation=operation, proofs=full.model_copy(
            update={"stake": stake_part(operation.digest, ["v0", "v1", "v2"])})))
    with pytest.raises(ProofError, match="not an operation"):
        decode_entry(b'{"operation": {"kind": "teleport", "requester": "aa"}}')


def test_the_ledger_applies_evidence_and_refuses_bad_blocks() -> None:
    ledger = Ledger(CHAIN, VALIDATORS, PARAMS)
    votes = [sign(Vote(VoteKind.PREVOTE, 3, 0, hashlib.sha256(x).digest(), "v3"), KEYS["v3"],
                  CHAIN) for x in (b"a", b"b")]
    evidence = DuplicateVote(*votes)  # type: ignore[arg-type]
    entry = Entry(operation=Operation(kind=OperationKind.EVIDENCE, requester=REQUESTER.hex(),
                                      body=evidence_body(evidence)))
    block = Block(4, PREVIOUS, "v0", (entry.encode(),))
    assert ledger.valid(block)
    assert not ledger.valid(Block(4, PREVIOUS, "v0", (entry.encode(), entry.encode())))
    assert not ledger.valid(Block(4, PREVIOUS, "v0", (b"garbage",)))
    changed = ledger.committed(block)
    assert changed is not None and "v3" not in changed and ledger.slashed == {"v3"}
    assert not ledger.valid(block)  # the offender is gone: the same evidence is now void


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.from_regex(rb'\A\{"operation": ?\{.{0,80}\}\}\Z'))
def test_operation_bytes_from_the_wire_are_refused_cleanly(data: bytes) -> None:
    """A block's operations arrive from other validators: any bytes, never a crash."""
    try:
        entry = decode_entry(data)
    except ProofError:
        return
    ledger = Ledger(CHAIN, VALIDATORS, PARAMS)
    assert ledger.valid(Block(2, PREVIOUS, "v0", (entry.encode(),))) in (True, False)


def test_odd_hex_and_wrong_types_in_an_operation_are_refused() -> None:
    for raw in (b'{"operation": {"kind": "plot-registration", "requester": "abc"}}',
                b'{"operation": {"kind": "network-registration", "requester": "ab", '
                b'"body": {"name": 5}}, "proofs": {"work": {"nonce": 1}, "time": '
                b'{"iterations": 1000, "output": "", "proof": ""}}}'):
        try:
            entry = decode_entry(raw)
        except ProofError:
            continue
        assert not Ledger(CHAIN, VALIDATORS, PARAMS).valid(Block(2, PREVIOUS, "v0",
                                                                  (entry.encode(),)))


def test_blocks_with_plots_pass_and_rivals_for_one_name_do_not() -> None:
    """Each operation is checked against the ledger before the block: two that take the
    same network name may not share a block (the second would overwrite the first)."""
    ledger = Ledger(CHAIN, VALIDATORS, PARAMS)
    plot = Operation(kind=OperationKind.PLOT_REGISTRATION, requester=REQUESTER.hex(),
                     body={"seed": SEED.hex(), "plot_id": plot_id_for(REQUESTER, SEED).hex()})
    plot_entry = Entry(operation=plot, proofs=ProofBundle(work=work_part(solve_work(
        Challenge(plot.digest, PREVIOUS), REQUESTER, PARAMS.work_difficulty_bits))))
    assert ledger.valid(Block(8, PREVIOUS, "v0", (plot_entry.encode(),)))
    rivals = []
    for requester in (REQUESTER, bytes.fromhex("bb" * 16)):
        operation = Operation(kind=OperationKind.NETWORK_REGISTRATION,
                              requester=requester.hex(), body={"name": "alpha"})
        challenge = Challenge(operation.digest, PREVIOUS)
        rivals.append(Entry(operation=operation, proofs=ProofBundle(
            work=work_part(solve_work(challenge, requester, PARAMS.work_difficulty_bits)),
            time=time_part(prove_delay(challenge, PARAMS.time_vdf_iterations)))).encode())
    assert all(ledger.valid(Block(8, PREVIOUS, "v0", (raw,))) for raw in rivals)
    assert not ledger.valid(Block(8, PREVIOUS, "v0", tuple(rivals)))
    for entry in rivals:
        ledger.submit(decode_entry(entry))
    assert len(ledger.propose(8, PREVIOUS)) == 1  # the rival waits for a later block


def test_the_federation_reconfigures_its_proofs_by_stake() -> None:
    ledger = Ledger(CHAIN, VALIDATORS, PARAMS)
    ledger.hashes[7], ledger.height = PREVIOUS, 7

    def configure(changes: dict[str, object]) -> Entry:
        operation = Operation(kind=OperationKind.FEDERATION_CONFIG, requester="aa",
                              body={"parameters": changes})
        return Entry(operation=operation, proofs=ProofBundle(
            stake=stake_part(operation.digest, ["v0", "v1", "v2"]), anchor=7))

    for changes, reason in (({"stake_quorum_numerator": 1}, "among space_plot_k"),
                            ({"space_plot_k": 18}, "greater than or equal to 19"),
                            ({"work_difficulty_bits": 8}, "so already"), ({}, "parameters")):
        with pytest.raises(ProofError, match=reason):
            ledger.check(configure(changes))
    entry = configure({"work_difficulty_bits": 9, "time_vdf_iterations": 2_000})
    ledger.check(entry)
    ledger.committed(Block(8, PREVIOUS, "v0", (entry.encode(),)))
    assert (ledger.parameters.work_difficulty_bits, ledger.parameters.time_vdf_iterations,
            ledger.parameters.space_plot_k) == (9, 2_000, 19)


def test_admission_and_configuration_requests_refuse_what_canonical_json_cannot_carry() -> None:
    """``ca.enrol-admit`` and ``admin.federation-configure`` parse requests from the wire:
    numbers outside canonical JSON's range are a 400 (a validation error), never a 500."""
    from pydantic import ValidationError

    from trustchain.wiring.admission import AdmitRequest, ConfigureRequest

    proofs = {"anchor": 1, "work": {"nonce": 1},
              "time": {"iterations": 1000, "output": "", "proof": ""},
              "space": {"plot_id": "00", "seed": "00", "k": 19, "proof": ""}}
    for body in ({"stake": 2**60}, {"attempt": 1.5}):
        with pytest.raises(ValidationError):
            AdmitRequest.model_validate({"node_id": "aa" * 16, "body": body, "proofs": proofs})
    with pytest.raises(ValidationError):
        ConfigureRequest.model_validate({"work_difficulty_bits": 2**60})
