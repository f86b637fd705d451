#!/usr/bin/env python3
"""Small request/response pairs per second over one QUIC connection.

Compares, in the same run and on the same machine:

* ``raw``:  a bare aioquic echo server and client (one stream per exchange,
  the payload echoed back with FIN): the baseline, no framing, no routing;
* ``stoq``: TrustChain's stoq/1 endpoint (transport.quic.QuicEndpoint with
  the real framing, permission check and router) and client
  (transport.client), calling ``dns.query`` with a handler that returns a
  fixed answer.

Each server runs in its own process (the machine has two cores: one for the
server, one for the client).  Usage::

    python benchmarks/quic_rpc.py [--requests 20000] [--concurrency 32]

It prints both rates and their ratio; the target is stoq >= 0.7 x raw.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aioquic.asyncio.client import connect as quic_connect  # noqa: E402
from aioquic.asyncio.protocol import QuicConnectionProtocol  # noqa: E402
from aioquic.asyncio.server import serve as quic_serve  # noqa: E402
from aioquic.quic.configuration import QuicConfiguration  # noqa: E402
from aioquic.quic.events import QuicEvent, StreamDataReceived  # noqa: E402

from tests.pki import node_pki  # noqa: E402
from trustchain.identity import TlsIdentity

PAYLOAD = b"\x00" * 40  # about the size of a DNS query
HOST = "::1"
SERVER_NAME = "bench.example"


def credentials(directory: Path) -> tuple[TlsIdentity, object]:
    """Ephemeral PKI shaped like a node's (root -> intermediate -> leaf)."""
    pki = node_pki(now=datetime.now(UTC), network="bench", node_id="bench")
    return pki.identity("bench", dns_names=[SERVER_NAME]), pki.root


# --- servers (run in a child process) -------------------------------------------------


class EchoServer(QuicConnectionProtocol):
    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived) and event.end_stream:
            self._quic.send_stream_data(event.stream_id, event.data, end_stream=True)


async def run_server(kind: str) -> None:
    from transport.problem import problem_for
    from transport.quic import QuicEndpoint, QuicServices
    from transport.tls import server_configuration
    from trustchain.stoq.router import Router

    identity, root = credentials(Path("."))
    if kind == "raw":
        config = server_configuration(identity, root=root, alpn_protocols=["echo"],
                                      idle_timeout=60)
        server = await quic_serve(HOST, 0, configuration=config, create_protocol=EchoServer)
        port = server._transport.get_extra_info("sockname")[1]
    else:
        router = Router(problem_for)
        router.register("dns", "query", lambda message, peer: message)
        services = QuicServices(
            dns=lambda q, ctx: q, router=router, root=root, network="bench",
            clock=lambda: datetime.now(UTC),
        )
        endpoint = QuicEndpoint(services, identity, [HOST], 0)
        ((_, port),) = await endpoint.start()
    from transport.tls import pem

    sys.stdout.write(f"{port}\n{pem(root).decode()}")
    sys.stdout.write("END\n")
    sys.stdout.flush()
    await asyncio.Event().wait()


# --- clients ----------------------------------------------------------------------------


class EchoClient(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.waiters: dict[int, asyncio.Future[bytes]] = {}

    async def call(self, data: bytes) -> bytes:
        sid = self._quic.get_next_available_stream_id()
        self._quic.send_stream_data(sid, data, end_stream=True)
        waiter = self.waiters[sid] = self._loop.create_future()
        self.transmit()
        return await waiter

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived) and event.end_stream:
            self.waiters.pop(event.stream_id).set_result(event.data)


async def drive(call, requests: int, concurrency: int) -> float:
    remaining = requests

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call(PAYLOAD)

    await asyncio.gather(*(call(PAYLOAD) for _ in range(concurrency)))  # warm-up
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return requests / (time.perf_counter() - start)


def start_server(kind: str) -> tuple[subprocess.Popen[str], int, bytes]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve", kind],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    lines = []
    for line in proc.stdout:
        if line.strip() == "END":
            break
        lines.append(line)
    return proc, port, "".join(lines).encode()


async def measure(kind: str, requests: int, concurrency: int) -> float:
    from cryptography import x509

    from transport.client import connect

    proc, port, root_pem = start_server(kind)
    try:
        if kind == "raw":
            config = QuicConfiguration(is_client=True, alpn_protocols=["echo"],
                                       server_name=SERVER_NAME)
            config.verify_mode = ssl.CERT_REQUIRED
            config.cadata = root_pem
            async with quic_connect(HOST, port, configuration=config,
                                    create_protocol=EchoClient) as client:
                return await drive(client.call, requests, concurrency)
        root = x509.load_pem_x509_certificate(root_pem)
        async with connect(HOST, port, root=root, server_name=SERVER_NAME) as client:
            async def call(data: bytes) -> bytes:
                response = await client.request("dns", "query", data)
                assert response.status == 200
                return response.message

            return await drive(call, requests, concurrency)
    finally:
        proc.terminate()
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--serve", choices=["raw", "stoq"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(run_server(args.serve))
        return 0
    print(f"{args.requests} exchanges of {len(PAYLOAD)} bytes, {args.concurrency} in flight, "
          f"one connection, server in its own process (cpus: {os.cpu_count()})")
    raw = asyncio.run(measure("raw", args.requests, args.concurrency))
    print(f"raw aioquic echo : {raw:9.0f} round trips/s")
    stoq = asyncio.run(measure("stoq", args.requests, args.concurrency))
    print(f"stoq/1 dns.query : {stoq:9.0f} round trips/s")
    ratio = stoq / raw
    print(f"ratio            : {ratio:9.2f} x raw  (target >= 0.70: {'met' if ratio >= 0.7 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
