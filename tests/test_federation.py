"""The consensus over QUIC between real node processes (``trustchain devnet``, four
validators of equal stake on [::1]): every node commits the same blocks; a validator
killed with SIGKILL does not stop the other three; restarted, it catches up from their
stored blocks (each commit certificate checked) and rejoins the rounds.

Invariants checked after each test, on every node's own database: the same block hash
at every height any two nodes hold, each block linked to the one before, and no
evidence of equivocation reported by any node (every vote reaches every node, so a
validator that signed two votes for one height, round and step would be caught).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bootstrap.devnet import load_manifest
from bootstrap.genesis import parse_genesis
from bootstrap.init import CONSENSUS_ED25519_PURPOSE, CONSENSUS_ML_DSA_PURPOSE
from bootstrap.transport_certs import NODE_TLS_PURPOSE
from tests.support import cli_env, kill_processes_naming, run_cli, stored_identity
from transport.client import connect
from trustchain.consensus.codec import encode_message
from trustchain.consensus.messages import NIL, Vote, VoteKind, sign
from trustchain.identity import TlsIdentity
from trustchain.keystore import KeyStore

NODES = 4
#: How long the federation may take to commit what a test waits for (a bound, polled).
BOUND = 30.0


@dataclass
class Federation:
    base: Path
    env: dict[str, str]

    def status(self) -> dict[str, Any]:
        result = run_cli("devnet", "status", "--base-dir", self.base, "--json", env=self.env)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    def chain(self, name: str) -> dict[int, tuple[bytes, bytes]]:
        """Height -> (hash, previous) of the blocks ``name`` has stored."""
        path = self.base / name / "node.db"
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return {h: (bytes(hsh), bytes(prev)) for h, hsh, prev in db.execute(
                "SELECT height, hash, previous FROM consensus_blocks")}

    def height(self, name: str) -> int:
        return max(self.chain(name), default=0)

    def consensus_status(self, name: str) -> dict[str, Any]:
        """``consensus.status`` of one node, asked as an anonymous client."""
        manifest = load_manifest(self.base)
        assert manifest is not None
        port = next(n.ports.quic for n in manifest.nodes if n.name == name)
        genesis = parse_genesis((self.base / name / "genesis.json").read_bytes())

        async def ask() -> dict[str, Any]:
            async with connect("::1", port, root=genesis.root_certificate,
                               server_name=genesis.body.origin.rstrip(".")) as client:
                response = await client.request("consensus", "status")
            assert response.status == 200, response.message
            return json.loads(response.message)  # type: ignore[no-any-return]

        return asyncio.run(ask())


def wait_for(what: str, condition: Callable[[], bool], bound: float = BOUND) -> None:
    """Poll ``condition`` until it holds, failing after ``bound`` seconds."""
    deadline = time.monotonic() + bound
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {bound:.0f} s: {what}")
        time.sleep(0.2)  # polling a condition with a bound, not synchronising on time


def check_invariants(federation: Federation, names: list[str]) -> None:
    chains = {name: federation.chain(name) for name in names}
    heights = set().union(*chains.values())
    for height in sorted(heights):
        seen = {chain[height][0] for chain in chains.values() if height in chain}
        assert len(seen) == 1, f"nodes disagree at height {height}"
        for chain in chains.values():
            if height in chain and height - 1 in chain:
                assert chain[height][1] == chain[height - 1][0], f"height {height} unlinked"


def running_devnet(tmp_path_factory: pytest.TempPathFactory, name: str
                   ) -> Iterator[Federation]:
    """A devnet of four nodes for a test module, every process killed at the end."""
    base = tmp_path_factory.mktemp(name) / "net"
    # An empty block a second when idle (an idle federation waits 10 s by default, too long
    # for a test; not 0 either: four nodes making blocks as fast as they can load both
    # cores and slow the tests that run beside them).
    env = {**cli_env(), "TRUSTCHAIN_CONSENSUS_IDLE_SECONDS": "1"}
    try:
        result = run_cli("devnet", "up", "--nodes", str(NODES), "--base-dir", base, env=env)
        assert result.returncode == 0, result.stderr
        yield Federation(base, env)
    finally:
        run_cli("devnet", "down", "--base-dir", base, env=env)
        kill_processes_naming(base)


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    yield from running_devnet(tmp_path_factory, "federation")


NAMES = [f"node-{i}" for i in range(1, NODES + 1)]


def test_four_validators_commit_the_same_blocks(federation: Federation) -> None:
    wait_for("every node at height 3", lambda: all(federation.height(n) >= 3 for n in NAMES))
    check_invariants(federation, NAMES)
    quic = federation.status()["nodes"][0]["addresses"]["quic"]
    result = run_cli("federation", "status", "--json", "--data-dir", federation.base / "node-1",
                     "--server", quic, env=federation.env)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["height"] >= 3 and len(status["validators"]) == NODES
    assert all(v["stake"] == 100 for v in status["validators"])
    assert sum(p["connected"] for p in status["peers"]) == NODES - 1
    assert status["evidence"] == []
    devnet = federation.status()
    assert status["chain_id"] == devnet["genesis_sha256"]
    assert all(node["height"] >= 3 for node in devnet["nodes"])  # devnet status shows it too
    # The same status is public over HTTP.
    http = devnet["nodes"][1]["addresses"]["http"]
    with urllib.request.urlopen(f"http://{http}/consensus/status", timeout=10) as answer:
        over_http = json.loads(answer.read())
    assert over_http["node_id"] == devnet["nodes"][1]["node_id"]
    assert over_http["height"] >= 3


def test_a_network_registered_on_one_node_is_listed_on_every_node(
        federation: Federation) -> None:
    """``network register`` makes its proofs (work and time, bound to a recent block),
    node-1 answers once a block carries the operation, and every node applies it."""
    quic = {n["name"]: n["addresses"]["quic"] for n in federation.status()["nodes"]}
    key_store = ["--passphrase-file", federation.base / "passphrase"]
    result = run_cli("network", "register", "alpha", "--prefix", "10.9.0.0/16",
                     "--data-dir", federation.base / "node-1", *key_store,
                     "--server", quic["node-1"], env=federation.env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("network alpha: registered at height "), result.stdout
    height = int(result.stdout.split("height ")[1].split(",")[0].split()[0])
    # How soon every node has it is a figure of benchmarks/federation.py (commit latency on
    # every node, p50/p99), not of a timed test: here, that every node does.
    wait_for("every node lists alpha", lambda: all(
        federation.consensus_status(n)["networks"] == 1 for n in NAMES))
    check_invariants(federation, NAMES)
    assert all(height in federation.chain(n) for n in NAMES)  # the same block everywhere
    listed = run_cli("network", "list", "--json", "--data-dir", federation.base / "node-3",
                     *key_store, "--server", quic["node-3"], env=federation.env)
    assert listed.returncode == 0, listed.stderr
    assert [(n["name"], n["prefixes"]) for n in json.loads(listed.stdout)] == [
        ("alpha", ["10.9.0.0/16"])]
    again = run_cli("network", "register", "alpha", "--data-dir", federation.base / "node-2",
                    *key_store, "--server", quic["node-2"], env=federation.env)
    assert again.returncode == 1, again.stderr
    assert "network alpha is already registered" in again.stderr


def test_a_killed_validator_does_not_stop_the_others_and_catches_up(
        federation: Federation) -> None:
    victim = next(n for n in federation.status()["nodes"] if n["name"] == "node-4")
    os.kill(victim["pid"], signal.SIGKILL)
    others = NAMES[:-1]
    at_kill = max(federation.height(n) for n in others)
    wait_for("three of four validators commit on", lambda: min(
        federation.height(n) for n in others) >= at_kill + 3)
    behind = federation.height("node-4")

    result = run_cli("devnet", "up", "--base-dir", federation.base, env=federation.env)
    assert result.returncode == 0, result.stderr
    target = max(federation.height(n) for n in others)
    assert behind < target
    wait_for("the restarted validator has caught up",
             lambda: federation.height("node-4") >= target)
    wait_for("and commits with the others again", lambda: min(
        federation.height(n) for n in NAMES) >= target + 2)
    check_invariants(federation, NAMES)
    log = (federation.base / "node-4" / "serve.log").read_text()
    assert "caught up from node" in log
    for name in NAMES:
        assert federation.consensus_status(name)["evidence"] == []


def _keys(data_dir: Path, passphrase: str) -> tuple[Any, Any, TlsIdentity]:
    """A node's consensus keys and its node certificate, as the node itself loads them."""
    keystore = KeyStore.open(data_dir / "keys", passphrase)
    return (keystore.private_key(keystore.active(CONSENSUS_ED25519_PURPOSE).id),
            keystore.private_key(keystore.active(CONSENSUS_ML_DSA_PURPOSE).id),
            stored_identity(data_dir, NODE_TLS_PURPOSE, passphrase))


def test_an_equivocating_validator_is_caught_and_removed(federation: Federation) -> None:
    """node-4's key signs two different prevotes for one height and round, pushed to every
    node from outside the node's code (as a second process holding the same key would):
    the nodes find the duplicate vote, commit it as evidence, and every node removes
    node-4 from its validator set."""
    status = federation.status()
    offender = next(n for n in status["nodes"] if n["name"] == "node-4")
    passphrase = (federation.base / "passphrase").read_text().strip()
    ed, ml, identity = _keys(federation.base / "node-4", passphrase)
    genesis = parse_genesis((federation.base / "node-1" / "genesis.json").read_bytes())
    chain = status["genesis_sha256"]
    height = federation.height("node-1") + 1
    votes = [sign(Vote(VoteKind.PREVOTE, height, 0, block, offender["node_id"]), ed, chain, ml)
             for block in (NIL, bytes(range(32)))]

    async def push_everywhere() -> None:
        for node in status["nodes"][:3]:
            port = node["ports"]["quic"]
            async with connect("::1", port, root=genesis.root_certificate,
                               server_name=genesis.body.origin.rstrip("."),
                               identity=identity) as client:
                for vote in votes:
                    client.push("consensus", "message", encode_message(vote))
                response = await client.request("consensus", "status")  # pushes delivered
                assert response.status == 200

    asyncio.run(push_everywhere())

    def removed_everywhere() -> bool:
        return all(offender["node_id"] in federation.consensus_status(name)["slashed"]
                   for name in NAMES)

    wait_for("the evidence committed and node-4 removed on every node", removed_everywhere)
    for name in NAMES:
        seen = federation.consensus_status(name)
        assert offender["node_id"] not in {v["node_id"] for v in seen["validators"]}
        assert len(seen["validators"]) == NODES - 1
    # Which nodes saw both votes depends on where each was in its rounds; one is enough.
    assert any(e["offender"] == offender["node_id"]
               for name in NAMES[:3] for e in federation.consensus_status(name)["evidence"])
    # The three that are left (all three needed now) still commit.
    at = min(federation.height(n) for n in NAMES[:3])
    wait_for("three validators commit on", lambda: min(
        federation.height(n) for n in NAMES[:3]) >= at + 2)
    check_invariants(federation, NAMES)
