"""The fuzzing engine: inputs for a target, the h11 rule, and the report.

A :class:`Target` is one entry point for bytes from outside.  Its ``run``
feeds it one input and checks what came back; the rule is h11's: the input
either parses, or the target raises one of its documented errors
(``expected``).  Anything else (a ``ValueError`` leaking out of a parser, a
``RecursionError``, an assertion about the answer) is a failure.

Inputs are drawn from a :class:`random.Random`: random bytes, or a valid
input (a *seed*) mutated at the byte level (bits flipped, bytes set to
boundary values, ranges deleted, duplicated or truncated, tokens such as
``NaN`` spliced in, two seeds crossed) or by the target's structure-aware
mutator (a JSON leaf replaced, the DER inside a base64 string mutated), so
that most inputs get past the first length check.  :func:`run_target`
derives one generator per example from the run's seed, so any failure is
replayed alone with ``--replay``; :func:`inputs` wraps the same drawing as a
hypothesis strategy (the draws then shrink).
"""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import strategies as st

#: Byte values at the edges of signed and unsigned ranges, and of ASCII.
BOUNDARY_BYTES = (0x00, 0x01, 0x7F, 0x80, 0x81, 0xFE, 0xFF, 0x20, 0x30, 0x41)
#: 16- and 32-bit values for length and count fields.
BOUNDARY_WORDS = (0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF)
MAX_MUTATIONS = 8


@dataclass(frozen=True)
class Target:
    """One parser of outside bytes, and what it may raise."""

    name: str
    #: Feed one input; raise an ``expected`` error to refuse it, or return.
    run: Callable[[bytes], object]
    #: The documented errors: raising one of these is a refusal, not a failure.
    expected: tuple[type[BaseException], ...] = ()
    #: Valid inputs, mutated into most examples.
    seeds: Sequence[bytes] = ()
    #: Byte strings worth splicing in (JSON constants, OIDs, DNS types).
    tokens: Sequence[bytes] = ()
    #: A structure-aware mutation of a seed (or a fresh structured input).
    structured: Callable[[random.Random, bytes], bytes] | None = None
    #: Longest purely random input.
    max_random: int = 600
    #: How many examples go through ``structured`` rather than byte mutations of a seed.
    structured_share: float = 0.5


def geometric(rng: random.Random, more: float, limit: int) -> int:
    """1, 2, 3, ... up to ``limit``, each next one with probability ``more``."""
    count = 1
    while count < limit and rng.random() < more:
        count += 1
    return count


def _span(rng: random.Random, data: bytearray) -> tuple[int, int]:
    start = rng.randrange(len(data) + 1)
    length = min(len(data) - start, rng.choice((1, 2, 4, 8, 16, rng.randrange(1, 256))))
    return start, start + length


def mutate(rng: random.Random, data: bytes, tokens: Sequence[bytes] = (),
           others: Sequence[bytes] = ()) -> bytes:
    """``data`` with one to eight byte-level mutations."""
    out = bytearray(data)
    for _ in range(geometric(rng, 0.45, MAX_MUTATIONS)):
        op = rng.randrange(13)
        if not out and op < 9:
            op = 9
        if op == 0:  # flip one bit
            i = rng.randrange(len(out))
            out[i] ^= 1 << rng.randrange(8)
        elif op == 1:  # any byte
            out[rng.randrange(len(out))] = rng.randrange(256)
        elif op == 2:  # a boundary byte
            out[rng.randrange(len(out))] = rng.choice(BOUNDARY_BYTES)
        elif op == 3:  # a length field off by a little
            i = rng.randrange(len(out))
            out[i] = (out[i] + rng.choice((-2, -1, 1, 2, 0x40, 0x80))) % 256
        elif op == 4:  # a boundary 16- or 32-bit word
            size = rng.choice((2, 4))
            i = rng.randrange(len(out))
            out[i:i + size] = rng.choice(BOUNDARY_WORDS).to_bytes(size, "big")
        elif op == 5:  # delete a range
            start, end = _span(rng, out)
            del out[start:end]
        elif op == 6:  # duplicate a range
            start, end = _span(rng, out)
            out[start:start] = out[start:end]
        elif op == 7:  # truncate
            del out[rng.randrange(len(out)):]
        elif op == 8:  # swap two ranges' bytes
            a, b = rng.randrange(len(out)), rng.randrange(len(out))
            out[a], out[b] = out[b], out[a]
        elif op == 9:  # append or insert random bytes
            chunk = rng.randbytes(rng.choice((1, 2, 4, rng.randrange(1, 64))))
            at = rng.choice((len(out), rng.randrange(len(out) + 1)))
            out[at:at] = chunk
        elif op in (10, 11) and tokens:  # splice in a token, or put one over a range
            token = rng.choice(tokens)
            start, end = _span(rng, out)
            out[start:end if op == 11 else start] = token
        elif op == 12 and others:  # cross over with another seed
            other = rng.choice(others)
            cut = rng.randrange(len(out) + 1)
            out[cut:] = other[rng.randrange(len(other) + 1):]
    return bytes(out)


def random_bytes(rng: random.Random, limit: int) -> bytes:
    return rng.randbytes(rng.choice((0, 1, 2, rng.randrange(limit + 1))))


def example(target: Target, rng: random.Random) -> bytes:
    """One input for ``target``: random, a mutated seed, or a structured mutation."""
    roll = rng.random()  # (hypothesis draws small numbers first: seeds come first)
    if roll >= 0.96 or not target.seeds:
        return random_bytes(rng, target.max_random)
    seed = rng.choice(target.seeds)
    if target.structured is not None and roll < target.structured_share:
        data = target.structured(rng, seed)
        return mutate(rng, data, target.tokens, target.seeds) if rng.random() > 0.75 else data
    return mutate(rng, seed, target.tokens, target.seeds)


def inputs(target: Target) -> st.SearchStrategy[bytes]:
    """The same inputs as a hypothesis strategy (its random draws shrink)."""
    return st.randoms(use_true_random=False).map(lambda rng: example(target, rng))


# --- running ---------------------------------------------------------------------------


@dataclass
class Failure:
    """One kind of failure (exception type and where it was raised), first example kept."""

    kind: str
    where: str
    message: str
    example: int
    data: bytes
    trace: str
    count: int = 1


@dataclass
class Outcome:
    name: str
    examples: int = 0
    refused: int = 0
    seconds: float = 0.0
    slowest: float = 0.0
    failures: dict[tuple[str, str], Failure] = field(default_factory=dict)


def _where(exc: BaseException) -> str:
    """The innermost frame of this repository's code (or the innermost of all)."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "site-packages" not in f.filename
            and "/lib/python" not in f.filename] or frames
    if not ours:
        return "?"
    frame = ours[-1]
    root = Path(__file__).resolve().parents[2]
    try:
        name = str(Path(frame.filename).resolve().relative_to(root))
    except ValueError:
        name = frame.filename
    return f"{name}:{frame.lineno}"


def example_rng(seed: int, name: str, index: int) -> random.Random:
    return random.Random(f"{seed}/{name}/{index}")


def check(target: Target, data: bytes) -> None:
    """Feed ``data``; a documented refusal passes, anything else propagates."""
    try:
        target.run(data)
    except target.expected:
        pass


def run_target(target: Target, examples: int, seed: int, *, start: int = 0,
               progress: Callable[[Outcome], None] | None = None) -> Outcome:
    """Run examples ``start .. start + examples - 1`` of ``target`` for ``seed``."""
    outcome = Outcome(target.name)
    began = time.perf_counter()
    for index in range(start, start + examples):
        data = example(target, example_rng(seed, target.name, index))
        t0 = time.perf_counter()
        try:
            target.run(data)
        except target.expected:
            outcome.refused += 1
        except Exception as exc:  # the h11 rule: nothing else may come out
            key = (type(exc).__name__, _where(exc))
            seen = outcome.failures.get(key)
            if seen is None:
                outcome.failures[key] = Failure(
                    key[0], key[1], str(exc)[:300], index, data,
                    "".join(traceback.format_exception(exc)[-12:]))
            else:
                seen.count += 1
        outcome.slowest = max(outcome.slowest, time.perf_counter() - t0)
        outcome.examples += 1
        if progress is not None and outcome.examples % 5000 == 0:
            outcome.seconds = time.perf_counter() - began
            progress(outcome)
    outcome.seconds = time.perf_counter() - began
    return outcome
