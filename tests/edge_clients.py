"""Clients for testing a node's edge: raw-socket attackers, an HTTP/3 client that can
send broken streams, and legitimate clients (probes) that time their answers meanwhile:
DNS over UDP, DNS over QUIC, and an HTTP GET."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Self

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import QuicEvent, StreamReset
from cryptography import x509

from transport.client import NodeClientProtocol
from transport.client import connect as node_connect
from transport.tls import client_configuration
from trustchain.errors import RemoteError

# --- latency probes -----------------------------------------------------------------

#: What a probe's request may raise when the node does not answer as it should.
PROBE_FAILURES = (dns.exception.DNSException, OSError, AssertionError, ValueError, KeyError,
                  RemoteError)


class Probe:
    """A legitimate client: asks the node one thing, waits ``interval`` seconds after each
    answer, from a thread, timing each answer.

    A request that fails or has no answer within ``timeout`` counts as ``timeout`` seconds
    (and is also kept in ``failures``).  Subclasses say what one request is (:meth:`ask`).
    """

    kind = "probe"

    def __init__(self, *, interval: float = 0.01, timeout: float = 1.0) -> None:
        self.interval = interval
        self.timeout = timeout
        self.samples: list[tuple[float, float]] = []  # (sent at, latency)
        self.failures: list[tuple[float, str]] = []  # (sent at, what went wrong)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 5)
        self.close()

    def ask(self) -> None:
        """One request, answered as it should be; raises one of :data:`PROBE_FAILURES`."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what :meth:`ask` kept open between requests."""

    def _run(self) -> None:
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                self.ask()
                latency = time.monotonic() - sent
            except PROBE_FAILURES as exc:  # lost, refused, or unreadable
                self.close()
                latency = self.timeout
                self.failures.append((sent, f"{type(exc).__name__}: {exc}"[:200]))
            self.samples.append((sent, min(latency, self.timeout)))
            self._stop.wait(self.interval)

    def between(self, start: float, end: float) -> list[float]:
        """The latencies of the requests sent between ``start`` and ``end`` (monotonic)."""
        return [lat for sent, lat in list(self.samples) if start <= sent <= end]

    def failed_between(self, start: float, end: float) -> list[str]:
        return [why for sent, why in list(self.failures) if start <= sent <= end]

    def settle(self, after: float) -> bool:
        """Wait (bounded by the timeout) until a request sent after ``after`` is done, so
        that every request sent before it has its latency recorded."""
        deadline = time.monotonic() + 2 * self.timeout + self.interval + 1
        while time.monotonic() < deadline:
            if self.samples and self.samples[-1][0] >= after:
                return True
            if self._thread is None or not self._thread.is_alive():
                return False
            self._stop.wait(0.01)  # polling a thread's progress, bounded by the deadline
        return False

    @contextlib.contextmanager
    def window(self) -> Iterator[list[float]]:
        """The latencies of the requests sent while the block runs (filled in at its end)."""
        latencies: list[float] = []
        start = time.monotonic()
        yield latencies
        latencies.extend(self.between(start, time.monotonic()))


class DnsProbe(Probe):
    """DNS over UDP: each request asks for the next of ``names`` (type ``rdtype``); any
    answer will do (by default a name the node does not serve: REFUSED, quickly).

    A node limits UDP responses per client prefix and response class
    (``dns_rate_limit``): a probe asking faster than that for one name from one address
    measures the limit, so spread its questions over enough names (errors share one
    class, whatever the name).
    """

    kind = "dns/udp"

    def __init__(self, host: str, port: int, *, names: tuple[str, ...] = ("example.com.",),
                 rdtype: str = "A", interval: float = 0.01, timeout: float = 1.0,
                 expect_rcode: int | None = None) -> None:
        super().__init__(interval=interval, timeout=timeout)
        self.host, self.port = host, port
        self._queries = itertools.cycle([dns.message.make_query(name, rdtype) for name in names])
        self._expect = expect_rcode

    def ask(self) -> None:
        reply = dns.query.udp(next(self._queries), self.host, port=self.port,
                              timeout=self.timeout)
        if reply.flags & dns.flags.TC:
            raise ValueError("truncated (rate-limited) answer")
        if self._expect is not None and reply.rcode() != self._expect:
            raise ValueError(f"rcode {reply.rcode()}")


class HttpProbe(Probe):
    """GET ``path`` over HTTP/1.1 on a kept-alive connection (a new one after any failure);
    the answer must be 200."""

    kind = "http"

    def __init__(self, host: str, port: int, path: str, *, kind: str = "http",
                 interval: float = 0.01, timeout: float = 1.0) -> None:
        super().__init__(interval=interval, timeout=timeout)
        self.kind = kind
        self.host, self.port = host, port
        self._request = f"GET {path} HTTP/1.1\r\nHost: node\r\n\r\n".encode()
        self._sock: socket.socket | None = None

    def ask(self) -> None:
        if self._sock is None:
            self._sock = open_socket(self.host, self.port, timeout=self.timeout)
        status, _ = exchange(self._sock, self._request, timeout=self.timeout)
        if status != 200:
            raise ValueError(f"HTTP {status}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class DoqProbe(Probe):
    """DNS over QUIC (RFC 9250), anonymous, the node verified against the genesis root: one
    query per stream on a kept connection (a new one after any failure, its handshake then
    counted in that query's latency); the answer must be NOERROR."""

    kind = "dns/doq"

    def __init__(self, host: str, port: int, *, root: x509.Certificate, server_name: str,
                 names: tuple[str, ...], interval: float = 0.01, timeout: float = 1.0) -> None:
        super().__init__(interval=interval, timeout=timeout)
        self.host, self.port = host, port
        self._root, self._server_name = root, server_name
        wires = []
        for name in names:
            query = dns.message.make_query(name, "A")
            query.id = 0  # RFC 9250: the stream identifies the query
            wires.append(query.to_wire())
        self._queries = itertools.cycle(wires)

    def _run(self) -> None:  # the QUIC client wants an event loop: the thread runs one
        asyncio.run(self._arun())

    async def _arun(self) -> None:
        connection: contextlib.AsyncExitStack | None = None
        client: NodeClientProtocol | None = None
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                if client is None:
                    connection = contextlib.AsyncExitStack()
                    client = await connection.enter_async_context(node_connect(
                        self.host, self.port, root=self._root, server_name=self._server_name,
                        alpn="doq", timeout=self.timeout))
                wire = await asyncio.wait_for(client.doq_query(next(self._queries)),
                                              max(0.0, sent + self.timeout - time.monotonic()))
                if dns.message.from_wire(wire).rcode() != dns.rcode.NOERROR:
                    raise ValueError("not NOERROR")
                latency = time.monotonic() - sent
            except (*PROBE_FAILURES, TimeoutError) as exc:
                latency = self.timeout
                self.failures.append((sent, f"{type(exc).__name__}: {exc}"[:200]))
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(connection.aclose(), self.timeout)
                connection = client = None
            self.samples.append((sent, min(latency, self.timeout)))
            await asyncio.sleep(self.interval)  # the probe's pace, not a wait for state
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.aclose(), self.timeout)


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


def open_socket(host: str, port: int, timeout: float = 10.0,
                source: str | None = None) -> socket.socket:
    """A TCP connection to the node, from ``source`` (an address of this machine) if given."""
    return socket.create_connection((host, port), timeout=timeout,
                                    source_address=(source, 0) if source else None)


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
        threading.Thread(target=self.run, daemon=True).start()
        return self

    def run(self, stop: threading.Event | None = None) -> None:
        """Drip in this thread, until refused, all sent, or ``stop`` is set."""
        stop = stop or threading.Event()
        with contextlib.suppress(OSError):
            for i in range(len(self.data)):
                self.sock.send(self.data[i:i + 1])
                if stop.wait(self.every):  # the attack's pace
                    return


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


@contextlib.asynccontextmanager
async def quic_from(host: str, port: int, configuration: QuicConfiguration, *,
                    source: str, create_protocol: Callable[..., QuicConnectionProtocol]
                    = QuicConnectionProtocol, timeout: float = 10.0) -> Any:
    """A QUIC connection from ``source`` (an IPv4 address of this machine; aioquic's own
    ``connect`` always binds the wildcard), connected within ``timeout`` seconds.

    :raises ConnectionError: the server closed the connection during the handshake.
    :raises TimeoutError: no handshake within ``timeout``.
    """
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((source, 0))
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: create_protocol(QuicConnection(configuration=configuration)), sock=sock)
    except BaseException:
        sock.close()
        raise
    try:
        protocol.connect((host, port))
        await asyncio.wait_for(protocol.wait_connected(), timeout)
        yield protocol
    finally:
        protocol.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(protocol.wait_closed(), 1.0)
        transport.close()
