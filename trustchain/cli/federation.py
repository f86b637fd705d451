"""``trustchain federation status``: the consensus as one node sees it; ``federation
validator|configure``: an operator's consent to a validator's stake, or to new proof
parameters (committed once validators with more than 2/3 of the stake consented);
``federation leave``: the node leaves the federation's DNS (NS sets, then its ZSK)."""

from __future__ import annotations

import argparse
from typing import Any

from trustchain.cli.common import add_command, add_group, add_json, print_json
from trustchain.cli.remote import (
    Node,
    add_admin_options,
    add_trust_anchor,
    admin_call,
    configured_address,
    parse_server,
    public_call,
    trust_anchor,
)
from trustchain.errors import LocalError


def register(commands: argparse._SubParsersAction) -> None:
    sub = add_group(commands, "federation", "the federation's consensus, as a node sees it", examples="""
trustchain federation status --data-dir data
trustchain federation status --json --data-dir data
trustchain federation validator 3e19cced12a152158ddfcffa59a8868f --stake 100 --data-dir data
trustchain federation leave --data-dir data
""")
    p = add_command(sub, "status", "nodes, validators and stake, committed height and hash, "
                    "last block time, peers connected, evidence", cmd_federation_status)
    p.add_argument("--server", metavar="[ADDR]:PORT",
                   help="the node's QUIC address (default: the node in --data-dir)")
    add_trust_anchor(p, "trust anchor (default: the node in --data-dir)")
    add_json(p)
    p = add_command(sub, "validator", "consent to a validator's stake on this node; the change "
                    "is committed once validators holding more than 2/3 of the stake consented",
                    cmd_federation_validator)
    p.add_argument("node_id", metavar="NODE_ID",
                   help="a validator, or a node admitted by consensus (trustchain join)")
    p.add_argument("--stake", type=int, required=True, metavar="N",
                   help="its new stake (0: it leaves the validator set)")
    add_admin_options(p, json_output=True)
    p = add_command(sub, "configure", "consent to new proof parameters on this node; "
                    "committed once validators holding more than 2/3 of the stake consented",
                    cmd_federation_configure)
    for name, what in (("work-difficulty-bits", "leading zero bits of the proof of work"),
                       ("time-vdf-iterations", "squarings of the proof of time (VDF)"),
                       ("space-plot-k", "plot size of the proof of space (19 to 50)")):
        p.add_argument(f"--{name}", type=int, metavar="N", help=what)
    add_admin_options(p, json_output=True)
    p = add_command(sub, "leave", "this node leaves the federation's DNS: out of the NS sets "
                    "now (committed when this answers); it serves on until no resolver's cache "
                    "can name it, then its ZSK (a founder's KSK too) and names are removed",
                    cmd_federation_leave)
    add_admin_options(p, json_output=True)


def cmd_federation_leave(args: argparse.Namespace) -> int:
    result = admin_call(args, "federation-leave", {})
    if args.json:
        print_json(result)
    else:
        print(f"node {result['node_id']} left the NS sets at height {result['height']}; it "
              f"serves on and its ZSK is removed in {result['remove_after']} s (keep it "
              "running until then)")
    return 0


def cmd_federation_validator(args: argparse.Namespace) -> int:
    result = admin_call(args, "validator", {"node_id": args.node_id, "stake": args.stake})
    return _consented(args, result, f"validator {args.node_id}: stake {args.stake}")


def cmd_federation_configure(args: argparse.Namespace) -> int:
    changes = {name: getattr(args, name) for name in
               ("work_difficulty_bits", "time_vdf_iterations", "space_plot_k")
               if getattr(args, name) is not None}
    if not changes:
        raise LocalError("name a parameter to change: --work-difficulty-bits, "
                         "--time-vdf-iterations or --space-plot-k")
    result = admin_call(args, "federation-configure", changes)
    what = ", ".join(f"{k.replace('_', '-')} {v}" for k, v in changes.items())
    return _consented(args, result, f"configuration: {what}")


def _consented(args: argparse.Namespace, result: dict[str, Any], what: str) -> int:
    if args.json:
        print_json(result)
    elif result["status"] == "committed":
        print(f"{what}, committed at height {result['height']}")
    else:
        print(f"{what} consented here; not yet committed: {result['detail']}. Run the same "
              "command on the other validators' nodes (consent stands for an hour).")
    return 0


def cmd_federation_status(args: argparse.Namespace) -> int:
    host, port = parse_server(args.server) if args.server else configured_address(args.data_dir)
    root, origin = trust_anchor(args.genesis, args.pin, args.data_dir)
    status = public_call(Node(host, port, root, args.server_name or origin),
                         "consensus", "status")
    if args.json:
        print_json(status)
    else:
        print(format_status(status))
    return 0


def format_status(status: dict[str, Any]) -> str:
    total = status["total_stake"] or 1
    lines = [
        f"node        {status['node_id']}",
        f"chain       {status['chain_id']}",
        f"height      {status['height']}  {status['hash'] or '(no block yet)'}",
        f"last block  {status['last_block_time'] or '-'}",
        f"round       {status['round']} ({status['step']})",
        f"validators  {len(status['validators'])}, stake {status['total_stake']}",
    ]
    params = status.get("parameters", {})
    if params:
        lines.insert(5, f"proofs      work {params['work_difficulty_bits']} bits, time "
                        f"{params['time_vdf_iterations']} squarings, space k={params['space_plot_k']}")
    for v in status["validators"]:
        share = 100 * v["stake"] / total
        lines.append(f"  {v['node_id']}  stake {v['stake']} ({share:.0f}%)  "
                     f"{'connected' if v['connected'] else 'not connected'}")
    peers = status["peers"]
    up = sum(1 for p in peers if p["connected"])
    lines.append(f"peers       {up} of {len(peers)} connected")
    for p in peers:
        lines.append(f"  {p['address']}  {p['node_id'] or '?'}  "
                     f"{'connected' if p['connected'] else 'not connected'}")
    members = status.get("members", [])
    lines.append(f"admitted    {len(members) or 'none'} (by consensus, after the founders)")
    for m in members:
        lines.append(f"  {m['node_id']}  {m['address']}  admitted with stake {m['stake']}")
    evidence = status["evidence"]
    lines.append(f"evidence    {len(evidence) or 'none'}")
    for e in evidence:
        lines.append(f"  {e['kind']} by {e['offender']} at height {e['height']} "
                     f"round {e['round']}")
    untrusted = status.get("untrusted_logs", {})
    lines.append(f"untrusted   {len(untrusted) or 'no'} CT logs"
                 + (" (--json: the signed checkpoints of each split view)" if untrusted else ""))
    for log_id, why in untrusted.items():
        lines.append(f"  {log_id}  {why}")
    return "\n".join(lines)
