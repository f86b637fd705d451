"""Helpers shared by the tests: running the real CLI and node as processes,
and inspecting a data directory from the outside."""

from __future__ import annotations

import base64
import hashlib
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa

from trustchain.keystore import KeyStore

PASSPHRASE = "correct horse battery staple"
REPO = Path(__file__).resolve().parent.parent
#: Upper bound for a node process to reach a state; a bound, not a sleep.
PROCESS_TIMEOUT = 30.0


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRUSTCHAIN_")}
    env["TRUSTCHAIN_PASSPHRASE"] = PASSPHRASE
    env["PYTHONUNBUFFERED"] = "1"
    # Every server a test starts binds ephemeral ports (its log says which).
    for setting in ("DNS_PORT", "QUIC_PORT", "HTTPS_PORT", "HTTP_PORT"):
        env[f"TRUSTCHAIN_{setting}"] = "0"
    env.update(extra)
    return env


def run_cli(*args: str | Path, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``trustchain ARGS`` as a user would, without a terminal."""
    return subprocess.run(
        [sys.executable, "-m", "trustchain", *map(str, args)],
        env=cli_env() if env is None else env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT * 2,
        cwd=cwd or REPO,
    )


_LISTENING = re.compile(r"listening: (\w+) on \[?([0-9a-fA-F:.]+)\]?:(\d+)/(tcp|udp)")


@dataclass
class NodeProcess:
    """``trustchain serve`` running as a child process, its log read line by line."""

    proc: subprocess.Popen[str]
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    log: list[str] = field(default_factory=list)
    listening: list[tuple[str, str, int, str]] = field(default_factory=list)
    stdout: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, data_dir: Path, *args: str, env: dict[str, str] | None = None) -> NodeProcess:
        return cls.spawn("serve", "--data-dir", str(data_dir), *args, env=env)

    @classmethod
    def spawn(cls, *args: str, env: dict[str, str] | None = None) -> NodeProcess:
        """Run any ``trustchain`` command in the background, reading its stderr."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "trustchain", *args],
            env=cli_env() if env is None else env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd=REPO,
        )
        node = cls(proc)
        threading.Thread(target=node._pump, daemon=True).start()
        threading.Thread(target=node._collect_stdout, daemon=True).start()
        return node

    def _collect_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout.append(line.rstrip("\n"))

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pattern: str, timeout: float = PROCESS_TIMEOUT) -> str:
        """Block until a log line matches ``pattern``; fail if the process ends first."""
        regex = re.compile(pattern)
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no log line matching {pattern!r}; log so far: {self.log}") from None
            if line is None:
                raise AssertionError(
                    f"node exited ({self.proc.wait()}) before logging {pattern!r}: {self.log}"
                )
            self.log.append(line)
            if m := _LISTENING.search(line):
                self.listening.append((m[1], m[2], int(m[3]), m[4]))
            if regex.search(line):
                return line

    def wait_ready(self) -> NodeProcess:
        self.wait_for(r"node ready")
        return self

    def address(self, service: str) -> tuple[str, int]:
        for name, host, port, _proto in self.listening:
            if name == service:
                return host, port
        raise AssertionError(f"node is not listening for {service}: {self.log}")

    def stop(self, signum: int = signal.SIGINT) -> int:
        """Send ``signum``, read the rest of the log, return the exit status."""
        self.proc.send_signal(signum)
        code = self.proc.wait(timeout=PROCESS_TIMEOUT)
        self.drain()
        return code

    def drain_available(self) -> None:
        """Move the log lines already read into ``log`` without waiting for more."""
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return
            if line is None:
                return
            self.log.append(line)

    def drain(self) -> None:
        while True:
            try:
                line = self.lines.get(timeout=PROCESS_TIMEOUT)
            except queue.Empty:
                return
            if line is None:
                return
            self.log.append(line)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=PROCESS_TIMEOUT)


def free_dns_port() -> int:
    """A port free for both UDP and TCP on ::1 (a DNS server such as NSD needs both)."""
    while True:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as udp:
            udp.bind(("::1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("::1", port))
                except OSError:
                    continue  # the TCP twin is taken (an outgoing connection, say)
                return port


def snapshot_tree(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every entry under ``root`` with its mode, mtime and content hash."""
    snap: dict[str, tuple[int, int, str]] = {}
    for path in sorted([root, *root.rglob("*")]):
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        snap[str(path.relative_to(root))] = (st.st_mode, st.st_mtime_ns, digest)
    return snap


def _encodings(key: object) -> list[bytes]:
    """Byte forms in which a private key could leak."""
    pkcs8 = key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    forms = [pkcs8, base64.b64encode(pkcs8)]
    if isinstance(key, ec.EllipticCurvePrivateKey):
        size = (key.curve.key_size + 7) // 8
        forms.append(key.private_numbers().private_value.to_bytes(size, "big"))
    elif isinstance(key, (ed25519.Ed25519PrivateKey, mldsa.MLDSA65PrivateKey)):
        forms.append(key.private_bytes_raw())
    return forms


_PKCS8_START = re.compile(rb"\x30(?:[\x00-\x7f]|\x81.|\x82..)\x02\x01[\x00\x01]\x30", re.S)


def assert_no_plaintext_private_keys(data_dir: Path, passphrase: str = PASSPHRASE) -> None:
    """Fail if any file under ``data_dir`` holds a private key in the clear.

    Checks for PEM private-key blocks, for any unencrypted DER private key
    (every place that starts like PKCS#8 or a traditional key is parsed), and
    for the exact bytes of every key in the node's key store in its PKCS#8,
    base64 and raw forms.
    """
    keystore = KeyStore.open(data_dir / "keys", passphrase)
    secrets = [
        form for r in keystore.records()
        for form in (
            [keystore.secret(r.id), base64.b64encode(keystore.secret(r.id))]
            if r.type == "hmac-sha256" else _encodings(keystore.private_key(r.id))
        )
    ]
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        assert b"PRIVATE KEY-----" not in data, f"PEM private key in {path}"
        for match in _PKCS8_START.finditer(data):
            candidate = data[match.start():]
            try:
                serialization.load_der_private_key(candidate[: _der_length(candidate)], None)
            except (ValueError, TypeError, IndexError):
                continue
            raise AssertionError(f"unencrypted DER private key at offset {match.start()} of {path}")
        for secret in secrets:
            assert secret not in data, f"private key material in {path}"


def _der_length(der: bytes) -> int:
    first = der[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    return 2 + count + int.from_bytes(der[2 : 2 + count], "big")


def serve_zone(data_dir: Path, procs: list[NodeProcess], zone_text: str,
               env: dict[str, str] | None = None) -> tuple[NodeProcess, list[str]]:
    """Start the node in ``data_dir``, import ``zone_text``; return it and the admin options."""
    proc = NodeProcess.start(data_dir, env=env)
    procs.append(proc)
    proc.wait_ready()
    zone_file = data_dir.parent / "imported.zone"
    zone_file.write_text(zone_text)
    host, port = proc.address("quic")
    admin = ["--data-dir", str(data_dir), "--server", f"[{host}]:{port}"]
    result = run_cli("zone", "import", zone_file, *admin)
    assert result.returncode == 0, result.stderr
    return proc, admin


def trust_anchor(zone: str, admin: list[str], path: Path) -> Path:
    """Write a delv/BIND trust-anchors file holding the zone's DS, as the node reports it."""
    import json

    (ds,) = json.loads(run_cli("dnssec", "ds", zone, "--json", *admin).stdout)["ds"]
    tag, algorithm, digest_type, digest = ds.split(None, 3)
    path.write_text(f'trust-anchors {{ {zone.rstrip(".")}. static-ds {tag} {algorithm} '
                    f'{digest_type} "{digest.replace(" ", "")}"; }};\n')
    return path


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def processes_naming(path: Path) -> list[int]:
    """Live processes, other than this one, whose command line names ``path``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if str(path).encode() in cmdline and process_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def kill_processes_naming(path: Path) -> None:
    """SIGKILL every process (and its group) whose command line names ``path``: what a
    test started through a CLI that detaches its children (``devnet up``)."""
    for pid in processes_naming(path):
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def stored_identity(data_dir: Path, purpose: str, passphrase: str = PASSPHRASE) -> Any:
    """A node's certificate of ``purpose`` (admin or node TLS), its issuer and its key, as
    the node and the CLI load them (a TlsIdentity)."""
    from bootstrap.transport_certs import INFRA_CA_PURPOSE
    from trustchain.identity import TlsIdentity
    from trustchain.storage.database import open_database
    from trustchain.storage.node import NodeStore

    keystore = KeyStore.open(data_dir / "keys", passphrase)
    with open_database(data_dir, readonly=True) as db:
        store = NodeStore(db)
        cert = store.latest_certificate(purpose)
        issuer = store.latest_certificate(INFRA_CA_PURPOSE)
    assert cert is not None and issuer is not None
    return TlsIdentity(cert, [issuer], keystore.private_key(keystore.active(purpose).id))
