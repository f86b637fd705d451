"""``ca ...`` and ``audit verify``: the certificate authority, over the admin API (or a
federated network's credential), and its root key and audit log in the data directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trustchain.cli.common import (
    add_command,
    add_data_dir,
    add_group,
    add_json,
    add_key_store,
    initialised,
    print_json,
    print_listing,
)
from trustchain.cli.node import move_root_key
from trustchain.cli.remote import add_admin_options, add_credential_options, admin_call
from trustchain.errors import KeyNotFoundError, LocalError

if TYPE_CHECKING:
    from trustchain.keystore import KeyStore


def register(commands: argparse._SubParsersAction) -> None:
    sub = add_group(commands, "ca", "the certificate authority (admin)", examples="""
trustchain network register alpha --data-dir data      # the CA issues for registered networks
trustchain ca issue --csr www.csr --data-dir data > www.pem
trustchain ca list --network alpha --json --data-dir data
trustchain ca revoke 3f2a9c --reason key-compromise --data-dir data
trustchain ca rotate alpha --data-dir data
""")
    p = add_command(sub, "issue", "certificate for a CSR, logged in two CT logs; PEM chain "
                    "on stdout", cmd_ca_issue)
    p.add_argument("--csr", required=True, metavar="FILE", help="PEM or DER CSR ('-': stdin)")
    p.add_argument("--network", metavar="N",
                   help="the registered network the names belong to (default: found from them; "
                   "with --cert, the credential's network)")
    p.add_argument("--profile", metavar="P",
                   help="server-90d (default), short-lived, node, network-admin")
    add_admin_options(p)
    add_credential_options(p)
    p = add_command(sub, "revoke", "revoke a certificate by serial (hex)", cmd_ca_revoke)
    p.add_argument("serial", metavar="SERIAL")
    p.add_argument("--reason", default="unspecified", metavar="R",
                   help="unspecified, key-compromise, affiliation-changed, superseded, "
                   "cessation-of-operation, privilege-withdrawn")
    add_admin_options(p)
    add_credential_options(p)
    p = add_command(sub, "rotate", "a new intermediate for a network (the old one keeps "
                    "answering for its certificates)", cmd_ca_rotate)
    p.add_argument("network", metavar="NETWORK")
    add_admin_options(p)
    p = add_command(sub, "list", "issued certificates, newest first", cmd_ca_list)
    p.add_argument("--network", metavar="N")
    add_admin_options(p, json_output=True)
    add_credential_options(p)
    p = add_command(sub, "export-root-key", "move the genesis root key out of the key store "
                    "into FILE, to keep offline (node stopped)", cmd_ca_export_root_key)
    p.add_argument("--out", required=True, metavar="FILE")
    add_key_store(p)
    p = add_command(sub, "import-root-key", "bring an exported genesis root key back "
                    "(node stopped)", cmd_ca_import_root_key)
    p.add_argument("file", metavar="FILE")
    add_key_store(p)

    sub = add_group(commands, "audit", "the CA's hash-chained audit log", examples="""
trustchain audit verify --data-dir data
trustchain audit verify --data-dir data --json
""")
    p = add_command(sub, "verify", "recompute the hash chain; exit 1 if anything was altered",
                    cmd_audit_verify)
    add_data_dir(p)
    add_json(p)


# --- over the admin API -----------------------------------------------------------


def cmd_ca_issue(args: argparse.Namespace) -> int:
    try:
        csr = Path(args.csr).read_bytes() if args.csr != "-" else sys.stdin.buffer.read()
        text = csr.decode("ascii") if csr.lstrip().startswith(b"-----BEGIN") else None
    except (OSError, UnicodeDecodeError) as exc:
        raise LocalError(f"cannot read the CSR {args.csr}: {exc}") from None
    if text is None:  # DER: the node takes PEM
        import base64
        text = ("-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(csr).decode()
                + "-----END CERTIFICATE REQUEST-----\n")
    body: dict[str, Any] = {"csr": text, "network": args.network}
    if args.profile:
        body["profile"] = args.profile
    result = admin_call(args, "issue", body, service="ca")
    sys.stdout.write(result["chain"])
    print(f"issued serial {result['serial']}", file=sys.stderr)
    logs = result.get("logs", [])
    if logs and not any("/" in ref for ref in logs):
        print(f"SCTs from this node's own logs ({', '.join(logs)}): no other operator's logs "
              "are known (one node, or the federation's log list is not committed yet)",
              file=sys.stderr)
    elif logs:
        print(f"SCTs from logs of other operators: {', '.join(logs)}", file=sys.stderr)
    return 0


def cmd_ca_revoke(args: argparse.Namespace) -> int:
    result = admin_call(args, "revoke", {"serial": args.serial, "reason": args.reason},
                        service="ca")
    line = f"revoked serial {result['serial']} ({result['reason']})"
    if "height" in result:  # issued at another node: revoked there once committed
        line += (f", committed at height {result['height']}: the node that issued it "
                 "revokes it")
    print(line)
    return 0


def cmd_ca_rotate(args: argparse.Namespace) -> int:
    result = admin_call(args, "rotate", {"network": args.network}, service="ca")
    print(f"network {result['network']}: new intermediate, generation "
          f"{result['generation']}, valid until {result['not_after']}")
    return 0


def cmd_ca_list(args: argparse.Namespace) -> int:
    rows = admin_call(args, "list", {"network": args.network}, service="ca")
    print_listing(args, rows, ["serial", "network", "profile", "state", "not_after", "names"],
                  "no certificates")
    return 0


# --- in the data directory, the node stopped ----------------------------------------

def cmd_ca_export_root_key(args: argparse.Namespace) -> int:
    out = Path(args.out)

    def export(keystore: KeyStore, purpose: str) -> tuple[str, str, str]:
        try:
            key_id = keystore.active(purpose).id
        except KeyNotFoundError:
            raise LocalError("the genesis root key is not in this key store "
                             "(exported already, or a joined node)") from None
        try:
            keystore.export_key(key_id, out)
        except FileExistsError:
            raise LocalError(f"{args.out} exists; choose a new file") from None
        except OSError as exc:
            raise LocalError(f"cannot write {args.out}: {exc.strerror}") from None
        return key_id, "key.export", f"genesis root key {key_id} moved to {args.out}"

    move_root_key(args.data_dir, args.passphrase_file, export)
    print("keep it offline; it is still encrypted under this node's passphrase. Creating "
          "or rotating network intermediates needs it back (ca import-root-key).")
    return 0


def cmd_ca_import_root_key(args: argparse.Namespace) -> int:
    def bring_back(keystore: KeyStore, purpose: str) -> tuple[str, str, str]:
        record = keystore.import_key(Path(args.file))
        if record.purpose != purpose:
            raise LocalError(f"{args.file} holds a {record.purpose} key, not the genesis root")
        return record.id, "key.import", f"genesis root key {record.id} is back in the key store"

    move_root_key(args.data_dir, args.passphrase_file, bring_back)
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Recompute the audit log's hash chain from the database (no passphrase needed)."""
    from trustchain.ca.audit import ChainVerifier
    from trustchain.storage.audit import AuditLog
    from trustchain.storage.database import open_database
    from trustchain.storage.migrations import current_version

    layout = initialised(args.data_dir)
    with open_database(layout.path, readonly=True) as db:
        # A node that never ran has no audit table yet: its log is empty, so intact.
        report = AuditLog(db).verify() if current_version(db, "audit") else \
            ChainVerifier().report()
    if args.json:
        print_json(report.as_dict())
    elif report.ok:
        print(f"audit log intact: {report.count} records, head {report.head_hash.hex()}")
    else:
        print(f"audit log TAMPERED: {report.problem}", file=sys.stderr)
    return 0 if report.ok else 1
