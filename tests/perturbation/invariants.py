"""What must hold after every fault, read from the outside: each node's ``node.db``
(read-only), its ``consensus.status`` and its log.  Each check returns the problems it
found (an empty list: it holds), so a test asserts on them and the soak counts them.

* **One chain**: at every height any two nodes hold the same block hash, each node's
  blocks run from height 1 without a gap, and each block names the one before it.
* **No double sign**: ``consensus_own_messages`` has at most one row per (height, round,
  kind) on each node; across every observation of a run (:class:`SignedHistory`, taken
  between faults, before and after kills) a (node, height, round, kind) never changes
  what it signed for; no node reports evidence (``consensus.status``), none has slashed
  a validator (evidence committed, replicated, survives restarts), and no log names
  evidence, a fork or a refused double sign.
"""

from __future__ import annotations

from collections.abc import Iterable

from tests.perturbation.harness import Devnet, LivenessError
from trustchain.consensus.codec import decode_message
from trustchain.consensus.messages import Proposal, Vote
from trustchain.errors import ConsensusCodecError

Chain = dict[int, tuple[bytes, bytes]]
#: Log lines no run may show (the node's own words for equivocation and forks).
ALARMS = ("evidence:", "ForkError", "DoubleSignError", "does not extend")


def one_chain(chains: dict[str, Chain]) -> list[str]:
    problems = []
    heights = set().union(*chains.values()) if chains else set()
    for height in sorted(heights):
        seen = {chain[height][0] for chain in chains.values() if height in chain}
        if len(seen) != 1:
            holders = {name: chain[height][0].hex()[:16] for name, chain in chains.items()
                       if height in chain}
            problems.append(f"fork at height {height}: {holders}")
    for name, chain in chains.items():
        if chain and sorted(chain) != list(range(1, max(chain) + 1)):
            problems.append(f"{name}: its blocks have gaps below height {max(chain)}")
        for height, (_hash, previous) in chain.items():
            if height - 1 in chain and chain[height - 1][0] != previous:
                problems.append(f"{name}: block {height} does not name block {height - 1}")
    return problems


def _content(message: bytes) -> tuple[str, str]:
    """What a stored own message commits its signer to (signatures aside: an ML-DSA
    signature of the same content may differ from one signing to the next)."""
    try:
        decoded = decode_message(message)
    except ConsensusCodecError as exc:
        return ("unreadable", str(exc))
    if isinstance(decoded, Vote):
        return (decoded.kind.value, decoded.block.hex())
    if isinstance(decoded, Proposal):
        return ("proposal", f"{decoded.block.hash.hex()} valid-round {decoded.valid_round}")
    return (type(decoded).__name__, "")


class SignedHistory:
    """Every own message seen on any node during a run, by (node, height, round, kind).

    A node prunes decided heights, so one look sees only the last two; looking after
    every fault (and before and after every kill) catches a validator that, restarted,
    signs something else for a height, round and step it had already signed for.
    """

    def __init__(self) -> None:
        self._seen: dict[tuple[str, int, int, str], tuple[str, str]] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def observe(self, devnet: Devnet, names: Iterable[str] | None = None) -> list[str]:
        problems = []
        for name in devnet.names if names is None else names:
            counted: dict[tuple[int, int, str], int] = {}
            for height, round_, kind, message in devnet.own_messages(name):
                counted[(height, round_, kind)] = counted.get((height, round_, kind), 0) + 1
                content = _content(message)
                first = self._seen.setdefault((name, height, round_, kind), content)
                if first != content:
                    problems.append(f"{name} signed two {kind}s at height {height} round "
                                    f"{round_}: {first} then {content}")
            problems += [f"{name}: {n} own {k} rows for height {h} round {r}"
                         for (h, r, k), n in counted.items() if n > 1]
        return problems


def no_evidence(devnet: Devnet, names: Iterable[str] | None = None) -> list[str]:
    """Neither in ``consensus.status`` (evidence, slashed) of each running node named,
    nor in any node's log."""
    problems = []
    for name in devnet.names if names is None else names:
        try:
            status = devnet.consensus_status(name)
        except LivenessError as exc:
            problems.append(str(exc))
            continue
        if status["evidence"]:
            problems.append(f"{name} reports evidence: {status['evidence']}")
        if status["slashed"]:
            problems.append(f"{name} has slashed {status['slashed']}")
    for name in devnet.names:
        for line in devnet.log(name).splitlines():
            if any(alarm in line for alarm in ALARMS):
                problems.append(f"{name}'s log: {line.strip()[:300]}")
    return problems


def check(devnet: Devnet, history: SignedHistory) -> list[str]:
    """Every invariant, on every node (all of them running and not paused)."""
    return (one_chain({name: devnet.chain(name) for name in devnet.names})
            + history.observe(devnet) + no_evidence(devnet))
