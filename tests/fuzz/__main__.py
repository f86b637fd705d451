"""``python -m tests.fuzz --examples N [--target NAME ...] [--seed S] [--jobs J]``.

Spreads ``N`` examples evenly over the targets, prints each target's
examples, refusals (documented errors), failures and speed, and exits 1 if
any target failed.  Each failure is printed with the command that replays
its one example (``--replay INDEX``) and, with ``--save DIR``, written to a
file.  With ``--jobs J`` every target's examples are split over ``J``
processes.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from cryptography.utils import CryptographyDeprecationWarning

from tests.fuzz.engine import Outcome, example, example_rng, run_target
from tests.fuzz.targets import FACTORIES, build


def _chunk(name: str, examples: int, seed: int, start: int) -> Outcome:
    # Mutated certificates with a serial of 0 or below are loaded with a warning each.
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    return run_target(build(name), examples, seed, start=start)


def _merge(parts: list[Outcome]) -> Outcome:
    total = Outcome(parts[0].name)
    for part in parts:
        total.examples += part.examples
        total.refused += part.refused
        total.seconds = max(total.seconds, part.seconds)
        total.slowest = max(total.slowest, part.slowest)
        for key, failure in part.failures.items():
            seen = total.failures.get(key)
            if seen is None or failure.example < seen.example:
                if seen is not None:
                    failure.count += seen.count
                total.failures[key] = failure
            else:
                seen.count += failure.count
    return total


def _replay(name: str, seed: int, index: int) -> int:
    target = build(name)
    data = example(target, example_rng(seed, name, index))
    print(f"{name} example {index} (seed {seed}), {len(data)} bytes: {data[:400].hex()}")
    try:
        target.run(data)
    except target.expected as exc:
        print(f"refused as documented: {type(exc).__name__}: {exc}")
    except Exception:
        traceback.print_exc()
        return 1
    else:
        print("accepted")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=10_000,
                        help="examples in all, spread evenly over the targets")
    parser.add_argument("--target", action="append", choices=list(FACTORIES),
                        help="run only this target (repeatable)")
    parser.add_argument("--seed", type=int, help="the run's seed (default: from the clock)")
    parser.add_argument("--jobs", type=int, default=1, help="processes per target")
    parser.add_argument("--replay", type=int, metavar="INDEX",
                        help="run only this example of --target, with its traceback")
    parser.add_argument("--save", type=Path, metavar="DIR", help="write failing inputs here")
    args = parser.parse_args(argv)
    names = args.target or list(FACTORIES)
    seed = args.seed if args.seed is not None else int(time.time())
    if args.replay is not None:
        return max(_replay(name, seed, args.replay) for name in names)
    share, extra = divmod(args.examples, len(names))
    print(f"fuzz: {args.examples} examples over {len(names)} targets, seed {seed}, "
          f"{args.jobs} job(s)", flush=True)
    print(f"{'target':<16} {'examples':>9} {'refused':>9} {'failed':>7} {'seconds':>8} "
          f"{'ex/s':>7} {'slowest':>9}", flush=True)
    began = time.perf_counter()
    outcomes = []
    with ProcessPoolExecutor(args.jobs) if args.jobs > 1 else _Inline() as pool:
        for position, name in enumerate(names):
            count = share + (1 if position < extra else 0)
            step, rest = divmod(count, args.jobs)
            futures, start = [], 0
            for job in range(args.jobs):
                size = step + (1 if job < rest else 0)
                futures.append(pool.submit(_chunk, name, size, seed, start))
                start += size
            outcome = _merge([f.result() for f in futures])
            outcomes.append(outcome)
            rate = outcome.examples / outcome.seconds if outcome.seconds else 0.0
            failures = sum(f.count for f in outcome.failures.values())
            print(f"{name:<16} {outcome.examples:>9} {outcome.refused:>9} {failures:>7} "
                  f"{outcome.seconds:>8.1f} {rate:>7.0f} {outcome.slowest * 1000:>7.0f}ms",
                  flush=True)
    failed = [o for o in outcomes if o.failures]
    for outcome in failed:
        for failure in outcome.failures.values():
            print(f"\nFAIL {outcome.name}: {failure.kind} at {failure.where} "
                  f"({failure.count}x): {failure.message}")
            print(f"  replay: python -m tests.fuzz --target {outcome.name} --seed {seed} "
                  f"--replay {failure.example}")
            print(f"  input ({len(failure.data)} bytes): {failure.data[:200].hex()}")
            print("  " + failure.trace.replace("\n", "\n  "))
            if args.save is not None:
                args.save.mkdir(parents=True, exist_ok=True)
                (args.save / f"{outcome.name}-{failure.example}.bin").write_bytes(failure.data)
    total = sum(o.examples for o in outcomes)
    print(f"\n{total} examples in {time.perf_counter() - began:.0f} s, seed {seed}: "
          + (f"{len(failed)} target(s) FAILED" if failed else "no failures"))
    return 1 if failed else 0


class _Inline:
    """A pool of one: runs each chunk at once, in this process."""

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, fn, *args):  # type: ignore[no-untyped-def]
        return _Done(fn(*args))


class _Done:
    def __init__(self, value: Outcome) -> None:
        self._value = value

    def result(self) -> Outcome:
        return self._value


if __name__ == "__main__":
    sys.exit(main())
