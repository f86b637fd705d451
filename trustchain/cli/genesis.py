"""``genesis show|verify``: the genesis document and its pin, the network's trust anchor.

The one module that reads genesis documents, for the other commands too.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from trustchain.cli.common import (
    add_command,
    add_data_dir,
    add_group,
    add_json,
    initialised,
    print_json,
    read_genesis,
)

if TYPE_CHECKING:
    from bootstrap.genesis import GenesisDocument


def register(commands: argparse._SubParsersAction) -> None:
    sub = add_group(commands, "genesis", "the genesis document and its pin", examples="""
trustchain genesis show --data-dir data            # the SHA-256 pin
trustchain genesis show --data-dir data --root-pem > root.pem
trustchain genesis verify data/genesis.json --pin 8673e212...
""")
    p = add_command(sub, "show", "print the genesis SHA-256 pin (--json: and its content)",
                    cmd_genesis_show)
    add_data_dir(p)
    add_json(p, "machine-readable details")
    p.add_argument("--root-pem", action="store_true",
                   help="print the genesis root certificate (PEM), e.g. as a CA file for kdig")
    p = add_command(sub, "verify", "verify a genesis document against a pin", cmd_genesis_verify)
    p.add_argument("file", metavar="FILE")
    p.add_argument("--pin", required=True, metavar="SHA256", help="the expected SHA-256")
    add_json(p)


def cmd_genesis_show(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.serialization import Encoding

    from bootstrap.genesis import genesis_pin, parse_genesis

    data = initialised(args.data_dir).genesis_file.read_bytes()
    pin = genesis_pin(data)
    if args.root_pem:
        root = parse_genesis(data).root_certificate
        sys.stdout.write(root.public_bytes(Encoding.PEM).decode())
        return 0
    if not args.json:
        print(pin)
        return 0
    document = parse_genesis(data)
    root = document.root_certificate
    print_json(
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


def verified_genesis(data: bytes, pin: str) -> GenesisDocument:
    """The genesis document in ``data`` if it matches ``pin`` and its signatures verify."""
    from bootstrap.genesis import verify_genesis

    return verify_genesis(data, pin)


def cmd_genesis_verify(args: argparse.Namespace) -> int:
    from bootstrap.genesis import normalise_pin

    normalise_pin(args.pin)  # a malformed pin is reported before the file is read
    body = verified_genesis(read_genesis(args.file), args.pin).body
    if args.json:
        print_json({"valid": True, "network_name": body.network_name, "origin": body.origin,
                    "validators": len(body.validators)})
    else:
        print(
            f"OK: genesis of network {body.network_name} ({body.origin}), "
            f"{len(body.validators)} validator(s), all signatures valid"
        )
    return 0
