"""The node the crash harness kills: its data directory, its processes, and what clients
need to reach it.

Every process the harness starts (the node, the CLI, the node's signing workers) carries
:data:`RUN_TAG` in its environment, so that after a SIGKILL the harness can find the
node's orphaned workers by that mark alone, wait for them to leave (a bounded wait on a
pidfd), and kill by id any that stay: nothing it started outlives it.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from bootstrap.genesis import parse_genesis
from bootstrap.init import init_node
from bootstrap.transport_certs import ADMIN_TLS_PURPOSE, INFRA_CA_PURPOSE
from tests.support import PASSPHRASE, NodeProcess, cli_env, run_cli
from trustchain.datadir import DataDir
from trustchain.identity import TlsIdentity
from trustchain.keystore import KdfParams, KeyStore
from trustchain.storage.database import open_database
from trustchain.storage.node import NodeStore

RUN_TAG = "CRASH_HARNESS_RUN"
ORIGIN = "trust.example.net."
NETWORK = "alpha"
#: Where issued certificates' names and changed records live.
CERT_ZONE = f"{NETWORK}.trust.example.net"
RECORD_ZONE = "crash.trust.example.net"
#: The CA's rate limits would refuse most of the load (they are per week for a domain):
#: lifted, since refusals are not what this harness measures.
RATE_LIMITS = "".join(f"\n[ca_rate_limits.{name}]\ncount = 1000000000\nperiod_seconds = 1\n"
                      for name in ("identity", "network", "domain", "names"))
#: How long the node's orphaned workers get to notice their parent died.
ORPHAN_GRACE = 10.0


@dataclass(frozen=True)
class Credentials:
    """What the load's clients present and trust."""

    root: x509.Certificate
    admin: TlsIdentity
    #: The node's infrastructure CA, which chains to the root every CT log accepts:
    #: the issuer of the leaves submitted to add-chain.
    ct_issuer: x509.Certificate
    ct_issuer_key: ec.EllipticCurvePrivateKey


def initialise(data_dir: Path) -> Credentials:
    """A fresh node in ``data_dir`` (a cheap Argon2id: the key store is not under test)."""
    init_node(data_dir, PASSPHRASE, network_name="testnet", origin=ORIGIN, now=datetime.now(UTC),
              kdf=KdfParams(iterations=1, lanes=1, memory_cost_kib=8192))
    with (data_dir / "trustchain.toml").open("a") as config:
        config.write(RATE_LIMITS)
    return credentials(data_dir)


def credentials(data_dir: Path) -> Credentials:
    """The clients' credentials, from the node's key store and database."""
    keystore = KeyStore.open(data_dir / "keys", PASSPHRASE)
    with open_database(data_dir, readonly=True) as db:
        store = NodeStore(db)
        admin, infra = (store.latest_certificate(p) for p in (ADMIN_TLS_PURPOSE, INFRA_CA_PURPOSE))
    root = parse_genesis(DataDir(data_dir).genesis_file.read_bytes()).root_certificate
    assert admin is not None and infra is not None
    admin_key, infra_key = (keystore.private_key(keystore.active(p).id)
                            for p in (ADMIN_TLS_PURPOSE, INFRA_CA_PURPOSE))
    assert isinstance(infra_key, ec.EllipticCurvePrivateKey)
    return Credentials(root, TlsIdentity(admin, [infra], admin_key),  # type: ignore[arg-type]
                       infra, infra_key)


class Node:
    """One data directory and the one node process running on it at a time."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.run_id = uuid.uuid4().hex
        self.env = cli_env(**{RUN_TAG: self.run_id})
        self.proc: NodeProcess | None = None
        #: Workers that outlived their node and had to be killed (by id).
        self.orphans_killed = 0

    def start(self) -> NodeProcess:
        """``trustchain serve``, ready (reconciliation done, every listener open)."""
        self.proc = NodeProcess.start(self.data_dir, env=self.env)
        try:
            self.proc.wait_ready()
        except AssertionError:
            self.crash()
            raise
        return self.proc

    def address(self, service: str) -> tuple[str, int]:
        assert self.proc is not None
        return self.proc.address(service)

    def admin_options(self) -> list[str]:
        return ["--data-dir", str(self.data_dir), "--server",
                "[{}]:{}".format(*self.address("quic"))]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env=self.env)

    def crash(self) -> None:
        """SIGKILL the node, mid-whatever; then see its workers gone."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.drain_available()
        self.reap()

    def stop(self) -> int:
        """A clean stop (SIGINT): its exit status."""
        assert self.proc is not None
        try:
            return self.proc.stop()
        finally:
            self.reap()

    def log_tail(self, lines: int = 30) -> list[str]:
        if self.proc is None:
            return []
        self.proc.drain_available()
        return self.proc.log[-lines:]

    def reap(self) -> None:
        """Wait (bounded) for every process of this run to exit; kill those that do not."""
        for pid in self._tagged():
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            try:
                if not select.select([fd], [], [], ORPHAN_GRACE)[0]:
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
                    self.orphans_killed += 1
            except ProcessLookupError:
                pass
            finally:
                os.close(fd)

    def _tagged(self) -> list[int]:
        """The live processes carrying this run's mark (not this process)."""
        mark = f"{RUN_TAG}={self.run_id}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if mark in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

