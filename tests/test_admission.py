"""Admission by consensus on a 4-node devnet: a fifth machine runs ``trustchain join``
with the four proofs (a k=19 plot registered first, work and time bound to a recent
block, the validators' endorsement), is admitted by a committed ``node-admission``,
receives its node certificate, serves, catches up, and signs commits as a fifth
validator.  A forged proof, and a founding node asking to join again, are refused with
their reason.  Then the validators' operators change its stake
(``trustchain federation validator`` on four of the five nodes), and the proofs'
parameters (``trustchain federation configure``).
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from bootstrap.admission import admit_request, ensure_plot, plot_request
from bootstrap.devnet import node_config_text, pick_ports
from bootstrap.genesis import parse_genesis
from bootstrap.init import CONSENSUS_ED25519_PURPOSE, CONSENSUS_ML_DSA_PURPOSE
from bootstrap.join import _request
from tests.support import NodeProcess, cli_env, kill_processes_naming, run_cli
from tests.test_federation import NAMES, Federation, check_invariants, wait_for
from transport.client import connect
from trustchain.config import CONFIG_FILE_NAME
from trustchain.keystore import KeyStore


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    base = tmp_path_factory.mktemp("admission") / "net"
    # An empty block a second when idle (not one every commit pause: four nodes making blocks
    # as fast as they can load both cores and slow the other tests running beside them).
    env = {**cli_env(), "TRUSTCHAIN_CONSENSUS_IDLE_SECONDS": "1"}
    try:
        result = run_cli("devnet", "up", "--nodes", "4", "--base-dir", base, env=env)
        assert result.returncode == 0, result.stderr
        yield Federation(base, env)
    finally:
        run_cli("devnet", "down", "--base-dir", base, env=env)
        kill_processes_naming(base)


def _chain(db_file: Path) -> dict[int, tuple[bytes, list[str]]]:
    """Height -> (hash, the validators whose precommits certify it)."""
    with sqlite3.connect(f"file:{db_file}?mode=ro", uri=True) as db:
        return {h: (bytes(hsh), [n for n, _s in json.loads(sigs)]) for h, hsh, sigs in db.execute(
            "SELECT height, hash, signatures FROM consensus_blocks")}


def _validators(federation: Federation, name: str) -> dict[str, int]:
    return {v["node_id"]: v["stake"] for v in federation.consensus_status(name)["validators"]}


def test_a_fifth_node_joins_by_consensus_and_signs_commits(
        federation: Federation, tmp_path: Path, node_processes: list[NodeProcess]) -> None:
    devnet = federation.status()
    quic = [n["addresses"]["quic"] for n in devnet["nodes"]]
    data = tmp_path / "node-5"
    data.mkdir(mode=0o700)
    (data / CONFIG_FILE_NAME).write_text(node_config_text("::1", pick_ports("::1", 1)[0], quic))
    env = {k: v for k, v in federation.env.items() if not k.endswith("_PORT")}  # its own ports
    result = run_cli("join", "--data-dir", data, "--genesis",
                     federation.base / "node-1" / "genesis.json", "--pin",
                     devnet["genesis_sha256"], "--peer", quic[0], "--stake", "100", env=env)
    assert result.returncode == 0, result.stderr
    node_id = re.search(r"as node ([0-9a-f]{32})", result.stdout)[1]  # type: ignore[index]
    assert not (data / ".join.tmp").exists()  # keys in place, the plot removed

    wait_for("every node counts five validators", lambda: all(
        _validators(federation, n).get(node_id) == 100 for n in NAMES))
    member = federation.consensus_status("node-3")["members"]
    assert [m["node_id"] for m in member] == [node_id]

    node5 = NodeProcess.start(data, env=env)
    node_processes.append(node5)
    node5.wait_ready()
    admitted = min(federation.height(n) for n in NAMES)
    wait_for("node-5 catches up and its precommits certify blocks", lambda: any(
        node_id in signers for h, (_hash, signers) in _chain(data / "node.db").items()
        if h > admitted), bound=60.0)
    check_invariants(federation, NAMES)
    mine, theirs = _chain(data / "node.db"), federation.chain("node-1")
    assert all(theirs[h][0] == block for h, (block, _s) in mine.items() if h in theirs)

    # The operators of four of the five validators (more than 2/3 of the stake) halve it.
    key_store = ["--passphrase-file", federation.base / "passphrase"]
    answers = []
    for name, address in zip(NAMES, quic, strict=True):
        answer = run_cli("federation", "validator", node_id, "--stake", "50", "--data-dir",
                         federation.base / name, *key_store, "--server", address,
                         env=federation.env)
        assert answer.returncode == 0, answer.stderr
        answers.append(answer.stdout)
    assert "not yet committed" in answers[0] and "validators holding" in answers[0]
    assert "validators holding 300 of 500" in answers[2]  # not yet: 3/5 is not above 2/3
    assert f"validator {node_id}: stake 50, committed at height" in answers[3]
    wait_for("every node applies the change", lambda: all(
        _validators(federation, n).get(node_id) == 50 for n in NAMES))

    # The federation's configuration the same way: four founders (400 of 450) lower the work.
    for name, address in zip(NAMES, quic, strict=True):
        answer = run_cli("federation", "configure", "--work-difficulty-bits", "15",
                         "--data-dir", federation.base / name, *key_store, "--server", address,
                         env=federation.env)
        assert answer.returncode == 0, answer.stderr
    assert "configuration: work-difficulty-bits 15, committed at height" in answer.stdout
    wait_for("every node checks proofs of 15 bits", lambda: all(
        federation.consensus_status(n)["parameters"]["work_difficulty_bits"] == 15
        for n in [*NAMES]))
    assert node5.stop() == 0


def _founder_keys(federation: Federation, name: str) -> tuple[Any, Any, str]:
    passphrase = (federation.base / "passphrase").read_text().strip()
    keystore = KeyStore.open(federation.base / name / "keys", passphrase)
    node_id = keystore.active(CONSENSUS_ED25519_PURPOSE).id
    return (keystore.private_key(node_id),
            keystore.private_key(keystore.active(CONSENSUS_ML_DSA_PURPOSE).id), node_id)


def test_a_forged_proof_and_a_founder_joining_again_are_refused(
        federation: Federation, tmp_path: Path) -> None:
    """Node-2's own keys (it holds them) ask node-1 for an admission, over the wire."""
    ed, ml, node_id = _founder_keys(federation, "node-2")
    genesis = parse_genesis((federation.base / "node-1" / "genesis.json").read_bytes())
    devnet = federation.status()
    port, pin = int(devnet["nodes"][0]["addresses"]["quic"].rpartition(":")[2]), \
        devnet["genesis_sha256"]
    plot, seed = ensure_plot(tmp_path / "plot", node_id, 19, lambda _m: None)

    def call(*calls: tuple[str, str, dict[str, Any] | None]) -> list[tuple[int, Any]]:
        """One connection for these calls (proofs are made between connections: an open
        one would go idle while a proof of work takes its time)."""

        async def run() -> list[tuple[int, Any]]:
            async with connect("::1", port, root=genesis.root_certificate,
                               server_name=genesis.body.origin.rstrip(".")) as peer:
                if not calls:
                    await _request(peer, genesis, ed, ml,
                                   ec.generate_private_key(ec.SECP256R1()), node_id)
                answers = []
                for service, method, message in calls:
                    response = await peer.request(service, method,
                                                  json.dumps(message or {}).encode())
                    answers.append((response.status, json.loads(response.message)))
                return answers

        return asyncio.run(run())

    call()  # enrol node-2's keys with node-1
    ((_ok, status),) = call(("consensus", "status", None))
    ((registered, _), (_ok, status)) = call(("ca", "enrol-plot", plot_request(node_id, seed, status)),
                                            ("consensus", "status", None))
    assert registered == 200
    request = admit_request(node_id=node_id, genesis_pin=pin, ed_key=ed.public_key(),
                            ml_key=ml.public_key(), stake=0, address="[::1]:9", plot=plot,
                            seed=seed, status=status)
    forged = json.loads(json.dumps(request))
    forged["proofs"]["work"]["nonce"] += 1  # no longer meets the difficulty
    answers = [(code, body["detail"]) for code, body in call(("ca", "enrol-admit", forged),
                                                             ("ca", "enrol-admit", request))]
    (forged_status, forged_reason), (again_status, again_reason) = answers
    assert forged_status == 400 and forged_reason.startswith("work:"), forged_reason
    assert again_status == 400
    assert f"node {node_id} is already a member of the federation" in again_reason
