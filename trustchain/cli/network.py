"""``network register|list|show``: federated networks, each given a zone under the origin
(hosted here or delegated) and address blocks its CA may certify."""

from __future__ import annotations

import argparse
from typing import Any

from trustchain.cli.common import add_command, add_group, print_json, print_rows
from trustchain.cli.remote import add_admin_options, admin_call
from trustchain.errors import LocalError


def register(commands: argparse._SubParsersAction) -> None:
    sub = add_group(commands, "network", "federated networks under the origin (admin)")
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
    body = {"name": args.name, "delegate": args.delegate or [], "ds": args.ds or [],
            "prefixes": args.prefix or []}
    result = admin_call(args, "network-register", body)
    print(f"network {result['name']}: zone {result['zone']} ({result['mode']}), "
          f"name servers {', '.join(result['name_servers'])}"
          + (f", address blocks {', '.join(result['prefixes'])}" if result["prefixes"] else ""))
    return 0


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
    print_rows(rows, ["name", "zone", "mode", "prefixes", "registered_at"])
