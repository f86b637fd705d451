"""``python -m tests.flood [--seconds N] [--json] [--only FLOOD ...] [--set NAME=VALUE ...]``:
floods on every listener of a fresh node and the p99 latency of legitimate clients during
each beside the quiet one; exit 1 if a listener is down after a flood or a p99 is over the
target (``make flood-test``)."""

from __future__ import annotations

import argparse
import json
import sys

from tests.flood.harness import FLOODS, run
from trustchain.config import NodeConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.flood", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="how long each flood, and the quiet period before it, lasts (10)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--only", nargs="+", choices=list(FLOODS), metavar="FLOOD",
                        help="run only these floods: " + ", ".join(FLOODS))
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a node setting other than its default, e.g. dns_rate_limit=0 "
                        "to see the amplification without rate limiting (repeatable)")
    args = parser.parse_args(argv)
    if not 1 <= args.seconds <= 600:
        parser.error("--seconds must be between 1 and 600")
    settings = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or name not in NodeConfig.model_fields:
            parser.error(f"--set {item!r}: expected NAME=VALUE with a setting's name")
        settings[name] = value

    def progress(line: str) -> None:
        if sys.stderr.isatty():
            print(line, file=sys.stderr, flush=True)

    report = run(args.seconds, args.only, settings, progress)
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
