"""The consensus core under the simulation harness: safety, liveness after GST, evidence.

252 seeded runs: 4 to 10 validators, up to f = (n-1)/3 of them Byzantine in
each way the harness knows, with and without a partition that heals at GST,
5% of messages lost once.  Then a negative control: with a third of the
stake colluding, safety must break, or the checker would be blind.
"""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from simulations.harness import BEHAVIOURS, CHAIN, Scenario, run
from trustchain.consensus.evidence import DuplicateVote, EvidenceError
from trustchain.consensus.messages import Vote, VoteKind, sign
from trustchain.consensus.proofs.stake import ValidatorStake

SEEDS = (0, 1, 2)


@pytest.mark.parametrize("partitions", [1, 2])
@pytest.mark.parametrize("behaviour", BEHAVIOURS)
@pytest.mark.parametrize("validators", range(4, 11))
def test_safe_live_and_every_equivocation_caught(validators: int, behaviour: str,
                                                 partitions: int) -> None:
    faulty = (validators - 1) // 3
    scenario = Scenario(name=f"{behaviour}-{validators}", validators=validators,
                        byzantine={behaviour: faulty}, partitions=partitions,
                        gst=3.0 if partitions > 1 else 0.0, loss=0.05)
    for seed in SEEDS:
        result = run(scenario, seed)
        assert result.safety_violations == [], (seed, result.safety_violations)
        assert result.live, (seed, {k: len(v) for k, v in result.decided.items()})
        assert result.equivocators <= result.caught, (seed, result.equivocators, result.caught)
        assert result.bad_evidence == 0
        assert all(len(v) >= scenario.heights for v in result.decided.values())
        # Committed evidence removes offenders, never an honest validator, and the honest
        # validators agree on who was removed.
        assert all(s <= result.byzantine for s in result.slashed.values())
        assert len({frozenset(s) for s in result.slashed.values()}) <= 2  # at most a laggard


def test_committed_evidence_removes_the_equivocators() -> None:
    result = run(Scenario(validators=10, byzantine={"equivocate": 3}, heights=10), 0)
    assert result.ok and result.equivocators
    assert all(s == result.equivocators for s in result.slashed.values())


@pytest.mark.parametrize(("validators", "seed"), [(4, 3), (7, 0)])
def test_negative_control_a_third_colluding_breaks_safety(validators: int, seed: int) -> None:
    colluders = (validators + 2) // 3  # at least a third of the stake
    result = run(Scenario(validators=validators, byzantine={"collude": colluders}, partitions=2,
                          expect_violation=True), seed)
    assert result.safety_violations, "the checker did not see the forked decisions"


def test_a_seed_replays_exactly() -> None:
    scenario = Scenario(validators=7, byzantine={"equivocate": 2}, partitions=2, gst=2.0,
                        loss=0.1)
    first, second = run(scenario, 42), run(scenario, 42)
    assert first.decided == second.decided and first.messages == second.messages
    assert first.finish_time == second.finish_time


def test_equivocation_evidence_verifies_and_cannot_be_forged() -> None:
    keys = {f"v{i}": ed25519.Ed25519PrivateKey.generate() for i in range(4)}
    stakes = {n: ValidatorStake(k.public_key(), 1) for n, k in keys.items()}
    a = sign(Vote(VoteKind.PRECOMMIT, 3, 1, hashlib.sha256(b"a").digest(), "v1"), keys["v1"], CHAIN)
    b = sign(Vote(VoteKind.PRECOMMIT, 3, 1, hashlib.sha256(b"b").digest(), "v1"), keys["v1"], CHAIN)
    assert isinstance(a, Vote) and isinstance(b, Vote)
    DuplicateVote(a, b).verify(CHAIN, stakes)
    with pytest.raises(EvidenceError, match="same block"):
        DuplicateVote(a, a).verify(CHAIN, stakes)
    other_round = sign(Vote(VoteKind.PRECOMMIT, 3, 2, b.block, "v1"), keys["v1"], CHAIN)
    with pytest.raises(EvidenceError, match="one validator"):
        DuplicateVote(a, other_round).verify(CHAIN, stakes)  # type: ignore[arg-type]
    framed = Vote(VoteKind.PRECOMMIT, 3, 1, b.block, "v1",
                  keys["v2"].sign(b.message(CHAIN)))  # v2 trying to frame v1
    with pytest.raises(EvidenceError, match="not signed by v1"):
        DuplicateVote(a, framed).verify(CHAIN, stakes)
    with pytest.raises(EvidenceError, match="not a validator"):
        DuplicateVote(a, b).verify(CHAIN, {n: s for n, s in stakes.items() if n != "v1"})


def test_sim_cli_lists_runs_plots_and_refuses_bad_files(tmp_path) -> None:
    import json

    from tests.support import run_cli

    listing = run_cli("sim", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    names = {row["scenario"] for row in json.loads(listing.stdout)}
    assert {"baseline", "partition", "equivocate", "twins", "negative-control"} <= names

    result = run_cli("sim", "run", "equivocate", "--runs", "2", "--plot", tmp_path / "l.png")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "safety violations  0" in result.stdout and "passed" in result.stdout
    assert (tmp_path / "l.png").read_bytes().startswith(b"\x89PNG")

    control = run_cli("sim", "run", "negative-control", "--json")
    assert control.returncode == 0 and json.loads(control.stdout)["safety_violations"] >= 1

    bad = tmp_path / "bad.toml"
    bad.write_text("validators = 4\nbyzantine = { gremlins = 1 }\n")
    refused = run_cli("sim", "run", bad)
    assert refused.returncode == 1 and "unknown behaviour 'gremlins'" in refused.stderr
    missing = run_cli("sim", "run", "no-such-scenario")
    assert missing.returncode == 1 and "sim list" in missing.stderr


def test_invalid_proposals_and_split_view_checkpoints_are_evidence() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from simulations.harness import PARAMETERS
    from trustchain.consensus.evidence import InvalidProposal, SplitViewCheckpoints
    from trustchain.consensus.ledger import Ledger
    from trustchain.consensus.messages import Block, Proposal
    from trustchain.ct.structs import TreeHead

    keys = {f"v{i}": ed25519.Ed25519PrivateKey.generate() for i in range(4)}
    stakes = {n: ValidatorStake(k.public_key(), 1) for n, k in keys.items()}
    rules = Ledger(CHAIN, stakes, PARAMETERS)
    previous = hashlib.sha256(b"parent").digest()
    bad = sign(Proposal(5, 0, Block(5, previous, "v1", (b"not an operation",)), -1, "v1"),
               keys["v1"], CHAIN)
    InvalidProposal(bad).verify(CHAIN, stakes, rules.valid)  # type: ignore[arg-type]
    fine = sign(Proposal(5, 0, Block(5, previous, "v1", ()), -1, "v1"), keys["v1"], CHAIN)
    with pytest.raises(EvidenceError, match="block is valid"):
        InvalidProposal(fine).verify(CHAIN, stakes, rules.valid)  # type: ignore[arg-type]

    log_key = ec.generate_private_key(ec.SECP256R1())
    a = TreeHead(10, 1, hashlib.sha256(b"a").digest()).sign(log_key)
    b = TreeHead(10, 2, hashlib.sha256(b"b").digest()).sign(log_key)
    SplitViewCheckpoints(a, b).verify(log_key.public_key())
    with pytest.raises(EvidenceError, match="agree"):
        SplitViewCheckpoints(a, a).verify(log_key.public_key())
    with pytest.raises(EvidenceError, match="different sizes"):
        SplitViewCheckpoints(a, TreeHead(11, 2, b.root).sign(log_key)).verify(
            log_key.public_key())
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(EvidenceError, match="not signed by this log"):
        SplitViewCheckpoints(a, TreeHead(10, 2, b.root).sign(other)).verify(log_key.public_key())


@pytest.mark.parametrize("behaviour", ["equivocate", "collude", "twins"])
def test_hybrid_ml_dsa_validators(behaviour: str) -> None:
    """With ML-DSA-65 keys in the set, votes, certificates and evidence need both signatures."""
    result = run(Scenario(validators=7, byzantine={behaviour: 2}, hybrid=True, partitions=2,
                          gst=2.0), 1)
    assert result.ok, (result.safety_violations, result.live, result.equivocators, result.caught)


def test_a_hybrid_vote_with_only_one_valid_signature_does_not_count() -> None:
    from cryptography.hazmat.primitives.asymmetric import mldsa

    from trustchain.consensus.proofs import ProofError
    from trustchain.consensus.proofs.stake import (
        CommitCertificate,
        commit_message,
        verify_commit,
    )

    ed = {f"v{i}": ed25519.Ed25519PrivateKey.generate() for i in range(4)}
    pq = {n: mldsa.MLDSA65PrivateKey.generate() for n in ed}
    stakes = {n: ValidatorStake(ed[n].public_key(), 1, pq[n].public_key()) for n in ed}
    block = hashlib.sha256(b"b").digest()
    message = commit_message(CHAIN, 1, 0, block, block)
    signers = ["v0", "v1", "v2"]
    classical = tuple((n, ed[n].sign(message)) for n in signers)
    both = CommitCertificate(CHAIN, 1, 0, block, block, classical,
                             tuple((n, pq[n].sign(message)) for n in signers))
    assert verify_commit(both, stakes, chain_id=CHAIN, block=block, subject=block) == 3
    with pytest.raises(ProofError, match="ML-DSA-65 signature of v0 is missing"):
        verify_commit(CommitCertificate(CHAIN, 1, 0, block, block, classical), stakes,
                      chain_id=CHAIN, block=block, subject=block)
    swapped = CommitCertificate(CHAIN, 1, 0, block, block, classical,
                                (("v0", pq["v1"].sign(message)), *both.pq_signatures[1:]))
    with pytest.raises(ProofError, match="ML-DSA-65 signature of v0"):
        verify_commit(swapped, stakes, chain_id=CHAIN, block=block, subject=block)
