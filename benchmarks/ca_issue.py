#!/usr/bin/env python3
"""CA issuance throughput end to end, beside the raw signing floor measured in the same run.

1. **End to end.**  Starts a TrustChain node on [::1] (rate limits raised for
   the run), registers a network, and asks for ``--certificates`` certificates
   over stoq/1 ``ca.issue`` (mutual TLS with the node's admin certificate),
   ``--concurrency`` in flight over ``--connections`` QUIC connections.  Each
   answer is a final certificate with two embedded SCTs: the precertificate
   was sequenced into both of the node's logs, the certificate is durably
   stored and its audit record written.  Prints certificates per second and
   latency percentiles.  Target: >= 1,000/s and >= 0.4 x the floor.
   With ``--via https`` the same requests go to ``POST /ca/v1/issue`` over
   HTTPS/1.1 instead, sent by ``curl`` (``--parallel``, keep-alive, the admin
   certificate as client certificate), in ``--concurrency / 300`` curl
   processes of at most 300 transfers in flight each (curl's cap).
2. **Floor, same run, same machine, one core:** what no CA can skip, done
   in-process with ``cryptography``: parse and verify each CSR, then build and
   sign one certificate.

    python benchmarks/ca_issue.py [--certificates 5000] [--concurrency 600] [--via stoq|https] [--lint]

Needs the project installed (.venv), and curl for ``--via https``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.hazmat.primitives.serialization import Encoding  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from bootstrap.genesis import parse_genesis  # noqa: E402
from bootstrap.transport_certs import ADMIN_TLS_PURPOSE, INFRA_CA_PURPOSE  # noqa: E402
from transport.client import connect  # noqa: E402
from trustchain.identity import TlsIdentity  # noqa: E402
from trustchain.keystore import KeyStore  # noqa: E402
from trustchain.storage.database import open_database  # noqa: E402
from trustchain.storage.node import NodeStore  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
from node_process import cpu_seconds, init_node, node_env, percentile, start_node  # noqa: E402

ORIGIN = "trust.example.net"
NETWORK = "bench"


def make_csrs(count: int) -> list[bytes]:
    csrs = []
    for i in range(count):
        if i and i % 2000 == 0:
            print(f"  made {i:,} / {count:,} CSRs", file=sys.stderr)
        key = ec.generate_private_key(ec.SECP256R1())
        name = f"host{i}.{NETWORK}.{ORIGIN}"
        csrs.append(x509.CertificateSigningRequestBuilder()
                    .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                    .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
                    .sign(key, hashes.SHA256()).public_bytes(Encoding.PEM))
    return csrs


FLOOR_ISSUER = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "floor CA")])


def checked_builder(pem: bytes, now: datetime) -> x509.CertificateBuilder:
    """Parse a CSR, verify its signature, lay out its certificate (the SAN, 90 days)."""
    csr = x509.load_pem_x509_csr(pem)
    assert csr.is_signature_valid
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(FLOOR_ISSUER)
            .public_key(csr.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + timedelta(days=90))
            .add_extension(san, critical=True))


def floor(csrs: list[bytes]) -> float:
    """Certificates per second for CSR parse + verify + one certificate build and sign."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    start = time.perf_counter()
    for pem in csrs:
        checked_builder(pem, now).sign(ca_key, hashes.SHA256())
    return len(csrs) / (time.perf_counter() - start)


def crypto_minimum(csrs: list[bytes]) -> float:
    """Certificates per second, one core, for the signatures and verifications that no
    CT-logging CA can skip per certificate, and nothing else: the CSR's signature, the
    precertificate's and the final certificate's signatures, a log's check of the
    precertificate's signature, two logs' SCT signatures, and the CA's check of both."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    log_keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(2)]
    ecdsa = ec.ECDSA(hashes.SHA256())
    now = datetime.now(UTC)
    start = time.perf_counter()
    for pem in csrs:
        builder = checked_builder(pem, now)
        pre = builder.add_extension(x509.PrecertPoison(), critical=True).sign(ca_key,
                                                                             hashes.SHA256())
        ca_key.public_key().verify(pre.signature, pre.tbs_certificate_bytes, ecdsa)
        for key in log_keys:
            sct = key.sign(pre.tbs_certificate_bytes, ecdsa)
            key.public_key().verify(sct, pre.tbs_certificate_bytes, ecdsa)
        builder.sign(ca_key, hashes.SHA256())
    return len(csrs) / (time.perf_counter() - start)


def admin_identity(data: Path, passphrase: str) -> tuple[TlsIdentity, x509.Certificate]:
    keystore = KeyStore.open(data / "keys", passphrase)
    with open_database(data, readonly=True) as db:
        store = NodeStore(db)
        cert, issuer = store.latest_certificate(ADMIN_TLS_PURPOSE), store.latest_certificate(
            INFRA_CA_PURPOSE)
    assert cert is not None and issuer is not None
    key = keystore.private_key(keystore.active(ADMIN_TLS_PURPOSE).id)
    root = parse_genesis((data / "genesis.json").read_bytes()).root_certificate
    return TlsIdentity(cert, [issuer], key), root  # type: ignore[arg-type]


async def register_network(node: object, call: Any) -> None:
    """Register NETWORK as the CLI does: proofs first, bound to the node's latest block."""
    from trustchain.wiring.dns import NetworkRegister
    from trustchain.wiring.registry import registration_proofs

    response = await node.request("consensus", "status", b"")  # type: ignore[attr-defined]
    status = json.loads(response.message)
    body = NetworkRegister(name=NETWORK).model_dump()
    proofs = registration_proofs(body, requester=status["node_id"], anchor=status["height"],
                                 anchor_hash=status["hash"], parameters=status["parameters"])
    await call(node, "network-register", {**body, "proofs": proofs})


async def issue_all(port: int, identity: TlsIdentity, root: x509.Certificate, csrs: list[bytes],
                    connections: int, concurrency: int) -> tuple[float, list[float]]:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for csr in csrs:
        queue.put_nowait(csr)
    latencies: list[float] = []

    async def call(node: object, method: str, body: dict[str, object]) -> dict[str, object]:
        response = await node.request("ca" if method == "issue" else "admin",  # type: ignore[attr-defined]
                                      method, json.dumps(body).encode())
        if response.status != 200:
            raise RuntimeError(response.message.decode())
        return json.loads(response.message)

    async def worker(node: object) -> None:
        while not queue.empty():
            csr = queue.get_nowait()
            started = time.perf_counter()
            answer = await call(node, "issue", {"csr": csr.decode(), "network": NETWORK})
            assert "BEGIN CERTIFICATE" in str(answer["chain"])
            latencies.append(time.perf_counter() - started)

    async with contextlib.AsyncExitStack() as stack:
        nodes = [await stack.enter_async_context(
            connect("::1", port, root=root, server_name=ORIGIN, identity=identity))
            for _ in range(connections)]
        await register_network(nodes[0], call)
        start = time.perf_counter()
        await asyncio.gather(*(worker(nodes[i % connections]) for i in range(concurrency)))
        return len(csrs) / (time.perf_counter() - start), latencies


def issue_over_https(port: int, data: Path, identity: TlsIdentity, root: x509.Certificate,
                     csrs: list[bytes], concurrency: int) -> tuple[float, list[float]]:
    """POST /ca/v1/issue over HTTPS with curl; every answer must be 201."""
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    work = data.parent / "curl"
    work.mkdir()
    (work / "admin.pem").write_bytes(b"".join(
        c.public_bytes(Encoding.PEM) for c in (identity.certificate, *identity.chain)))
    (work / "admin.key").write_bytes(identity.private_key.private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    (work / "root.pem").write_bytes(root.public_bytes(Encoding.PEM))
    processes = max(1, -(-concurrency // 300))
    per_process = -(-concurrency // processes)
    configs = []
    for p in range(processes):
        lines = []
        for i in range(p, len(csrs), processes):
            body = work / f"{i}.json"
            body.write_text(json.dumps({"csr": csrs[i].decode(), "network": NETWORK}))
            lines += [f'url = "https://{ORIGIN}/ca/v1/issue"', f'data-binary = "@{body}"',
                      f'cacert = "{work / "root.pem"}"', f'cert = "{work / "admin.pem"}"',
                      f'key = "{work / "admin.key"}"', f'connect-to = "{ORIGIN}:443:[::1]:{port}"',
                      'header = "content-type: application/json"', 'output = "/dev/null"',
                      'write-out = "%{http_code} %{time_total}\\n"', "next"]
        configs.append(work / f"curl{p}.conf")
        configs[-1].write_text("\n".join(lines[:-1]) + "\n")
    start = time.perf_counter()
    procs = [subprocess.Popen(["curl", "--silent", "--show-error", "--no-progress-meter", "--parallel",
                               "--parallel-max", str(per_process), "--config", str(conf)],
                              stdout=subprocess.PIPE, text=True) for conf in configs]
    outputs = [proc.communicate()[0] for proc in procs]
    rate = len(csrs) / (time.perf_counter() - start)
    answers = [line.split() for out in outputs for line in out.splitlines()]
    codes = {code for code, _ in answers}
    if len(answers) != len(csrs) or codes != {"201"}:
        raise RuntimeError(f"{len(answers)} answers, HTTP statuses {sorted(codes)}")
    return rate, [float(seconds) for _, seconds in answers]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--certificates", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=600)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--via", choices=["stoq", "https"], default="stoq",
                        help="stoq/1 ca.issue (default) or POST /ca/v1/issue over HTTPS (curl)")
    parser.add_argument("--workers", type=int, default=None,
                        help="ca_workers for the node (default: the node's, CPUs - 1)")
    parser.add_argument("--lint", action="store_true",
                        help="turn on pre-issuance linting (ca_lint): pkilint on every precertificate")
    args = parser.parse_args()
    passphrase = secrets.token_urlsafe(24)
    env = node_env(passphrase)
    over = (f"{args.connections} QUIC connections" if args.via == "stoq"
            else "HTTPS/1.1 connections (curl)")
    print(f"cpus: {os.cpu_count()}; certificates: {args.certificates:,}; "
          f"concurrency: {args.concurrency} over {over}")
    csrs = make_csrs(args.certificates)
    raw = floor(csrs)
    print(f"floor (CSR parse + verify, one certificate build + sign, one core): {raw:,.0f}/s")
    minimum = crypto_minimum(csrs)
    print(f"cryptographic minimum (verify CSR, sign precertificate, verify it, sign and verify "
          f"2 SCTs, sign certificate): {minimum:,.0f}/s on one core, {2 * minimum:,.0f}/s on two "
          f"with nothing else running; 0.4 x the floor: {0.4 * raw:,.0f}/s")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "node"
        init_node(data, env, "--origin", ORIGIN + ".")
        limits = "".join(f"[ca_rate_limits.{name}]\ncount = 1000000000\nperiod_seconds = 1\n"
                         for name in ("identity", "network", "domain", "names"))
        per_connection = -(-args.concurrency // args.connections) + 10
        config = data / "trustchain.toml"
        text = config.read_text().replace(
            "quic_max_streams_in_flight = 100", f"quic_max_streams_in_flight = {per_connection}")
        if args.lint:
            text = text.replace("ca_lint = false", "ca_lint = true")
        if args.workers is not None:
            text += f"\nca_workers = {args.workers}\n"
        config.write_text(text + "\n" + limits)
        identity, root = admin_identity(data, passphrase)
        proc, ports = start_node(data, env, "quic", "https")
        try:
            try:
                import uvloop
                run = uvloop.run
            except ImportError:
                run = asyncio.run
            if args.via == "https":  # the zone and network first, over stoq/1
                run(issue_all(ports["quic"], identity, root, [], 1, 1))
            cpu_before = cpu_seconds(proc.pid)
            client_before = time.process_time()
            children_before = os.times().children_user + os.times().children_system
            if args.via == "https":
                rate, latencies = issue_over_https(ports["https"], data, identity, root, csrs,
                                                   args.concurrency)
            else:
                rate, latencies = run(issue_all(ports["quic"], identity, root, csrs,
                                                args.connections, args.concurrency))
            node_cpu = cpu_seconds(proc.pid) - cpu_before
            client_cpu = (time.process_time() - client_before + os.times().children_user
                          + os.times().children_system - children_before)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        linted = ", pkilint before logging" if args.lint else ""
        via = "ca.issue over stoq/1" if args.via == "stoq" else "POST /ca/v1/issue over HTTPS"
        print(f"trustchain {via} (CSR in; certificate with 2 SCTs out, stored and "
              f"audited{linted}): {rate:,.0f}/s ({rate / raw:.2f} x the floor); "
              "target >= 1,000/s and >= 0.4 x")
        print(f"node CPU: {node_cpu:.1f} s = {len(csrs) / node_cpu:,.0f} certificates per node "
              f"CPU-second (client: {client_cpu:.1f} CPU-s on the same cores)")
        print(f"latency: p50 {statistics.median(latencies) * 1000:.0f} ms, "
              f"p99 {percentile(latencies, .99) * 1000:.0f} ms")
        with open_database(data, readonly=True) as db:
            issued = db.conn.execute(
                "SELECT count(*) FROM ca_certificates WHERE state = 'issued'").fetchone()[0]
            audited = db.conn.execute(
                "SELECT count(*) FROM audit_log WHERE kind = 'cert.issue'").fetchone()[0]
        print(f"stored: {issued:,} certificates, {audited:,} audit records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
