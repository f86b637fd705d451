"""The README's tour, run top to bottom as a user would type it: each line in bash, in a
fresh directory, ``trustchain serve`` in the background (another terminal, for a user).
Only the default ports change (to free ones, in trustchain.toml and in the commands),
so that the test runs beside other nodes.  Some lines' outputs are checked as well:
the origin zone answers authoritatively and signed from the start, and a TXT record
added as ``"hello world"`` is one string."""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import REPO, NodeProcess, cli_env, free_dns_port

DEFAULT_PORTS = {"dns_port": 8053, "quic_port": 8853, "https_port": 8443, "http_port": 8080}
#: How long a line's expected output may take to appear (a bound, not a sleep).
SETTLE = 10.0


def tour() -> list[str]:
    """The command lines of the README's tour (its code block that starts with export)."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"```sh\n(export TRUSTCHAIN_PASSPHRASE.*?)```", text, re.S)
    assert block, "the README has no tour"
    return [line for line in block[1].splitlines() if line.strip()]


#: Checks of a line's stdout, by a prefix of the line as written in the README.
EXPECT: dict[str, Callable[[str], bool]] = {
    "dig @::1 -p 8053 trust.hypermesh.online SOA +dnssec": lambda out: (
        "status: NOERROR" in out and re.search(r"flags: qr aa", out) is not None
        and re.search(r"\sRRSIG\s+SOA\s", out) is not None),
    "dig @::1 -p 8053 www.trust.hypermesh.online AAAA": lambda out: "2001:db8::80" in out,
    "dig @::1 -p 8053 trust.hypermesh.online TXT +short": lambda out: (
        out.strip() == '"hello world"'),
    "trustchain zone list --json": lambda out: any(
        z.get("zone", z.get("name")) == "example.net." for z in json.loads(out)),
    "trustchain query www.trust.hypermesh.online AAAA": lambda out: "2001:db8::80" in out,
    "curl -g 'http://[::1]:8080/genesis.json'": lambda out: '"body"' in out or "{" in out,
}


@pytest.fixture
def background() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def test_the_readme_tour_runs_top_to_bottom(tmp_path: Path,
                                            background: list[subprocess.Popen[str]]) -> None:
    env = {k: v for k, v in cli_env().items() if not k.startswith("TRUSTCHAIN_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    ports: dict[int, int] = {}
    for default in DEFAULT_PORTS.values():
        port = free_dns_port()
        while port in ports.values():
            port = free_dns_port()
        ports[default] = port
    checked = set()
    for written in tour():
        line = re.sub(r"\b(8053|8853|8443|8080)\b", lambda m: str(ports[int(m[1])]), written)
        if written.startswith("export "):
            name, _, value = shlex.split(written, comments=True)[1].partition("=")
            env[name] = value
            continue
        if written.startswith("trustchain serve"):
            background.append(_serve(line, tmp_path, env))
            continue
        expect = next((check for prefix, check in EXPECT.items()
                       if written.startswith(prefix)), None)
        deadline = time.monotonic() + SETTLE
        while True:
            result = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, text=True,
                                    capture_output=True, stdin=subprocess.DEVNULL, timeout=120)
            good = result.returncode == 0 and (expect is None or expect(result.stdout))
            if good or time.monotonic() > deadline:
                break
            time.sleep(0.2)  # polling a served answer within its bound
        assert good, f"README line failed: {written}\n{result.stdout}\n{result.stderr}"
        if expect is not None:
            checked.add(written)
        if written.startswith("trustchain init"):
            _move_ports(tmp_path / "data" / "trustchain.toml", ports)
    assert len(checked) == len(EXPECT), f"lines checked: {sorted(checked)}"


def _move_ports(config: Path, ports: dict[int, int]) -> None:
    """The node's ports in its trustchain.toml, each default replaced by a free one."""
    text = config.read_text()
    for key, default in DEFAULT_PORTS.items():
        text, count = re.subn(rf"(?m)^#?\s*{key} = \d+$", f"{key} = {ports[default]}", text)
        assert count == 1, f"{key} is not in {config}"
    config.write_text(text)


def _serve(line: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """``trustchain serve`` in the background, once it says it is ready."""
    command = shlex.split(line, comments=True)
    proc = subprocess.Popen(command, cwd=cwd, env={**env, "PYTHONUNBUFFERED": "1"},
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    node = NodeProcess(proc, lines=queue.Queue())
    threading.Thread(target=node._pump, daemon=True).start()
    node.wait_ready()
    return proc
