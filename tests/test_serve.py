"""`trustchain serve` as a process: listening, refusing, stopping cleanly."""

from __future__ import annotations

import http.client
import json
import signal
from pathlib import Path

import pytest

from bootstrap.init import InitResult
from tests.support import (
    NodeProcess,
    assert_no_plaintext_private_keys,
    cli_env,
    run_cli,
)


def _get(host: str, port: int, path: str, method: str = "GET") -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, response.getheader("content-type") or "", response.read()
    finally:
        conn.close()


def _start(data_dir: Path, procs: list[NodeProcess], *args: str, **kw) -> NodeProcess:
    proc = NodeProcess.start(data_dir, "--http-port", "0", *args, **kw)
    procs.append(proc)
    return proc


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serve_listens_and_stops_cleanly(
    node: InitResult, data_dir: Path, node_processes: list[NodeProcess], signum: int
) -> None:
    proc = _start(data_dir, node_processes).wait_ready()
    host, port = proc.address("http")
    assert host == "::1"  # the development default binds IPv6 loopback
    status, ctype, body = _get(host, port, "/genesis.json")
    assert status == 200 and ctype == "application/json"
    assert body == (data_dir / "genesis.json").read_bytes()
    status, _, body = _get(host, port, "/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    running = json.loads(run_cli("status", "--data-dir", data_dir, "--json").stdout)
    assert running["running"] is True

    assert proc.stop(signum) == 0
    assert any("stopped cleanly" in line for line in proc.log), proc.log
    after = json.loads(run_cli("status", "--data-dir", data_dir, "--json").stdout)
    assert after["running"] is False
    assert after["last_run"]["stopped_at"] is not None  # the shutdown write was not lost
    assert_no_plaintext_private_keys(data_dir)


def test_http_errors_are_problem_documents(
    node: InitResult, data_dir: Path, node_processes: list[NodeProcess]
) -> None:
    proc = _start(data_dir, node_processes).wait_ready()
    host, port = proc.address("http")
    status, ctype, body = _get(host, port, "/no/such/thing")
    assert (status, ctype) == (404, "application/problem+json")
    assert json.loads(body)["status"] == 404
    status, ctype, _ = _get(host, port, "/genesis.json", method="DELETE")
    assert (status, ctype) == (405, "application/problem+json")
    assert proc.stop() == 0


def test_second_serve_is_refused(
    node: InitResult, data_dir: Path, node_processes: list[NodeProcess]
) -> None:
    first = _start(data_dir, node_processes).wait_ready()
    second = run_cli("serve", "--data-dir", data_dir, "--http-port", "0")
    assert second.returncode == 1
    assert "in use by another trustchain process" in second.stderr
    assert "Traceback" not in second.stderr
    assert first.proc.poll() is None  # the running node is unaffected
    assert first.stop() == 0


def test_crash_is_reported_at_next_start(
    node: InitResult, data_dir: Path, node_processes: list[NodeProcess]
) -> None:
    first = _start(data_dir, node_processes).wait_ready()
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    status = run_cli("status", "--data-dir", data_dir)
    assert "did not shut down cleanly" in status.stdout
    # The kernel released the lock with the process: no stale lock to clear by hand.
    second = _start(data_dir, node_processes)
    second.wait_for(r"previous run .* did not shut down cleanly")
    second.wait_ready()
    assert second.stop() == 0


def test_port_in_use_is_a_clear_error(
    node: InitResult, data_dir: Path, node_processes: list[NodeProcess]
) -> None:
    first = _start(data_dir, node_processes).wait_ready()
    _, port = first.address("http")
    assert first.stop() == 0
    import socket

    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as blocker:
        blocker.bind(("::1", 0))
        blocker.listen()
        busy = blocker.getsockname()[1]
        result = run_cli("serve", "--data-dir", data_dir, "--http-port", str(busy))
    assert result.returncode == 1
    assert f"cannot listen on [::1]:{busy}/tcp" in result.stderr
    assert "Traceback" not in result.stderr
    del port


def test_tampered_genesis_on_disk_is_refused(
    node: InitResult, data_dir: Path, node_processes: list[NodeProcess]
) -> None:
    path = data_dir / "genesis.json"
    path.write_bytes(path.read_bytes().replace(b'"stake":100', b'"stake":999'))
    result = run_cli("serve", "--data-dir", data_dir, "--http-port", "0")
    assert result.returncode == 1
    assert "not the genesis this node was created with" in result.stderr


def test_environment_overrides_config(
    node: InitResult, data_dir: Path, node_processes: list[NodeProcess]
) -> None:
    proc = _start(data_dir, node_processes,
                  env=cli_env(TRUSTCHAIN_LISTEN="127.0.0.1", TRUSTCHAIN_LOG_LEVEL="debug"))
    proc.wait_ready()
    assert proc.address("http")[0] == "127.0.0.1"
    assert proc.stop() == 0


@pytest.mark.parametrize("via", ["doq", "stoq"])
def test_query_a_running_node_over_quic(
    node: InitResult, data_dir: Path, node_processes: list[NodeProcess], via: str
) -> None:
    """The whole path: CLI client, pinned genesis root, QUIC, the node's DNS handler.

    The node serves no zone above www.example.org, so the honest answer is REFUSED.
    """
    proc = _start(data_dir, node_processes).wait_ready()
    host, port = proc.address("quic")
    result = run_cli("query", "www.example.org", "AAAA", "--server", f"[{host}]:{port}",
                     "--via", via, "--data-dir", data_dir)
    assert result.returncode == 0, result.stderr
    assert "rcode REFUSED" in result.stdout
    assert "www.example.org. IN AAAA" in result.stdout
    assert proc.stop() == 0


def test_query_with_another_networks_pin_fails(
    node: InitResult, data_dir: Path, node_processes: list[NodeProcess], tmp_path: Path
) -> None:
    other = tmp_path / "other"
    assert run_cli("init", "--data-dir", other).returncode == 0
    pin = run_cli("genesis", "show", "--data-dir", other).stdout.strip()
    proc = _start(data_dir, node_processes).wait_ready()
    host, port = proc.address("quic")
    result = run_cli("query", "www.trust.example.net", "--server", f"[{host}]:{port}",
                     "--genesis", other / "genesis.json", "--pin", pin,
                     "--server-name", "trust.example.net")
    assert result.returncode == 1
    assert "cannot connect" in result.stderr and "certificate" in result.stderr
    assert "Traceback" not in result.stderr
    assert proc.stop() == 0


def test_https_serves_the_same_api_with_the_node_certificate(
    node: InitResult, data_dir: Path, node_processes: list[NodeProcess], tmp_path: Path
) -> None:
    import subprocess

    proc = _start(data_dir, node_processes).wait_ready()
    host, port = proc.address("https")
    root = tmp_path / "root.pem"
    root.write_text(run_cli("genesis", "show", "--data-dir", data_dir, "--root-pem").stdout)
    result = subprocess.run(
        ["curl", "--silent", "--show-error", "--fail", "--cacert", str(root),
         "--connect-to", f"trust.example.net:443:[{host}]:{port}",
         "https://trust.example.net/genesis.json"],
        capture_output=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == (data_dir / "genesis.json").read_bytes()
    sth = subprocess.run(  # the CT API is on the same application
        ["curl", "--silent", "--show-error", "--fail", "--cacert", str(root),
         "--connect-to", f"trust.example.net:443:[{host}]:{port}",
         "https://trust.example.net/logs/a/ct/v1/get-sth"],
        capture_output=True, timeout=30,
    )
    assert sth.returncode == 0 and json.loads(sth.stdout)["tree_size"] == 0, sth.stderr
    wrong = subprocess.run(
        ["curl", "--silent", "--cacert", str(root),
         "--connect-to", f"elsewhere.example:443:[{host}]:{port}", "https://elsewhere.example/"],
        capture_output=True, timeout=30,
    )
    assert wrong.returncode == 60  # curl: peer certificate cannot be authenticated
    assert proc.stop() == 0


def test_http3_serves_the_same_api(
    node: InitResult, data_dir: Path, node_processes: list[NodeProcess]
) -> None:
    import asyncio

    from tests.h3client import h3_get

    proc = _start(data_dir, node_processes).wait_ready()
    host, port = proc.address("quic")
    status, headers, body = asyncio.run(h3_get(
        host, port, "/genesis.json", root=node.genesis.root_certificate,
        authority="trust.example.net"))
    assert status == 200 and headers[b"content-type"] == b"application/json"
    assert body == (data_dir / "genesis.json").read_bytes()
    status, headers, body = asyncio.run(h3_get(
        host, port, "/logs/b/ct/v1/get-roots", root=node.genesis.root_certificate,
        authority="trust.example.net"))
    assert status == 200 and len(json.loads(body)["certificates"]) == 1
    status, headers, body = asyncio.run(h3_get(
        host, port, "/nope", root=node.genesis.root_certificate, authority="trust.example.net"))
    assert status == 404 and headers[b"content-type"] == b"application/problem+json"
    assert proc.stop() == 0
