"""``query NAME [TYPE]``: ask a DNS server over UDP, TCP, DoQ or stoq/1 and print the answer."""

from __future__ import annotations

import argparse

from trustchain.cli.common import add_command
from trustchain.cli.remote import Node, add_trust_anchor, parse_server, quic_query, trust_anchor
from trustchain.errors import LocalError, RemoteError


def register(commands: argparse._SubParsersAction) -> None:
    p = add_command(commands, "query", "ask a DNS server (udp, tcp, doq or stoq)", cmd_query)
    p.add_argument("name", metavar="NAME")
    p.add_argument("type", metavar="TYPE", nargs="?", default="A")
    p.add_argument("--server", required=True, metavar="[ADDR]:PORT")
    p.add_argument("--via", choices=["udp", "tcp", "doq", "stoq"], default="doq")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds (default: 5)")
    add_trust_anchor(p, "trust anchor for doq/stoq (default: the node in --data-dir)",
                     explained=True)


def cmd_query(args: argparse.Namespace) -> int:
    import dns.exception
    import dns.message
    import dns.query

    host, port = parse_server(args.server)
    try:
        query = dns.message.make_query(args.name, args.type)
    except (dns.exception.DNSException, ValueError) as exc:
        raise LocalError(f"cannot build a query for {args.name} {args.type}: {exc}") from None
    try:
        if args.via == "udp":
            response = dns.query.udp(query, host, port=port, timeout=args.timeout)
        elif args.via == "tcp":
            response = dns.query.tcp(query, host, port=port, timeout=args.timeout)
        else:
            root, origin = trust_anchor(args.genesis, args.pin, args.data_dir)
            if args.via == "doq":
                query.id = 0  # RFC 9250: the stream identifies the query
            node = Node(host, port, root, args.server_name or origin)
            response = dns.message.from_wire(
                quic_query(node, args.via, query.to_wire(), args.timeout))
    except dns.exception.Timeout:
        raise RemoteError(f"no answer from {args.server} over {args.via} in {args.timeout}s") from None
    except (OSError, dns.exception.DNSException) as exc:
        raise RemoteError(f"query over {args.via} to {args.server} failed: {exc}") from None
    print(response.to_text())
    return 0
