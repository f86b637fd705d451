"""A whole node in this process, for the targets that drive its stoq/1 router and ASGI app.

Built as ``trustchain serve`` builds it (:mod:`trustchain.wiring.serve`): a
data directory made by ``init`` (cheap Argon2id), the CA with its stores and
rate limits, both CT logs behind a :class:`LogRunner`, the DNS service and
enrolment, every method table, :func:`~trustchain.wiring.serve.build_router`
and :func:`~trustchain.wiring.http.create_app`; only the listeners are
missing.  Requests run on a private event loop, one at a time.  The data
directory lives in ``/dev/shm`` where there is one (SQLite's fsyncs are then
cheap) and is removed at exit.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.util import Finalize
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote

import dns.name as dns_name
from cryptography.hazmat.primitives.serialization import Encoding
from starlette.applications import Starlette

from bootstrap.init import init_node
from tests.support import PASSPHRASE
from transport.ca import CaRunner
from transport.ct import LogRunner
from transport.group_commit import GroupCommit
from transport.workers import InlineWork
from trustchain.config import load_config
from trustchain.datadir import DataDir
from trustchain.dns.service import DnsService
from trustchain.identity import Peer, Role
from trustchain.keystore import KdfParams
from trustchain.stoq.router import Router
from trustchain.storage.dns import SqliteZoneStore
from trustchain.wiring.ca import build_ca, ca_limiter, ca_service
from trustchain.wiring.ct import build_ct_logs, ct_service
from trustchain.wiring.dns import build_dns, zone_service
from trustchain.wiring.http import create_app
from trustchain.wiring.node import OpenNode, open_node, utcnow
from trustchain.wiring.serve import base_services, build_router

T = TypeVar("T")
NETWORK = "testnet"
ORIGIN = "trust.example.net."
#: The peers a request may come from: anonymous, or one of each role of this network.
ADMIN = Peer(Role.ADMIN, "fuzz-admin", NETWORK)
PEERS: tuple[Peer | None, ...] = (
    None, None, ADMIN, Peer(Role.NODE, "0" * 32, NETWORK),
    Peer(Role.NETWORK, "alpha", NETWORK, serial=1))


@dataclass
class FuzzNode:
    node: OpenNode
    loop: asyncio.AbstractEventLoop
    router: Router
    app: Starlette
    logs: LogRunner
    dns: DnsService

    def run(self, awaitable: Awaitable[T], timeout: float = 30.0) -> T:
        """Run one request's coroutine to its end on the node's loop."""
        return self.loop.run_until_complete(asyncio.wait_for(awaitable, timeout))

    def http(self, method: str, target: str, body: bytes = b"",
             peer: Peer | None = None) -> tuple[int, bytes]:
        """One request to the node's ASGI app, as the HTTP listeners pass it (status, body)."""
        return self.run(asgi_request(self.app, method, target, body, peer))

    def der(self, which: str) -> bytes:
        """The genesis root or this node's infrastructure intermediate (DER)."""
        cert = (self.node.genesis.root_certificate if which == "root"
                else self.node.credentials.node.chain[0])
        return cert.public_bytes(Encoding.DER)


def at_exit(fn: Callable[..., object], *args: object) -> None:
    """Call ``fn(*args)`` when this process exits, last registered first: also in the
    worker processes of ``--jobs``, where multiprocessing runs its finalizers but not
    ``atexit``."""
    Finalize(None, fn, args=args, exitpriority=1)


def scratch_dir() -> Path:
    """A directory of this process's own, in memory where there is ``/dev/shm``, removed
    at exit."""
    shm = Path("/dev/shm")
    place = Path(tempfile.mkdtemp(prefix="trustchain-fuzz-", dir=shm if shm.is_dir() else None))
    at_exit(shutil.rmtree, place, True)
    return place


@functools.cache
def fuzz_node() -> FuzzNode:
    """The process's node (built on first use, removed at exit)."""
    data = scratch_dir() / "data"
    init_node(data, PASSPHRASE, network_name=NETWORK, origin=ORIGIN, now=datetime.now(UTC),
              kdf=KdfParams(iterations=1, lanes=1, memory_cost_kib=8192))
    config = load_config(data, {"ca_workers": 0})
    node = open_node(DataDir(data), config, lambda: PASSPHRASE)
    at_exit(node.db.close)
    loop = asyncio.new_event_loop()

    async def build() -> FuzzNode:
        authority = build_ca(node, ca_limiter(node))
        work = InlineWork(authority.signer)
        logs = LogRunner(build_ct_logs(node), interval=0.001, work=work)
        logs.start()
        ca = CaRunner(authority, logs, clock=utcnow, commits=GroupCommit(node.db), work=work)
        dns = build_dns(node)
        dns.zones.create(dns_name.from_text(ORIGIN), addresses=["2001:db8::53"])
        SqliteZoneStore(node.db).add_network(  # as a committed registration records it
            "alpha", dns_name.from_text(f"alpha.{ORIGIN}"), "hosted", utcnow(), ["10.0.0.0/8"])
        services = [*base_services(node, dns.handle), zone_service(dns), ct_service(logs),
                    ca_service(ca)]
        return FuzzNode(node, loop, build_router(services),
                        create_app(genesis_bytes=node.genesis_bytes, services=services),
                        logs, dns)

    built = loop.run_until_complete(build())

    def stop() -> None:
        loop.run_until_complete(built.logs.stop())
        loop.close()

    at_exit(stop)
    return built


async def asgi_request(app: Any, method: str, target: str, body: bytes,
                       peer: Peer | None) -> tuple[int, bytes]:
    """``method target`` with ``body`` through an ASGI app: its status and body."""
    raw_path, _, query = target.partition("?")
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "https", "path": unquote(raw_path), "raw_path": raw_path.encode(),
        "query_string": query.encode(), "root_path": "",
        "headers": [(b"host", b"n1.nodes.trust.example.net"),
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
        "client": ("192.0.2.1", 40000), "server": ("192.0.2.2", 443),
        "extensions": {"trustchain.peer": peer} if peer is not None else {},
    }
    chunks = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def peer_of(selector: int) -> Peer | None:
    return PEERS[selector % len(PEERS)]


def settle(result: Any, node: FuzzNode) -> Any:
    """A handler's answer, awaited on the node's loop if it is a coroutine."""
    if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
        return node.run(result)
    return result
