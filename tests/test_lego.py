"""lego (go-acme's client, Debian package) against a running node, with its default
ES256 account key: a certificate over http-01 and one over tls-alpn-01 (RFC 8737: the
node connects with ALPN acme-tls/1 to the port ``acme_tls_alpn01_port`` names, where
lego answers with its challenge certificate).  Each carries SCTs and ``openssl verify
-purpose sslserver`` accepts it under the genesis root."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from bootstrap.init import InitResult
from tests.support import NodeProcess, run_cli
from tests.test_certbot import check

NAME = "www.alpha.trust.example.net"


def free_port() -> int:
    with socket.socket(socket.AF_INET6) as probe:
        probe.bind(("::1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def node_for_lego(node: InitResult, data_dir: Path, node_processes: list[NodeProcess]
                  ) -> Iterator[tuple[str, int, int]]:
    assert shutil.which("lego"), "lego is a test tool: make test installs it (Debian lego)"
    http_port, tls_port = free_port(), free_port()
    config = data_dir / "trustchain.toml"
    kept = [line for line in config.read_text().splitlines()
            if not line.lstrip("# ").startswith(("acme_http01_port", "acme_tls_alpn01_port"))]
    config.write_text("\n".join([f"acme_http01_port = {http_port}",
                                 f"acme_tls_alpn01_port = {tls_port}", *kept]) + "\n")
    proc = NodeProcess.start(data_dir)
    node_processes.append(proc)
    proc.wait_ready()
    admin: list[str | Path] = ["--data-dir", data_dir, "--server",
                               "[{}]:{}".format(*proc.address("quic"))]
    for command in (["network", "register", "alpha"], ["record", "add", NAME, "AAAA", "::1"]):
        result = run_cli(*command, *admin)
        assert result.returncode == 0, result.stderr
    yield "http://[{}]:{}".format(*proc.address("http")), http_port, tls_port


@pytest.mark.parametrize("solver", ["http", "tls"])
def test_lego_obtains_a_certificate(node_for_lego: tuple[str, int, int], solver: str,
                                    data_dir: Path, tmp_path: Path) -> None:
    base, http_port, tls_port = node_for_lego
    port = http_port if solver == "http" else tls_port
    lego = subprocess.run(
        ["lego", "--server", f"{base}/acme/directory", "--email", "ops@example.com",
         "--accept-tos", "--domains", NAME, f"--{solver}", f"--{solver}.port", f"[::1]:{port}",
         "--key-type", "ec256", "--path", tmp_path / "lego", "run"],
        capture_output=True, text=True, timeout=180)
    assert lego.returncode == 0, lego.stdout + lego.stderr
    assert "The server validated our request" in lego.stderr, lego.stderr
    key = next((tmp_path / "lego" / "accounts").rglob("*.key")).read_text()
    assert "EC PRIVATE KEY" in key  # the account key lego made: P-256, so ES256
    root = tmp_path / "root.pem"
    root.write_text(run_cli("genesis", "show", "--data-dir", data_dir, "--root-pem").stdout)
    leaf = check(tmp_path / "lego" / "certificates" / f"{NAME}.crt", root)
    assert leaf.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == [NAME]
