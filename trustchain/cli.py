"""The ``trustchain`` command line (see docs/operations.md and shared cli.md).

Exit status: 0 on success, 1 for a refused or failed operation (one line on
stderr, no traceback), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trustchain import __version__
from trustchain.config import DEFAULT_NETWORK_NAME, DEFAULT_ORIGIN, NodeConfig
from trustchain.errors import TrustchainError

log = logging.getLogger("trustchain")


def _default_data_dir() -> Path:
    return Path(os.environ.get("TRUSTCHAIN_DATA_DIR", "data"))


def _progress(enabled: bool) -> Callable[[str], None]:
    def report(message: str) -> None:
        if enabled:
            print(f"… {message}", file=sys.stderr, flush=True)

    return report


def _passphrase(args: argparse.Namespace, *, confirm: bool = False) -> Callable[[], str]:
    from trustchain.passphrase import obtain_passphrase

    return lambda: obtain_passphrase(args.passphrase_file, confirm=confirm)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


# --- commands ---------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    from bootstrap.init import init_node
    from trustchain.keystore import KeyType, check_passphrase_strength

    passphrase = _passphrase(args, confirm=True)()
    check_passphrase_strength(passphrase)
    result = init_node(
        args.data_dir,
        passphrase,
        network_name=args.network_name,
        origin=args.origin,
        now=datetime.now(UTC),
        root_key_type=KeyType(args.root_key_type),
        progress=_progress(sys.stderr.isatty()),
    )
    print(f"initialised node {result.node_id} in {args.data_dir}")
    print(f"network {result.genesis.body.network_name}, origin {result.genesis.body.origin}")
    print(f"genesis pin (SHA-256): {result.pin}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from trustchain import node

    overrides = {name: getattr(args, name) for name in NodeConfig.model_fields}
    if overrides.get("listen") is not None:
        overrides["listen"] = [a for item in overrides["listen"] for a in item.split(",") if a]
    node.run(args.data_dir, _passphrase(args), overrides)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from trustchain.status import node_status, render_status

    status = node_status(args.data_dir)
    if args.json:
        _print_json(status)
    else:
        print(render_status(status))
    return 0


def cmd_genesis_show(args: argparse.Namespace) -> int:
    from bootstrap.genesis import genesis_pin, parse_genesis
    from trustchain.datadir import DataDir

    layout = DataDir(args.data_dir)
    layout.require_initialised()
    data = layout.genesis_file.read_bytes()
    pin = genesis_pin(data)
    if not args.json:
        print(pin)
        return 0
    document = parse_genesis(data)
    root = document.root_certificate
    _print_json(
        {
            "pin": pin,
            "network_name": document.body.network_name,
            "origin": document.body.origin,
            "created_at": document.body.created_at,
            "root_subject": root.subject.rfc4514_string(),
            "root_not_after": root.not_valid_after_utc.isoformat(),
            "validators": [
                {"node_id": v.node_id, "stake": v.stake} for v in document.body.validators
            ],
            "parameters": document.body.parameters.model_dump(),
        }
    )
    return 0


def cmd_genesis_verify(args: argparse.Namespace) -> int:
    from bootstrap.genesis import normalise_pin, verify_genesis
    from trustchain.errors import GenesisError

    normalise_pin(args.pin)  # a malformed pin is reported before the file is read
    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        raise GenesisError(f"cannot read {args.file}: {exc.strerror}") from None
    document = verify_genesis(data, args.pin)
    body = document.body
    if args.json:
        _print_json({"valid": True, "network_name": body.network_name, "origin": body.origin,
                     "validators": len(body.validators)})
    else:
        print(
            f"OK: genesis of network {body.network_name} ({body.origin}), "
            f"{len(body.validators)} validator(s), all signatures valid"
        )
    return 0


# --- parser -----------------------------------------------------------------


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, default=_default_data_dir(),
        help="node data directory (default: $TRUSTCHAIN_DATA_DIR or ./data)",
    )


def _add_passphrase(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--passphrase-file", type=Path, metavar="FILE",
        help="read the key-store passphrase from FILE "
        "(otherwise $TRUSTCHAIN_PASSPHRASE, otherwise a prompt)",
    )


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("configuration overrides (see trustchain.toml)")
    for name, field in NodeConfig.model_fields.items():
        group.add_argument(
            "--" + name.replace("_", "-"), dest=name, default=None,
            action="append" if name == "listen" else "store",
            help=(field.description or "") + f" [default: {field.get_default(call_default_factory=True)}]",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trustchain",
        description="TrustChain node: authoritative DNS, CA and CT logs over QUIC.",
    )
    parser.add_argument("--version", action="version", version=f"trustchain {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("init", help="create a node and a new network's genesis")
    _add_data_dir(p)
    _add_passphrase(p)
    p.add_argument("--network-name", default=DEFAULT_NETWORK_NAME,
                   help=f"network name (default: {DEFAULT_NETWORK_NAME})")
    p.add_argument("--origin", default=DEFAULT_ORIGIN,
                   help=f"DNS zone origin (default: {DEFAULT_ORIGIN})")
    p.add_argument("--root-key-type", choices=["ecdsa-p384", "ecdsa-p256"], default="ecdsa-p384",
                   help="genesis root key type (default: ecdsa-p384)")
    p.set_defaults(func=cmd_init)

    p = commands.add_parser("serve", help="run the node until SIGINT/SIGTERM")
    _add_data_dir(p)
    _add_passphrase(p)
    _add_config_flags(p)
    p.set_defaults(func=cmd_serve)

    p = commands.add_parser("status", help="show what the node holds")
    _add_data_dir(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_status)

    genesis = commands.add_parser("genesis", help="the genesis document and its pin")
    sub = genesis.add_subparsers(dest="genesis_command", required=True, metavar="COMMAND")
    p = sub.add_parser("show", help="print the genesis SHA-256 pin (--json: and its content)")
    _add_data_dir(p)
    p.add_argument("--json", action="store_true", help="machine-readable details")
    p.set_defaults(func=cmd_genesis_show)
    p = sub.add_parser("verify", help="verify a genesis document against a pin")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--pin", required=True, metavar="SHA256", help="the expected SHA-256")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_genesis_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except TrustchainError as exc:
        print(f"trustchain: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("trustchain: interrupted", file=sys.stderr)
        return 130
