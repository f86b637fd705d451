"""The flood harness, short: one small UDP flood against a node, so that the harness keeps
working (``make flood-test`` runs every flood and judges the latencies; this judges none);
and the UDP DNS listener's fair queue, which keeps one network's flood from delaying
everyone else's answers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.flood.__main__ import main
from tests.flood.harness import FLOODS, run
from transport.dns import UdpDnsProtocol
from transport.fairness import UDP_QUEUE_PER_NETWORK, NetworkQueues
from trustchain.dns.handler import QueryContext


@pytest.mark.timeout(180)
def test_a_small_udp_flood_runs_and_is_reported() -> None:
    report = run(2.0, floods={"udp-dns": (2, {"rate": 500})})
    assert not report.errors and not report.down, report.summary()
    assert [(row.flood, row.legitimate) for row in report.rows] == [
        ("udp-dns", "dns/udp"), ("udp-dns", "dns/doq"), ("udp-dns", "ct get-sth")]
    assert all(row.samples > 0 and row.listeners_up == "7/7" for row in report.rows)
    figures = report.floods["udp-dns"]
    # (at most 1,000 queries: a loaded machine may not send them all in the 2 s)
    assert 0 < figures["queries"] <= 1000 and figures["answers"] > 0
    # Response rate limiting is on by default: over the limit, half the answers slip (TC),
    # the other half are dropped (without it, the node answers 500 queries a second).
    assert figures["unanswered"] > 0 and figures["truncated (TC)"] > 0, figures
    assert "flood p99" in report.summary()  # the table, whatever its figures


def test_every_flood_is_known_to_the_attack_processes() -> None:
    from tests.flood.attacks import ATTACKS

    assert set(FLOODS) | {"none"} == set(ATTACKS)


def test_settings_must_name_a_setting(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--set", "no_such_setting=1"])
    assert "expected NAME=VALUE" in capsys.readouterr().err


class _Transport(asyncio.DatagramTransport):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[bytes, Any]] = []

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        self.sent.append((bytes(data), addr))


async def test_one_network_flooding_does_not_delay_the_others() -> None:
    """A flood's queries already waiting do not go before another network's query: the
    listener answers one query of each network in turn, and keeps only a bounded number of
    one network's queries waiting (the rest are dropped, the flood's, not the others')."""
    answered: list[bytes] = []

    def handler(query: bytes, context: QueryContext) -> bytes:
        answered.append(query)
        return b"answer to " + query

    transport = _Transport()
    protocol = UdpDnsProtocol(handler)
    protocol.connection_made(transport)
    for i in range(200):  # one network (a /24) floods ...
        protocol.datagram_received(b"flood %d" % i, (f"192.0.2.{i % 250}", 5300))
    protocol.datagram_received(b"legitimate", ("198.51.100.7", 5300))  # ... one query here
    for _ in range(1000):  # let the listener's turns run (each is one loop callback)
        if len(answered) == UDP_QUEUE_PER_NETWORK + 1:
            break
        await asyncio.sleep(0)
    assert answered.index(b"legitimate") <= 1
    assert len(answered) == UDP_QUEUE_PER_NETWORK + 1
    assert protocol.dropped == 200 - UDP_QUEUE_PER_NETWORK
    assert (b"answer to legitimate", ("198.51.100.7", 5300)) in transport.sent


async def test_a_handler_that_fails_does_not_stop_the_queues() -> None:
    answered: list[bytes] = []

    def handle(data: bytes, addr: Any) -> None:
        if data == b"bad":
            raise RuntimeError("a handler bug")
        answered.append(data)

    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    queues = NetworkQueues(handle, what="test")
    for data in (b"bad", b"one", b"two"):
        queues.put(data, ("192.0.2.1", 53))
    queues.put(b"three", ("198.51.100.1", 53))
    for _ in range(100):
        if len(answered) == 3:
            break
        await asyncio.sleep(0)
    assert sorted(answered) == [b"one", b"three", b"two"] and len(errors) == 1


async def test_a_backlog_in_the_socket_is_read_ahead_into_the_queues() -> None:
    """300 queries from one network wait in the kernel's buffer before one from another:
    the listener reads them ahead (the event loop alone hands over one or 32 a turn), so
    the other network's query is answered after at most a queue's worth of the flood's,
    not after all 300, and the rest of the flood is dropped."""
    import socket

    answered: list[bytes] = []
    loop = asyncio.get_running_loop()
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    server.setblocking(False)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as flood, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        flood.bind(("127.0.0.2", 0))
        other.bind(("127.0.1.1", 0))
        for i in range(300):
            flood.sendto(b"flood %d" % i, server.getsockname())
        other.sendto(b"legitimate", server.getsockname())
        def handler(query: bytes, context: QueryContext) -> bytes:
            answered.append(query)
            return query

        transport, protocol = await loop.create_datagram_endpoint(
            lambda: UdpDnsProtocol(handler, sock=server), sock=server)
        try:
            for _ in range(1000):
                if b"legitimate" in answered:
                    break
                await asyncio.sleep(0)
            assert answered.index(b"legitimate") <= UDP_QUEUE_PER_NETWORK + 2, answered
            assert protocol.dropped > 0
        finally:
            transport.close()
