"""``network register|list|show``: federated networks, each given a zone under the origin
(hosted here or delegated) and address blocks its CA may certify."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from trustchain.cli.common import add_command, add_group, print_json, print_rows
from trustchain.cli.remote import add_admin_options, admin_call
from trustchain.errors import LocalError


def register(commands: argparse._SubParsersAction) -> None:
    sub = add_group(commands, "network", "federated networks under the origin (admin)", examples="""
trustchain network register alpha --data-dir data
trustchain network register beta --delegate ns1.beta.example=2001:db8::53 --data-dir data
trustchain network list --json --data-dir data
trustchain network show alpha --data-dir data
""")
    p = add_command(sub, "register", "give a network its zone NAME.<origin>", cmd_network_register)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--delegate", action="append", metavar="NS[=ADDR,...]",
                   help="delegate to this name server (repeatable; addresses become glue); "
                   "default: host the zone on this node")
    p.add_argument("--ds", action="append", metavar="DS",
                   help="a DS record for the delegated zone (repeatable)")
    p.add_argument("--prefix", action="append", metavar="CIDR",
                   help="an address block of the network (repeatable): its CA may certify "
                   "addresses inside it")
    add_admin_options(p)
    add_admin_options(add_command(sub, "list", "list registered networks", cmd_network_list),
                      json_output=True)
    p = add_command(sub, "show", "one registered network", cmd_network_show)
    p.add_argument("name", metavar="NAME")
    add_admin_options(p, json_output=True)


def cmd_network_register(args: argparse.Namespace) -> int:
    """Make the registration's proofs (work and time, bound to the node's latest block),
    then ask the node to have it committed."""
    from trustchain.wiring.registry import registration_proofs

    body = registration_body(args)
    if any(n["name"] == args.name for n in admin_call(args, "network-list")):
        raise LocalError(f"network {args.name} is already registered")  # before the proofs
    status = admin_call(args, "status", service="consensus")
    progress(f"proving work and time for network {args.name} "
             f"(bound to block {status['height']})")
    proofs = registration_proofs(body, requester=status["node_id"], anchor=status["height"],
                                 anchor_hash=status["hash"], parameters=status["parameters"])
    progress("submitting; waiting for the block that carries it")
    result = admin_call(args, "network-register", {**body, "proofs": proofs})
    network = result["network"] or {}
    line = f"network {result['name']}: registered at height {result['height']}"
    if network.get("zone"):
        line += f", zone {network['zone']} ({network['mode']})"
    if network.get("prefixes"):
        line += f", address blocks {', '.join(network['prefixes'])}"
    print(line)
    return 0


def registration_body(args: argparse.Namespace) -> dict[str, Any]:
    """The registration as the node will check it (normalised, e.g. address blocks)."""
    from pydantic import ValidationError

    from trustchain.wiring.dns import NetworkRegister

    try:
        return NetworkRegister(name=args.name, delegate=args.delegate or [], ds=args.ds or [],
                               prefixes=args.prefix or []).model_dump()
    except ValidationError as exc:
        raise LocalError(f"network register: {exc.errors()[0]['msg']}") from None


def progress(line: str) -> None:
    if sys.stderr.isatty():
        print(line, file=sys.stderr, flush=True)


def cmd_network_list(args: argparse.Namespace) -> int:
    rows = admin_call(args, "network-list")
    if args.json:
        print_json(rows)
    elif not rows:
        print("no networks")
    else:
        _print_networks(rows)
    return 0


def cmd_network_show(args: argparse.Namespace) -> int:
    rows = [r for r in admin_call(args, "network-list") if r["name"] == args.name]
    if not rows:
        raise LocalError(f"no network {args.name}")
    if args.json:
        print_json(rows[0])
    else:
        _print_networks(rows)
    return 0


def _print_networks(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        row["prefixes"] = ",".join(row.get("prefixes", [])) or "-"
        for column in ("zone", "mode", "registered_at"):  # no zone here: registry only
            row.setdefault(column, "-")
    print_rows(rows, ["name", "zone", "mode", "prefixes", "registered_at"])
