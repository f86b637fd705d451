"""``python -m tests.crash --kills N [--seed S] [--json] [--work-dir DIR]``: exit 1 on any
violation (``make crash-test`` runs 50 kills)."""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from tests.crash.harness import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.crash", description=__doc__)
    parser.add_argument("--kills", type=int, default=50, help="SIGKILLs under load (50)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seeds when each kill lands (default: random, printed)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="keep the node's data directory here (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.kills < 1:
        parser.error("--kills must be at least 1")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)

    def progress(line: str) -> None:
        if sys.stderr.isatty():
            print(line, file=sys.stderr, flush=True)

    if args.work_dir is not None:
        args.work_dir.mkdir(parents=True, exist_ok=True)
    report = run(args.kills, seed, args.work_dir, progress)
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
