"""The ``trustchain`` command line (see docs/operations.md and shared cli.md).

Exit status: 0 on success, 1 for a refused or failed operation (one line on
stderr, no traceback), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trustchain import __version__
from trustchain.config import DEFAULT_NETWORK_NAME, DEFAULT_ORIGIN, NodeConfig
from trustchain.errors import TrustchainError

log = logging.getLogger("trustchain")


def _default_data_dir() -> Path:
    return Path(os.environ.get("TRUSTCHAIN_DATA_DIR", "data"))


def _progress(enabled: bool) -> Callable[[str], None]:
    def report(message: str) -> None:
        if enabled:
            print(f"… {message}", file=sys.stderr, flush=True)

    return report


def _passphrase(args: argparse.Namespace, *, confirm: bool = False) -> Callable[[], str]:
    from trustchain.passphrase import obtain_passphrase

    return lambda: obtain_passphrase(args.passphrase_file, confirm=confirm)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


# --- commands ---------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    from bootstrap.init import init_node
    from trustchain.keystore import KeyType, check_passphrase_strength

    passphrase = _passphrase(args, confirm=True)()
    check_passphrase_strength(passphrase)
    result = init_node(
        args.data_dir,
        passphrase,
        network_name=args.network_name,
        origin=args.origin,
        now=datetime.now(UTC),
        root_key_type=KeyType(args.root_key_type),
        progress=_progress(sys.stderr.isatty()),
    )
    print(f"initialised node {result.node_id} in {args.data_dir}")
    print(f"network {result.genesis.body.network_name}, origin {result.genesis.body.origin}")
    print(f"genesis pin (SHA-256): {result.pin}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from trustchain import node

    overrides = {name: getattr(args, name) for name in NodeConfig.model_fields}
    if overrides.get("listen") is not None:
        overrides["listen"] = [a for item in overrides["listen"] for a in item.split(",") if a]
    node.run(args.data_dir, _passphrase(args), overrides)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from trustchain.status import node_status, render_status

    status = node_status(args.data_dir)
    if args.json:
        _print_json(status)
    else:
        print(render_status(status))
    return 0


def cmd_genesis_show(args: argparse.Namespace) -> int:
    from bootstrap.genesis import genesis_pin, parse_genesis
    from trustchain.datadir import DataDir

    layout = DataDir(args.data_dir)
    layout.require_initialised()
    data = layout.genesis_file.read_bytes()
    pin = genesis_pin(data)
    if args.root_pem:
        from cryptography.hazmat.primitives.serialization import Encoding

        root = parse_genesis(data).root_certificate
        sys.stdout.write(root.public_bytes(Encoding.PEM).decode())
        return 0
    if not args.json:
        print(pin)
        return 0
    document = parse_genesis(data)
    root = document.root_certificate
    _print_json(
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


def cmd_genesis_verify(args: argparse.Namespace) -> int:
    from bootstrap.genesis import normalise_pin, verify_genesis
    from trustchain.errors import GenesisError

    normalise_pin(args.pin)  # a malformed pin is reported before the file is read
    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        raise GenesisError(f"cannot read {args.file}: {exc.strerror}") from None
    document = verify_genesis(data, args.pin)
    body = document.body
    if args.json:
        _print_json({"valid": True, "network_name": body.network_name, "origin": body.origin,
                     "validators": len(body.validators)})
    else:
        print(
            f"OK: genesis of network {body.network_name} ({body.origin}), "
            f"{len(body.validators)} validator(s), all signatures valid"
        )
    return 0


def parse_server(text: str) -> tuple[str, int]:
    """``[ADDR]:PORT``, ``ADDR:PORT`` (IPv4 or name) -> (host, port)."""
    from trustchain.errors import LocalError

    host, sep, port = text.rpartition(":")
    if text.startswith("[") and "]:" in text:
        host, _, port = text[1:].partition("]:")
    elif ":" in host or not sep:
        raise LocalError(f"--server {text!r}: write [ADDR]:PORT (IPv6 in brackets)")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise LocalError(f"--server {text!r}: invalid port")
    return host, int(port)


def _trust_anchor(args: argparse.Namespace) -> tuple[Any, str]:
    """The pinned genesis root and zone origin a client checks the server against."""
    from bootstrap.genesis import verify_genesis
    from trustchain.datadir import DataDir
    from trustchain.errors import GenesisError, LocalError
    from trustchain.storage.database import open_database
    from trustchain.storage.node import NodeStore

    if args.genesis is not None:
        if args.pin is None:
            raise LocalError("--genesis needs --pin SHA256 (the network's trust anchor)")
        try:
            data = Path(args.genesis).read_bytes()
        except OSError as exc:
            raise GenesisError(f"cannot read {args.genesis}: {exc.strerror}") from None
        document = verify_genesis(data, args.pin)
    else:
        layout = DataDir(args.data_dir)
        layout.require_initialised()
        with open_database(layout.path, readonly=True) as db:
            identity = NodeStore(db).identity()
        if identity is None:
            raise LocalError(f"{layout.path} holds no node identity")
        document = verify_genesis(layout.genesis_file.read_bytes(), identity.genesis_sha256)
    return document.root_certificate, document.body.origin.rstrip(".")


def cmd_query(args: argparse.Namespace) -> int:
    import asyncio

    import dns.exception
    import dns.message
    import dns.query
    import dns.rdatatype

    from trustchain.errors import LocalError, RemoteError

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
            root, origin = _trust_anchor(args)
            wire = asyncio.run(_quic_query(args, host, port, root, args.server_name or origin, query))
            response = dns.message.from_wire(wire)
    except dns.exception.Timeout:
        raise RemoteError(f"no answer from {args.server} over {args.via} in {args.timeout}s") from None
    except (OSError, dns.exception.DNSException) as exc:
        raise RemoteError(f"query over {args.via} to {args.server} failed: {exc}") from None
    print(response.to_text())
    return 0


async def _quic_query(args: argparse.Namespace, host: str, port: int, root: Any,
                      server_name: str, query: Any) -> bytes:
    from transport.client import connect
    from trustchain.errors import RemoteError
    from trustchain.stoq.doq import ALPN as DOQ_ALPN
    from trustchain.stoq.framing import Status

    alpn = DOQ_ALPN if args.via == "doq" else "stoq/1"
    async with connect(host, port, root=root, server_name=server_name, alpn=alpn,
                       timeout=args.timeout) as client:
        if args.via == "doq":
            query.id = 0
            return await asyncio_wait(client.doq_query(query.to_wire()), args.timeout)
        response = await asyncio_wait(client.request("dns", "query", query.to_wire()), args.timeout)
        if response.status != Status.OK:
            raise RemoteError(f"server answered {response.status}: {response.message.decode()}")
        return response.message


async def asyncio_wait(awaitable: Any, timeout: float) -> Any:
    import asyncio

    from trustchain.errors import RemoteError

    try:
        return await asyncio.wait_for(awaitable, timeout)
    except TimeoutError:
        raise RemoteError(f"no answer in {timeout}s") from None


def cmd_join(args: argparse.Namespace) -> int:
    from bootstrap.join import join_network
    from trustchain.errors import GenesisError
    from trustchain.keystore import check_passphrase_strength

    try:
        genesis_bytes = Path(args.genesis).read_bytes()
    except OSError as exc:
        raise GenesisError(f"cannot read {args.genesis}: {exc.strerror}") from None
    passphrase = _passphrase(args, confirm=True)()
    check_passphrase_strength(passphrase)
    result = join_network(
        args.data_dir, passphrase, genesis_bytes=genesis_bytes, pin=args.pin,
        peer=parse_server(args.peer), server_name=args.server_name,
        now=lambda: datetime.now(UTC), wait_seconds=args.wait,
        # The approval hint must reach the operator even without a terminal.
        progress=lambda m: print(f"… {m}", file=sys.stderr, flush=True),
    )
    print(f"joined network {result.network_name} as node {result.node_id} in {args.data_dir}")
    print(f"node certificate valid until {result.certificate.not_valid_after_utc.isoformat()}; "
          "mutual TLS with the peer verified")
    return 0


def _file_identity(args: argparse.Namespace) -> Any:
    """A client identity from --cert (PEM: the certificate, then its issuer) and --key (PEM;
    an encrypted key is opened with the passphrase)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from bootstrap.transport_certs import TlsIdentity
    from trustchain.errors import LocalError

    if args.key is None:
        raise LocalError("--cert needs --key FILE (the credential's private key)")
    try:
        chain = x509.load_pem_x509_certificates(Path(args.cert).read_bytes())
        key_pem = Path(args.key).read_bytes()
    except OSError as exc:
        raise LocalError(f"cannot read {exc.filename}: {exc.strerror}") from None
    except ValueError as exc:
        raise LocalError(f"{args.cert}: no PEM certificates ({exc})") from None
    try:
        password = _passphrase(args)().encode() if b"ENCRYPTED" in key_pem else None
        key = load_pem_private_key(key_pem, password)
    except (ValueError, TypeError) as exc:
        raise LocalError(f"{args.key}: cannot load the private key ({exc})") from None
    return TlsIdentity(chain[0], chain[1:], key)  # type: ignore[arg-type]


def _admin_call(args: argparse.Namespace, method: str, message: bytes,
                service: str = "admin") -> Any:
    """Call a method on the node in --data-dir with its admin certificate, or with the
    credential in --cert/--key (a federated network's admin) on --server."""
    import asyncio

    from bootstrap.transport_certs import ADMIN_TLS_PURPOSE, INFRA_CA_PURPOSE, TlsIdentity
    from transport.client import connect
    from trustchain.config import load_config
    from trustchain.datadir import DataDir
    from trustchain.errors import LocalError, RemoteError
    from trustchain.keystore import KeyStore
    from trustchain.storage.database import open_database
    from trustchain.storage.node import NodeStore

    if getattr(args, "cert", None) is not None:
        if not args.server:
            raise LocalError("--cert needs --server [ADDR]:PORT (the node to ask)")
        root, origin = _trust_anchor(args)
        identity = _file_identity(args)
        host, port = parse_server(args.server)
    else:
        layout = DataDir(args.data_dir)
        layout.require_initialised()
        root, origin = _trust_anchor(argparse.Namespace(genesis=None, pin=None,
                                                        data_dir=args.data_dir))
        keystore = KeyStore.open(layout.keys_dir, _passphrase(args)())
        with open_database(layout.path, readonly=True) as db:
            store = NodeStore(db)
            cert = store.latest_certificate(ADMIN_TLS_PURPOSE)
            issuer = store.latest_certificate(INFRA_CA_PURPOSE)
        if cert is None or issuer is None:
            raise LocalError("this node holds no admin certificate (only founding nodes do, "
                             "so far)")
        key = keystore.private_key(keystore.active(ADMIN_TLS_PURPOSE).id)
        identity = TlsIdentity(cert, [issuer], key)  # type: ignore[arg-type]
        if args.server:
            host, port = parse_server(args.server)
        else:
            config = load_config(layout.path)
            host, port = config.local_address(), config.quic_port
            if port == 0:
                raise LocalError("the node's QUIC port is 0 (chosen at start): pass --server")

    async def call() -> Any:
        async with connect(host, port, root=root, server_name=origin, identity=identity) as node:
            return await node.request(service, method, message)

    response = asyncio.run(call())
    if response.status != 200:
        raise RemoteError(json.loads(response.message).get("detail", response.message.decode()))
    return json.loads(response.message)


def _print_listing(args: argparse.Namespace, rows: list[dict[str, Any]], columns: list[str],
                   empty: str) -> None:
    """``--json`` as is, else a table of ``columns``, or ``empty`` when there are no rows."""
    if args.json:
        _print_json(rows)
    elif not rows:
        print(empty)
    else:
        _print_rows(rows, columns)


def _print_rows(rows: list[dict[str, Any]], columns: list[str]) -> None:
    widths = {c: max([len(c)] + [len(str(r[c])) for r in rows]) for c in columns}
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns).rstrip())


def cmd_zone(args: argparse.Namespace) -> int:
    command = args.zone_command
    if command == "list":
        _print_listing(args, _admin_call(args, "zone-list", b""), ["zone", "serial", "rrsets"],
                       "no zones")
        return 0
    if command == "create":
        body = {"zone": args.zone, "ns": args.ns or [], "addresses": args.address or [],
                "dnssec": {"algorithm": args.algorithm, "csk": args.csk, "nsec3": args.nsec3}}
        if args.email:
            body["email"] = args.email
        result = _admin_call(args, "zone-create", json.dumps(body).encode())
        print(f"zone {result['zone']} created, serial {result['serial']}")
        return 0
    if command == "delete":
        result = _admin_call(args, "zone-delete", json.dumps({"zone": args.zone}).encode())
        print(f"zone {result['zone']} deleted")
        return 0
    if command == "import":
        from trustchain.errors import LocalError

        try:
            text = Path(args.file).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise LocalError(f"cannot read {args.file}: {exc}") from None
        body = {"text": text, "replace": args.replace,
                "dnssec": {"algorithm": args.algorithm, "csk": args.csk, "nsec3": args.nsec3}}
        if args.origin:
            body["origin"] = args.origin
        result = _admin_call(args, "zone-import", json.dumps(body).encode())
        print(f"zone {result['zone']} imported, serial {result['serial']}")
        return 0
    result = _admin_call(args, "zone-export", json.dumps({"zone": args.zone}).encode())
    if command == "show" and args.json:
        _print_json(result)
    elif command == "show":
        print(f"zone {result['zone']}  serial {result['serial']}")
        sys.stdout.write(result["text"])
    else:
        sys.stdout.write(result["text"])
    return 0


def cmd_secondary(args: argparse.Namespace) -> int:
    command = args.secondary_command
    if command == "list":
        _print_listing(args, _admin_call(args, "secondary-list", b""),
                       ["zone", "address", "port", "key"], "no secondaries")
        return 0
    host, port = parse_server(args.secondary)
    body: dict[str, Any] = {"zone": args.zone, "address": host, "port": port}
    if command == "remove":
        _admin_call(args, "secondary-remove", json.dumps(body).encode())
        print(f"{args.secondary} no longer transfers {args.zone}")
        return 0
    if args.key:
        body["key"] = args.key
    result = _admin_call(args, "secondary-add", json.dumps(body).encode())
    if args.json:
        _print_json(result)
        return 0
    print(f"{args.secondary} now transfers {result['zone']} and gets NOTIFY on every change.")
    print("Its TSIG key (keep it secret; give it to the secondary's configuration):")
    print(f"  name:      {result['key']}")
    print(f"  algorithm: {result['algorithm']}")
    print(f"  secret:    {result['secret']}")
    return 0


def cmd_network(args: argparse.Namespace) -> int:
    if args.network_command == "register":
        body = {"name": args.name, "delegate": args.delegate or [], "ds": args.ds or [],
                "prefixes": args.prefix or []}
        result = _admin_call(args, "network-register", json.dumps(body).encode())
        print(f"network {result['name']}: zone {result['zone']} ({result['mode']}), "
              f"name servers {', '.join(result['name_servers'])}"
              + (f", address blocks {', '.join(result['prefixes'])}" if result["prefixes"] else ""))
        return 0
    rows = _admin_call(args, "network-list", b"")
    if args.network_command == "show":
        rows = [r for r in rows if r["name"] == args.name]
        if not rows:
            from trustchain.errors import LocalError

            raise LocalError(f"no network {args.name}")
    if args.json:
        _print_json(rows if args.network_command == "list" else rows[0])
    elif not rows:
        print("no networks")
    else:
        for row in rows:
            row["prefixes"] = ",".join(row.get("prefixes", [])) or "-"
        _print_rows(rows, ["name", "zone", "mode", "prefixes", "registered_at"])
    return 0


def _root_key_move(args: argparse.Namespace) -> int:
    """``ca export-root-key`` / ``ca import-root-key``: with the node stopped (the lock held)."""
    from datetime import UTC, datetime

    from bootstrap.init import ROOT_KEY_PURPOSE
    from trustchain.datadir import DataDir
    from trustchain.errors import KeyNotFoundError, LocalError
    from trustchain.keystore import KeyStore
    from trustchain.storage.audit import AUDIT_SCHEMA, AuditLog
    from trustchain.storage.database import open_database
    from trustchain.storage.migrations import migrate

    layout = DataDir(args.data_dir)
    layout.require_initialised()
    with layout.lock():
        keystore = KeyStore.open(layout.keys_dir, _passphrase(args)())
        now = datetime.now(UTC)
        if args.ca_command == "export-root-key":
            try:
                key_id = keystore.active(ROOT_KEY_PURPOSE).id
            except KeyNotFoundError:
                raise LocalError("the genesis root key is not in this key store "
                                 "(exported already, or a joined node)") from None
            try:
                keystore.export_key(key_id, Path(args.out))
            except FileExistsError:
                raise LocalError(f"{args.out} exists; choose a new file") from None
            except OSError as exc:
                raise LocalError(f"cannot write {args.out}: {exc.strerror}") from None
            kind, message = "key.export", f"genesis root key {key_id} moved to {args.out}"
        else:
            record = keystore.import_key(Path(args.file))
            if record.purpose != ROOT_KEY_PURPOSE:
                raise LocalError(f"{args.file} holds a {record.purpose} key, not the genesis root")
            key_id, kind = record.id, "key.import"
            message = f"genesis root key {key_id} is back in the key store"
        with open_database(layout.path) as db:
            migrate(db, AUDIT_SCHEMA)
            AuditLog(db).append(now, kind, "operator", {"key_id": key_id,
                                                        "purpose": ROOT_KEY_PURPOSE})
    print(message)
    if kind == "key.export":
        print("keep it offline; it is still encrypted under this node's passphrase. Creating "
              "or rotating network intermediates needs it back (ca import-root-key).")
    return 0


def cmd_ca(args: argparse.Namespace) -> int:
    from trustchain.errors import LocalError

    command = args.ca_command
    if command in ("export-root-key", "import-root-key"):
        return _root_key_move(args)
    if command == "issue":
        try:
            csr = Path(args.csr).read_bytes() if args.csr != "-" else sys.stdin.buffer.read()
            text = csr.decode("ascii") if csr.lstrip().startswith(b"-----BEGIN") else None
        except (OSError, UnicodeDecodeError) as exc:
            raise LocalError(f"cannot read the CSR {args.csr}: {exc}") from None
        if text is None:
            import base64
            text = ("-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(csr).decode()
                    + "-----END CERTIFICATE REQUEST-----\n")
        body: dict[str, Any] = {"csr": text, "network": args.network}
        if args.profile:
            body["profile"] = args.profile
        result = _admin_call(args, "issue", json.dumps(body).encode(), service="ca")
        sys.stdout.write(result["chain"])
        print(f"issued serial {result['serial']}", file=sys.stderr)
        return 0
    if command == "revoke":
        result = _admin_call(args, "revoke", json.dumps(
            {"serial": args.serial, "reason": args.reason}).encode(), service="ca")
        print(f"revoked serial {result['serial']} ({result['reason']})")
        return 0
    if command == "rotate":
        result = _admin_call(args, "rotate", json.dumps({"network": args.network}).encode(),
                             service="ca")
        print(f"network {result['network']}: new intermediate, generation "
              f"{result['generation']}, valid until {result['not_after']}")
        return 0
    rows = _admin_call(args, "list", json.dumps({"network": args.network}).encode(), service="ca")
    _print_listing(args, rows, ["serial", "network", "profile", "state", "not_after", "names"],
                   "no certificates")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    """Recompute the audit log's hash chain from the database (no passphrase needed)."""
    from trustchain.datadir import DataDir
    from trustchain.storage.audit import AuditLog
    from trustchain.storage.database import open_database

    layout = DataDir(args.data_dir)
    layout.require_initialised()
    with open_database(layout.path, readonly=True) as db:
        report = AuditLog(db).verify()
    if args.json:
        _print_json(report.as_dict())
    elif report.ok:
        print(f"audit log intact: {report.count} records, head {report.head_hash.hex()}")
    else:
        print(f"audit log TAMPERED: {report.problem}", file=sys.stderr)
    return 0 if report.ok else 1


def cmd_sim(args: argparse.Namespace) -> int:
    """``trustchain sim``: run scenario files through the real consensus code."""
    from simulations import harness
    from trustchain.errors import LocalError

    if args.sim_command == "list":
        rows = []
        for path in sorted(harness.SCENARIO_DIR.glob("*.toml")):
            try:
                scenario = harness.load_scenario(path)
            except ValueError as exc:
                raise LocalError(str(exc)) from None
            rows.append({"scenario": path.stem, "validators": scenario.validators,
                         "description": scenario.description})
        _print_listing(args, rows, ["scenario", "validators", "description"], "no scenarios")
        return 0
    path = harness.find_scenario(args.scenario)
    if not path.exists():
        raise LocalError(f"no scenario {args.scenario!r} (trustchain sim list shows them)")
    try:
        scenario = harness.load_scenario(path)
    except ValueError as exc:
        raise LocalError(str(exc)) from None
    if args.runs < 1:
        raise LocalError("--runs must be at least 1")
    results = []
    show = sys.stderr.isatty()
    for i in range(args.runs):
        if show:
            done = int(30 * i / args.runs)
            print(f"\r[{'#' * done}{'.' * (30 - done)}] run {i + 1}/{args.runs}", end="",
                  file=sys.stderr, flush=True)
        results.append(harness.run(scenario, args.seed + i))
    if show:
        print(f"\r[{'#' * 30}] {args.runs}/{args.runs} runs" + " " * 10, file=sys.stderr)
    totals = harness.summary(results)
    ok = harness.passed(scenario, results)
    if args.plot:
        try:
            harness.plot(results, Path(args.plot), f"{scenario.name}: commit latency")
        except ImportError:
            raise LocalError("--plot needs matplotlib (pip install matplotlib)") from None
    if args.json:
        _print_json({**totals, "scenario": scenario.name, "passed": ok,
                     "violations": [v for r in results for v in r.safety_violations]})
        return 0 if ok else 1
    print(f"scenario {scenario.name}: {scenario.validators} validators, "
          f"byzantine {scenario.byzantine or 'none'}, seeds {args.seed}..{args.seed + args.runs - 1}")
    print(f"  decisions          {totals['decisions']} (latency p50 {totals['latency_p50_s']} s, "
          f"p99 {totals['latency_p99_s']} s)")
    print(f"  messages           {totals['messages']}")
    print(f"  safety violations  {totals['safety_violations']}")
    print(f"  live after GST     {totals['live']} of {totals['runs']} runs")
    print(f"  equivocators       {totals['equivocators']} seen, {totals['caught']} with evidence "
          f"({totals['bad_evidence']} invalid)")
    if scenario.expect_violation:
        verdict = "negative control: violation detected" if ok else \
            "negative control FAILED: no violation detected"
    else:
        verdict = "passed" if ok else "FAILED"
    print(f"  {verdict}")
    for result in results:
        for violation in result.safety_violations[:3]:
            print(f"    seed {result.seed}: {violation}")
    return 0 if ok else 1


def cmd_dnssec(args: argparse.Namespace) -> int:
    body = json.dumps({"zone": args.zone}).encode()
    if args.dnssec_command in ("rollover", "ds-published"):
        if args.dnssec_command == "rollover":
            role = "ksk" if args.ksk else "zsk"
            result = _admin_call(args, "dnssec-rollover",
                                 json.dumps({"zone": args.zone, "role": role}).encode())
            print(f"{role.upper()} rollover of {result['zone']} started")
        else:
            result = _admin_call(args, "dnssec-ds-published", body)
            print(f"new DS of {result['zone']} noted as published by the parent")
        for key in result["keys"]:
            print(f"  {key['role']}  tag {key['tag']}  {key['state']}")
        return 0
    if args.dnssec_command == "ds":
        result = _admin_call(args, "dnssec-ds", body)
        if args.json:
            _print_json(result)
        else:
            sys.stdout.write(result["text"] + "\n")
        return 0
    result = _admin_call(args, "dnssec-status", body)
    if args.json:
        _print_json(result)
        return 0
    print(f"zone {result['zone']}: {'signed' if result['signed'] else 'not signed'}")
    for key in result["keys"]:
        state = "active" if key["active"] else "published"
        print(f"  {key['role']}  tag {key['tag']}  algorithm {key['algorithm']}  {state}")
    if result["signed"]:
        print(f"  {result['signatures']} signatures, {result['nsec_names']} NSEC names; "
              f"next re-signing at {datetime.fromtimestamp(result['resign_at'], UTC).isoformat()}")
    return 0


def _ct_session(args: argparse.Namespace, work: Callable[[Any], Any]) -> Any:
    """Run ``work(call)`` against the node's stoq/1 ``ct`` methods (anonymous, root-pinned)."""
    import asyncio

    from transport.client import connect
    from trustchain.errors import RemoteError

    host, port = parse_server(args.server)
    root, origin = _trust_anchor(args)

    async def session() -> Any:
        async with connect(host, port, root=root, server_name=args.server_name or origin) as node:
            async def call(method: str, body: dict[str, Any]) -> Any:
                response = await node.request("ct", method, json.dumps(body).encode())
                if response.status != 200:
                    raise RemoteError(f"ct.{method}: {json.loads(response.message)['detail']}")
                return json.loads(response.message)
            return await work(call)

    return asyncio.run(session())


def _verified_sth(call: Callable[..., Any], log_name: str) -> Any:
    import base64

    from cryptography.hazmat.primitives.serialization import load_der_public_key

    from trustchain.ct.structs import TreeHead
    from trustchain.errors import RemoteError

    async def fetch() -> Any:
        listing = await call("logs", {})
        entries = {e["url"].rstrip("/").rsplit("/", 1)[1]: e
                   for e in listing["operators"][0]["logs"]}
        if log_name not in entries:
            raise RemoteError(f"the node has no log {log_name!r} (it has {', '.join(entries)})")
        key = load_der_public_key(base64.b64decode(entries[log_name]["key"]))
        sth = await call("get-sth", {"log": log_name})
        head = TreeHead(sth["tree_size"], sth["timestamp"],
                        base64.b64decode(sth["sha256_root_hash"]),
                        base64.b64decode(sth["tree_head_signature"])[4:])
        head.verify(key)  # type: ignore[arg-type]
        return head, sth
    return fetch()


async def _leaf_hashes(call: Callable[..., Any], log_name: str, count: int) -> list[bytes]:
    import base64

    from trustchain.ct.merkle import leaf_hash

    hashes: list[bytes] = []
    while len(hashes) < count:
        page = await call("get-entries", {"log": log_name, "start": len(hashes),
                                          "end": count - 1})
        hashes += [leaf_hash(base64.b64decode(e["leaf_input"])) for e in page["entries"]]
    return hashes


def cmd_ct(args: argparse.Namespace) -> int:
    import base64

    from trustchain.ct import merkle
    from trustchain.errors import LocalError, RemoteError

    if args.ct_command == "logs":
        async def logs(call: Callable[..., Any]) -> Any:
            return await call("logs", {})
        _print_json(_ct_session(args, logs))
        return 0
    if args.ct_command == "get-sth":
        async def sth(call: Callable[..., Any]) -> Any:
            return (await _verified_sth(call, args.log))[1]
        _print_json(_ct_session(args, sth))
        print("tree head signature verified with the log's key", file=sys.stderr)
        return 0
    if args.ct_command == "verify-consistency":
        first, second = args.first, args.second

        async def consistency(call: Callable[..., Any]) -> str:
            head, _ = await _verified_sth(call, args.log)
            if not 0 <= first <= second <= head.size:
                raise LocalError(f"need 0 <= FIRST <= SECOND <= {head.size}")
            hashes = await _leaf_hashes(call, args.log, second)
            proof = await call("get-sth-consistency",
                               {"log": args.log, "first": first, "second": second})
            merkle.verify_consistency(first, second,
                                      [base64.b64decode(p) for p in proof["consistency"]],
                                      merkle.root(hashes[:first]), merkle.root(hashes))
            if second == head.size and merkle.root(hashes) != head.root:
                raise RemoteError("the entries do not match the signed tree head")
            return f"OK: tree {first} is a prefix of tree {second} in log {args.log}"
        print(_ct_session(args, consistency))
        return 0
    if args.tiles is None and args.server is None:
        raise LocalError("give --server (a node) or --tiles URL --log-key KEY (static files)")
    try:
        raw = Path(args.cert).read_bytes()
    except OSError as exc:
        raise LocalError(f"cannot read {args.cert}: {exc.strerror}") from None
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        cert = (x509.load_pem_x509_certificate(raw) if b"-----BEGIN" in raw
                else x509.load_der_x509_certificate(raw))
    except ValueError:
        raise LocalError(f"{args.cert} is not a certificate (PEM or DER)") from None
    der = cert.public_bytes(Encoding.DER)
    if args.tiles is not None:
        if args.log_key is None:
            raise LocalError("--tiles needs --log-key (the log's key from a log list)")
        print(_inclusion_by_tiles(args.tiles, args.log_key, der))
        return 0

    async def inclusion(call: Callable[..., Any]) -> str:
        from trustchain.ct.structs import Entry, EntryType

        head, _ = await _verified_sth(call, args.log)
        wanted = Entry(EntryType.X509, der).signed_entry()
        start = 0
        while start < head.size:
            page = await call("get-entries", {"log": args.log, "start": start,
                                              "end": head.size - 1})
            for offset, item in enumerate(page["entries"]):
                leaf_input = base64.b64decode(item["leaf_input"])
                if leaf_input[12:12 + len(wanted)] == wanted:
                    hashed = merkle.leaf_hash(leaf_input)
                    proof = await call("get-proof-by-hash", {
                        "log": args.log, "hash": base64.b64encode(hashed).decode(),
                        "tree_size": head.size})
                    merkle.verify_inclusion(hashed, proof["leaf_index"], head.size,
                                            [base64.b64decode(p) for p in proof["audit_path"]],
                                            head.root)
                    return (f"OK: entry {start + offset} of log {args.log}, included in its "
                            f"signed tree of {head.size}")
            start += len(page["entries"])
        raise RemoteError(f"the certificate is not in log {args.log}")
    print(_ct_session(args, inclusion))
    return 0


def _inclusion_by_tiles(url: str, key_b64: str, der: bytes) -> str:
    """Find ``der`` in a log's data tiles and check it against the signed checkpoint.

    Every level-0 tile is fetched: each data-tile entry must hash to its
    tile hash, and all of them must rebuild the checkpoint's root, so the
    certificate's presence is proven by the log's signature alone.
    """
    import base64
    import binascii
    import hashlib
    import urllib.error
    import urllib.request

    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    from trustchain.ct import tiles
    from trustchain.ct.merkle import leaf_hash
    from trustchain.ct.tree import MerkleTree
    from trustchain.errors import LocalError, RemoteError

    try:
        spki = base64.b64decode(key_b64, validate=True)
        key = load_der_public_key(spki)
    except (binascii.Error, ValueError):
        raise LocalError("--log-key is not a base64 public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise LocalError("--log-key is not an ECDSA key")
    base = url.rstrip("/")

    def fetch(path: str) -> bytes:
        try:
            with urllib.request.urlopen(f"{base}/{path}", timeout=30) as response:
                return bytes(response.read())
        except (urllib.error.URLError, OSError) as exc:
            raise RemoteError(f"cannot fetch {base}/{path}: {exc}") from None

    text = fetch("checkpoint").decode("utf-8", "replace")
    origin = text.split("\n", 1)[0]
    try:
        head = tiles.verify_checkpoint(text, origin, hashlib.sha256(spki).digest(), key)
    except tiles.TileError as exc:
        raise RemoteError(f"checkpoint: {exc}") from None
    tree, found = MerkleTree(), None
    for index in range((head.size + tiles.TILE_WIDTH - 1) // tiles.TILE_WIDTH):
        width = min(tiles.TILE_WIDTH, head.size - index * tiles.TILE_WIDTH)
        suffix = tiles.format_index(index) + ("" if width == tiles.TILE_WIDTH else f".p/{width}")
        hashes = fetch(f"tile/0/{suffix}")
        try:
            entries = tiles.parse_data_tile(fetch(f"tile/data/{suffix}"))
        except tiles.TileError as exc:
            raise RemoteError(f"data tile {index}: {exc}") from None
        if len(hashes) != 32 * width or len(entries) != width:
            raise RemoteError(f"tile {index} has the wrong width")
        for offset, entry in enumerate(entries):
            hashed = hashes[32 * offset:32 * offset + 32]
            if leaf_hash(entry.leaf_input) != hashed:
                raise RemoteError(f"entry {index * 256 + offset} does not match its tile hash")
            if entry.certificate == der and entry.leaf_input[10:12] == b"\x00\x00":
                found = index * tiles.TILE_WIDTH + offset
            tree.append(hashed)
    if tree.root() != head.root:
        raise RemoteError("the tiles do not rebuild the checkpoint's root")
    if found is None:
        raise RemoteError(f"the certificate is not in the log at {origin}")
    return f"OK: entry {found} of {origin}, included in its signed checkpoint of {head.size}"


def cmd_record(args: argparse.Namespace) -> int:
    command = args.record_command
    if command == "list":
        rows = _admin_call(args, "records-list", json.dumps({"zone": args.zone}).encode())
        if args.json:
            _print_json(rows)
        else:
            _print_rows(rows, ["name", "ttl", "type", "data"])
        return 0
    if command == "add":
        change = {"add": [{"name": args.name, "type": args.type, "ttl": args.ttl,
                           "data": " ".join(args.value)}]}
    else:
        selector: dict[str, str] = {"name": args.name}
        if args.type:
            selector["type"] = args.type
        if args.value:
            selector["data"] = " ".join(args.value)
        change = {"delete": [selector]}
    result = _admin_call(args, "records-change", json.dumps(change).encode())
    print(f"zone {result['zone']} now at serial {result['serial']}")
    return 0


def cmd_node_list(args: argparse.Namespace) -> int:
    rows = _admin_call(args, "enrolments", b"")
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print("no enrolments")
    for row in rows:
        print(f"{row['node_id']}  {row['status']:<8}  requested {row['requested_at']}"
              + (f"  decided {row['decided_at']}" if row["decided_at"] else ""))
    return 0


def cmd_node_decide(args: argparse.Namespace) -> int:
    method = "approve" if args.node_command == "approve" else "reject"
    state = _admin_call(args, method, json.dumps({"node_id": args.node_id}).encode())
    print(f"node {state['node_id']}: {state['status']}")
    return 0


# --- parser -----------------------------------------------------------------


def _add_data_dir(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--data-dir", type=Path, default=_default_data_dir(),
        help="node data directory (default: $TRUSTCHAIN_DATA_DIR or ./data)",
    )


def _add_passphrase(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--passphrase-file", type=Path, metavar="FILE",
        help="read the key-store passphrase from FILE "
        "(otherwise $TRUSTCHAIN_PASSPHRASE, otherwise a prompt)",
    )


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("configuration overrides (see trustchain.toml)")
    for name, field in NodeConfig.model_fields.items():
        group.add_argument(
            "--" + name.replace("_", "-"), dest=name, default=None,
            action="append" if name == "listen" else "store",
            help=(field.description or "") + f" [default: {field.get_default(call_default_factory=True)}]",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trustchain",
        description="TrustChain node: authoritative DNS, CA and CT logs over QUIC.",
    )
    parser.add_argument("--version", action="version", version=f"trustchain {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("init", help="create a node and a new network's genesis")
    _add_data_dir(p)
    _add_passphrase(p)
    p.add_argument("--network-name", default=DEFAULT_NETWORK_NAME,
                   help=f"network name (default: {DEFAULT_NETWORK_NAME})")
    p.add_argument("--origin", default=DEFAULT_ORIGIN,
                   help=f"DNS zone origin (default: {DEFAULT_ORIGIN})")
    p.add_argument("--root-key-type", choices=["ecdsa-p384", "ecdsa-p256"], default="ecdsa-p384",
                   help="genesis root key type (default: ecdsa-p384)")
    p.set_defaults(func=cmd_init)

    p = commands.add_parser("serve", help="run the node until SIGINT/SIGTERM")
    _add_data_dir(p)
    _add_passphrase(p)
    _add_config_flags(p)
    p.set_defaults(func=cmd_serve)

    p = commands.add_parser("status", help="show what the node holds")
    _add_data_dir(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_status)

    p = commands.add_parser("join", help="enrol this machine as a node of an existing network")
    _add_data_dir(p)
    _add_passphrase(p)
    p.add_argument("--genesis", required=True, metavar="FILE", help="the network's genesis document")
    p.add_argument("--pin", required=True, metavar="SHA256", help="its SHA-256 pin")
    p.add_argument("--peer", required=True, metavar="[ADDR]:PORT", help="a node's QUIC address")
    p.add_argument("--server-name", metavar="NAME",
                   help="name the peer's certificate must carry (default: the zone origin)")
    p.add_argument("--wait", type=float, default=600.0, metavar="SECONDS",
                   help="how long to wait for approval (default: 600); run again to resume")
    p.set_defaults(func=cmd_join)

    node = commands.add_parser("node", help="enrolments of joining nodes (admin)")
    sub = node.add_subparsers(dest="node_command", required=True, metavar="COMMAND")
    for name, func, help_text in (
        ("list", cmd_node_list, "list enrolment requests"),
        ("approve", cmd_node_decide, "admit a node: issue its certificate"),
        ("reject", cmd_node_decide, "refuse a node's enrolment"),
    ):
        p = sub.add_parser(name, help=help_text)
        if name != "list":
            p.add_argument("node_id", metavar="NODE_ID")
        _add_data_dir(p)
        _add_passphrase(p)
        p.add_argument("--server", metavar="[ADDR]:PORT",
                       help="the node's QUIC address (default: from its configuration)")
        if name == "list":
            p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(func=func)

    def admin_options(p: argparse.ArgumentParser, *, json_output: bool = False) -> None:
        _add_data_dir(p)
        _add_passphrase(p)
        p.add_argument("--server", metavar="[ADDR]:PORT",
                       help="the node's QUIC address (default: from its configuration)")
        if json_output:
            p.add_argument("--json", action="store_true", help="machine-readable output")

    def credential_options(p: argparse.ArgumentParser) -> None:
        group = p.add_argument_group(
            "as a federated network's admin (its network-admin credential; needs --server)")
        group.add_argument("--cert", metavar="FILE",
                           help="PEM: the credential, then its issuer")
        group.add_argument("--key", metavar="FILE", help="PEM private key of the credential")
        group.add_argument("--genesis", metavar="FILE",
                           help="the network's genesis document (default: the node in --data-dir)")
        group.add_argument("--pin", metavar="SHA256", help="the SHA-256 pin of --genesis")

    def dnssec_choices(p: argparse.ArgumentParser) -> None:
        group = p.add_argument_group("DNSSEC of a new zone")
        group.add_argument("--algorithm", type=int, choices=[13, 15], default=13,
                           help="13 ECDSA P-256 (default) or 15 Ed25519")
        group.add_argument("--csk", action="store_true",
                           help="one combined signing key instead of a KSK and a ZSK")
        group.add_argument("--nsec3", action="store_true",
                           help="NSEC3 denial (RFC 9276: no salt, no extra iterations)")

    zone = commands.add_parser("zone", help="zones this node serves (admin)")
    sub = zone.add_subparsers(dest="zone_command", required=True, metavar="COMMAND")
    p = sub.add_parser("create", help="create a zone (SOA and NS filled in)")
    p.add_argument("zone", metavar="ZONE")
    p.add_argument("--ns", action="append", metavar="NAME",
                   help="name server (repeatable; default: this node's name)")
    p.add_argument("--address", action="append", metavar="IP",
                   help="address of in-zone name servers (repeatable)")
    p.add_argument("--email", help="SOA contact (default: hostmaster@ZONE)")
    dnssec_choices(p)
    admin_options(p)
    p = sub.add_parser("delete", help="delete a zone and its records")
    p.add_argument("zone", metavar="ZONE")
    admin_options(p)
    p = sub.add_parser("list", help="list zones")
    admin_options(p, json_output=True)
    p = sub.add_parser("show", help="a zone's serial and records")
    p.add_argument("zone", metavar="ZONE")
    admin_options(p, json_output=True)
    p = sub.add_parser("export", help="the zone as an RFC 1035 file on stdout")
    p.add_argument("zone", metavar="ZONE")
    admin_options(p)
    p = sub.add_parser("import", help="load an RFC 1035 zone file")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--origin", metavar="ZONE", help="origin, if the file has no $ORIGIN")
    p.add_argument("--replace", action="store_true", help="replace an existing zone")
    dnssec_choices(p)
    admin_options(p)
    zone.set_defaults(func=cmd_zone)
    secondary = sub.add_parser("secondary", help="secondaries: NOTIFY and TSIG-authorised transfers")
    secondary_sub = secondary.add_subparsers(dest="secondary_command", required=True,
                                             metavar="COMMAND")
    p = secondary_sub.add_parser("add", help="let a secondary transfer ZONE (prints its TSIG key)")
    p.add_argument("zone", metavar="ZONE")
    p.add_argument("secondary", metavar="[ADDR]:PORT")
    p.add_argument("--key", metavar="NAME", help="TSIG key name (default: xfr.ZONE; created if new)")
    admin_options(p, json_output=True)
    p.set_defaults(func=cmd_secondary)
    p = secondary_sub.add_parser("remove", help="stop serving a secondary")
    p.add_argument("zone", metavar="ZONE")
    p.add_argument("secondary", metavar="[ADDR]:PORT")
    admin_options(p)
    p.set_defaults(func=cmd_secondary)
    p = secondary_sub.add_parser("list", help="list secondaries")
    admin_options(p, json_output=True)
    p.set_defaults(func=cmd_secondary)

    record = commands.add_parser("record", help="records in the zones (admin)")
    sub = record.add_subparsers(dest="record_command", required=True, metavar="COMMAND")
    p = sub.add_parser("add", help="add a record (the zone is found from NAME)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("type", metavar="TYPE")
    p.add_argument("value", metavar="VALUE", nargs="+")
    p.add_argument("--ttl", type=int, default=3600, help="seconds (default: 3600)")
    admin_options(p)
    p = sub.add_parser("delete", help="delete records at NAME (all, of TYPE, or that VALUE)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("type", metavar="TYPE", nargs="?")
    p.add_argument("value", metavar="VALUE", nargs="*")
    admin_options(p)
    p = sub.add_parser("list", help="list the records of a zone")
    p.add_argument("zone", metavar="ZONE")
    admin_options(p, json_output=True)
    record.set_defaults(func=cmd_record)

    network = commands.add_parser("network", help="federated networks under the origin (admin)")
    sub = network.add_subparsers(dest="network_command", required=True, metavar="COMMAND")
    p = sub.add_parser("register", help="give a network its zone NAME.<origin>")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--delegate", action="append", metavar="NS[=ADDR,...]",
                   help="delegate to this name server (repeatable; addresses become glue); "
                   "default: host the zone on this node")
    p.add_argument("--ds", action="append", metavar="DS",
                   help="a DS record for the delegated zone (repeatable)")
    p.add_argument("--prefix", action="append", metavar="CIDR",
                   help="an address block of the network (repeatable): its CA may certify "
                   "addresses inside it")
    admin_options(p)
    p = sub.add_parser("list", help="list registered networks")
    admin_options(p, json_output=True)
    p = sub.add_parser("show", help="one registered network")
    p.add_argument("name", metavar="NAME")
    admin_options(p, json_output=True)
    network.set_defaults(func=cmd_network)

    dnssec_parser = commands.add_parser("dnssec", help="DNSSEC of the zones (admin)")
    sub = dnssec_parser.add_subparsers(dest="dnssec_command", required=True, metavar="COMMAND")
    for name, help_text in (("ds", "the DS set for the parent zone"),
                            ("status", "keys and signatures of a zone"),
                            ("rollover", "start a key rollover (the node times the steps)"),
                            ("ds-published", "confirm the parent publishes the new KSK's DS")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("zone", metavar="ZONE")
        if name == "rollover":
            which = p.add_mutually_exclusive_group(required=True)
            which.add_argument("--ksk", action="store_true", help="key-signing key")
            which.add_argument("--zsk", action="store_true", help="zone-signing key")
        admin_options(p, json_output=name in ("ds", "status"))
    dnssec_parser.set_defaults(func=cmd_dnssec)

    ca = commands.add_parser("ca", help="the certificate authority (admin)")
    sub = ca.add_subparsers(dest="ca_command", required=True, metavar="COMMAND")
    p = sub.add_parser("issue", help="certificate for a CSR, logged in two CT logs; PEM chain "
                       "on stdout")
    p.add_argument("--csr", required=True, metavar="FILE", help="PEM or DER CSR ('-': stdin)")
    p.add_argument("--network", metavar="N",
                   help="the registered network the names belong to (default: found from them; "
                   "with --cert, the credential's network)")
    p.add_argument("--profile", metavar="P",
                   help="server-90d (default), short-lived, node, network-admin")
    admin_options(p)
    credential_options(p)
    p = sub.add_parser("revoke", help="revoke a certificate by serial (hex)")
    p.add_argument("serial", metavar="SERIAL")
    p.add_argument("--reason", default="unspecified", metavar="R",
                   help="unspecified, key-compromise, affiliation-changed, superseded, "
                   "cessation-of-operation, privilege-withdrawn")
    admin_options(p)
    credential_options(p)
    p = sub.add_parser("rotate", help="a new intermediate for a network (the old one keeps "
                       "answering for its certificates)")
    p.add_argument("network", metavar="NETWORK")
    admin_options(p)
    p = sub.add_parser("list", help="issued certificates, newest first")
    p.add_argument("--network", metavar="N")
    admin_options(p, json_output=True)
    credential_options(p)
    p = sub.add_parser("export-root-key", help="move the genesis root key out of the key store "
                       "into FILE, to keep offline (node stopped)")
    p.add_argument("--out", required=True, metavar="FILE")
    _add_data_dir(p)
    _add_passphrase(p)
    p = sub.add_parser("import-root-key", help="bring an exported genesis root key back "
                       "(node stopped)")
    p.add_argument("file", metavar="FILE")
    _add_data_dir(p)
    _add_passphrase(p)
    ca.set_defaults(func=cmd_ca)

    audit = commands.add_parser("audit", help="the CA's hash-chained audit log")
    sub = audit.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    p = sub.add_parser("verify", help="recompute the hash chain; exit 1 if anything was altered")
    _add_data_dir(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    audit.set_defaults(func=cmd_audit)

    sim = commands.add_parser("sim", help="simulate the consensus (the real code, a virtual network)")
    sub = sim.add_subparsers(dest="sim_command", required=True, metavar="COMMAND")
    p = sub.add_parser("run", help="run a scenario file; exit 1 if a check fails")
    p.add_argument("scenario", metavar="SCENARIO", help="a name from 'sim list', or a .toml file")
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--runs", type=int, default=1, help="runs, with seeds seed, seed+1, ...")
    p.add_argument("--plot", metavar="FILE", help="write commit latency over time (PNG, SVG...)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = sub.add_parser("list", help="the scenarios that ship in simulations/scenarios")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    sim.set_defaults(func=cmd_sim)

    ct = commands.add_parser("ct", help="certificate transparency logs of a node")
    sub = ct.add_subparsers(dest="ct_command", required=True, metavar="COMMAND")

    def ct_options(p: argparse.ArgumentParser, server_required: bool = True) -> None:
        p.add_argument("--server", required=server_required, metavar="[ADDR]:PORT",
                       help="the node's QUIC address")
        anchor = p.add_argument_group("trust anchor (default: the node in --data-dir)")
        _add_data_dir(anchor)
        anchor.add_argument("--genesis", metavar="FILE")
        anchor.add_argument("--pin", metavar="SHA256")
        anchor.add_argument("--server-name", metavar="NAME")

    p = sub.add_parser("logs", help="the node's logs as Chrome/Apple log-list JSON")
    ct_options(p)
    p = sub.add_parser("get-sth", help="a log's signed tree head, its signature checked")
    p.add_argument("log", metavar="LOG")
    ct_options(p)
    p = sub.add_parser("verify-inclusion", help="prove a certificate is in a log")
    p.add_argument("cert", metavar="CERT")
    p.add_argument("--log", default="a", help="log name (default: a)")
    p.add_argument("--tiles", metavar="URL",
                   help="read only the log's static-ct-api files under URL (its monitoring "
                        "prefix) instead of asking a node; needs --log-key")
    p.add_argument("--log-key", metavar="BASE64",
                   help="the log's public key (SubjectPublicKeyInfo, base64, as in log lists)")
    ct_options(p, server_required=False)
    p = sub.add_parser("verify-consistency", help="prove tree FIRST is a prefix of tree SECOND")
    p.add_argument("log", metavar="LOG")
    p.add_argument("first", metavar="FIRST", type=int)
    p.add_argument("second", metavar="SECOND", type=int)
    ct_options(p)
    ct.set_defaults(func=cmd_ct)

    p = commands.add_parser("query", help="ask a DNS server (udp, tcp, doq or stoq)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("type", metavar="TYPE", nargs="?", default="A")
    p.add_argument("--server", required=True, metavar="[ADDR]:PORT")
    p.add_argument("--via", choices=["udp", "tcp", "doq", "stoq"], default="doq")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds (default: 5)")
    anchor = p.add_argument_group(
        "trust anchor for doq/stoq (default: the node in --data-dir)")
    _add_data_dir(anchor)
    anchor.add_argument("--genesis", metavar="FILE", help="a genesis document to pin instead")
    anchor.add_argument("--pin", metavar="SHA256", help="the SHA-256 pin of --genesis")
    anchor.add_argument("--server-name", metavar="NAME",
                        help="name the server certificate must carry (default: the zone origin)")
    p.set_defaults(func=cmd_query)

    genesis = commands.add_parser("genesis", help="the genesis document and its pin")
    sub = genesis.add_subparsers(dest="genesis_command", required=True, metavar="COMMAND")
    p = sub.add_parser("show", help="print the genesis SHA-256 pin (--json: and its content)")
    _add_data_dir(p)
    p.add_argument("--json", action="store_true", help="machine-readable details")
    p.add_argument("--root-pem", action="store_true",
                   help="print the genesis root certificate (PEM), e.g. as a CA file for kdig")
    p.set_defaults(func=cmd_genesis_show)
    p = sub.add_parser("verify", help="verify a genesis document against a pin")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--pin", required=True, metavar="SHA256", help="the expected SHA-256")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_genesis_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("quic").setLevel(logging.WARNING)  # aioquic's per-connection chatter
    try:
        return int(args.func(args))
    except TrustchainError as exc:
        print(f"trustchain: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("trustchain: interrupted", file=sys.stderr)
        return 130
