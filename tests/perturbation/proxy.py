"""A UDP proxy on loopback, one listening port per link, whose faults the test sets at
run time: pass, drop all (one way), drop a seeded random fraction, delay, cut.

A *link* forwards what a client sends to its port on to one upstream address (a node's
QUIC port) and the answers back.  Each client address gets its own upstream socket, so
the node sees one stable address per QUIC connection and the answers find their way
back to the right client (a node that reconnects after a restart comes from a new
address, and gets a new socket).  Every link of a :class:`ProxySet` is served by one
asyncio loop in one daemon thread; the test thread changes a link's :class:`Rule`
through that loop and waits until it is applied, so every datagram handled after
:meth:`ProxySet.set` returns is under the new rule.  A datagram held back by a delay is
checked again when it is due: a link cut meanwhile drops it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

#: Where the proxies listen and where the nodes are (the devnet's address).
HOST = "::1"
#: An upstream socket unused this long is closed.  Longer than any fault the harness
#: makes and than a QUIC connection's idle timeout (60 s), so the connection behind an
#: expired socket is already dead.
CLIENT_IDLE = 300.0
#: How many datagrams one wake-up of a socket reads at most (others wait their turn).
BATCH = 64
_MAX_DATAGRAM = 65_535

T = TypeVar("T")
Address = tuple[str, int]


@dataclass(frozen=True)
class Rule:
    """What a link does to each datagram: drop it (by direction, or at random), or hold
    it back.  ``forward`` is client to node, ``backward`` node to client."""

    forward: bool = True
    backward: bool = True
    loss: float = 0.0
    delay: float = 0.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss <= 1.0 or self.delay < 0 or not 0 <= self.jitter <= self.delay:
            raise ValueError(f"not a rule: {self}")

    def lets(self, forward: bool) -> bool:
        return self.forward if forward else self.backward


#: Everything passes.
PASS = Rule()
#: Nothing passes either way: a partition.
CUT = Rule(forward=False, backward=False)
#: What the client sends is dropped; what the node sends still arrives (a one-way fault).
DROP_ALL = Rule(forward=False)


def lossy(fraction: float, delay_ms: float = 0.0, jitter_ms: float = 0.0) -> Rule:
    """Drop ``fraction`` of the datagrams each way, delay the rest by ``delay_ms`` ± jitter."""
    return Rule(loss=fraction, delay=delay_ms / 1000, jitter=jitter_ms / 1000)


def delayed(delay_ms: float, jitter_ms: float = 0.0) -> Rule:
    return Rule(delay=delay_ms / 1000, jitter=jitter_ms / 1000)


@dataclass
class _Client:
    address: Address
    sock: socket.socket
    last: float


@dataclass
class _Link:
    """One listening socket, its clients' upstream sockets, its rule (loop thread only)."""

    name: str
    upstream: Address
    listener: socket.socket
    rng: random.Random
    rule: Rule = PASS
    clients: dict[Address, _Client] = field(default_factory=dict)
    stats: Counter[str] = field(default_factory=Counter)


class ProxySet:
    """The links of one run, served by one event loop in a thread of its own."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._links: dict[str, _Link] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="udp-proxy", daemon=True)
        self._thread.start()
        self._call(self._sweep)

    # --- controls (any thread) ---------------------------------------------------------

    def add(self, name: str, upstream: Address) -> int:
        """A new link to ``upstream``; the port it listens on."""
        listener = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            listener.bind((HOST, 0))
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        link = _Link(name, upstream, listener, random.Random(f"{self._seed}:{name}"))

        def register() -> None:
            self._links[name] = link
            self._loop.add_reader(listener.fileno(), self._from_client, link)

        self._call(register)
        return int(listener.getsockname()[1])

    def set(self, names: Iterable[str], rule: Rule) -> None:
        """Apply ``rule`` to the links named (every one if ``names`` is empty), now."""
        chosen = list(names)

        def apply() -> None:
            for name in chosen or list(self._links):
                self._links[name].rule = rule

        self._call(apply)

    def heal(self) -> None:
        self.set([], PASS)

    def rules(self) -> dict[str, Rule]:
        return self._call(lambda: {name: link.rule for name, link in self._links.items()})

    def stats(self) -> dict[str, dict[str, int]]:
        """Per link: datagrams forwarded and dropped, each way."""
        return self._call(lambda: {n: dict(link.stats) for n, link in self._links.items()})

    def stop(self) -> None:
        """Close every socket and end the thread (idempotent)."""
        if self._loop.is_closed():
            return
        if self._thread.is_alive():
            self._call(self._close_all)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()

    def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in the loop's thread and wait for its result."""
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(fn())
            except BaseException as exc:  # handed to the caller's thread
                done.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return done.result(timeout=10)

    # --- the loop's thread -------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _from_client(self, link: _Link) -> None:
        for _ in range(BATCH):
            try:
                data, address = link.listener.recvfrom(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # an ICMP error for an earlier datagram: nothing to forward
            key: Address = (address[0], address[1])
            client = link.clients.get(key)
            if client is None:
                client = self._new_client(link, key)
                if client is None:
                    return
            client.last = self._loop.time()
            self._pass(link, data, True, client)

    def _new_client(self, link: _Link, address: Address) -> _Client | None:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            sock.bind((HOST, 0))
            sock.connect(link.upstream)
            sock.setblocking(False)
        except OSError:
            sock.close()
            link.stats["upstream socket failed"] += 1
            return None
        client = _Client(address, sock, self._loop.time())
        link.clients[address] = client
        link.stats["clients"] += 1
        self._loop.add_reader(sock.fileno(), self._from_upstream, link, client)
        return client

    def _from_upstream(self, link: _Link, client: _Client) -> None:
        for _ in range(BATCH):
            try:
                data = client.sock.recv(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # the node's port is closed (it is down): ICMP, nothing to read
            client.last = self._loop.time()
            self._pass(link, data, False, client)

    def _pass(self, link: _Link, data: bytes, forward: bool, client: _Client) -> None:
        rule = link.rule
        way = "forward" if forward else "backward"
        if not rule.lets(forward) or (rule.loss and link.rng.random() < rule.loss):
            link.stats[f"dropped {way}"] += 1
            return
        hold = rule.delay + (link.rng.uniform(-rule.jitter, rule.jitter) if rule.jitter else 0)
        if hold > 0:
            self._loop.call_later(hold, self._deliver, link, data, forward, client)
        else:
            self._send(link, data, forward, client)

    def _deliver(self, link: _Link, data: bytes, forward: bool, client: _Client) -> None:
        """A delayed datagram is due: sent unless its link was cut meanwhile."""
        if link.rule.lets(forward):
            self._send(link, data, forward, client)
        else:
            link.stats[f"dropped {'forward' if forward else 'backward'}"] += 1

    @staticmethod
    def _send(link: _Link, data: bytes, forward: bool, client: _Client) -> None:
        try:
            if forward:
                client.sock.send(data)
            else:
                link.listener.sendto(data, client.address)
        except OSError:  # full buffer, closed socket, port unreachable: a lost datagram
            link.stats["send failed"] += 1
            return
        link.stats[f"passed {'forward' if forward else 'backward'}"] += 1

    def _sweep(self) -> None:
        """Close the upstream sockets of clients gone quiet (see :data:`CLIENT_IDLE`)."""
        now = self._loop.time()
        for link in self._links.values():
            for address, client in list(link.clients.items()):
                if now - client.last > CLIENT_IDLE:
                    self._close_client(link, address)
        self._loop.call_later(CLIENT_IDLE / 10, self._sweep)

    def _close_client(self, link: _Link, address: Address) -> None:
        client = link.clients.pop(address)
        self._loop.remove_reader(client.sock.fileno())
        client.sock.close()

    def _close_all(self) -> None:
        for link in self._links.values():
            for address in list(link.clients):
                self._close_client(link, address)
            self._loop.remove_reader(link.listener.fileno())
            link.listener.close()
        self._links.clear()
