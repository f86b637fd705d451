"""certbot itself (EFF's ACME client, from PyPI) against a running node: a certificate
with ``--standalone`` (certbot answers http-01 on the port the node's
``acme_http01_port`` names), renewed, and revoked (``openssl ocsp`` against the node
then says revoked); and one with ``--manual`` dns-01 whose hook is a single
``trustchain record add`` of the TXT record.  Each certificate carries SCTs and
``openssl verify -purpose sslserver`` accepts it under the genesis root."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from bootstrap.init import InitResult
from tests.support import NodeProcess, cli_env, run_cli
from tests.test_acme_orders import free_port, ocsp, start_acme_node
from tests.test_ca_server import credential_csr

NAME = "www.alpha.trust.example.net"
CERTBOT = Path(sys.executable).with_name("certbot")


@pytest.fixture
def node_for_certbot(node: InitResult, data_dir: Path, node_processes: list[NodeProcess]
                     ) -> tuple[str, list[str | Path], int]:
    assert CERTBOT.exists(), "certbot is a test dependency: make test installs it"
    port = free_port()  # for certbot's own http-01 responder
    base, admin = start_acme_node(data_dir, node_processes, acme_http01_port=port)
    return base, admin, port


def certbot(tmp_path: Path, base: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CERTBOT, *args, "--non-interactive", "--server", f"{base}/acme/directory",
         "--config-dir", tmp_path / "config", "--work-dir", tmp_path / "work",
         "--logs-dir", tmp_path / "logs"], capture_output=True, text=True, timeout=180,
        env=cli_env())


def check(chain_file: Path, root: Path) -> x509.Certificate:
    chain = x509.load_pem_x509_certificates(chain_file.read_bytes())
    leaf = chain[0]
    assert len(leaf.extensions.get_extension_for_class(
        x509.PrecertificateSignedCertificateTimestamps).value) == 2
    verify = subprocess.run(["openssl", "verify", "-purpose", "sslserver", "-CAfile", root,
                             "-untrusted", chain_file, chain_file], capture_output=True,
                            text=True, timeout=30)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    return leaf


def test_certbot_standalone_obtains_renews_and_revokes(
        node_for_certbot: tuple[str, list[str | Path], int], data_dir: Path,
        tmp_path: Path) -> None:
    base, _admin, port = node_for_certbot
    root = tmp_path / "root.pem"
    root.write_text(run_cli("genesis", "show", "--data-dir", data_dir, "--root-pem").stdout)
    obtained = certbot(tmp_path, base, "certonly", "--standalone", "--agree-tos",
                       "--register-unsafely-without-email", "--http-01-address", "::1",
                       "--http-01-port", str(port), "-d", NAME)
    assert obtained.returncode == 0, obtained.stdout + obtained.stderr
    live = tmp_path / "config" / "live" / NAME
    first = check(live / "fullchain.pem", root)

    renewed = certbot(tmp_path, base, "renew", "--force-renewal", "--no-random-sleep-on-renew",
                      "--http-01-address", "::1", "--http-01-port", str(port))
    assert renewed.returncode == 0, renewed.stdout + renewed.stderr
    second = check(live / "fullchain.pem", root)
    assert second.serial_number != first.serial_number

    revoked = certbot(tmp_path, base, "revoke", "--cert-path", live / "cert.pem",
                      "--reason", "keycompromise", "--no-delete-after-revoke")
    assert revoked.returncode == 0, revoked.stdout + revoked.stderr
    chain = x509.load_pem_x509_certificates((live / "fullchain.pem").read_bytes())
    assert ocsp(base, tmp_path, chain, root) == "revoked"


def test_certbot_manual_dns01_with_a_trustchain_record_add_hook(
        node_for_certbot: tuple[str, list[str | Path], int], data_dir: Path,
        tmp_path: Path) -> None:
    """The hook writes the TXT record with the network's own credential (alpha's admin
    holds no data directory of the node); that credential changes nothing else."""
    base, admin, _port = node_for_certbot
    root = tmp_path / "root.pem"
    root.write_text(run_cli("genesis", "show", "--data-dir", data_dir, "--root-pem").stdout)
    own = tmp_path / "alpha-admin"
    own.mkdir()
    credential_csr(own)
    given = run_cli("ca", "issue", "--csr", own / "cred.csr", "--network", "alpha",
                    "--profile", "network-admin", *admin)
    assert given.returncode == 0, given.stderr
    (own / "cred.pem").write_text(given.stdout)
    shutil.copy(data_dir / "genesis.json", own / "genesis.json")
    pin = run_cli("genesis", "show", "--data-dir", data_dir).stdout.split()[0]
    as_alpha = ["--cert", own / "cred.pem", "--key", own / "cred.key", "--genesis",
                own / "genesis.json", "--pin", pin, "--data-dir", own / "no-node-here",
                "--server", admin[-1]]
    other = run_cli("record", "add", f"api.{NAME[4:]}", "AAAA", "::1", *as_alpha)
    assert other.returncode == 1 and "only _acme-challenge TXT" in other.stderr, other.stderr

    trustchain = shutil.which("trustchain", path=str(Path(sys.executable).parent))
    assert trustchain is not None
    hook = tmp_path / "auth-hook.sh"
    hook.write_text("#!/bin/sh\nexec " + " ".join([
        trustchain, "record", "add", '"_acme-challenge.$CERTBOT_DOMAIN"', "TXT",
        '"$CERTBOT_VALIDATION"', *map(str, as_alpha)]) + "\n")
    hook.chmod(0o755)
    obtained = certbot(tmp_path, base, "certonly", "--manual", "--preferred-challenges",
                       "dns", "--manual-auth-hook", hook, "--agree-tos",
                       "--register-unsafely-without-email", "-d", NAME)
    assert obtained.returncode == 0, obtained.stdout + obtained.stderr
    check(tmp_path / "config" / "live" / NAME / "fullchain.pem", root)
