"""What the benchmarks share: a node started as a child process, its CPU time, percentiles."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of process ``pid`` and its running children
    (the node's worker processes), from /proc."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if int(entry.name) == pid or int(fields[1]) == pid:  # fields[1]: the parent's pid
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def node_env(passphrase: str) -> dict[str, str]:
    """A benchmark node's environment: its passphrase, every port ephemeral (the node's log
    says which: :func:`start_node` reads them)."""
    return {**os.environ, "TRUSTCHAIN_PASSPHRASE": passphrase, "TRUSTCHAIN_HTTP_PORT": "0",
            "TRUSTCHAIN_HTTPS_PORT": "0", "TRUSTCHAIN_QUIC_PORT": "0", "TRUSTCHAIN_DNS_PORT": "0",
            "TRUSTCHAIN_LOG_LEVEL": "info"}


def init_node(data: Path, env: dict[str, str], *options: str) -> None:
    """``trustchain init`` of a fresh node in ``data``."""
    subprocess.run([sys.executable, "-m", "trustchain", "init", "--data-dir", str(data),
                    *options], env=env, check=True, capture_output=True, cwd=REPO)


def start_node(data: Path, env: dict[str, str],
               *listeners: str) -> tuple[subprocess.Popen[str], dict[str, int]]:
    """``trustchain serve`` on ``data``, ready; with the ports of ``listeners`` (http, quic, ...)."""
    proc = subprocess.Popen([sys.executable, "-m", "trustchain", "serve", "--data-dir", str(data)],
                            env=env, stderr=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stderr is not None
    ports: dict[str, int] = {}
    for line in proc.stderr:
        if (m := re.search(r"listening: (\w+) on \[::1\]:(\d+)/", line)) and m[1] in listeners:
            ports[m[1]] = int(m[2])
        if "node ready" in line:
            break
    if set(ports) != set(listeners):
        proc.kill()
        raise RuntimeError("the node did not start")
    return proc, ports
