"""The UDP queues: a node's datagrams may queue beyond a stranger's share, and every
datagram of a network is handled in the order it came (a QUIC connection's packets must
not overtake each other: one that did could close the connection before its earlier
packets, pushes among them, were read)."""

from __future__ import annotations

import asyncio

from transport.fairness import UDP_QUEUE_PER_NETWORK, NetworkQueues


async def test_trusted_datagrams_queue_beyond_a_strangers_share_in_order() -> None:
    handled: list[bytes] = []
    queues = NetworkQueues(lambda data, _addr: handled.append(data), what="test")
    addr = ("2001:db8::1", 853)
    stranger = [b"s%d" % i for i in range(UDP_QUEUE_PER_NETWORK + 10)]
    for data in stranger:  # all arrive before the loop turns: the excess is dropped
        queues.put(data, addr)
    node = [b"n%d" % i for i in range(500)]
    for data in node:
        queues.put(data, addr, trusted=True)
    while len(handled) < UDP_QUEUE_PER_NETWORK + len(node):
        await asyncio.sleep(0)  # the queues run in turns of the loop
    assert queues.dropped == 10
    assert handled == stranger[:UDP_QUEUE_PER_NETWORK] + node  # one queue, first come first
