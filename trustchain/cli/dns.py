"""``zone``, ``zone secondary`` and ``record``: the zones a node serves, managed over its
admin API."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from trustchain.cli.common import (
    add_command,
    add_group,
    print_json,
    print_listing,
    print_rows,
    progress,
)
from trustchain.cli.remote import (
    add_admin_options,
    add_credential_options,
    admin_call,
    parse_server,
)
from trustchain.errors import LocalError


def register(commands: argparse._SubParsersAction) -> None:
    _register_zone(commands)
    _register_record(commands)


# --- zone -----------------------------------------------------------------------


def _register_zone(commands: argparse._SubParsersAction) -> None:
    sub = add_group(commands, "zone", "zones this node serves (admin)", examples="""
trustchain zone create example.net --data-dir data
trustchain zone list --json --data-dir data
trustchain zone show example.net --data-dir data
trustchain zone export example.net --data-dir data > example.net.zone
trustchain zone import example.net.zone --origin example.net --data-dir data
trustchain zone ttl example.net 300 --data-dir data
""")
    p = add_command(sub, "create", "create a zone (SOA and NS filled in)", cmd_zone_create)
    p.add_argument("zone", metavar="ZONE")
    p.add_argument("--ns", action="append", metavar="NAME",
                   help="name server (repeatable; default: this node's name)")
    p.add_argument("--address", action="append", metavar="IP",
                   help="address of in-zone name servers (repeatable)")
    p.add_argument("--email", help="SOA contact (default: hostmaster@ZONE)")
    _add_dnssec_choices(p)
    add_admin_options(p)
    p = add_command(sub, "delete", "delete a zone and its records", cmd_zone_delete)
    p.add_argument("zone", metavar="ZONE")
    add_admin_options(p)
    add_admin_options(add_command(sub, "list", "list zones", cmd_zone_list), json_output=True)
    p = add_command(sub, "show", "a zone's serial and records", cmd_zone_show)
    p.add_argument("zone", metavar="ZONE")
    add_admin_options(p, json_output=True)
    p = add_command(sub, "export", "the zone as an RFC 1035 file on stdout", cmd_zone_export)
    p.add_argument("zone", metavar="ZONE")
    add_admin_options(p)
    p = add_command(sub, "ttl", "the TTL of a federation zone's own records and DNSKEY RRset "
                    "(set at the origin, for all of them: also how long a joining node waits "
                    "before it serves)", cmd_zone_ttl)
    p.add_argument("zone", metavar="ZONE")
    p.add_argument("seconds", metavar="SECONDS", type=int)
    add_admin_options(p)
    p = add_command(sub, "import", "load an RFC 1035 zone file", cmd_zone_import)
    p.add_argument("file", metavar="FILE")
    p.add_argument("--origin", metavar="ZONE", help="origin, if the file has no $ORIGIN")
    p.add_argument("--replace", action="store_true", help="replace an existing zone")
    _add_dnssec_choices(p)
    add_admin_options(p)

    secondary = add_group(sub, "secondary", "secondaries: NOTIFY and TSIG-authorised transfers", examples="""
trustchain zone secondary add example.net '[2001:db8::53]:53' --data-dir data
trustchain zone secondary list --json --data-dir data
trustchain zone secondary remove example.net '[2001:db8::53]:53' --data-dir data
""")
    p = add_command(secondary, "add", "let a secondary transfer ZONE (prints its TSIG key)",
                    cmd_secondary_add)
    p.add_argument("zone", metavar="ZONE")
    p.add_argument("secondary", metavar="[ADDR]:PORT")
    p.add_argument("--key", metavar="NAME", help="TSIG key name (default: xfr.ZONE; created if new)")
    add_admin_options(p, json_output=True)
    p = add_command(secondary, "remove", "stop serving a secondary", cmd_secondary_remove)
    p.add_argument("zone", metavar="ZONE")
    p.add_argument("secondary", metavar="[ADDR]:PORT")
    add_admin_options(p)
    add_admin_options(add_command(secondary, "list", "list secondaries", cmd_secondary_list),
                      json_output=True)


def _add_dnssec_choices(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("DNSSEC of a new zone")
    group.add_argument("--algorithm", type=int, choices=[13, 15], default=13,
                       help="13 ECDSA P-256 (default) or 15 Ed25519")
    group.add_argument("--csk", action="store_true",
                       help="one combined signing key instead of a KSK and a ZSK")
    group.add_argument("--nsec3", action="store_true",
                       help="NSEC3 denial (RFC 9276: no salt, no extra iterations)")


def _dnssec_choice(args: argparse.Namespace) -> dict[str, Any]:
    return {"algorithm": args.algorithm, "csk": args.csk, "nsec3": args.nsec3}


def cmd_zone_list(args: argparse.Namespace) -> int:
    print_listing(args, admin_call(args, "zone-list"), ["zone", "serial", "rrsets"], "no zones")
    return 0


def cmd_zone_create(args: argparse.Namespace) -> int:
    body = {"zone": args.zone, "ns": args.ns or [], "addresses": args.address or [],
            "dnssec": _dnssec_choice(args)}
    return _new_zone(args, "zone-create", body, "created", email=args.email)


def cmd_zone_delete(args: argparse.Namespace) -> int:
    result = admin_call(args, "zone-delete", {"zone": args.zone})
    print(f"zone {result['zone']} deleted")
    return 0


def cmd_zone_ttl(args: argparse.Namespace) -> int:
    result = admin_call(args, "zone-ttl", {"zone": args.zone, "ttl": args.seconds})
    print(f"zone {result['zone']}: the federation's records now have TTL {args.seconds}, "
          f"committed at height {result['height']}")
    return 0


def cmd_zone_import(args: argparse.Namespace) -> int:
    try:
        text = Path(args.file).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise LocalError(f"cannot read {args.file}: {exc}") from None
    body = {"text": text, "replace": args.replace, "dnssec": _dnssec_choice(args)}
    report = progress(sys.stderr.isatty())
    report(f"sending {args.file} ({len(text.encode()):,} bytes, {text.count(chr(10)):,} "
           "lines); the node parses, checks and signs it in one step")
    return _new_zone(args, "zone-import", body, "imported", origin=args.origin)


def _new_zone(args: argparse.Namespace, method: str, body: dict[str, Any], done: str,
              **optional: str | None) -> int:
    """Send a zone-create or zone-import; options left out are not sent (the node's
    defaults apply)."""
    body.update({name: value for name, value in optional.items() if value})
    result = admin_call(args, method, body)
    print(f"zone {result['zone']} {done}, serial {result['serial']}")
    return 0


def cmd_zone_show(args: argparse.Namespace) -> int:
    result = admin_call(args, "zone-export", {"zone": args.zone})
    if args.json:
        print_json(result)
    else:
        print(f"zone {result['zone']}  serial {result['serial']}")
        sys.stdout.write(result["text"])
    return 0


def cmd_zone_export(args: argparse.Namespace) -> int:
    sys.stdout.write(admin_call(args, "zone-export", {"zone": args.zone})["text"])
    return 0


def cmd_secondary_list(args: argparse.Namespace) -> int:
    print_listing(args, admin_call(args, "secondary-list"), ["zone", "address", "port", "key"],
                  "no secondaries")
    return 0


def _secondary(args: argparse.Namespace) -> dict[str, Any]:
    host, port = parse_server(args.secondary)
    return {"zone": args.zone, "address": host, "port": port}


def cmd_secondary_remove(args: argparse.Namespace) -> int:
    admin_call(args, "secondary-remove", _secondary(args))
    print(f"{args.secondary} no longer transfers {args.zone}")
    return 0


def cmd_secondary_add(args: argparse.Namespace) -> int:
    body = _secondary(args)
    if args.key:
        body["key"] = args.key
    result = admin_call(args, "secondary-add", body)
    if args.json:
        print_json(result)
        return 0
    print(f"{args.secondary} now transfers {result['zone']} and gets NOTIFY on every change.")
    print("Its TSIG key (keep it secret; give it to the secondary's configuration):")
    print(f"  name:      {result['key']}")
    print(f"  algorithm: {result['algorithm']}")
    print(f"  secret:    {result['secret']}")
    return 0


# --- record ---------------------------------------------------------------------


def _register_record(commands: argparse._SubParsersAction) -> None:
    sub = add_group(commands, "record", "records in the zones (admin)", examples="""
trustchain record add www.example.net AAAA 2001:db8::80 --data-dir data
trustchain record add example.net TXT "v=spf1 -all" --ttl 300 --data-dir data   # one string
trustchain record add example.net TXT part-one part-two --data-dir data         # two strings
trustchain record delete www.example.net AAAA --data-dir data
trustchain record list example.net --json --data-dir data
""")
    p = add_command(sub, "add", "add a record (the zone is found from NAME)", cmd_record_add)
    p.add_argument("name", metavar="NAME")
    p.add_argument("type", metavar="TYPE")
    p.add_argument("value", metavar="VALUE", nargs="+")
    p.add_argument("--ttl", type=int, default=3600, help="seconds (default: 3600)")
    add_admin_options(p)
    add_credential_options(p)  # (a network's own: _acme-challenge TXT records only)
    p = add_command(sub, "delete", "delete records at NAME (all, of TYPE, or that VALUE)",
                    cmd_record_delete)
    p.add_argument("name", metavar="NAME")
    p.add_argument("type", metavar="TYPE", nargs="?")
    p.add_argument("value", metavar="VALUE", nargs="*")
    add_admin_options(p)
    add_credential_options(p)
    p = add_command(sub, "list", "list the records of a zone", cmd_record_list)
    p.add_argument("zone", metavar="ZONE")
    add_admin_options(p, json_output=True)


def cmd_record_list(args: argparse.Namespace) -> int:
    rows = admin_call(args, "records-list", {"zone": args.zone})
    if args.json:
        print_json(rows)
    else:
        print_rows(rows, ["name", "ttl", "type", "data"])
    return 0


def cmd_record_add(args: argparse.Namespace) -> int:
    return _change(args, {"add": [{"name": args.name, "type": args.type, "ttl": args.ttl,
                                   "data": record_data(args.type, args.value)}]})


def cmd_record_delete(args: argparse.Namespace) -> int:
    selector: dict[str, str] = {"name": args.name}
    if args.type:
        selector["type"] = args.type
    if args.value:
        selector["data"] = record_data(args.type or "", args.value)
    return _change(args, {"delete": [selector]})


def record_data(rdtype: str, values: list[str]) -> str:
    """The record's data in zone-file form from the command's arguments.

    For TXT (and SPF) each argument is one string as the user means it
    (``record add NAME TXT "hello world"`` is one string, two arguments two), split
    into 255-byte character-strings when longer (RFC 1035 3.3.14: a DKIM key, say),
    quoted and escaped by dnspython; arguments already quoted as in a zone file
    (``'"a" "b"'``) are taken as written.  Other types: the arguments joined by spaces.
    """
    if rdtype.upper() not in ("TXT", "SPF"):
        return " ".join(values)
    if all(len(v) >= 2 and v.startswith('"') and v.endswith('"') for v in values):
        return " ".join(values)
    import dns.rdataclass
    import dns.rdatatype
    from dns.rdtypes.txtbase import TXTBase

    chunks = [raw[i:i + 255] or b"" for raw in (v.encode() for v in values)
              for i in range(0, max(len(raw), 1), 255)]
    return TXTBase(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype.upper()),
                   chunks).to_text()


def _change(args: argparse.Namespace, change: dict[str, Any]) -> int:
    """Apply one change set (the node finds the zone and bumps its serial once)."""
    result = admin_call(args, "records-change", change)
    print(f"zone {result['zone']} now at serial {result['serial']}")
    return 0
