"""``init``, ``serve``, ``status``, ``join`` and ``node list|approve|reject``: a node's life.

Also the moves of the genesis root key that ``init`` creates (``ca export-root-key`` and
``import-root-key``), so that the bootstrap modules are imported here only.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from trustchain.cli.common import (
    add_command,
    add_data_dir,
    add_group,
    add_json,
    add_key_store,
    initialised,
    passphrase,
    print_json,
    progress,
    read_genesis,
)
from trustchain.cli.remote import add_admin_options, admin_call, parse_server
from trustchain.config import DEFAULT_NETWORK_NAME, DEFAULT_ORIGIN, NodeConfig

if TYPE_CHECKING:
    from trustchain.keystore import KeyStore

#: Moves the root key (of the purpose given) in or out of an open key store:
#: (key id, audit record kind, what to tell the operator).
RootKeyMove = Callable[["KeyStore", str], tuple[str, str, str]]


def register(commands: argparse._SubParsersAction) -> None:
    p = add_command(commands, "init", "create a node and a new network's genesis", cmd_init)
    add_key_store(p)
    p.add_argument("--network-name", default=DEFAULT_NETWORK_NAME,
                   help=f"network name (default: {DEFAULT_NETWORK_NAME})")
    p.add_argument("--origin", default=DEFAULT_ORIGIN,
                   help=f"DNS zone origin (default: {DEFAULT_ORIGIN})")
    p.add_argument("--no-zone", action="store_true",
                   help="do not answer DNS for the origin zone (its operator answers for it "
                        "elsewhere): serve_federation_zones = false in trustchain.toml")
    p.add_argument("--root-key-type", choices=["ecdsa-p384", "ecdsa-p256"], default="ecdsa-p384",
                   help="genesis root key type (default: ecdsa-p384)")

    p = add_command(commands, "serve", "run the node until SIGINT/SIGTERM", cmd_serve)
    add_key_store(p)
    _add_config_flags(p)

    p = add_command(commands, "status", "show what the node holds", cmd_status)
    add_data_dir(p)
    add_json(p)

    p = add_command(commands, "join", "enrol this machine as a node of an existing network",
                    cmd_join)
    add_key_store(p)
    p.add_argument("--genesis", required=True, metavar="FILE", help="the network's genesis document")
    p.add_argument("--pin", required=True, metavar="SHA256", help="its SHA-256 pin")
    p.add_argument("--peer", required=True, metavar="[ADDR]:PORT", help="a node's QUIC address")
    p.add_argument("--server-name", metavar="NAME",
                   help="name the peer's certificate must carry (default: the zone origin)")
    p.add_argument("--approval", choices=("consensus", "operator"), default="consensus",
                   help="consensus (default): be admitted by the validators with proofs of "
                   "work, time and space; operator: wait for `trustchain node approve` on the "
                   "peer (the node is then not a member of the federation's ledger)")
    p.add_argument("--stake", type=int, default=0, metavar="N",
                   help="stake to ask for (default 0); validators endorse at most their "
                   "admission_max_stake")
    p.add_argument("--address", metavar="[ADDR]:PORT",
                   help="where the other nodes reach this node over QUIC (default: the "
                   "configured quic_port on the first listen address)")
    p.add_argument("--wait", type=float, default=600.0, metavar="SECONDS",
                   help="with --approval operator: how long to wait (default: 600); run again "
                   "to resume")

    sub = add_group(commands, "node", "enrolments of joining nodes (admin)", examples="""
trustchain node list --data-dir data
trustchain node approve 3e19cced12a152158ddfcffa59a8868f --data-dir data
trustchain node reject 3e19cced12a152158ddfcffa59a8868f --data-dir data
""")
    add_admin_options(add_command(sub, "list", "list enrolment requests", cmd_node_list),
                      json_output=True)
    for name, help_text, func in (
        ("approve", "admit a node: issue its certificate", cmd_node_approve),
        ("reject", "refuse a node's enrolment", cmd_node_reject),
    ):
        p = add_command(sub, name, help_text, func)
        p.add_argument("node_id", metavar="NODE_ID")
        add_admin_options(p)


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One option per configuration field, so any setting can be overridden for one run."""
    group = parser.add_argument_group("configuration overrides (see trustchain.toml)")
    for name, field in NodeConfig.model_fields.items():
        group.add_argument(
            "--" + name.replace("_", "-"), dest=name, default=None,
            action="append" if name == "listen" else "store",
            help=(field.description or "") + f" [default: {field.get_default(call_default_factory=True)}]",
        )


def _new_passphrase(args: argparse.Namespace) -> str:
    """The passphrase of a new key store: asked twice on a terminal, and strong enough."""
    from trustchain.keystore import check_passphrase_strength

    chosen = passphrase(args.passphrase_file, confirm=True)()
    check_passphrase_strength(chosen)
    return chosen


def cmd_init(args: argparse.Namespace) -> int:
    from bootstrap.init import init_node
    from trustchain.keystore import KeyType

    result = init_node(
        args.data_dir,
        _new_passphrase(args),
        network_name=args.network_name,
        origin=args.origin,
        now=datetime.now(UTC),
        root_key_type=KeyType(args.root_key_type),
        progress=progress(sys.stderr.isatty()),
        serve_zones=not args.no_zone,
    )
    print(f"initialised node {result.node_id} in {args.data_dir}")
    print(f"network {result.genesis.body.network_name}, origin {result.genesis.body.origin}")
    print(f"genesis pin (SHA-256): {result.pin}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from trustchain.wiring.serve import run

    overrides = {name: getattr(args, name) for name in NodeConfig.model_fields}
    if overrides.get("listen") is not None:
        overrides["listen"] = [a for item in overrides["listen"] for a in item.split(",") if a]
    run(args.data_dir, passphrase(args.passphrase_file), overrides)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from trustchain.wiring.status import node_status, render_status

    status = node_status(args.data_dir)
    if args.json:
        print_json(status)
    else:
        print(render_status(status))
    return 0


def cmd_join(args: argparse.Namespace) -> int:
    from bootstrap.join import join_network

    genesis_bytes = read_genesis(args.genesis)
    result = join_network(
        args.data_dir, _new_passphrase(args), genesis_bytes=genesis_bytes, pin=args.pin,
        peer=parse_server(args.peer), server_name=args.server_name,
        now=lambda: datetime.now(UTC), wait_seconds=args.wait, approval=args.approval,
        stake=args.stake, address=args.address,
        # The approval hint must reach the operator even without a terminal.
        progress=progress(True),
    )
    print(f"joined network {result.network_name} as node {result.node_id} in {args.data_dir}")
    print(f"node certificate valid until {result.certificate.not_valid_after_utc.isoformat()}; "
          "mutual TLS with the peer verified")
    return 0


def cmd_node_list(args: argparse.Namespace) -> int:
    rows = admin_call(args, "enrolments")
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("no enrolments")
    for row in rows:
        print(f"{row['node_id']}  {row['status']:<8}  requested {row['requested_at']}"
              + (f"  decided {row['decided_at']}" if row["decided_at"] else ""))
    return 0


def cmd_node_approve(args: argparse.Namespace) -> int:
    return _decide(args, "approve")


def cmd_node_reject(args: argparse.Namespace) -> int:
    return _decide(args, "reject")


def _decide(args: argparse.Namespace, method: str) -> int:
    state = admin_call(args, method, {"node_id": args.node_id})
    print(f"node {state['node_id']}: {state['status']}")
    return 0


# --- the genesis root key, moved with the node stopped (ca export-root-key, import-root-key)


def move_root_key(data_dir: Path, passphrase_file: Path | None, move: RootKeyMove) -> None:
    """Run ``move`` on the key store with the data directory locked (so the node is
    stopped), then record it in the audit log and print what happened."""
    from bootstrap.init import ROOT_KEY_PURPOSE
    from trustchain.keystore import KeyStore
    from trustchain.storage.audit import AUDIT_SCHEMA, AuditLog
    from trustchain.storage.database import open_database
    from trustchain.storage.migrations import migrate

    layout = initialised(data_dir)
    with layout.lock():
        keystore = KeyStore.open(layout.keys_dir, passphrase(passphrase_file)())
        now = datetime.now(UTC)
        key_id, kind, message = move(keystore, ROOT_KEY_PURPOSE)
        with open_database(layout.path) as db:
            migrate(db, AUDIT_SCHEMA)
            AuditLog(db).append(now, kind, "operator", {"key_id": key_id,
                                                        "purpose": ROOT_KEY_PURPOSE})
    print(message)
