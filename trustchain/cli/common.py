"""Options and output that every command group shares.

Kept free of imports of the rest of the code base at module level, so that
building the parser (``trustchain --help``) stays cheap.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trustchain.errors import GenesisError

if TYPE_CHECKING:
    from trustchain.datadir import DataDir

#: Where ``add_argument`` may put an option: a parser or one of its groups.
Options = argparse.ArgumentParser | argparse._ArgumentGroup
JSON_HELP = "machine-readable output"


# --- options ------------------------------------------------------------------


def add_data_dir(parser: Options) -> None:
    # The default is read when the parser is built, so the help shows where it points.
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("TRUSTCHAIN_DATA_DIR", "data")),
        help="node data directory (default: $TRUSTCHAIN_DATA_DIR or ./data)",
    )


def add_passphrase(parser: Options) -> None:
    parser.add_argument(
        "--passphrase-file", type=Path, metavar="FILE",
        help="read the key-store passphrase from FILE "
        "(otherwise $TRUSTCHAIN_PASSPHRASE, otherwise a prompt)",
    )


def add_key_store(parser: Options) -> None:
    """``--data-dir`` and ``--passphrase-file``: a command that opens the node's key store."""
    add_data_dir(parser)
    add_passphrase(parser)


def add_json(parser: Options, help_text: str = JSON_HELP) -> None:
    parser.add_argument("--json", action="store_true", help=help_text)


def add_command(commands: argparse._SubParsersAction, name: str, help_text: str,
                func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
    """A subcommand that runs ``func``: every leaf of the tree names its own handler."""
    parser: argparse.ArgumentParser = commands.add_parser(name, help=help_text)
    parser.set_defaults(func=func)
    return parser


def add_group(commands: argparse._SubParsersAction, name: str, help_text: str, *,
              examples: str = "") -> argparse._SubParsersAction:
    """A command group (``trustchain NAME COMMAND ...``); its subcommands are required.

    ``examples``: command lines, one per line (``#`` comments allowed), shown at the end
    of the group's ``--help``: every group has some.
    """
    group = commands.add_parser(
        name, help=help_text, description=help_text, epilog="examples:\n" + "\n".join(
            f"  {line}" for line in examples.strip().splitlines()) if examples else None,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    return group.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")


# --- input --------------------------------------------------------------------


def passphrase(passphrase_file: Path | None, *, confirm: bool = False) -> Callable[[], str]:
    """The key-store passphrase, asked for only when it is needed (after cheaper checks)."""
    from trustchain.passphrase import obtain_passphrase

    return lambda: obtain_passphrase(passphrase_file, confirm=confirm)


def initialised(data_dir: Path) -> DataDir:
    """The data directory of an initialised node (else a one-line error naming it)."""
    from trustchain.datadir import DataDir

    layout = DataDir(data_dir)
    layout.require_initialised()
    return layout


def read_genesis(path: str | Path) -> bytes:
    """The bytes of a genesis document named on the command line."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise GenesisError(f"cannot read {path}: {exc.strerror}") from None


# --- output -------------------------------------------------------------------


def progress(enabled: bool) -> Callable[[str], None]:
    """Progress lines for long work, on stderr (stdout stays the result)."""
    def report(message: str) -> None:
        if enabled:
            print(f"… {message}", file=sys.stderr, flush=True)

    return report


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


def print_rows(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A plain table without a header, each column as wide as its widest value."""
    widths = {c: max([len(c)] + [len(str(r[c])) for r in rows]) for c in columns}
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns).rstrip())


def print_listing(args: argparse.Namespace, rows: list[dict[str, Any]], columns: list[str],
                  empty: str) -> None:
    """``--json`` as is, else a table of ``columns``, or ``empty`` when there are no rows."""
    if args.json:
        print_json(rows)
    elif not rows:
        print(empty)
    else:
        print_rows(rows, columns)
