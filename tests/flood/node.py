"""The node the floods are aimed at: a fresh data directory, a served zone, its listeners,
and the check that every one of them still answers.

The node listens on 127.0.0.1 only, so that the harness can speak from more than one
address of the loopback network: legitimate clients from 127.0.0.1 (the address a
client connecting to the node gets by default), each flood from its own /24
(:func:`attacker_addresses`).  What the node keys its limits on (DNS rate limiting per
/24, QUIC and HTTP connections per address) then sees attackers and legitimate clients
apart, as it would on a network.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import threading
import time
from collections.abc import Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
from cryptography.hazmat.primitives.serialization import Encoding

from tests.crash.node import NETWORK, ORIGIN, Credentials, Node, initialise
from tests.edge_clients import exchange, open_socket
from tests.h3client import h3_get
from transport.client import connect

LISTEN = "127.0.0.1"
#: The zone whose answers the floods and the legitimate clients ask for.
ZONE = "flood.example."
#: Names the legitimate clients rotate over: a busy resolver's many names, each asked
#: for well below the rate limit (its answers are limited per name and type).
HOSTS = tuple(f"host{i}.{ZONE}" for i in range(20))
#: Large answers, signed, each still under the node's UDP answer limit (1,232 bytes):
#: what a reflection attack asks for (a truncated answer would be small).
BIG = f"big.{ZONE}"
SERVER_NAME = ORIGIN.rstrip(".")
#: How long a listener has, after a flood, to answer again (a bound, not a sleep).
RECOVERY = 10.0


def zone_text() -> str:
    lines = [f"$ORIGIN {ZONE}", "$TTL 300",
             "@ SOA ns1 hostmaster 2026112500 7200 3600 1209600 60",
             "@ NS ns1", "ns1 A 192.0.2.1", "ns1 AAAA 2001:db8::1",
             "big TXT " + " ".join(f'"{c * 200}"' for c in "abcd"),
             "many TXT " + " ".join(f'"{c * 180}"' for c in "ghijk")]
    lines += [f"host{i} A 192.0.2.{i + 10}" for i in range(len(HOSTS))]
    return "\n".join(lines) + "\n"


def attacker_addresses(flood: int, count: int) -> list[str]:
    """``count`` source addresses in a /24 of the loopback network of its own for flood
    number ``flood`` (127.66.<flood>.0/24): each flood starts with no state in the node's
    limits left by the ones before."""
    return [f"127.66.{flood}.{i}" for i in range(1, count + 1)]


class FloodNode:
    """A fresh node in ``data_dir`` serving :data:`ZONE`, with its default configuration
    (what the harness is about) but for ``settings`` (``{"dns_rate_limit": "0"}``: as
    ``TRUSTCHAIN_<SETTING>`` variables) and two things: it listens on :data:`LISTEN`, and
    the CA's rate limits are lifted (as the crash harness lifts them), so that the
    issuance flood makes the node issue rather than refuse."""

    def __init__(self, data_dir: Path, settings: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.credentials: Credentials = initialise(data_dir)
        self.node = Node(data_dir)
        self.node.env["TRUSTCHAIN_LISTEN"] = LISTEN
        for name, value in (settings or {}).items():
            self.node.env[f"TRUSTCHAIN_{name.upper()}"] = value

    def start(self) -> None:
        self.node.start()
        zone_file = self.data_dir.parent / "flood.zone"
        zone_file.write_text(zone_text())
        for command in (["network", "register", NETWORK],
                        ["zone", "import", str(zone_file)]):
            result = self.node.cli(*command, *self.node.admin_options())
            if result.returncode != 0:
                raise RuntimeError(f"{' '.join(command)}: {result.stderr}")

    def stop(self) -> None:
        """Kill the node and every process it started (its workers), whatever happened."""
        self.node.crash()

    def address(self, service: str) -> tuple[str, int]:
        return self.node.address(service)

    @property
    def pid(self) -> int:
        assert self.node.proc is not None
        return self.node.proc.proc.pid

    def cpu_seconds(self) -> float:
        """User and system CPU time so far of the node and its worker processes."""
        total = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if self.pid in (int(entry.name), int(fields[1])):  # the node, or its child
                    total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / os.sysconf("SC_CLK_TCK")

    def udp_drops(self) -> dict[str, int]:
        """Datagrams the kernel dropped, for want of room in its receive buffer, on the
        node's DNS and QUIC sockets so far (/proc/net/udp)."""
        ports = {self.address(service)[1]: service for service in ("dns", "quic")}
        drops = dict.fromkeys(ports.values(), 0)
        with open("/proc/net/udp") as table:
            for line in list(table)[1:]:
                fields = line.split()
                port = int(fields[1].rsplit(":", 1)[1], 16)
                if port in ports and fields[2] == "00000000:0000":  # a listening socket
                    drops[ports[port]] += int(fields[-1])
        return drops

    def alive(self) -> bool:
        return self.node.proc is not None and self.node.proc.proc.poll() is None

    def log_tail(self, lines: int = 20) -> list[str]:
        return self.node.log_tail(lines)

    def attack_config(self) -> dict[str, Any]:
        """What an attack process needs to reach the node (JSON)."""
        return {"addresses": {name: list(self.address(name))
                              for name in ("dns", "quic", "http", "https")},
                "data_dir": str(self.data_dir), "server_name": SERVER_NAME}

    # --- is every listener up? -----------------------------------------------------

    def listeners_up(self) -> dict[str, str | None]:
        """Each listener, and why it does not answer (None: it does), each one tried until it
        answers or :data:`RECOVERY` seconds have passed."""
        checks: dict[str, Callable[[], None]] = {
            "dns/udp": self._udp, "dns/tcp": self._tcp,
            "doq": partial(self._quic, "doq"), "stoq/1": partial(self._quic, "stoq/1"),
            "http": partial(self._http, False), "https": partial(self._http, True),
            "h3": self._h3,
        }
        if not self.alive():
            return dict.fromkeys(checks, "the node process has exited")
        return {name: _retry(check) for name, check in checks.items()}

    def _udp(self) -> None:
        host, port = self.address("dns")
        reply = dns.query.udp(dns.message.make_query(HOSTS[0], "A"), host, port=port, timeout=2)
        assert reply.rcode() == dns.rcode.NOERROR and reply.answer, reply

    def _tcp(self) -> None:
        host, port = self.address("dns")
        reply = dns.query.tcp(dns.message.make_query(BIG, "TXT"), host, port=port, timeout=2)
        assert reply.rcode() == dns.rcode.NOERROR and reply.answer, reply

    def _quic(self, alpn: str) -> None:
        host, port = self.address("quic")

        async def ask() -> None:
            async with connect(host, port, root=self.credentials.root, server_name=SERVER_NAME,
                               alpn=alpn, timeout=2) as client:
                if alpn == "doq":
                    query = dns.message.make_query(HOSTS[0], "A")
                    query.id = 0
                    wire = await asyncio.wait_for(client.doq_query(query.to_wire()), 2)
                    assert dns.message.from_wire(wire).rcode() == dns.rcode.NOERROR
                else:
                    response = await asyncio.wait_for(
                        client.request("ct", "get-sth", json.dumps({"log": "a"}).encode()), 2)
                    assert response.status == 200, response

        asyncio.run(ask())

    def _http(self, tls: bool) -> None:
        host, port = self.address("https" if tls else "http")
        with contextlib.closing(open_socket(host, port, timeout=2)) as sock:
            if tls:
                context = ssl.create_default_context(
                    cadata=self.credentials.root.public_bytes(Encoding.PEM).decode())
                sock = context.wrap_socket(sock, server_hostname=SERVER_NAME)
            status, _ = exchange(sock, b"GET /healthz HTTP/1.1\r\nHost: node\r\n\r\n", timeout=2)
            assert status == 200, status

    def _h3(self) -> None:
        host, port = self.address("quic")
        status, _, _ = _run(h3_get(host, port, "/healthz", root=self.credentials.root,
                                   authority=SERVER_NAME), 2)
        assert status == 200, status


def _run(coroutine: Coroutine[Any, Any, Any], timeout: float) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coroutine, timeout)

    return asyncio.run(bounded())


def _retry(check: Callable[[], None]) -> str | None:
    """None once ``check`` passes; the last failure if it never does within RECOVERY."""
    deadline = time.monotonic() + RECOVERY
    while True:
        try:
            check()
            return None
        except Exception as exc:  # whatever a client raises (assertions too): not up
            failure = f"{type(exc).__name__}: {exc}"[:200]
        if time.monotonic() >= deadline:
            return failure
        threading.Event().wait(0.2)  # the pace of retries, until the deadline
