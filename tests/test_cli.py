"""The command line as users script it: exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support import PASSPHRASE, cli_env, run_cli


def _assert_one_line_error(result, text: str) -> None:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("trustchain: error:")]
    assert len(lines) == 1, result.stderr
    assert text in lines[0], lines[0]


@pytest.fixture
def cli_node(tmp_path: Path) -> Path:
    data_dir = tmp_path / "data"
    result = run_cli("init", "--data-dir", data_dir, "--network-name", "testnet",
                     "--origin", "trust.example.net")
    assert result.returncode == 0, result.stderr
    assert "genesis pin (SHA-256):" in result.stdout
    return data_dir


def test_init_then_verify_with_the_shown_pin(cli_node: Path) -> None:
    """The acceptance path: `genesis verify data/genesis.json --pin $(genesis show)`."""
    show = run_cli("genesis", "show", "--data-dir", cli_node)
    assert show.returncode == 0
    pin = show.stdout.strip()
    assert len(pin) == 64 and show.stdout.count("\n") == 1  # usable as $(...)
    verify = run_cli("genesis", "verify", cli_node / "genesis.json", "--pin", pin)
    assert verify.returncode == 0, verify.stderr
    assert verify.stdout.startswith("OK: genesis of network testnet (trust.example.net.)")


def test_flipped_byte_fails_verification(cli_node: Path, tmp_path: Path) -> None:
    pin = run_cli("genesis", "show", "--data-dir", cli_node).stdout.strip()
    data = bytearray((cli_node / "genesis.json").read_bytes())
    data[len(data) // 2] ^= 0x01
    copy = tmp_path / "tampered.json"
    copy.write_bytes(bytes(data))
    _assert_one_line_error(run_cli("genesis", "verify", copy, "--pin", pin), "does not match")
    # Re-pinned to the tampered bytes, the signatures still catch it.
    import hashlib

    result = run_cli("genesis", "verify", copy, "--pin", hashlib.sha256(data).hexdigest())
    _assert_one_line_error(result, "genesis")


def test_genesis_show_json(cli_node: Path) -> None:
    result = run_cli("genesis", "show", "--data-dir", cli_node, "--json")
    info = json.loads(result.stdout)
    assert info["network_name"] == "testnet" and len(info["validators"]) == 1
    assert info["pin"] == run_cli("genesis", "show", "--data-dir", cli_node).stdout.strip()


def test_genesis_show_root_pem(cli_node: Path, tmp_path: Path) -> None:
    result = run_cli("genesis", "show", "--data-dir", cli_node, "--root-pem")
    assert result.stdout.startswith("-----BEGIN CERTIFICATE-----")
    (tmp_path / "root.pem").write_text(result.stdout)
    import subprocess

    text = subprocess.run(["openssl", "x509", "-noout", "-subject", "-in", tmp_path / "root.pem"],
                          capture_output=True, text=True, check=True).stdout
    assert "testnet TrustChain Genesis Root" in text


def test_status(cli_node: Path) -> None:
    result = run_cli("status", "--data-dir", cli_node)
    assert result.returncode == 0, result.stderr
    assert "network     testnet (origin trust.example.net.)" in result.stdout
    assert "never started" in result.stdout
    info = json.loads(run_cli("status", "--data-dir", cli_node, "--json").stdout)
    assert info["genesis"] == "valid" and info["running"] is False
    assert sorted(k["purpose"] for k in info["keys"]) == [
        "admin-tls", "consensus-ed25519", "consensus-ml-dsa-65", "genesis-root",
        "infrastructure-ca", "node-tls",
    ]


def test_status_needs_no_passphrase(cli_node: Path) -> None:
    env = cli_env()
    del env["TRUSTCHAIN_PASSPHRASE"]
    assert run_cli("status", "--data-dir", cli_node, env=env).returncode == 0


def test_second_init_refused(cli_node: Path) -> None:
    _assert_one_line_error(run_cli("init", "--data-dir", cli_node), "already holds a node")


def test_init_without_passphrase_source(tmp_path: Path) -> None:
    env = cli_env()
    del env["TRUSTCHAIN_PASSPHRASE"]
    result = run_cli("init", "--data-dir", tmp_path / "d", env=env)
    _assert_one_line_error(result, "no passphrase")
    assert not (tmp_path / "d").exists()


def test_passphrase_file(tmp_path: Path) -> None:
    secret = tmp_path / "pass"
    secret.write_text("from a file, not argv\n")
    os.chmod(secret, 0o600)
    env = cli_env()
    env["TRUSTCHAIN_PASSPHRASE"] = "ignored: the file comes first"
    assert run_cli("init", "--data-dir", tmp_path / "d", "--passphrase-file", secret,
                   env=env).returncode == 0
    from trustchain.keystore import KeyStore

    KeyStore.open(tmp_path / "d" / "keys", "from a file, not argv")


def test_short_passphrase_refused(tmp_path: Path) -> None:
    result = run_cli("init", "--data-dir", tmp_path / "d", env=cli_env(TRUSTCHAIN_PASSPHRASE="short"))
    _assert_one_line_error(result, "at least 8 characters")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "--data-dir", "/nonexistent/trustchain"], "does not exist"),
        (["status", "--data-dir", "/nonexistent/trustchain"], "does not exist"),
        (["genesis", "verify", "/nonexistent/genesis.json", "--pin", "0" * 64], "cannot read"),
        (["genesis", "verify", "pyproject.toml", "--pin", "xyz"], "not a SHA-256 pin"),
    ],
)
def test_user_mistakes_give_one_line(args: list[str], message: str) -> None:
    _assert_one_line_error(run_cli(*args), message)


def test_bad_config_flag_is_a_one_line_error(cli_node: Path) -> None:
    result = run_cli("serve", "--data-dir", cli_node, "--dns-port", "fifty")
    _assert_one_line_error(result, "command line: dns_port")


def test_usage_errors_exit_2() -> None:
    assert run_cli().returncode == 2
    assert run_cli("genesis", "verify", "x.json").returncode == 2  # --pin is required
    assert run_cli("frobnicate").returncode == 2


def test_wrong_passphrase_modifies_nothing(cli_node: Path) -> None:
    from tests.support import snapshot_tree

    before = snapshot_tree(cli_node)
    result = run_cli("serve", "--data-dir", cli_node, "--http-port", "0",
                     env=cli_env(TRUSTCHAIN_PASSPHRASE="not the passphrase"))
    _assert_one_line_error(result, "passphrase does not unlock")
    assert snapshot_tree(cli_node) == before
    assert PASSPHRASE  # the right one still works (checked by the serve tests)


def _run_on_terminal(args: list[str], answers: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as its controlling terminal, answering prompts."""
    import fcntl
    import pty
    import select
    import subprocess
    import sys
    import termios
    import time

    master, slave = pty.openpty()

    def make_controlling_tty() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        [sys.executable, "-m", "trustchain", *args], stdin=slave, stdout=slave, stderr=slave,
        env=env, preexec_fn=make_controlling_tty, close_fds=True,
    )
    os.close(slave)
    output = b""
    pending = list(answers)
    deadline = time.monotonic() + 60  # a bound on the whole exchange, not a sleep
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
            if pending and output.rstrip().endswith((b"passphrase:", b"Passphrase:")):
                os.write(master, pending.pop(0).encode() + b"\n")
                output += b"<answered>"
        return proc.wait(timeout=30), output.decode(errors="replace")
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()


def test_interactive_prompt_and_progress(tmp_path: Path) -> None:
    env = cli_env()
    del env["TRUSTCHAIN_PASSPHRASE"]
    data_dir = tmp_path / "d"
    code, out = _run_on_terminal(
        ["init", "--data-dir", str(data_dir)], ["typed at a prompt", "typed at a prompt"], env)
    assert code == 0, out
    assert "TrustChain passphrase:" in out and "Repeat passphrase:" in out
    assert "typed at a prompt" not in out  # not echoed
    assert "deriving the key-encryption key" in out  # progress is shown on a terminal
    from trustchain.keystore import KeyStore

    KeyStore.open(data_dir / "keys", "typed at a prompt")


def test_interactive_prompt_mismatch(tmp_path: Path) -> None:
    env = cli_env()
    del env["TRUSTCHAIN_PASSPHRASE"]
    code, out = _run_on_terminal(
        ["init", "--data-dir", str(tmp_path / "d")], ["first answer", "second answer"], env)
    assert code == 1
    assert "the passphrases do not match" in out


def test_audit_verify_on_a_node_that_never_ran(cli_node: Path) -> None:
    result = run_cli("audit", "verify", "--data-dir", cli_node, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["ok"], report["count"], report["problem"]) == (True, 0, None)


def test_a_reader_that_goes_away_gets_no_traceback(cli_node: Path) -> None:
    """``trustchain status | head`` printed a BrokenPipeError traceback."""
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "trustchain", "status", "--data-dir", str(cli_node)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env())
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # before it writes anything: every write meets a closed pipe
    stderr = process.stderr.read()
    assert process.wait(timeout=60) in (0, 141)
    assert b"Traceback" not in stderr and b"BrokenPipe" not in stderr, stderr.decode()
