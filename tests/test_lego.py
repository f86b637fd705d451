"""lego (go-acme's client, Debian package) against a running node, with its default
ES256 account key: a certificate over http-01 and one over tls-alpn-01 (RFC 8737: the
node connects with ALPN acme-tls/1 to the port ``acme_tls_alpn01_port`` names, where
lego answers with its challenge certificate).  Each carries SCTs and ``openssl verify
-purpose sslserver`` accepts it under the genesis root."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from bootstrap.init import InitResult
from tests.support import NodeProcess, run_cli
from tests.test_acme_orders import free_port, start_acme_node
from tests.test_certbot import check

NAME = "www.alpha.trust.example.net"


@pytest.fixture
def node_for_lego(node: InitResult, data_dir: Path, node_processes: list[NodeProcess]
                  ) -> tuple[str, int, int]:
    assert shutil.which("lego"), "lego is a test tool: make test installs it (Debian lego)"
    http_port, tls_port = free_port(), free_port()
    base, _admin = start_acme_node(data_dir, node_processes, acme_http01_port=http_port,
                                   acme_tls_alpn01_port=tls_port)
    return base, http_port, tls_port


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
