"""``dnssec ds|status|rollover|ds-published``: the signing of a node's zones (the node signs
and times rollovers itself; these commands show it and start or confirm steps)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from trustchain.cli.common import add_command, add_group, print_json
from trustchain.cli.remote import add_admin_options, admin_call


def register(commands: argparse._SubParsersAction) -> None:
    sub = add_group(commands, "dnssec", "DNSSEC of the zones (admin)", examples="""
trustchain dnssec ds example.net --data-dir data         # for the parent zone
trustchain dnssec status example.net --json --data-dir data
trustchain dnssec rollover example.net --zsk --data-dir data
trustchain dnssec ds-published example.net --data-dir data
""")
    p = add_command(sub, "ds", "the DS set for the parent zone", cmd_dnssec_ds)
    p.add_argument("zone", metavar="ZONE")
    add_admin_options(p, json_output=True)
    p = add_command(sub, "status", "keys and signatures of a zone", cmd_dnssec_status)
    p.add_argument("zone", metavar="ZONE")
    add_admin_options(p, json_output=True)
    p = add_command(sub, "rollover", "start a key rollover (the node times the steps)",
                    cmd_dnssec_rollover)
    p.add_argument("zone", metavar="ZONE")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--ksk", action="store_true", help="key-signing key")
    which.add_argument("--zsk", action="store_true", help="zone-signing key")
    add_admin_options(p)
    p = add_command(sub, "ds-published", "confirm the parent publishes the new KSK's DS",
                    cmd_dnssec_ds_published)
    p.add_argument("zone", metavar="ZONE")
    add_admin_options(p)


def cmd_dnssec_ds(args: argparse.Namespace) -> int:
    result = admin_call(args, "dnssec-ds", {"zone": args.zone})
    if args.json:
        print_json(result)
    else:
        sys.stdout.write(result["text"] + "\n")
    return 0


def cmd_dnssec_status(args: argparse.Namespace) -> int:
    result = admin_call(args, "dnssec-status", {"zone": args.zone})
    if args.json:
        print_json(result)
        return 0
    print(f"zone {result['zone']}: {'signed' if result['signed'] else 'not signed'}")
    for key in result["keys"]:
        state = "active" if key["active"] else "published"
        print(f"  {key['role']}  tag {key['tag']}  algorithm {key['algorithm']}  {state}")
    if result["signed"]:
        print(f"  {result['signatures']} signatures, {result['nsec_names']} NSEC names; "
              f"next re-signing at {datetime.fromtimestamp(result['resign_at'], UTC).isoformat()}")
    return 0


def cmd_dnssec_rollover(args: argparse.Namespace) -> int:
    role = "ksk" if args.ksk else "zsk"
    result = admin_call(args, "dnssec-rollover", {"zone": args.zone, "role": role})
    print(f"{role.upper()} rollover of {result['zone']} started")
    _print_key_states(result)
    return 0


def cmd_dnssec_ds_published(args: argparse.Namespace) -> int:
    result = admin_call(args, "dnssec-ds-published", {"zone": args.zone})
    print(f"new DS of {result['zone']} noted as published by the parent")
    _print_key_states(result)
    return 0


def _print_key_states(result: dict[str, Any]) -> None:
    """Where each key of the zone stands in its rollover."""
    for key in result["keys"]:
        print(f"  {key['role']}  tag {key['tag']}  {key['state']}")
