"""Clients for testing a node's HTTP edge: raw-socket attackers, an HTTP/3 client that can
send broken streams, and a DNS prober that measures UDP answer latency meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.message
import dns.query
from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.events import QuicEvent, StreamReset
from cryptography import x509

from transport.tls import client_configuration

# --- DNS latency --------------------------------------------------------------------


@dataclass
class DnsProbe:
    """Queries the node over UDP every ``interval`` seconds from a thread, timing each answer.

    A query without an answer within ``timeout`` counts as ``timeout`` seconds.
    """

    host: str
    port: int
    interval: float = 0.01
    timeout: float = 1.0
    samples: list[tuple[float, float]] = field(default_factory=list)  # (sent at, latency)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> DnsProbe:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 5)

    def _run(self) -> None:
        query = dns.message.make_query("example.com.", "A")  # not served: REFUSED, quickly
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                dns.query.udp(query, self.host, port=self.port, timeout=self.timeout)
                latency = time.monotonic() - sent
            except (dns.exception.DNSException, OSError):  # lost, or unreadable
                latency = self.timeout
            self.samples.append((sent, latency))
            self._stop.wait(self.interval)

    @contextlib.contextmanager
    def window(self) -> Iterator[list[float]]:
        """The latencies of the queries sent while the block runs (filled in at its end)."""
        latencies: list[float] = []
        start = time.monotonic()
        yield latencies
        end = time.monotonic()
        latencies.extend(lat for sent, lat in list(self.samples) if start <= sent <= end)


def p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


# --- raw HTTP/1.1 -------------------------------------------------------------------


def rss(pid: int) -> int:
    """The resident set size of process ``pid``, in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def open_socket(host: str, port: int, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection((host, port), timeout=timeout)


def read_to_close(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes (EOF or reset), and how long that took.

    :raises AssertionError: the server kept the connection open for ``timeout`` seconds.
    """
    start = time.monotonic()
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            break
        except TimeoutError:
            raise AssertionError(f"still open after {timeout} s; got {data[:200]!r}") from None
        if not chunk:
            break
        data += chunk
    return data, time.monotonic() - start


def status_of(response: bytes) -> int | None:
    """The status code of an HTTP/1.1 response's first line, or None without one."""
    if not response.startswith(b"HTTP/1.1 "):
        return None
    return int(response[9:12])


def header_of(response: bytes, name: bytes) -> bytes | None:
    head = response.partition(b"\r\n\r\n")[0]
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def exchange(sock: socket.socket, request: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    """Send one keep-alive request and read its response (by its Content-Length)."""
    sock.settimeout(timeout)
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(header_of(data, b"content-length") or 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed within a response"
        body += chunk
    status = status_of(head)
    assert status is not None, head
    return status, body


@dataclass
class Flood:
    """Sends one request head that never ends, in 1 MiB pieces, until the server stops it."""

    sock: socket.socket
    limit: int
    sent: int = 0
    error: OSError | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Flood:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        piece = b"a" * (1 << 20)
        try:
            self.sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: node\r\nX-Big: ")
            while self.sent < self.limit:
                self.sock.sendall(piece)
                self.sent += len(piece)
        except OSError as exc:
            self.error = exc
        finally:
            self.done.set()


@dataclass
class Drip:
    """Sends ``data`` one byte every ``every`` seconds (the attack's pace), until refused."""

    sock: socket.socket
    data: bytes
    every: float

    def start(self) -> Drip:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        with contextlib.suppress(OSError):
            for i in range(len(self.data)):
                self.sock.send(self.data[i:i + 1])
                time.sleep(self.every)


# --- HTTP/3 -------------------------------------------------------------------------


class H3Probe(QuicConnectionProtocol):
    """An HTTP/3 client that also sends raw stream bytes and records stream resets."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.status: dict[int, int] = {}
        self.resets: dict[int, int] = {}
        self._ended: dict[int, asyncio.Future[None]] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamReset):
            self.resets[event.stream_id] = event.error_code
            self._end(event.stream_id)
        for h3_event in self.h3.handle_event(event):
            if isinstance(h3_event, HeadersReceived):
                self.status[h3_event.stream_id] = int(dict(h3_event.headers)[b":status"])
            if isinstance(h3_event, (HeadersReceived, DataReceived)) and h3_event.stream_ended:
                self._end(h3_event.stream_id)

    def _end(self, stream_id: int) -> None:
        future = self._ended.get(stream_id)
        if future is not None and not future.done():
            future.set_result(None)

    def open_stream(self) -> int:
        stream_id = self._quic.get_next_available_stream_id()
        self._ended[stream_id] = asyncio.get_running_loop().create_future()
        return stream_id

    def request(self, method: str, path: str, *, extra: list[tuple[bytes, bytes]] | None = None,
                end: bool = True) -> int:
        stream_id = self.open_stream()
        self.h3.send_headers(stream_id, [
            (b":method", method.encode()), (b":scheme", b"https"),
            (b":authority", b"trust.example.net"), (b":path", path.encode()), *(extra or []),
        ], end_stream=end)
        self.transmit()
        return stream_id

    def raw(self, data: bytes) -> int:
        """A stream carrying ``data`` as it is (not ended)."""
        stream_id = self.open_stream()
        self._quic.send_stream_data(stream_id, data)
        self.transmit()
        return stream_id

    async def ended(self, stream_id: int, timeout: float) -> float:
        """Wait for the stream's answer or reset; how long that took."""
        start = time.monotonic()
        await asyncio.wait_for(asyncio.shield(self._ended[stream_id]), timeout)
        return time.monotonic() - start


@contextlib.asynccontextmanager
async def h3_connection(host: str, port: int, root: x509.Certificate) -> Any:
    config = client_configuration(root=root, server_name="trust.example.net", alpn="h3")
    async with connect(host, port, configuration=config, create_protocol=H3Probe) as client:
        assert isinstance(client, H3Probe)
        yield client
