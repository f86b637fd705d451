"""``trustchain devnet``: a federation of real node processes on [::1] from one genesis.

One devnet of three nodes serves the module (creating it costs three Argon2id
derivations and key generations); the later tests stop its nodes and start them again.
Whatever happens, the fixture runs ``devnet down`` and then kills every
process whose command line names the devnet's directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import select
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from bootstrap.devnet import DevnetNode, Manifest, load_manifest
from bootstrap.genesis import parse_genesis
from bootstrap.init import ROOT_KEY_PURPOSE
from bootstrap.transport_certs import ensure_transport_credentials, node_uri
from tests.support import kill_processes_naming, process_alive, processes_naming, run_cli
from transport.client import connect
from trustchain.config import load_config
from trustchain.identity import TlsIdentity
from trustchain.keystore import KeyStore
from trustchain.stoq.framing import Status
from trustchain.storage.database import open_database
from trustchain.storage.node import NodeStore

NODES = 3
_PIN = re.compile(r"^genesis pin \(SHA-256\): ([0-9a-f]{64})$", re.M)
_LISTENING = re.compile(r"listening: (\w+) on \[::1\]:(\d+)/(tcp|udp)")


@dataclass
class Devnet:
    base: Path
    up_stdout: str

    def status(self) -> dict[str, Any]:
        result = run_cli("devnet", "status", "--base-dir", self.base, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    def node_dir(self, name: str) -> Path:
        return self.base / name


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    base = tmp_path_factory.mktemp("devnet") / "net"
    try:
        result = run_cli("devnet", "up", "--nodes", str(NODES), "--base-dir", base)
        assert result.returncode == 0, result.stderr
        yield Devnet(base, result.stdout)
    finally:
        run_cli("devnet", "down", "--base-dir", base)
        kill_processes_naming(base)


def _listening(log: str) -> dict[str, int]:
    """The ports of the node's last run, as its log reports them."""
    last_run = log.rsplit(" of network ", 1)[-1]
    return {m[1]: int(m[2]) for m in _LISTENING.finditer(last_run)}


def _check_up(devnet: Devnet, ports: dict[str, dict[str, int]] | None = None) -> dict[str, Any]:
    status = devnet.status()
    nodes = status["nodes"]
    assert [n["name"] for n in nodes] == [f"node-{i}" for i in range(1, NODES + 1)]
    for node in nodes:
        assert node["up"] and process_alive(node["pid"]), node
        log = (Path(node["data_dir"]) / "serve.log").read_text()
        assert _listening(log) == node["ports"], log  # the manifest's ports, not others
        if ports is not None:
            assert node["ports"] == ports[node["name"]]
    return status


def test_up_starts_every_node_on_distinct_ports(devnet: Devnet) -> None:
    status = _check_up(devnet)
    every_port = [p for node in status["nodes"] for p in node["ports"].values()]
    assert len(every_port) == len(set(every_port)) == 4 * NODES
    assert len({n["node_id"] for n in status["nodes"]}) == NODES
    for node in status["nodes"]:
        assert node["node_id"] in devnet.up_stdout and node["addresses"]["quic"] in devnet.up_stdout


def test_one_genesis_shared_by_all(devnet: Devnet) -> None:
    (pin,) = _PIN.findall(devnet.up_stdout)
    genesis = {(devnet.node_dir(f"node-{i}") / "genesis.json").read_bytes()
               for i in range(1, NODES + 1)}
    assert len(genesis) == 1
    (data,) = genesis
    assert hashlib.sha256(data).hexdigest() == pin == devnet.status()["genesis_sha256"]
    body = json.loads(data)["body"]
    manifest = load_manifest(devnet.base)
    assert manifest is not None
    assert [(v["node_id"], v["stake"]) for v in body["validators"]] == [
        (n.node_id, 100) for n in manifest.nodes]

    # The root key is in node-1's key store only; every private file is 0600.
    for node in manifest.nodes:
        purposes = {r.purpose for r in KeyStore.list_records(devnet.base / node.data_dir / "keys")}
        assert (ROOT_KEY_PURPOSE in purposes) == (node.name == "node-1")
        assert (devnet.base / node.data_dir / "trustchain.toml").stat().st_mode & 0o777 == 0o600
    for name in ("devnet.json", "passphrase"):
        assert (devnet.base / name).stat().st_mode & 0o777 == 0o600

    # Each node names the others' QUIC addresses as its peers.
    config = load_config(devnet.base / "node-1", environ={})
    assert config.peers == [f"[::1]:{n.ports.quic}" for n in manifest.nodes[1:]]
    assert config.listen == ["::1"]


def _node_identity(data_dir: Path, passphrase: str, manifest: Manifest,
                   node: DevnetNode, root: x509.Certificate) -> TlsIdentity:
    """A node's node certificate, chain and key, loaded as the node loads them at start."""
    keystore = KeyStore.open(data_dir / "keys", passphrase)
    with open_database(data_dir, readonly=True) as db:  # nothing is due: nothing is written
        credentials = ensure_transport_credentials(
            keystore, NodeStore(db), root=root, root_key_purpose=ROOT_KEY_PURPOSE,
            network=manifest.network_name, origin=manifest.origin, node_id=node.node_id,
            now=datetime.now(UTC))
    return credentials.node


async def test_a_node_certificate_is_a_node_identity_to_another_node(devnet: Devnet) -> None:
    manifest = load_manifest(devnet.base)
    assert manifest is not None
    node1, node2 = manifest.nodes[:2]
    passphrase = (devnet.base / "passphrase").read_text().strip()
    root = parse_genesis((devnet.base / node1.data_dir / "genesis.json").read_bytes()).root_certificate
    identity = _node_identity(devnet.base / node2.data_dir, passphrase, manifest, node2, root)
    uris = identity.certificate.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.UniformResourceIdentifier)
    assert uris == [node_uri(manifest.network_name, node2.node_id)]
    server_name = manifest.origin.rstrip(".")
    for ident, expected in ((None, Status.FORBIDDEN), (identity, Status.OK)):
        async with connect("::1", node1.ports.quic, root=root, server_name=server_name,
                           identity=ident) as client:
            response = await client.request("consensus", "validators")  # node identities only
        assert response.status == expected, response.message
    validators = json.loads(response.message)
    assert [v["node_id"] for v in validators] == [n.node_id for n in manifest.nodes]


def test_up_again_starts_nothing_and_keeps_its_size(devnet: Devnet) -> None:
    before = load_manifest(devnet.base)
    again = run_cli("devnet", "up", "--base-dir", devnet.base)
    assert again.returncode == 0, again.stderr
    assert "started: none; already up: node-1, node-2, node-3" in again.stdout
    assert load_manifest(devnet.base) == before  # the same processes
    other = run_cli("devnet", "up", "--nodes", "4", "--base-dir", devnet.base)
    assert other.returncode == 1 and "holds a devnet of 3 nodes, not 4" in other.stderr
    assert "Traceback" not in other.stderr


def test_up_starts_only_the_nodes_that_are_down(devnet: Devnet) -> None:
    """node-1 stops; `up` starts node-1 only, and when it cannot, stops it again and
    leaves the others alone (the next test takes them down)."""
    manifest = load_manifest(devnet.base)
    assert manifest is not None
    node1, *others = manifest.nodes
    assert node1.pid is not None
    pidfd = os.pidfd_open(node1.pid)
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGTERM)
        assert select.select([pidfd], [], [], 30)[0], "node-1 did not stop"
    finally:
        os.close(pidfd)

    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("::1", node1.ports.quic))  # node-1 cannot listen
        failed = run_cli("devnet", "up", "--base-dir", devnet.base)
    assert failed.returncode == 1
    assert "node-1 exited with status 1" in failed.stderr
    assert "Address already in use" in failed.stderr  # the log's tail
    after = load_manifest(devnet.base)
    assert after is not None and after.nodes[0].pid is None
    assert after.nodes[1:] == others  # untouched: the same processes, still running
    assert all(n.pid is not None and process_alive(n.pid) for n in others)


def test_down_stops_every_process(devnet: Devnet) -> None:
    before = load_manifest(devnet.base)
    assert before is not None
    running = [node for node in before.nodes if node.pid is not None]
    assert running
    down = run_cli("devnet", "down", "--base-dir", devnet.base)
    assert down.returncode == 0, down.stderr
    assert f"stopped: {', '.join(node.name for node in running)}\n" in down.stdout
    assert not any(process_alive(node.pid) for node in running if node.pid is not None)
    assert processes_naming(devnet.base) == []
    assert all(not n["up"] and n["pid"] is None for n in devnet.status()["nodes"])
    for node in running:  # a clean shutdown, not a kill
        last_run = (devnet.base / node.data_dir / "serve.log").read_text().rsplit(" of network ")[-1]
        assert "stopped cleanly" in last_run
    again = run_cli("devnet", "down", "--base-dir", devnet.base)
    assert again.returncode == 0 and "stopped: none" in again.stdout


def test_up_again_reuses_the_ports(devnet: Devnet) -> None:
    manifest = load_manifest(devnet.base)
    assert manifest is not None
    up = run_cli("devnet", "up", "--base-dir", devnet.base)
    assert up.returncode == 0, up.stderr
    _check_up(devnet, {node.name: node.ports.model_dump() for node in manifest.nodes})


def test_interrupted_or_foreign_directories_are_refused(tmp_path: Path) -> None:
    half = tmp_path / "half"
    (half / "node-1").mkdir(parents=True)
    for command in ("up", "status"):
        result = run_cli("devnet", command, "--base-dir", half)
        assert result.returncode == 1, result.stderr
        assert "incomplete devnet" in result.stderr and "interrupted" in result.stderr
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine\n")
    result = run_cli("devnet", "up", "--base-dir", foreign)
    assert result.returncode == 1 and "not empty and holds no devnet" in result.stderr
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    assert run_cli("devnet", "up", "--nodes", "17", "--base-dir", foreign).returncode == 2
