"""``devnet up|status|down``: a local federation of N real nodes on this machine.

For development and multi-node tests only: every node's key store is
protected by one random passphrase kept in ``DIR/passphrase``.  Each node is
``trustchain serve`` run as a detached process (its own session) with its
output appended to ``node-i/serve.log``; the manifest ``DIR/devnet.json``
records its pid and the pid's start time, so that a pid the kernel has since
given to another process is never signalled (Linux: /proc and pidfds).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import select
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trustchain.cli.common import add_command, add_group, add_json, print_json, print_rows, progress

if TYPE_CHECKING:
    from bootstrap.devnet import DevnetNode, Manifest

#: How long one node may take to say it is ready, and to stop after SIGTERM.
READY_SECONDS = 60.0
STOP_SECONDS = 15.0
LOG_FILE = "serve.log"
#: The node's "node ready" log line, as text (``name: node ready``) or as a JSON line
#: (``"event": "node ready"``: log_format = "json").
_READY = re.compile(rb'(?:: node ready\s*|"event": ?"node ready".*)$', re.M)
#: Settings the devnet owns: an inherited TRUSTCHAIN_<SETTING> must not override them.
_OWNED = {f"TRUSTCHAIN_{name}" for name in (
    "LISTEN", "PEERS", "DNS_PORT", "QUIC_PORT", "HTTPS_PORT", "HTTP_PORT", "DATA_DIR", "PASSPHRASE")}
_DEVNET_HELP = ("development only: DIR/passphrase holds a random passphrase that protects "
                "every node's key store")


def register(commands: argparse._SubParsersAction) -> None:
    sub = add_group(commands, "devnet", "a local federation of N nodes on this machine "
                    "(development and tests)", examples="""
trustchain devnet up --nodes 4 --base-dir devnet
trustchain devnet status --base-dir devnet --json
trustchain devnet down --base-dir devnet
""")
    p = add_command(sub, "up", "create the devnet if DIR has none, start its nodes that are "
                    "down, and wait until they are ready", cmd_up)
    p.add_argument("--nodes", type=_node_count, metavar="N",
                   help="number of nodes, 1 to 16 (default: 4 for a new devnet; an existing "
                   "one keeps its size)")
    _add_base_dir(p)
    p = add_command(sub, "status", "show each node's id, process and addresses", cmd_status)
    _add_base_dir(p)
    add_json(p)
    p = add_command(sub, "down", "stop every node (SIGTERM, then SIGKILL after "
                    f"{STOP_SECONDS:.0f} s)", cmd_down)
    _add_base_dir(p)


def _add_base_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base-dir", type=Path, default=Path("devnet"), metavar="DIR",
                        help=f"the devnet's directory (default: ./devnet); {_DEVNET_HELP}")


def _node_count(text: str) -> int:
    from bootstrap.devnet import MAX_NODES

    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 1 <= count <= MAX_NODES:
        raise argparse.ArgumentTypeError(f"a devnet has 1 to {MAX_NODES} nodes")
    return count


# --- commands -----------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    from bootstrap.devnet import DEFAULT_NODES, DevnetError, load_manifest

    base: Path = args.base_dir.absolute()
    report = progress(sys.stderr.isatty())
    manifest = load_manifest(base)
    if manifest is not None and args.nodes not in (None, len(manifest.nodes)):
        raise DevnetError(
            f"{base} holds a devnet of {len(manifest.nodes)} nodes, not {args.nodes}: run "
            f"`devnet up` without --nodes, or `devnet down` and choose another --base-dir")
    with _locked(base):
        manifest = load_manifest(base)  # again, now that no other run can change it
        creating = manifest is None
        with _ports_lock() if creating else contextlib.nullcontext():
            if manifest is None:
                manifest = _create(base, args.nodes or DEFAULT_NODES, report)
            started = _start_down_nodes(base, manifest, report)
    running = [node.name for node in manifest.nodes if node.name not in started]
    _print_nodes(base, manifest)
    print(f"genesis pin (SHA-256): {manifest.genesis_sha256}")
    print(f"started: {', '.join(started) or 'none'}"
          + (f"; already up: {', '.join(running)}" if running else ""))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    base: Path = args.base_dir.absolute()
    manifest = _require_manifest(base)
    if args.json:
        print_json({
            "base_dir": str(base), "network_name": manifest.network_name,
            "origin": manifest.origin, "genesis_sha256": manifest.genesis_sha256,
            "nodes": [_node_row(base, manifest, node) for node in manifest.nodes],
        })
        return 0
    _print_nodes(base, manifest)
    print(f"genesis pin (SHA-256): {manifest.genesis_sha256}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from bootstrap.devnet import save_manifest

    base: Path = args.base_dir.absolute()
    _require_manifest(base)
    with _locked(base):
        manifest = _require_manifest(base)
        stopped = _stop([node for node in manifest.nodes if _running(node)])
        for node in manifest.nodes:
            node.pid = node.pid_start = None
        save_manifest(base, manifest)
    print(f"stopped: {', '.join(stopped) or 'none (no node was running)'}")
    return 0


# --- creating and starting ----------------------------------------------------------


def _create(base: Path, nodes: int, report: Callable[[str], None]) -> Manifest:
    from bootstrap.devnet import create_devnet, new_passphrase

    report(f"creating a devnet of {nodes} nodes in {base} (Argon2id and key generation per node)")
    return create_devnet(base, nodes, passphrase=new_passphrase(), now=datetime.now(UTC),
                         progress=report)


def _start_down_nodes(base: Path, manifest: Manifest, report: Callable[[str], None]) -> list[str]:
    """Start every node that is not running and wait until each is ready; on failure (or
    Ctrl-C) stop those started here, and fail with the log's tail."""
    from bootstrap.devnet import PASSPHRASE_FILE, DevnetError, save_manifest
    from trustchain.passphrase import read_passphrase_file

    env = {k: v for k, v in os.environ.items() if k not in _OWNED}
    env["TRUSTCHAIN_PASSPHRASE"] = read_passphrase_file(base / PASSPHRASE_FILE)
    launched: list[tuple[DevnetNode, subprocess.Popen[bytes], int]] = []
    try:
        for node in manifest.nodes:
            if _running(node):
                continue
            proc, offset = _spawn(base / node.data_dir, env)
            node.pid, node.pid_start = proc.pid, _start_time(proc.pid)
            launched.append((node, proc, offset))
            report(f"{node.name}: started (pid {proc.pid})")
        save_manifest(base, manifest)  # before waiting: `devnet down` can stop them from now on
        problem = None
        for node, proc, offset in launched:  # they start side by side; each gets its bound
            log = base / node.data_dir / LOG_FILE
            problem = _wait_ready(log, proc, offset, time.monotonic() + READY_SECONDS,
                                  _waiting(report, node.name))
            if problem is not None:
                break
            report(f"{node.name}: ready")
    except BaseException:
        _abandon(base, manifest, launched)
        raise
    if problem is None:
        return [node.name for node, *_ in launched]
    _abandon(base, manifest, launched)
    tail = log.read_bytes()[offset:].decode(errors="replace").splitlines()[-20:]
    print("\n".join(f"  {line}" for line in tail), file=sys.stderr)
    raise DevnetError(f"{node.name} {problem}; the nodes started were stopped; its log: {log}")


def _abandon(base: Path, manifest: Manifest,
             launched: list[tuple[DevnetNode, subprocess.Popen[bytes], int]]) -> None:
    """Stop the nodes this run started, reap them, and forget their pids."""
    from bootstrap.devnet import save_manifest

    _stop([node for node, *_ in launched])
    for node, proc, _offset in launched:
        proc.wait()
        node.pid = node.pid_start = None
    save_manifest(base, manifest)


def _waiting(report: Callable[[str], None], name: str) -> Callable[[float], None]:
    return lambda waited: report(f"{name}: waiting to be ready ({waited:.0f} s)")


def _spawn(data_dir: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    """``trustchain serve`` detached from this terminal, output appended to its log."""
    fd = os.open(data_dir / LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        offset = os.fstat(fd).st_size
        proc = subprocess.Popen(
            [sys.executable, "-m", "trustchain", "serve", "--data-dir", str(data_dir)],
            stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, env=env, start_new_session=True,
        )
    finally:
        os.close(fd)
    return proc, offset


def _wait_ready(log: Path, proc: subprocess.Popen[bytes], offset: int, deadline: float,
                waiting: Callable[[float], None]) -> str | None:
    """``None`` once the log says the node is ready, else what went wrong.  Polls the log
    between bounded waits for the process to exit."""
    begun = last_report = time.monotonic()
    with log.open("rb") as handle:
        handle.seek(offset)
        seen = b""
        while True:
            seen += handle.read()
            if _READY.search(seen):
                return None
            if proc.poll() is not None:
                return f"exited with status {proc.returncode}"
            now = time.monotonic()
            if now > deadline:
                return f"was not ready after {READY_SECONDS:.0f} s"
            if now - last_report >= 5:
                waiting(now - begun)
                last_report = now
            try:
                proc.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                pass


# --- processes ----------------------------------------------------------------------


def _start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), or ``None`` if it is not alive."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else int(fields[19])


def _running(node: DevnetNode) -> bool:
    return node.pid is not None and node.pid_start is not None \
        and _start_time(node.pid) == node.pid_start


def _stop(nodes: list[DevnetNode]) -> list[str]:
    """SIGTERM each node, wait for all (bounded), SIGKILL the process groups of those left.

    Returns the names of the nodes that were running.
    """
    handles: dict[int, tuple[DevnetNode, int]] = {}
    for node in nodes:
        assert node.pid is not None
        try:
            fd = os.pidfd_open(node.pid)
        except ProcessLookupError:
            continue
        if _start_time(node.pid) != node.pid_start:  # the pid is now another process's
            os.close(fd)
            continue
        signal.pidfd_send_signal(fd, signal.SIGTERM)
        handles[fd] = (node, node.pid)
    stopped = [node.name for node, _ in handles.values()]
    try:
        left = _wait_exits(set(handles), time.monotonic() + STOP_SECONDS)
        for fd in left:  # still alive (its pidfd unreadable): the group is still ours
            try:
                os.killpg(handles[fd][1], signal.SIGKILL)  # the node and its workers
            except ProcessLookupError:
                pass  # it exited just now
        _wait_exits(left, time.monotonic() + STOP_SECONDS)
    finally:
        for fd in handles:
            os.close(fd)
    return stopped


def _wait_exits(fds: set[int], deadline: float) -> set[int]:
    """Wait until every pidfd in ``fds`` says its process exited, or the deadline; the rest."""
    left = set(fds)
    while left:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        readable, _, _ = select.select(list(left), [], [], remaining)
        left -= set(readable)
    return left


@contextmanager
def _locked(base: Path) -> Iterator[None]:
    """Hold the devnet directory's lock (one ``up`` or ``down`` at a time)."""
    from trustchain.datadir import DataDir
    from trustchain.fsutil import ensure_private_dir

    ensure_private_dir(base)
    with DataDir(base).lock():
        yield


@contextmanager
def _ports_lock() -> Iterator[None]:
    """One devnet at a time on this machine between drawing its ports and its nodes
    listening on them: two created at once could draw the same free port (seen in the
    tests, whose workers start devnets side by side)."""
    import fcntl
    import tempfile

    with open(Path(tempfile.gettempdir()) / "trustchain-devnet-ports.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _require_manifest(base: Path) -> Manifest:
    from bootstrap.devnet import DevnetError, load_manifest

    manifest = load_manifest(base)
    if manifest is None:
        raise DevnetError(f"{base} holds no devnet (create one with `trustchain devnet up "
                          f"--base-dir {base}`)")
    return manifest


# --- output -------------------------------------------------------------------------


def _node_row(base: Path, manifest: Manifest, node: DevnetNode) -> dict[str, Any]:
    from bootstrap.devnet import SERVICES

    up = _running(node)
    return {
        "name": node.name, "node_id": node.node_id, "data_dir": str(base / node.data_dir),
        "pid": node.pid if up else None, "up": up, "ports": node.ports.model_dump(),
        "addresses": {s: node.address(manifest.host, s) for s in SERVICES},
        "height": _committed_height(base / node.data_dir),
    }


def _committed_height(data_dir: Path) -> int | None:
    """The last block the node has stored (read-only: the node may be running)."""
    from trustchain.errors import StorageError
    from trustchain.storage.consensus import ConsensusStore
    from trustchain.storage.database import open_database

    try:
        with open_database(data_dir, readonly=True) as db:
            return ConsensusStore(db).height()
    except (StorageError, sqlite3.Error):
        return None


def _print_nodes(base: Path, manifest: Manifest) -> None:
    from bootstrap.devnet import SERVICES

    rows = []
    for node in manifest.nodes:
        row = _node_row(base, manifest, node)
        rows.append({"name": node.name, "node id": node.node_id,
                     "state": "up" if row["up"] else "down", "pid": row["pid"] or "-",
                     "height": "-" if row["height"] is None else row["height"],
                     **{s: row["addresses"][s] for s in SERVICES}})
    columns = list(rows[0])
    print_rows([{c: c.upper() for c in columns}, *rows], columns)
