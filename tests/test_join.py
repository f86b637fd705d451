"""Enrolment with two nodes on [::1]: the transport/certificate cycle, broken honestly.

These joins wait for the peer's operator (``--approval operator``); admission by
consensus, with the four proofs, is tested on a devnet in tests/test_admission.py.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

from bootstrap.init import InitResult
from tests.support import NodeProcess, run_cli


def _serve(data_dir: Path, procs: list[NodeProcess]) -> tuple[NodeProcess, str]:
    proc = NodeProcess.start(data_dir)
    procs.append(proc)
    proc.wait_ready()
    host, port = proc.address("quic")
    return proc, f"[{host}]:{port}"


def _join(data_dir: Path, genesis: Path, pin: str, peer: str, procs: list[NodeProcess],
          *extra: str) -> NodeProcess:
    proc = NodeProcess.spawn("join", "--data-dir", str(data_dir), "--genesis", str(genesis),
                             "--pin", pin, "--peer", peer, "--approval", "operator", *extra)
    procs.append(proc)
    return proc


def test_join_approve_and_serve(
    node: InitResult, data_dir: Path, tmp_path: Path, node_processes: list[NodeProcess]
) -> None:
    founder, address = _serve(data_dir, node_processes)
    joiner_dir = tmp_path / "joiner"
    joiner = _join(joiner_dir, data_dir / "genesis.json", node.pin, address, node_processes)
    line = joiner.wait_for(r"trustchain node approve [0-9a-f]{32}")
    node_id = re.search(r"approve ([0-9a-f]{32})", line)[1]  # type: ignore[index]

    listing = run_cli("node", "list", "--data-dir", data_dir, "--server", address)
    assert listing.returncode == 0, listing.stderr
    assert f"{node_id}  pending" in listing.stdout
    approved = run_cli("node", "approve", node_id, "--data-dir", data_dir, "--server", address)
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.strip() == f"node {node_id}: approved"

    assert joiner.proc.wait(timeout=60) == 0, joiner.log
    joiner.drain()
    assert any(f"joined network testnet as node {node_id}" in out for out in joiner.stdout)
    assert any("mutual TLS with the peer verified" in out for out in joiner.stdout)

    # The joined node serves with the certificate it was issued; a client pinning the
    # network's genesis accepts it.
    status = run_cli("status", "--data-dir", joiner_dir, "--json")
    assert f'"node_id": "{node_id}"' in status.stdout
    second, second_address = _serve(joiner_dir, node_processes)
    result = run_cli("query", "trust.example.net", "SOA", "--server", second_address,
                     "--via", "doq", "--genesis", data_dir / "genesis.json", "--pin", node.pin)
    assert result.returncode == 0, result.stderr
    assert "rcode REFUSED" in result.stdout
    assert second.stop() == 0 and founder.stop(signal.SIGTERM) == 0


def test_rejected_enrolment(
    node: InitResult, data_dir: Path, tmp_path: Path, node_processes: list[NodeProcess]
) -> None:
    founder, address = _serve(data_dir, node_processes)
    joiner = _join(tmp_path / "joiner", data_dir / "genesis.json", node.pin, address,
                   node_processes)
    line = joiner.wait_for(r"trustchain node approve [0-9a-f]{32}")
    node_id = re.search(r"approve ([0-9a-f]{32})", line)[1]  # type: ignore[index]
    rejected = run_cli("node", "reject", node_id, "--data-dir", data_dir, "--server", address)
    assert rejected.stdout.strip() == f"node {node_id}: rejected"
    assert joiner.proc.wait(timeout=60) == 1
    joiner.drain()
    assert any("was rejected" in line for line in joiner.log)
    assert not (tmp_path / "joiner" / "genesis.json").exists()
    assert founder.stop() == 0


def test_pending_enrolment_resumes_with_the_same_identity(
    node: InitResult, data_dir: Path, tmp_path: Path, node_processes: list[NodeProcess]
) -> None:
    founder, address = _serve(data_dir, node_processes)
    joiner_dir = tmp_path / "joiner"
    first = _join(joiner_dir, data_dir / "genesis.json", node.pin, address, node_processes,
                  "--wait", "0")
    assert first.proc.wait(timeout=60) == 1
    first.drain()
    node_id = re.search(r"approve ([0-9a-f]{32})", "\n".join(first.log))[1]  # type: ignore[index]
    assert any("still waiting for approval" in line for line in first.log)
    run_cli("node", "approve", node_id, "--data-dir", data_dir, "--server", address)
    second = _join(joiner_dir, data_dir / "genesis.json", node.pin, address, node_processes)
    assert second.proc.wait(timeout=60) == 0, second.log
    second.drain()
    assert any(f"as node {node_id}" in out for out in second.stdout)
    assert founder.stop() == 0


def test_join_with_a_wrong_pin_contacts_nobody(tmp_path: Path, node: InitResult,
                                               data_dir: Path) -> None:
    result = run_cli("join", "--data-dir", tmp_path / "j", "--genesis", data_dir / "genesis.json",
                     "--pin", "0" * 64, "--peer", "[::1]:9")
    assert result.returncode == 1
    assert "does not match the pin" in result.stderr
    assert not (tmp_path / "j").exists()


def test_anonymous_client_cannot_approve(
    node: InitResult, data_dir: Path, node_processes: list[NodeProcess]
) -> None:
    import asyncio

    from transport.client import connect

    founder, address = _serve(data_dir, node_processes)
    host, port = founder.address("quic")

    async def attempt() -> int:
        async with connect(host, port, root=node.genesis.root_certificate,
                           server_name="trust.example.net") as client:
            response = await client.request("admin", "approve", b'{"node_id":"' + b"0" * 32 + b'"}')
            return response.status

    assert asyncio.run(attempt()) == 403
    assert founder.stop() == 0
