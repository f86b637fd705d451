"""The ``trustchain`` command line (see docs/operations.md and shared cli.md).

Exit status: 0 on success, 1 for a refused or failed operation (one line on
stderr, no traceback), 2 for a usage error.

Each command group is a module with a ``register(commands)`` that adds its
subcommands, each with its own handler; the modules import the rest of the
code base only inside handlers, so that ``--help`` and usage errors stay fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from trustchain import __version__
from trustchain.cli import (
    acme,
    ca,
    ct,
    devnet,
    dns,
    dnssec,
    federation,
    genesis,
    network,
    node,
    query,
    sim,
)
from trustchain.errors import TrustchainError

#: In the order ``trustchain --help`` lists their commands.
GROUPS = (node, dns, network, dnssec, ca, acme, sim, ct, query, genesis, devnet, federation)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trustchain",
        description="TrustChain node: authoritative DNS, CA and CT logs over QUIC.",
    )
    parser.add_argument("--version", action="version", version=f"trustchain {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("quic").setLevel(logging.WARNING)  # aioquic's per-connection chatter
    try:
        status = int(args.func(args))
        sys.stdout.flush()  # inside the try: a reader that went away is handled below
        return status
    except TrustchainError as exc:
        print(f"trustchain: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("trustchain: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`trustchain status | head`): stop quietly, as tools
        # killed by SIGPIPE do, without a traceback at exit when stdout is flushed.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
