"""The pause after a decision (``Timeouts.commit``) and the wait of an idle federation
(``Timeouts.idle``): four validators in memory, every message delivered at once.

A network of nodes must not store a block a second when nothing happens, yet an
operation must be committed promptly: with nothing to propose every validator waits
up to ``idle``, and starts the height at once when an operation arrives (``wake``) or
another validator starts it.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric import ed25519

from trustchain.consensus.messages import Block, Message
from trustchain.consensus.proofs.stake import ValidatorStake
from trustchain.consensus.tendermint import NEW_HEIGHT, Output, Tendermint, Timeouts

CHAIN = "pacing-test"
KEYS = {f"v{i}": ed25519.Ed25519PrivateKey.from_private_bytes(
    hashlib.sha256(b"pacing %d" % i).digest()) for i in range(4)}
STAKES = {n: ValidatorStake(k.public_key(), 1) for n, k in KEYS.items()}


class Pool:
    def __init__(self) -> None:
        self.waiting: list[bytes] = []
        self.decided: list[Block] = []

    def pending(self) -> bool:
        return bool(self.waiting)

    def propose(self, height: int, previous: bytes) -> tuple[bytes, ...]:
        return tuple(self.waiting)

    def valid(self, block: Block) -> bool:
        return True

    def committed(self, block: Block) -> None:
        self.decided.append(block)
        self.waiting = [op for op in self.waiting if op not in block.operations]


class Network:
    def __init__(self, timeouts: Timeouts) -> None:
        self.pools = {n: Pool() for n in KEYS}
        self.nodes = {n: Tendermint(n, k, CHAIN, STAKES, self.pools[n], timeouts=timeouts)
                      for n, k in KEYS.items()}
        self.now = 0.0

    def deliver(self, sender: str, out: Output) -> None:
        queue: list[tuple[str, Message]] = [(sender, m) for m in out.broadcast]
        while queue:
            origin, message = queue.pop(0)
            for name, node in self.nodes.items():
                if name != origin:
                    queue += [(name, m) for m in node.receive(message, self.now).broadcast]

    def start(self) -> None:
        started = [(name, node.start(self.now)) for name, node in self.nodes.items()]
        for name, out in started:
            self.deliver(name, out)

    def advance(self, until: float) -> None:
        """Run every timer due up to ``until``, in order."""
        while True:
            due = [(d, n) for n, node in self.nodes.items()
                   if (d := node.next_deadline()) is not None and d <= until]
            if not due:
                self.now = until
                return
            self.now, name = min(due)
            self.deliver(name, self.nodes[name].tick(self.now))

    def heights(self) -> set[int]:
        return {node.height for node in self.nodes.values()}


def test_the_commit_pause_spaces_the_blocks() -> None:
    network = Network(Timeouts(commit=0.5))
    network.start()
    assert network.heights() == {2}  # height 1 decided at t=0; height 2 waits
    assert all(node.step == NEW_HEIGHT for node in network.nodes.values())
    network.advance(0.49)
    assert network.heights() == {2}
    network.advance(0.5)
    assert network.heights() == {3}
    network.advance(10.0)
    assert network.heights() == {22}  # one block per half second


def test_an_idle_federation_waits_and_an_operation_wakes_it() -> None:
    network = Network(Timeouts(commit=0.5, idle=30.0))
    network.start()  # nothing to propose at height 1 either: everyone waits
    assert network.heights() == {1} or network.heights() == {2}
    start = min(network.heights())
    network.advance(29.0)
    assert network.heights() == {start}  # no empty blocks while idle
    # An operation reaches one validator (not the proposer, say): it starts the height,
    # its messages start everyone else's, and the operation is decided at once.
    network.pools["v3"].waiting.append(b"register alpha")
    for pool in network.pools.values():  # (gossiped to every pool, as nodes do)
        pool.waiting = [b"register alpha"]
    network.deliver("v3", network.nodes["v3"].wake(network.now))
    network.advance(network.now + 2 * 1.0 + 0.01)  # at most a propose timeout and a round
    assert all(b"register alpha" in block.operations
               for pool in network.pools.values() for block in pool.decided[-1:])
    assert min(network.heights()) == start + 1


def test_idle_still_makes_an_empty_block_after_the_wait() -> None:
    network = Network(Timeouts(commit=0.5, idle=5.0))
    network.start()
    first = min(network.heights())
    network.advance(5.0 + 3.0)
    assert min(network.heights()) >= first + 1
