"""deploy/trustchain.service: systemd accepts it, scores it safe, and the node runs under it.

No systemd runs in the test container, so the unit is checked with
``systemd-analyze`` (``verify``, ``security --offline=yes``), the notify
protocol with a socket the test binds as systemd would, and the system-call
sandbox by building the unit's ``SystemCallFilter=`` and
``MemoryDenyWriteExecute=`` as seccomp filters (libseccomp, the library
systemd builds them with) around a real node.
"""

from __future__ import annotations

import array
import ctypes
import ctypes.util
import errno
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from bootstrap.init import InitResult
from tests.support import PROCESS_TIMEOUT, REPO, NodeProcess, cli_env
from trustchain.sdnotify import notify

UNIT = REPO / "deploy" / "trustchain.service"
INSTALLED = "/opt/trustchain/.venv/bin/trustchain"
#: "OK" or better in ``systemd-analyze security`` (its scale: 0 safe .. 10 unsafe).
MAX_EXPOSURE = 2.5


def _directives(name: str) -> list[str]:
    return [line.split("=", 1)[1] for line in UNIT.read_text().splitlines()
            if line.startswith(name + "=")]


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True,
                          timeout=PROCESS_TIMEOUT, stdin=subprocess.DEVNULL)


def test_unit_verifies(tmp_path: Path) -> None:
    """``verify`` also checks that ExecStart's program exists: the copy checked runs the
    ``trustchain`` of this repository's virtualenv instead of the installed one."""
    text = UNIT.read_text()
    assert f"ExecStart={INSTALLED} serve --data-dir /var/lib/trustchain " in text
    local = Path(sys.executable).parent / "trustchain"
    assert local.is_file(), f"no {local}: the package is not installed in this environment"
    unit = tmp_path / "trustchain.service"
    unit.write_text(text.replace(f"ExecStart={INSTALLED} ", f"ExecStart={local} "))
    result = _analyze("verify", "--man=no", str(unit))
    assert result.returncode == 0, result.stderr
    assert "trustchain.service" not in result.stderr, result.stderr  # no warning about it


def test_unit_is_scored_ok_by_systemd_analyze_security() -> None:
    result = _analyze("security", "--offline=yes", "--no-pager", str(UNIT))
    assert result.returncode == 0, result.stderr
    found = re.search(r"Overall exposure level for trustchain\.service: (\d+\.\d+) (\w+)",
                      result.stdout)
    assert found, result.stdout
    assert float(found[1]) <= MAX_EXPOSURE, result.stdout
    assert found[2] in ("OK", "SAFE"), result.stdout


def test_unit_keeps_the_hardening_the_docs_describe() -> None:
    for line in ("Type=notify", "User=trustchain", "StateDirectory=trustchain", "UMask=0077",
                 "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
                 "AmbientCapabilities=CAP_NET_BIND_SERVICE", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "MemoryDenyWriteExecute=yes",
                 "SystemCallFilter=@system-service", "SystemCallArchitectures=native",
                 "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
                 "LoadCredential=passphrase:/etc/trustchain/passphrase"):
        assert line in UNIT.read_text().splitlines(), line
    assert "--passphrase-file ${CREDENTIALS_DIRECTORY}/passphrase" in _directives("ExecStart")[0]


# --- the notify protocol --------------------------------------------------------


def test_notify_does_nothing_without_a_socket() -> None:
    assert notify("READY=1", environ={}) is False
    assert notify("READY=1", environ={"NOTIFY_SOCKET": ""}) is False


def test_notify_sends_one_datagram_to_a_socket_path(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(PROCESS_TIMEOUT)
        assert notify("READY=1", "STATUS=serving", environ={"NOTIFY_SOCKET": str(path)})
        assert sock.recv(4096) == b"READY=1\nSTATUS=serving"


def test_notify_to_a_socket_no_one_listens_on_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    assert notify("READY=1", environ={"NOTIFY_SOCKET": str(tmp_path / "gone")}) is False
    assert "cannot notify the service manager" in caplog.text


def _receive(sock: socket.socket) -> tuple[bytes, int]:
    """One notification and the sender's process id (``SCM_CREDENTIALS``, as systemd reads it)."""
    creds = array.array("i", [0, 0, 0])
    data, ancillary, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(creds.itemsize * 3))
    for level, kind, value in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            creds.frombytes(value[:creds.itemsize * 3])
            return data, creds[3]
    raise AssertionError(f"no credentials with {data!r}")


def test_node_notifies_ready_and_stopping(
    node: InitResult, data_dir: Path, node_processes: list[NodeProcess],
) -> None:
    """A real node, with ``$NOTIFY_SOCKET`` in the abstract namespace: READY=1 from the main
    process once it serves (``NotifyAccess=main`` accepts it), STOPPING=1 at SIGTERM, exit 0."""
    name = f"trustchain-test-{secrets.token_hex(8)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        sock.settimeout(PROCESS_TIMEOUT)
        proc = NodeProcess.start(data_dir, env=cli_env(NOTIFY_SOCKET="@" + name))
        node_processes.append(proc)
        message, sender = _receive(sock)
        assert message.split(b"\n") == [b"READY=1", b"STATUS=serving"]
        assert sender == proc.proc.pid
        proc.wait_ready()  # READY=1 comes once the node says it serves
        assert proc.stop(signal.SIGTERM) == 0
        message, sender = _receive(sock)
        assert message.split(b"\n")[0] == b"STOPPING=1"
        assert sender == proc.proc.pid
    assert any("stopped cleanly" in line for line in proc.log), proc.log


# --- the system-call sandbox ----------------------------------------------------

_ALLOW = 0x7FFF0000
_MASKED_EQ = 7  # SCMP_CMP_MASKED_EQ
_PROT_WRITE, _PROT_EXEC, _SHM_EXEC = 0x2, 0x4, 0o100000


class _Cmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


def _errno_action(number: int) -> int:
    return 0x00050000 | (number & 0xFFFF)  # SCMP_ACT_ERRNO


def _syscalls(name: str) -> set[str]:
    """A system call, or a group's calls as systemd defines them (``@system-service``)."""
    if not name.startswith("@"):
        return {name}
    listing = _analyze("syscall-filter", name)
    assert listing.returncode == 0, listing.stderr
    calls: set[str] = set()
    for line in listing.stdout.splitlines()[1:]:
        item = line.strip()
        if item and not item.startswith("#"):
            calls |= _syscalls(item)
    return calls


def _sandbox_exec(argv: list[str]) -> None:
    """``-m tests.test_systemd ALLOW DENY ERRNO COMMAND...``: exec COMMAND under the
    allow list ALLOW minus DENY (system calls and @groups), refused ones failing with
    ERRNO, and systemd's MemoryDenyWriteExecute= rules, with no_new_privs set."""
    allow, deny, number, *command = argv
    lib = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2")
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(_Cmp)]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]

    def rule(ctx: int, action: int, call: str, *cmps: _Cmp) -> None:
        nr = lib.seccomp_syscall_resolve_name(call.encode())
        if nr >= 0:  # (a call this architecture does not have)
            rc = lib.seccomp_rule_add_array(ctx, action, nr, len(cmps), (_Cmp * len(cmps))(*cmps))
            assert rc == 0, (call, rc)

    allowed = set().union(*map(_syscalls, allow.split())) - set().union(
        *map(_syscalls, deny.split()))
    refused = _errno_action(getattr(errno, number))
    listed = lib.seccomp_init(refused)
    for call in sorted(allowed):
        rule(listed, _ALLOW, call)
    # MemoryDenyWriteExecute=: no mapping both writable and executable, no page made
    # executable later (systemd's own rules, a filter of their own).
    mdwe = lib.seccomp_init(_ALLOW)
    rule(mdwe, refused, "mmap", _Cmp(2, _MASKED_EQ, _PROT_WRITE | _PROT_EXEC,
                                     _PROT_WRITE | _PROT_EXEC))
    for call in ("mprotect", "pkey_mprotect"):
        rule(mdwe, refused, call, _Cmp(2, _MASKED_EQ, _PROT_EXEC, _PROT_EXEC))
    rule(mdwe, refused, "shmat", _Cmp(2, _MASKED_EQ, _SHM_EXEC, _SHM_EXEC))
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS (NoNewPrivileges=yes)
    for ctx in (mdwe, listed):
        assert lib.seccomp_load(ctx) == 0
    os.execv(command[0], command)


def _sandboxed(*command: str) -> list[str]:
    filters = _directives("SystemCallFilter")
    allow = " ".join(f for f in filters if not f.startswith("~"))
    deny = " ".join(f[1:] for f in filters if f.startswith("~"))
    assert _directives("MemoryDenyWriteExecute") == ["yes"]
    [number] = _directives("SystemCallErrorNumber")
    return [sys.executable, "-m", "tests.test_systemd", allow, deny, number, *command]


_LIBRARIES = """
import uvloop
from transport.workers import WorkerPool
from trustchain.consensus.proofs import Challenge
from trustchain.consensus.proofs.delay import prove_delay, verify_delay
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, mldsa
challenge = Challenge(bytes(32), bytes(32))
verify_delay(prove_delay(challenge, 1000), challenge, 1000)
mldsa.MLDSA65PrivateKey.generate().sign(b"x")
ec.generate_private_key(ec.SECP256R1()).sign(b"x", ec.ECDSA(hashes.SHA256()))
async def workers():
    pool = WorkerPool(1)
    assert await pool.run(len, b"abc") == 3
    await pool.close()
uvloop.run(workers())
import mmap
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
except PermissionError:
    print("ok")
"""


def test_the_sandbox_holds_and_the_libraries_run_in_it() -> None:
    """uvloop, cryptography, chiavdf and the CA worker processes under the unit's filters;
    and the filters are really on (a writable executable mapping is refused)."""
    result = subprocess.run(_sandboxed(sys.executable, "-c", _LIBRARIES), capture_output=True,
                            text=True, cwd=REPO, timeout=PROCESS_TIMEOUT * 2,
                            stdin=subprocess.DEVNULL, env=cli_env())
    assert (result.returncode, result.stdout) == (0, "ok\n"), result.stderr


def test_node_serves_and_stops_in_the_sandbox(
    node: InitResult, data_dir: Path, node_processes: list[NodeProcess],
) -> None:
    command = _sandboxed(sys.executable, "-m", "trustchain", "serve", "--data-dir", str(data_dir))
    proc = NodeProcess(subprocess.Popen(
        command, env=cli_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, cwd=REPO))
    threading.Thread(target=proc._pump, daemon=True).start()
    threading.Thread(target=proc._collect_stdout, daemon=True).start()
    node_processes.append(proc)
    proc.wait_ready()
    host, port = proc.address("http")
    with urllib.request.urlopen(f"http://[{host}]:{port}/healthz", timeout=10) as response:
        assert response.status == 200
    assert proc.stop(signal.SIGTERM) == 0
    assert any("stopped cleanly" in line for line in proc.log), proc.log


if __name__ == "__main__":
    _sandbox_exec(sys.argv[1:])
