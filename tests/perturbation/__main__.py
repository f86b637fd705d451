"""``python -m tests.perturbation --minutes M [--seed S] [--nodes N] [--json] [--work-dir DIR]``:
random faults on a proxied devnet for M minutes; exit 1 on any violation (``make soak``
runs 10 minutes)."""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from tests.perturbation.soak import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.perturbation", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long faults go on (10)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seeds the faults and the proxies' loss (default: random, printed)")
    parser.add_argument("--nodes", type=int, default=4, help="validators in the devnet (4)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="keep the devnet here (default: a temporary directory)")
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error("--minutes must be positive")
    if not 2 <= args.nodes <= 16:
        parser.error("--nodes must be 2 to 16")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if args.work_dir is not None:
        args.work_dir.mkdir(parents=True, exist_ok=True)
    report = run(args.minutes, seed, args.work_dir, args.nodes, progress)
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
