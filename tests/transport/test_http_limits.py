"""The HTTP edge limits, attacked with raw sockets while a DNS client times UDP answers.

Issue 14's reproductions, each against a real node process with small limits (a
1 s header and body timeout, 8 connections per address): an oversized header,
slowloris connections and a connection flood from one client, and their HTTP/3
counterparts.  Every test fails on the node before the limits: there, headers of
any size were absorbed, partial heads were held for good, and no connection was
ever refused.  Throughout, :class:`~tests.edge_clients.DnsProbe` queries the DNS
port over UDP; each attack's p99 must stay below ten times the quiet p99 of the
same run (with a floor of 100 ms, as a sub-millisecond quiet figure makes 10x
scheduler noise on a loaded 2-core machine) and below one second: the node
measured in the issue answered UDP in up to 4 s while absorbing a large header.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from aioquic.h3.connection import Setting
from cryptography import x509
from starlette.types import Receive, Scope, Send

from bootstrap.init import init_node
from tests.edge_clients import (
    DnsProbe,
    Drip,
    Flood,
    exchange,
    h3_connection,
    header_of,
    open_socket,
    p99,
    read_to_close,
    rss,
    status_of,
)
from tests.support import PASSPHRASE, NodeProcess
from transport.http import HttpLimits, HttpListener

HEADER_TIMEOUT = 1.0
PER_ADDRESS = 8
MAX_IN_FLIGHT = 4
#: How long a test waits for the node to close a stalled connection: a bound, not a sleep.
CLOSE_WITHIN = HEADER_TIMEOUT + 5.0
#: How long each attack goes on, so that the DNS probe measures during it.
ATTACK_SECONDS = 1.5
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: node\r\n\r\n"


@dataclass
class Edge:
    proc: NodeProcess
    probe: DnsProbe
    quiet_p99: float
    root: x509.Certificate

    def http(self) -> tuple[str, int]:
        return self.proc.address("http")

    def assert_dns_kept_up(self, latencies: list[float]) -> None:
        assert latencies, "the DNS probe sent nothing during the attack"
        attack = p99(latencies)
        bound = min(1.0, max(10 * self.quiet_p99, 0.1))
        assert attack < bound, (f"UDP DNS p99 {attack * 1000:.1f} ms during the attack, "
                                f"quiet {self.quiet_p99 * 1000:.1f} ms")
        print(f"DNS p99: quiet {self.quiet_p99 * 1000:.2f} ms, attack {attack * 1000:.2f} ms "
              f"({len(latencies)} queries)")


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    data_dir = tmp_path_factory.mktemp("edge") / "data"
    result = init_node(data_dir, PASSPHRASE, network_name="testnet", origin="trust.example.net.",
                       now=datetime.now(UTC))
    proc = NodeProcess.start(
        data_dir, "--ca-workers", "0",
        "--http-header-timeout-seconds", str(int(HEADER_TIMEOUT)),
        "--http-body-timeout-seconds", str(int(HEADER_TIMEOUT)),
        "--http-max-connections-per-address", str(PER_ADDRESS),
        "--quic-max-streams-in-flight", str(MAX_IN_FLIGHT),
        # The probe asks 100 times a second from one address: DNS rate limiting (on by
        # default) would drop most of its answers, which is not what these tests measure.
        "--dns-rate-limit", "0",
    )
    try:
        proc.wait_ready()
        with DnsProbe(*proc.address("dns")) as probe:
            with probe.window() as quiet:
                time.sleep(1.5)  # the quiet baseline: a measurement period, not a wait for state
            yield Edge(proc, probe, p99(quiet), result.genesis.root_certificate)
    finally:
        proc.kill()


def test_an_oversized_header_is_refused_without_stalling_or_growing_the_node(edge: Edge) -> None:
    """Reproduces "a 100 MB header took 15 s to absorb, during which UDP DNS answers took up to
    4 s" and "a 200 MB header grew the node from 85 MB to 354 MB": before the limits the
    200 KB header was answered 200, and this test's 100 MB flood was absorbed in full (21 s,
    the node 156 MB larger, 17 of 23 DNS queries unanswered, on the development machine).
    The attacks repeat for a while, so that the DNS probe measures during them."""
    host, port = edge.http()
    with open_socket(host, port) as warm:
        assert exchange(warm, HEALTHZ)[0] == 200
    before = rss(edge.proc.proc.pid)
    floods: list[Flood] = []
    with edge.probe.window() as latencies:
        until = time.monotonic() + ATTACK_SECONDS
        while len(floods) < 3 or time.monotonic() < until:
            _oversized_heads(host, port)
            with open_socket(host, port) as sock:
                flood = Flood(sock, limit=100 << 20).start()
                answer, took = read_to_close(sock, CLOSE_WITHIN)
                assert flood.done.wait(CLOSE_WITHIN), "the 100 MB header was still being read"
            assert flood.error is not None and flood.sent < 32 << 20
            assert status_of(answer) in (431, None)  # None: reset before the answer was read
            floods.append(flood)
    grown = rss(edge.proc.proc.pid) - before
    sent = sum(flood.sent for flood in floods)
    print(f"{len(floods)} floods of 100 MB: {sent / len(floods) / 1e6:.1f} MB each sent before "
          f"the node closed; node RSS grew by {grown / 1e6:.1f} MB")
    assert grown < 16 << 20
    edge.assert_dns_kept_up(latencies)


def _oversized_heads(host: str, port: int) -> None:
    """A 200 KB header, a 20 KB request line and 150 header fields: 431, 414, 431, at once."""
    with open_socket(host, port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: node\r\nX-Big: " + b"a" * 200_000
                     + b"\r\n\r\n")
        answer, took = read_to_close(sock, CLOSE_WITHIN)
    assert status_of(answer) == 431, answer[:200]
    assert b"application/problem+json" in answer and took < 2.0
    with open_socket(host, port) as sock:
        sock.sendall(b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: node\r\n\r\n")
        assert status_of(read_to_close(sock, CLOSE_WITHIN)[0]) == 414
    with open_socket(host, port) as sock:
        fields = b"".join(b"X-%d: y\r\n" % i for i in range(150))
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: node\r\n" + fields + b"\r\n")
        assert status_of(read_to_close(sock, CLOSE_WITHIN)[0]) == 431


def _tls_handshake(host: str, port: int) -> ssl.SSLSocket:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the test attacks the edge; who the node is is moot
    return context.wrap_socket(open_socket(host, port))


def test_slowloris_connections_are_closed_after_the_header_timeout(edge: Edge) -> None:
    """Reproduces "connections that send a partial header, or nothing, stay open for good (20
    still open after 65 s; 300 slow-drip connections after 50 s)": before the limits every
    one of these connections was still open when the test gave up waiting."""
    host, port = edge.http()
    tls_host, tls_port = edge.proc.address("https")
    with contextlib.ExitStack() as stack, edge.probe.window() as latencies:
        def connect(sock: socket.socket, sends: bytes = b"") -> socket.socket:
            stack.enter_context(sock)
            sock.sendall(sends)
            return sock

        slow = {
            "silent": connect(open_socket(host, port)),
            "partial": connect(open_socket(host, port), b"GET /healthz HTTP/1.1\r\nHost: n\r\nX: "),
            "body": connect(open_socket(host, port), b"POST /logs/a/ct/v1/add-chain HTTP/1.1\r\n"
                            b"Host: node\r\nContent-Type: application/json\r\n"
                            b"Content-Length: 1000\r\n\r\n{\"chain\""),
            "drip": connect(open_socket(host, port)),
            "tls_silent": connect(open_socket(tls_host, tls_port)),
            "tls_idle": connect(_tls_handshake(tls_host, tls_port)),
        }
        Drip(slow["drip"], b"GET /healthz HTTP/1.1\r\nHost: node\r\nX-Drip: " + b"a" * 100,
             every=0.1).start()
        started = time.monotonic()
        closed = {name: read_to_close(sock, CLOSE_WITHIN)[0] for name, sock in slow.items()}
        elapsed = time.monotonic() - started
    assert elapsed < CLOSE_WITHIN
    assert closed["silent"] == closed["tls_silent"] == closed["tls_idle"] == b""
    assert status_of(closed["partial"]) == status_of(closed["drip"]) == 408, closed
    assert status_of(closed["body"]) == 408, closed["body"][:200]
    edge.assert_dns_kept_up(latencies)


def test_connections_over_the_per_address_cap_get_503_and_the_first_stay_usable(
    edge: Edge,
) -> None:
    """Reproduces "1,100 such connections from one client took every descriptor, and CT, OCSP,
    CRL and the REST API refused everyone … Nothing was logged": before the limits the
    connections over the cap were accepted and held (no 503 came), and nothing was logged."""
    host, port = edge.http()
    refused: list[bytes] = []
    with contextlib.ExitStack() as stack, edge.probe.window() as latencies:
        first = [stack.enter_context(open_socket(host, port)) for _ in range(PER_ADDRESS)]
        for sock in first:
            assert exchange(sock, HEALTHZ)[0] == 200
        until = time.monotonic() + ATTACK_SECONDS
        while not refused or time.monotonic() < until:
            for _ in range(3):
                with open_socket(host, port, timeout=CLOSE_WITHIN) as extra:
                    refused.append(read_to_close(extra, CLOSE_WITHIN)[0])
            for sock in first:  # still usable, kept alive
                assert exchange(sock, HEALTHZ)[0] == 200
    print(f"{len(refused)} connections over the cap refused")
    for answer in refused:
        assert status_of(answer) == 503, answer[:200]
        assert header_of(answer, b"retry-after") == b"1"
    assert _healthz_honouring_retry_after(host, port) == 200
    # One line per client address a minute, however many refusals (the other tests' attacks
    # come from the same address: whichever came first is the one line).
    warning = r"WARNING .*trustchain.http: http: client "
    edge.proc.drain_available()
    if not any(re.search(warning, line) for line in edge.proc.log):
        edge.proc.wait_for(warning + ".*: refused a connection", timeout=10)
    assert len([line for line in edge.proc.log if re.search(warning, line)]) == 1, edge.proc.log
    edge.assert_dns_kept_up(latencies)


def _healthz_honouring_retry_after(host: str, port: int) -> int:
    """GET /healthz on a fresh connection; a 503 is retried after its Retry-After (the node
    frees the closed connections' slots as it reads their ends)."""
    for _ in range(5):
        with open_socket(host, port) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n")
            answer, _ = read_to_close(sock, CLOSE_WITHIN)
        if status_of(answer) != 503:
            return status_of(answer) or 0
        time.sleep(int(header_of(answer, b"retry-after") or 1))
    return 503


def test_http3_heads_bodies_and_streams_are_bounded(edge: Edge) -> None:
    """The same limits on HTTP/3: before them an unfinished HEADERS frame was buffered and
    held for the life of the connection, any number of streams could hold one, and a
    stalled body kept its request open; here each is reset or answered within the timeout."""
    host, port = edge.proc.address("quic")

    async def attack() -> None:
        async with h3_connection(host, port, edge.root) as client:
            # A HEADERS frame of 200 KB (its length as a 4-byte varint), 100 KB of it sent.
            huge = client.raw(b"\x01" + (0x80000000 | 200_000).to_bytes(4, "big") + bytes(100_000))
            many = client.request("GET", "/healthz",
                                  extra=[(b"x-%d" % i, b"y") for i in range(150)])
            await client.ended(huge, CLOSE_WITHIN)
            settings = client.h3.received_settings or {}
            assert settings.get(Setting.QPACK_MAX_TABLE_CAPACITY) == 0  # no dynamic table
            assert settings.get(Setting.MAX_FIELD_SECTION_SIZE, 0) > 32768
            await client.ended(many, CLOSE_WITHIN)
            assert client.resets.get(huge) == 0x107  # H3_EXCESSIVE_LOAD
            assert client.status.get(many) == 431
            # Unfinished heads (a HEADERS frame of 100 bytes, 10 sent), one over the cap.
            stalled = [client.raw(b"\x01\x40\x64" + b"\x00" * 10) for _ in range(MAX_IN_FLIGHT)]
            over = client.raw(b"\x01\x40\x64" + b"\x00" * 10)
            await client.ended(over, CLOSE_WITHIN)
            assert client.resets.get(over) == 0x10B and not any(s in client.resets for s in stalled)
            for stream_id in stalled:
                took = await client.ended(stream_id, CLOSE_WITHIN)
                assert client.resets.get(stream_id) == 0x10B, took  # H3_REQUEST_REJECTED
            slow = client.request("POST", "/logs/a/ct/v1/add-chain",
                                  extra=[(b"content-type", b"application/json")], end=False)
            client.h3.send_data(slow, b'{"chain"', end_stream=False)
            client.transmit()
            await client.ended(slow, CLOSE_WITHIN)
            assert client.status.get(slow) == 408
            fine = client.request("GET", "/healthz")
            await client.ended(fine, CLOSE_WITHIN)
            assert client.status.get(fine) == 200

    with edge.probe.window() as latencies:
        asyncio.run(attack())
    edge.assert_dns_kept_up(latencies)


def test_the_https_listener_counts_clients_before_the_handshake(edge: Edge) -> None:
    """Over the cap, HTTPS connections are closed before any TLS work; the first stay usable."""
    host, port = edge.proc.address("https")
    first = [_tls_handshake(host, port) for _ in range(PER_ADDRESS)]
    try:
        for sock in first:
            assert exchange(sock, HEALTHZ)[0] == 200
        with socket.create_connection((host, port), timeout=CLOSE_WITHIN) as extra:
            assert read_to_close(extra, CLOSE_WITHIN)[0] == b""
        assert exchange(first[0], HEALTHZ)[0] == 200
    finally:
        for sock in first:
            sock.close()


async def test_the_listener_caps_its_connections_in_total() -> None:
    """Over the listener's total cap (here 3; any client address), 503 with Retry-After."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    limits = HttpLimits(max_request_line=1024, max_header_bytes=4096, max_headers=20,
                        header_timeout=5, body_timeout=5, keepalive_timeout=5,
                        max_per_address=100, max_connections=3)
    listener = HttpListener(app, ["::1"], 0, 1, limits=limits)
    ((host, port),) = await listener.start()
    opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for _ in range(4):
            opened.append(await asyncio.open_connection(host, port))
        reader, _ = opened[3]
        answer = await asyncio.wait_for(reader.read(), CLOSE_WITHIN)
        assert status_of(answer) == 503 and header_of(answer, b"retry-after") == b"1"
        reader, writer = opened[0]
        writer.write(HEALTHZ)
        assert status_of(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CLOSE_WITHIN)) == 204
    finally:
        for _, writer in opened:
            writer.close()
        await listener.stop()
