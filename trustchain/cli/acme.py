"""``trustchain acme``: the operator's view of the node's ACME accounts (clients make and
change their own through the ACME API itself; see docs/acme.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from trustchain.cli.common import add_command, add_group, print_json
from trustchain.cli.remote import add_admin_options, add_credential_options, admin_call


def register(commands: argparse._SubParsersAction) -> None:
    sub = add_group(commands, "acme", "the ACME server's accounts (admin)", examples="""
trustchain acme accounts list --data-dir data --json
trustchain acme accounts deactivate 7 --data-dir data
trustchain acme eab --network alpha --data-dir data   # a key for certbot --eab-kid/--eab-hmac-key
trustchain acme eab list --network alpha --data-dir data
trustchain acme eab withdraw KID --data-dir data
""")
    accounts = add_group(sub, "accounts", "the ACME accounts of this node", examples="""
trustchain acme accounts list --after 100 --limit 50 --data-dir data
trustchain acme accounts deactivate 7 --data-dir data
""")
    p = add_command(accounts, "list", "accounts by id: status, contacts, key",
                    cmd_acme_accounts_list)
    p.add_argument("--after", type=int, default=0, metavar="ID",
                   help="start after this account id (the next page)")
    p.add_argument("--limit", type=int, default=100, metavar="N", help="at most N (1 to 1000)")
    add_admin_options(p, json_output=True)
    p = add_command(accounts, "deactivate", "an account no longer acts (RFC 8555 7.3.6): "
                    "every request signed with its key is refused from now on",
                    cmd_acme_accounts_deactivate)
    p.add_argument("account", type=int, metavar="ID")
    add_admin_options(p, json_output=True)
    p = add_command(sub, "eab", "External Account Binding keys: 'eab --network N' mints a "
                    "new key for a network (from then on its names are ordered only by "
                    "accounts bound with such a key); 'eab list', 'eab withdraw KID'. The "
                    "node's admin, or the network's own credential with --cert/--key",
                    cmd_acme_eab)
    p.add_argument("--network", metavar="NAME", help="the network to mint a key for")
    add_admin_options(p, json_output=True)
    add_credential_options(p)
    keys = p.add_subparsers(dest="eab_command", required=False, metavar="COMMAND")
    q = add_command(keys, "list", "the EAB keys (never their HMAC keys): kid, network, "
                    "created, the account each bound, withdrawn", cmd_acme_eab_list)
    q.add_argument("--network", metavar="NAME",
                   help="only this network's (a network's credential sees its own)")
    add_admin_options(q, json_output=True)
    add_credential_options(q)
    q = add_command(keys, "withdraw", "an EAB key binds no account from now on (an account "
                    "it bound stays bound: 'acme accounts deactivate' ends that)",
                    cmd_acme_eab_withdraw)
    q.add_argument("kid", metavar="KID")
    add_admin_options(q, json_output=True)
    add_credential_options(q)


def _listed(args: argparse.Namespace, result: dict[str, Any], key: str, empty: str,
            line: Callable[[dict[str, Any]], str]) -> int:
    """``--json``: the node's answer as it is; else a line per item, or ``empty``."""
    if args.json:
        print_json(result)
    elif not result[key]:
        print(empty)
    for item in [] if args.json else result[key]:
        print(line(item))
    return 0


def cmd_acme_accounts_list(args: argparse.Namespace) -> int:
    result = admin_call(args, "acme-accounts", {"after": args.after, "limit": args.limit})
    return _listed(args, result, "accounts", "no ACME accounts" + (
        f" after {args.after}" if args.after else ""), lambda account: (
        f"{account['id']:>6}  {account['status']:<11}  {account['key_type']:<3}  "
        f"{account['created_at'][:19]}  {', '.join(account['contact']) or '-'}"))


def cmd_acme_accounts_deactivate(args: argparse.Namespace) -> int:
    result = admin_call(args, "acme-deactivate", {"account": args.account})
    if args.json:
        print_json(result)
    else:
        print(f"ACME account {result['id']} is {result['status']}")
    return 0


def cmd_acme_eab(args: argparse.Namespace) -> int:
    if args.network is None:
        print("trustchain acme eab: name the network to mint a key for (--network NAME), "
              "or 'eab list' / 'eab withdraw KID'", file=sys.stderr)
        return 2
    result = admin_call(args, "acme-eab", {"network": args.network}, service="ca")
    if args.json:
        print_json(result)
    else:
        print(f"network {result['network']}: kid {result['kid']} hmac_key {result['hmac_key']}")
        print("(certbot: --eab-kid KID --eab-hmac-key KEY; lego: --eab --kid KID --hmac KEY)",
              file=sys.stderr)
    return 0


def cmd_acme_eab_list(args: argparse.Namespace) -> int:
    result = admin_call(args, "acme-eab-list", {"network": args.network}, service="ca")

    def line(key: dict[str, Any]) -> str:
        bound = f"account {key['account_id']}" if key["account_id"] is not None else "unused"
        withdrawn = f"  withdrawn {key['withdrawn_at'][:19]}" if key["withdrawn_at"] else ""
        return f"{key['kid']}  {key['network']:<16}  {key['created_at'][:19]}  {bound}{withdrawn}"

    return _listed(args, result, "keys", "no EAB keys" + (
        f" of network {args.network}" if args.network else ""), line)


def cmd_acme_eab_withdraw(args: argparse.Namespace) -> int:
    result = admin_call(args, "acme-eab-withdraw", {"kid": args.kid}, service="ca")
    if args.json:
        print_json(result)
    else:
        print(f"EAB key {result['kid']} of network {result['network']} withdrawn "
              f"at {result['withdrawn_at'][:19]}")
    return 0
