"""The floods, each run in a process of its own: ``python -m tests.flood.attacks KIND CONFIG``.

A flood sets itself up (sockets, pre-built packets, CSRs), prints ``ready``, floods for
``seconds`` (bounded in count too), prints ``stopping``, winds down within a bound, and
prints its figures as one JSON line.  A process of its own keeps the attackers' CPU off
the legitimate clients' interpreter, whose latencies the harness measures meanwhile.

Every flood sends from its ``sources`` (addresses of the loopback network, never the
legitimate clients' 127.0.0.1) to the node's listeners on loopback, and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import ssl
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.message
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from tests.crash.node import CERT_ZONE, credentials
from tests.edge_clients import Drip, Flood, open_socket, quic_from, read_to_close, status_of
from transport.client import NodeClientProtocol, StreamError
from transport.tls import client_configuration
from trustchain.stoq.framing import encode_request

Config = dict[str, Any]
#: How long a flood may take to wind down after its time is up (a bound, not a sleep).
WIND_DOWN = 10.0


def announce(line: str) -> None:
    print(line, flush=True)


def address(config: Config, service: str) -> tuple[str, int]:
    host, port = config["addresses"][service]
    return str(host), int(port)


# --- DNS over UDP ---------------------------------------------------------------------


class DnsQueries:
    """Queries for the largest answers the zone gives (EDNS 4096, DO: signed), ANY, and a
    name never asked before (NXDOMAIN with its denial proof, as in a random-subdomain
    flood: no answer cache helps), in turn, each with a random ID."""

    SHAPES = ((None, "ANY"), ("big", "TXT"), ("many", "TXT"), (None, "DNSKEY"), ("", "A"))

    def __init__(self, zone: str, rng: random.Random) -> None:
        self._rng = rng
        self._wires = []
        for label, rdtype in self.SHAPES:
            name = zone if label is None else f"{label or 'r' + '0' * 12}.{zone}"
            self._wires.append(dns.message.make_query(name, rdtype, use_edns=0, payload=4096,
                                                      want_dnssec=True).to_wire())
        self._count = 0

    def next(self) -> bytes:
        shape = self._count % len(self.SHAPES)
        self._count += 1
        wire = self._wires[shape]
        head = self._rng.getrandbits(16).to_bytes(2, "big")
        if self.SHAPES[shape][0] == "":  # the 12 characters after "r": new each time
            return head + wire[2:14] + f"{self._rng.getrandbits(48):012x}".encode() + wire[26:]
        return head + wire[2:]


def udp_dns(config: Config) -> dict[str, Any]:
    """``rate`` queries a second for large answers, from every source in turn."""
    host, port = address(config, "dns")
    seconds, rate = float(config["seconds"]), int(config["rate"])
    limit = int(rate * seconds)
    shapes = DnsQueries(config["zone"], random.Random(14))
    queries = [shapes.next() for _ in range(limit)]  # built before the flood: it only sends
    socks = []
    for source in config["sources"]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((source, 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)  # count every answer
        socks.append(sock)
    counts = [Counter[str]() for _ in socks]  # one per reader thread: no lost updates
    stop = threading.Event()

    def receive(sock: socket.socket, received: Counter[str]) -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                data = sock.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            received["bytes"] += len(data)
            received["answers"] += 1
            if len(data) > 3 and data[2] & 0x02:  # TC
                received["truncated"] += 1

    readers = [threading.Thread(target=receive, args=(sock, count), daemon=True)
               for sock, count in zip(socks, counts, strict=True)]
    for reader in readers:
        reader.start()
    sent = sent_bytes = send_errors = 0
    tick = 0.005
    announce("ready")
    start = time.monotonic()
    deadline = start + seconds
    while sent < limit and (now := time.monotonic()) < deadline:
        due = min(limit, int((now - start + tick) * rate))
        while sent < due:
            wire = queries[sent]
            try:
                socks[sent % len(socks)].sendto(wire, (host, port))
            except OSError:  # (ENOBUFS): the attacker's own queue is full
                send_errors += 1
            sent += 1
            sent_bytes += len(wire)
        time.sleep(tick)  # the flood's pace
    announce("stopping")
    elapsed = time.monotonic() - start
    # Answers still in flight: until none came for half a second (bounded).
    def answers() -> int:
        return sum(count["answers"] for count in counts)

    quiet_since, last, until = time.monotonic(), answers(), time.monotonic() + WIND_DOWN
    while time.monotonic() < until and time.monotonic() - quiet_since < 0.5:
        time.sleep(0.05)  # polling the reader threads' count, bounded above
        if answers() != last:
            last, quiet_since = answers(), time.monotonic()
    stop.set()
    for reader in readers:
        reader.join(1)
    for sock in socks:
        sock.close()
    received = sum(counts, Counter[str]())
    return {"queries": sent, "queries/s": round(sent / elapsed), "bytes in": sent_bytes,
            "answers": received["answers"], "truncated (TC)": received["truncated"],
            "unanswered": sent - received["answers"], "bytes out": received["bytes"],
            "amplification (out/in)": round(received["bytes"] / max(1, sent_bytes), 3),
            "amplification per answered query": round(
                received["bytes"] / max(1, received["answers"]) / (sent_bytes / max(1, sent)), 2),
            "send errors": send_errors}


# --- QUIC handshakes ------------------------------------------------------------------


def attacker_quic_configuration(config: Config, alpn: str) -> QuicConfiguration:
    """A client that checks nothing about the server: an attacker does not care who it is."""
    quic = QuicConfiguration(is_client=True, alpn_protocols=[alpn],
                             server_name=config["server_name"], idle_timeout=5.0)
    quic.verify_mode = ssl.CERT_NONE
    return quic


def initial_flights(config: Config, count: int) -> list[list[bytes]]:
    """The first flight (Initial packets with a ClientHello) of ``count`` connections that
    will never go further."""
    target = address(config, "quic")
    flights = []
    for _ in range(count):
        connection = QuicConnection(configuration=attacker_quic_configuration(config, "doq"))
        connection.connect(target, now=time.monotonic())
        flights.append([data for data, _ in connection.datagrams_to_send(now=time.monotonic())])
    return flights


async def quic_handshakes(config: Config) -> dict[str, Any]:
    """Two floods at once: ``initials_per_second`` first flights of connections never
    finished (as from spoofed addresses, each one a new connection to the server), and
    ``handshakers`` clients completing handshakes back to back (answering Retry, as a
    real client does), each connection closed at once."""
    host, port = address(config, "quic")
    seconds = float(config["seconds"])
    sources: list[str] = config["sources"]
    flights = initial_flights(config, int(config["initials"]))
    counts: Counter[str] = Counter()
    loop = asyncio.get_running_loop()

    class Counting(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            counts["datagrams back"] += 1
            counts["bytes back"] += len(data)
            if data and data[0] & 0x80 and (data[0] & 0x30) >> 4 == 3:
                counts["retries back"] += 1

    blasters = []
    for source in sources[: len(sources) // 2]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((source, 0))
        transport, _ = await loop.create_datagram_endpoint(Counting, sock=sock)
        blasters.append(transport)
    handshake_sources = sources[len(sources) // 2:]
    quic = attacker_quic_configuration(config, "doq")
    stop = asyncio.Event()

    async def blast() -> None:
        rate = float(config["initials_per_second"])
        start, sent = loop.time(), 0
        while not stop.is_set() and sent < len(flights):
            due = min(len(flights), int((loop.time() - start + 0.005) * rate))
            while sent < due:
                for datagram in flights[sent]:
                    blasters[sent % len(blasters)].sendto(datagram, (host, port))
                    counts["bytes sent"] += len(datagram)
                sent += 1
            await asyncio.sleep(0.005)  # the flood's pace
        counts["initial flights sent"] = sent

    async def handshaker(n: int) -> None:
        source = handshake_sources[n % len(handshake_sources)]
        while not stop.is_set():
            try:
                async with quic_from(host, port, quic, source=source, timeout=2.0):
                    counts["handshakes completed"] += 1
            except (ConnectionError, TimeoutError, OSError) as exc:
                counts[f"handshakes failed: {type(exc).__name__}"] += 1

    announce("ready")
    tasks = [asyncio.ensure_future(blast()),
             *(asyncio.ensure_future(handshaker(n)) for n in range(int(config["handshakers"])))]
    start = loop.time()
    await asyncio.sleep(seconds)  # the flood's duration
    stop.set()
    announce("stopping")
    elapsed = loop.time() - start
    await asyncio.wait(tasks, timeout=WIND_DOWN)
    for task in tasks:
        task.cancel()
    for transport in blasters:
        transport.close()
    result: dict[str, Any] = dict(counts)
    result["handshakes/s"] = round(counts["handshakes completed"] / elapsed, 1)
    result["initial flights/s"] = round(counts["initial flights sent"] / elapsed)
    result["amplification (out/in)"] = round(counts["bytes back"] / max(1, counts["bytes sent"]), 3)
    return result


# --- stoq/1 streams -------------------------------------------------------------------


async def stoq_streams(config: Config) -> dict[str, Any]:
    """``connections`` anonymous stoq/1 connections, each with ``workers`` requests in
    flight at all times (public methods: CT get-sth, a DNS query, a method that does not
    exist), and ``held`` streams per connection opened with half a request, never ended."""
    host, port = address(config, "quic")
    seconds = float(config["seconds"])
    root = x509.load_pem_x509_certificate(config["root"].encode())
    counts: Counter[str] = Counter()
    stop = asyncio.Event()
    get_sth = json.dumps({"log": "a"}).encode()
    requests = [("ct", "get-sth", get_sth),
                ("dns", "query", dns.message.make_query(f"host1.{config['zone']}", "A").to_wire()),
                ("ct", "no-such-method", b"{}")]

    async def worker(client: NodeClientProtocol, n: int) -> None:
        while not stop.is_set() and client.terminated is None:
            service, method, body = requests[n % len(requests)]
            n += 1
            try:
                response = await asyncio.wait_for(client.request(service, method, body), 5)
                counts[f"status {response.status}"] += 1
            except StreamError as exc:
                counts[f"reset {exc.error_code:#x}"] += 1
            except (TimeoutError, ConnectionError, OSError) as exc:
                counts[f"failed: {type(exc).__name__}"] += 1

    async def connection(source: str) -> None:
        quic = client_configuration(root=root, server_name=config["server_name"], alpn="stoq/1")
        try:
            async with quic_from(host, port, quic, source=source,
                                 create_protocol=NodeClientProtocol) as client:
                assert isinstance(client, NodeClientProtocol)
                counts["connections"] += 1
                for _ in range(int(config["held"])):  # a request never ended (no FIN)
                    stream_id = client._quic.get_next_available_stream_id()
                    client._quic.send_stream_data(stream_id,
                                                  encode_request("ct", "get-sth", get_sth))
                client.transmit()
                workers = [asyncio.ensure_future(worker(client, n))
                           for n in range(int(config["workers"]))]
                await stop.wait()
                await asyncio.wait(workers, timeout=WIND_DOWN)
                for task in workers:
                    task.cancel()
        except (ConnectionError, TimeoutError, OSError) as exc:
            counts[f"connection failed: {type(exc).__name__}"] += 1

    sources: list[str] = config["sources"]
    tasks = [asyncio.ensure_future(connection(sources[i % len(sources)]))
             for i in range(int(config["connections"]))]
    announce("ready")
    start = time.monotonic()
    await asyncio.sleep(seconds)  # the flood's duration
    stop.set()
    announce("stopping")
    elapsed = time.monotonic() - start
    await asyncio.wait(tasks, timeout=WIND_DOWN + 5)
    for task in tasks:
        task.cancel()
    answered = sum(v for k, v in counts.items() if k.startswith(("status", "reset")))
    return {**counts, "requests answered/s": round(answered / elapsed)}


# --- HTTP slowloris and oversized heads -----------------------------------------------


def http_slow(config: Config) -> dict[str, Any]:
    """Slowloris on HTTP (heads dripped a byte every half second) and HTTPS (silent
    connections: no TLS handshake), ``slots`` connections per address on each from the
    first ``slowloris_sources`` addresses (more than the per-address cap: the rest are
    refused, and come back), and ``oversized`` clients sending 64 MiB heads back to back
    from the other addresses, all until ``seconds`` are up."""
    http, https = address(config, "http"), address(config, "https")
    seconds = float(config["seconds"])
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()

    def count(key: str, n: int = 1) -> None:
        with lock:
            counts[key] += n

    head = b"GET /healthz HTTP/1.1\r\nHost: node\r\nX-Slow: " + b"a" * 4096

    def slowloris(source: str, target: tuple[str, int], tls: bool) -> None:
        while not stop.is_set():
            try:
                with open_socket(*target, timeout=5, source=source) as sock:
                    count("https slow connections" if tls else "http slow connections")
                    if tls:  # nothing at all: the handshake never starts
                        closed, _ = _read_until(sock, stop)
                    else:
                        Drip(sock, head, every=0.5).run(stop)
                        closed, _ = _read_until(sock, stop)
                    if closed is not None:
                        status = status_of(closed)
                        count(f"{'https' if tls else 'http'} closed by the node: "
                              + (str(status) if status else "no answer"))
            except OSError as exc:
                count(f"connect failed: {type(exc).__name__}")
            stop.wait(0.1)  # the attacker's pace of reconnecting

    def oversized(source: str) -> None:
        while not stop.is_set():
            try:
                with open_socket(*http, timeout=10, source=source) as sock:
                    flood = Flood(sock, limit=64 << 20).start()
                    answer, _ = read_to_close(sock, 10)
                    flood.done.wait(10)
                    count("oversized heads")
                    count("oversized bytes sent", flood.sent)
                    count(f"oversized answered {status_of(answer) or 'reset'}")
            except (OSError, AssertionError) as exc:
                count(f"oversized failed: {type(exc).__name__}")

    threads = []
    split = int(config["slowloris_sources"])
    slow_sources, big_sources = config["sources"][:split], config["sources"][split:]
    for source in slow_sources:
        for _ in range(int(config["slots"])):
            threads += [threading.Thread(target=slowloris, args=(source, http, False)),
                        threading.Thread(target=slowloris, args=(source, https, True))]
    for i in range(int(config["oversized"])):
        threads.append(threading.Thread(target=oversized,
                                        args=(big_sources[i % len(big_sources)],)))
    announce("ready")
    start = time.monotonic()
    for thread in threads:
        thread.daemon = True
        thread.start()
    stop.wait(seconds)  # the flood's duration
    stop.set()
    announce("stopping")
    elapsed = time.monotonic() - start
    deadline = time.monotonic() + WIND_DOWN
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    result: dict[str, Any] = dict(counts)
    result["oversized MB/s"] = round(counts["oversized bytes sent"] / elapsed / 1e6, 1)
    return result


def _read_until(sock: socket.socket, stop: threading.Event) -> tuple[bytes | None, float]:
    """Whatever the node sends until it closes; None if ``stop`` came first."""
    sock.settimeout(0.2)
    data, start = b"", time.monotonic()
    while not stop.is_set():
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return data, time.monotonic() - start
        if not chunk:
            return data, time.monotonic() - start
        data += chunk
    return None, time.monotonic() - start


# --- issuance -------------------------------------------------------------------------


async def issuance(config: Config) -> dict[str, Any]:
    """``connections`` admin connections over stoq/1, each with ``workers`` ``ca.issue``
    requests in flight, every one for a new name, at most ``limit`` in all."""
    host, port = address(config, "quic")
    seconds = float(config["seconds"])
    creds = credentials(Path(config["data_dir"]))
    key = ec.generate_private_key(ec.SECP256R1())
    counts: Counter[str] = Counter()
    stop = asyncio.Event()
    numbers = iter(range(int(config["limit"])))

    def csr(n: int) -> bytes:
        name = f"flood{n}-{os.getpid()}.{CERT_ZONE}"
        return (x509.CertificateSigningRequestBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
                .sign(key, hashes.SHA256()).public_bytes(Encoding.PEM))

    async def worker(client: NodeClientProtocol) -> None:
        for n in numbers:
            if stop.is_set() or client.terminated is not None:
                return
            body = json.dumps({"csr": csr(n).decode()}).encode()
            try:
                response = await asyncio.wait_for(client.request("ca", "issue", body), 30)
                counts[f"status {response.status}"] += 1
            except StreamError as exc:
                counts[f"reset {exc.error_code:#x}"] += 1
            except (TimeoutError, ConnectionError, OSError) as exc:
                counts[f"failed: {type(exc).__name__}"] += 1

    async def connection(source: str) -> None:
        quic = client_configuration(root=creds.root, server_name=config["server_name"],
                                    alpn="stoq/1", identity=creds.admin)
        try:
            async with quic_from(host, port, quic, source=source,
                                 create_protocol=NodeClientProtocol) as client:
                assert isinstance(client, NodeClientProtocol)
                workers = [asyncio.ensure_future(worker(client))
                           for _ in range(int(config["workers"]))]
                await stop.wait()
                await asyncio.wait(workers, timeout=WIND_DOWN + 20)
                for task in workers:
                    task.cancel()
        except (ConnectionError, TimeoutError, OSError) as exc:
            counts[f"connection failed: {type(exc).__name__}"] += 1

    sources: list[str] = config["sources"]
    announce("ready")
    start = time.monotonic()
    tasks = [asyncio.ensure_future(connection(sources[i % len(sources)]))
             for i in range(int(config["connections"]))]
    await asyncio.sleep(seconds)  # the flood's duration
    stop.set()
    announce("stopping")
    elapsed = time.monotonic() - start
    await asyncio.wait(tasks, timeout=WIND_DOWN + 30)
    for task in tasks:
        task.cancel()
    return {**counts, "issued/s": round(counts["status 200"] / elapsed, 1)}


# --- none (the quiet baseline) --------------------------------------------------------


def none(config: Config) -> dict[str, Any]:
    """No flood: the same process, idle, so the quiet baseline is measured as the floods are."""
    announce("ready")
    threading.Event().wait(float(config["seconds"]))  # the baseline's duration
    announce("stopping")
    return {}


ATTACKS: dict[str, Callable[[Config], Any]] = {
    "none": none,
    "udp-dns": udp_dns,
    "quic-handshakes": lambda config: asyncio.run(quic_handshakes(config)),
    "stoq-streams": lambda config: asyncio.run(stoq_streams(config)),
    "http-slow": http_slow,
    "issuance": lambda config: asyncio.run(issuance(config)),
}


def main(argv: list[str]) -> int:
    kind, config = argv
    # The lowest CPU priority: on one small machine, an attacker taking the CPU the node
    # needs would measure the machine, not the node (a real attacker's CPU is elsewhere).
    # What it then achieves (its rates, in its figures) is what the node let through.
    os.nice(19)
    result = ATTACKS[kind](json.loads(config))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main(sys.argv[1:]))
