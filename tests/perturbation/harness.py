"""A devnet whose validators reach each other only through the proxies, and the faults
the harness lays on it.

:func:`create` makes the devnet's node directories (as ``trustchain devnet up`` does,
with a cheap Argon2id: the key stores are not under test) without starting them, puts
one proxy link in front of every ordered pair of nodes (``node-1->node-3`` carries what
node-1 sends to node-3's QUIC port and the answers), and rewrites each node's
``trustchain.toml`` so that its ``peers`` are its links.  A partition {1,2}|{3,4} then
cuts exactly the links across it.  The QUIC client connects to the proxy's address but
checks the server's certificate by name (the zone origin) and learns the node id from
it, so the proxies are invisible to the nodes.  ``devnet up`` starts the nodes and
restarts killed ones; the test process talks to each node's own QUIC port directly
(``consensus.status``), never through a proxy.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import signal
import sqlite3
import time
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bootstrap.devnet import Manifest, create_devnet, load_manifest, new_passphrase
from bootstrap.genesis import parse_genesis
from tests.perturbation.proxy import CUT, DROP_ALL, HOST, PASS, ProxySet, Rule
from tests.support import cli_env, kill_processes_naming, run_cli
from transport.client import ConnectError, StreamError, connect
from trustchain.datadir import DataDir
from trustchain.fsutil import ensure_private_dir
from trustchain.keystore import KdfParams

#: The key stores are not under test: a cheap Argon2id, as the crash harness uses.
CHEAP_KDF = KdfParams(iterations=1, lanes=1, memory_cost_kib=8192)
#: How long a killed node's process group may take to be gone (a bound on a pidfd wait).
EXIT_BOUND = 10.0
#: How long ``consensus.status`` may take to answer (connection and request).
STATUS_TIMEOUT = 5.0
_PEERS_LINE = re.compile(r"^peers = .*$", re.M)


class LivenessError(AssertionError):
    """What was awaited did not happen within its bound."""


def link_name(source: str, target: str) -> str:
    return f"{source}->{target}"


def wait_until(what: str, condition: Callable[[], bool], bound: float) -> float:
    """Poll ``condition`` until it holds; the seconds it took.

    :raises LivenessError: not within ``bound`` seconds.
    """
    begun = time.monotonic()
    while not condition():
        if time.monotonic() - begun > bound:
            raise LivenessError(f"not within {bound:.0f} s: {what}")
        time.sleep(0.1)  # polling a condition with a bound, not synchronising on time
    return time.monotonic() - begun


@dataclass
class Devnet:
    """The nodes, their links, and the faults laid on them now."""

    base: Path
    env: dict[str, str]
    proxies: ProxySet
    names: list[str]
    paused: set[str] = field(default_factory=set)

    # --- processes -----------------------------------------------------------------

    def up(self) -> None:
        """Start every node that is down (``trustchain devnet up``) and wait until ready."""
        result = run_cli("devnet", "up", "--base-dir", self.base, env=self.env)
        if result.returncode != 0:
            raise RuntimeError(f"devnet up failed: {result.stderr[-2000:]}")

    def manifest(self) -> Manifest:
        manifest = load_manifest(self.base)
        assert manifest is not None
        return manifest

    def pid(self, name: str) -> int:
        pid = next(n.pid for n in self.manifest().nodes if n.name == name)
        assert pid is not None, f"{name} is not running"
        return pid

    def pause(self, name: str) -> None:
        """SIGSTOP the node's process group (the node and its CA workers)."""
        os.killpg(self.pid(name), signal.SIGSTOP)
        self.paused.add(name)

    def resume(self, name: str) -> None:
        os.killpg(self.pid(name), signal.SIGCONT)
        self.paused.discard(name)

    def kill(self, name: str) -> None:
        """SIGKILL the node's process group and wait until the node is gone (bounded)."""
        pid = self.pid(name)
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return
        try:
            os.killpg(pid, signal.SIGKILL)
            if not select.select([fd], [], [], EXIT_BOUND)[0]:
                raise LivenessError(f"{name} (pid {pid}) still alive {EXIT_BOUND:.0f} s "
                                    "after SIGKILL")
        finally:
            os.close(fd)
        self.paused.discard(name)

    def close(self) -> None:
        """Whatever happened: resume the paused, heal, stop every node, kill what is left,
        stop the proxies."""
        try:
            for name in list(self.paused):
                try:
                    self.resume(name)
                except (ProcessLookupError, AssertionError):
                    pass
            self.proxies.heal()
            run_cli("devnet", "down", "--base-dir", self.base, env=self.env)
        finally:
            kill_processes_naming(self.base)
            self.proxies.stop()

    # --- network faults ------------------------------------------------------------

    def links(self, sources: Iterable[str], targets: Iterable[str]) -> list[str]:
        targets = list(targets)
        return [link_name(s, t) for s in sources for t in targets if s != t]

    def partition(self, *groups: Iterable[str]) -> list[str]:
        """Cut every link between two different groups (both ways); the links cut."""
        sides = [list(g) for g in groups]
        cut = [name for i, a in enumerate(sides) for j, b in enumerate(sides) if i != j
               for name in self.links(a, b)]
        self.proxies.set(cut, CUT)
        return cut

    def mute(self, name: str) -> list[str]:
        """What ``name`` sends to the others is dropped; what they send it still arrives."""
        out = self.links([name], self.names)
        back = self.links([n for n in self.names if n != name], [name])
        self.proxies.set(out, DROP_ALL)
        # The others' connections to it: its answers (ACKs, responses) are dropped.
        self.proxies.set(back, Rule(backward=False))
        return out + back

    def degrade(self, rule: Rule) -> None:
        """``rule`` (loss, delay) on every link."""
        self.proxies.set([], rule)

    def heal(self) -> None:
        self.proxies.set([], PASS)

    # --- what the nodes hold ---------------------------------------------------------

    def _db(self, name: str) -> sqlite3.Connection:
        path = self.base / name / "node.db"
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)

    def chain(self, name: str) -> dict[int, tuple[bytes, bytes]]:
        """Height -> (hash, previous) of the blocks ``name`` has stored."""
        db = self._db(name)
        try:
            return {h: (bytes(hsh), bytes(prev)) for h, hsh, prev in db.execute(
                "SELECT height, hash, previous FROM consensus_blocks")}
        finally:
            db.close()

    def height(self, name: str) -> int:
        db = self._db(name)
        try:
            row = db.execute("SELECT max(height) FROM consensus_blocks").fetchone()
        finally:
            db.close()
        return int(row[0]) if row[0] is not None else 0

    def heights(self, names: Iterable[str] | None = None) -> dict[str, int]:
        return {name: self.height(name) for name in (self.names if names is None else names)}

    def own_messages(self, name: str) -> list[tuple[int, int, str, bytes]]:
        """The rows of ``consensus_own_messages``: (height, round, kind, message)."""
        db = self._db(name)
        try:
            return [(h, r, k, bytes(m)) for h, r, k, m in db.execute(
                "SELECT height, round, kind, message FROM consensus_own_messages")]
        finally:
            db.close()

    def log(self, name: str) -> str:
        return (self.base / name / "serve.log").read_text(errors="replace")

    def consensus_status(self, name: str) -> dict[str, Any]:
        """``consensus.status`` of one running node, asked anonymously on its own port."""
        port = next(n.ports.quic for n in self.manifest().nodes if n.name == name)
        genesis = parse_genesis((self.base / name / "genesis.json").read_bytes())

        async def ask() -> dict[str, Any]:
            async with connect(HOST, port, root=genesis.root_certificate,
                               server_name=genesis.body.origin.rstrip("."),
                               timeout=STATUS_TIMEOUT) as client:
                response = await asyncio.wait_for(client.request("consensus", "status"),
                                                  STATUS_TIMEOUT)
            if response.status != 200:
                raise ConnectError(f"{name}: consensus.status answered {response.status}")
            return json.loads(response.message)  # type: ignore[no-any-return]

        try:
            return asyncio.run(ask())
        except (ConnectError, StreamError, TimeoutError) as exc:
            raise LivenessError(f"{name} does not answer consensus.status: {exc}") from None

    # --- liveness --------------------------------------------------------------------

    def recovery(self, bound: float, names: Iterable[str] | None = None, *,
                 beyond: int = 1, above: int | None = None) -> float:
        """Seconds until every node named has committed ``beyond`` heights more than
        ``above`` (default: the highest any of them holds now).

        :raises LivenessError: not within ``bound``.
        """
        chosen = list(self.names if names is None else names)
        target = (max(self.heights(chosen).values()) if above is None else above) + beyond
        return wait_until(f"{', '.join(chosen)} all at height {target}",
                          lambda: min(self.heights(chosen).values()) >= target, bound)


def create(base: Path, *, nodes: int, seed: int, env: dict[str, str] | None = None) -> Devnet:
    """A new devnet in ``base`` wired through proxies, its nodes not started yet.

    On failure the proxies are stopped; nothing else runs yet.
    """
    ensure_private_dir(base)
    with DataDir(base).lock():  # as `devnet up` holds it while it creates
        manifest = create_devnet(base, nodes, passphrase=new_passphrase(),
                                 now=datetime.now(UTC), progress=lambda _line: None,
                                 kdf=CHEAP_KDF)
    proxies = ProxySet(seed)
    try:
        names = [node.name for node in manifest.nodes]
        quic = {node.name: node.ports.quic for node in manifest.nodes}
        for node in manifest.nodes:
            peers = []
            for other in names:
                if other != node.name:
                    port = proxies.add(link_name(node.name, other), (HOST, quic[other]))
                    peers.append(f"[{HOST}]:{port}")
            _set_peers(base / node.data_dir / "trustchain.toml", peers)
    except BaseException:
        proxies.stop()
        raise
    # Blocks without waiting for operations (one every commit pause, 250 ms): heights
    # move while faults are on (an idle federation waits 10 s by default).
    run_env = {**(cli_env() if env is None else env), "TRUSTCHAIN_CONSENSUS_IDLE_SECONDS": "0"}
    return Devnet(base, run_env, proxies, names)


def _set_peers(config: Path, peers: list[str]) -> None:
    text = config.read_text()
    new, count = _PEERS_LINE.subn(f"peers = {json.dumps(peers)}", text)
    assert count == 1, f"{config}: no single peers line"
    assert tomllib.loads(new)["peers"] == peers
    config.write_text(new)
