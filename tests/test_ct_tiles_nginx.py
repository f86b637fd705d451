"""nginx serves a log's static-ct-api directory; `trustchain ct verify-inclusion --tiles` proves
a certificate's inclusion from those files alone."""

from __future__ import annotations

import base64
import json
import os
import select
import signal
import socket
import subprocess
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from bootstrap.init import InitResult
from tests.support import NodeProcess, run_cli
from tests.test_ct_server import node_chain, request, start_node
from tests.test_federation import wait_for
from trustchain.datadir import DataDir
from trustchain.storage.database import open_database
from trustchain.storage.node import NodeStore


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
        sock.bind(("::1", 0))
        return int(sock.getsockname()[1])


def start_nginx(root: Path, work: Path) -> tuple[int, int]:
    """nginx (daemonised: when the command returns, it is listening); returns (port, pid)."""
    port = free_tcp_port()
    conf = work / "nginx.conf"
    conf.write_text(f"""{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    types {{ }}
    default_type application/octet-stream;
    server {{
        listen [::1]:{port};
        root {root};
    }}
}}
""")
    started = subprocess.run(["nginx", "-p", str(work), "-c", str(conf)],
                             capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, started.stderr
    return port, int((work / "nginx.pid").read_text())


def stop_nginx(pid: int) -> None:
    """SIGTERM, then wait on a pidfd (nginx daemonised, so it is not our child)."""
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        os.kill(pid, signal.SIGTERM)
        ready, _, _ = select.select([handle], [], [], 30)
        assert ready, "nginx did not stop"
    finally:
        os.close(handle)


def test_nginx_serves_tiles_and_the_client_proves_inclusion(
    node: InitResult, data_dir: Path, node_processes: list[NodeProcess], tmp_path: Path
) -> None:
    proc, host, port = start_node(data_dir, node_processes)
    chain = node_chain(data_dir)
    with open_database(data_dir, readonly=True) as db:
        admin = NodeStore(db).latest_certificate("admin-tls")
    assert admin is not None
    admin_b64 = base64.b64encode(admin.public_bytes(Encoding.DER)).decode()
    for submitted in (chain, [admin_b64, chain[1]]):
        status, _, body = request(host, port, "POST", "/logs/a/ct/v1/add-chain",
                                  {"chain": submitted})
        assert status == 200, body
    logs = json.loads(request(host, port, "GET", "/logs")[2])["operators"][0]["logs"]
    key = logs[0]["key"]
    tiles_dir = DataDir(data_dir).ct_tiles_dir / "a"
    # The file is rewritten once cosignatures arrive, a moment after the node serves them:
    # the same bytes soon.
    wait_for("the checkpoint file is the one the node serves", lambda: (
        tiles_dir / "checkpoint").read_bytes() == request(host, port, "GET",
                                                          "/logs/a/checkpoint")[2])
    work = tmp_path / "nginx"
    work.mkdir()
    nginx_port, pid = start_nginx(tiles_dir, work)
    try:
        url = f"http://[::1]:{nginx_port}/"
        pem = tmp_path / "admin.pem"
        pem.write_bytes(admin.public_bytes(Encoding.PEM))
        proven = run_cli("ct", "verify-inclusion", pem, "--tiles", url, "--log-key", key)
        assert proven.returncode == 0, proven.stderr
        assert proven.stdout.startswith("OK: entry 1 of ") and "checkpoint of 2" in proven.stdout
        # Log b never saw this certificate; a wrong key fails the checkpoint.
        elsewhere = run_cli("ct", "verify-inclusion", pem, "--tiles", url, "--log-key",
                            logs[1]["key"])
        assert elsewhere.returncode != 0 and "checkpoint" in elsewhere.stderr
        # Tampering with a served tile is caught against the signed checkpoint.
        tile = tiles_dir / "tile" / "0" / "000.p" / "2"  # the one a size-2 checkpoint needs
        tile.write_bytes(bytes(32) + tile.read_bytes()[32:])
        tampered = run_cli("ct", "verify-inclusion", pem, "--tiles", url, "--log-key", key)
        assert tampered.returncode != 0 and "tile hash" in tampered.stderr
    finally:
        stop_nginx(pid)
    assert proc.stop() == 0
