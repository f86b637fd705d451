#!/usr/bin/env python3
"""ACME orders per second: TrustChain beside Pebble (Let's Encrypt's test server), in the
same run, with the same clients and the same http-01 responder.

Each order is what a client does for a certificate: newOrder (one name), the http-01
challenge answered by a responder this script runs, the CA's validation, finalize,
and the certificate downloaded.  ``--clients`` threads, each an account of certbot's
``acme`` library, share ``--orders`` orders; every client talks HTTPS to the server.

* TrustChain: a node made with ``trustchain init`` in a temporary directory (rate
  limits raised for the run, ``acme_http01_port`` the responder's), the network
  ``alpha`` registered and its name's AAAA record added; every certificate is logged
  to the node's two CT logs (SCTs embedded) and committed durably with its audit
  record before the order is valid.
* Pebble (Debian's ``pebble``), with ``PEBBLE_VA_NOSLEEP=1`` and
  ``PEBBLE_WFE_NONCEREJECT=0`` as the issue asks, resolving names through the
  TrustChain node's DNS (``-dnsserver``), in memory, no CT.

Target (issue 18): TrustChain >= 0.5 x Pebble's rate.

    python benchmarks/acme.py [--orders 200] [--clients 8] [--json]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# This file is named as the issue names it, acme.py: the script's own directory must not
# shadow certbot's ``acme`` package, so it leaves the path until that is imported.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != REPO / "benchmarks"]
sys.path.insert(0, str(REPO))

import josepy  # noqa: E402
from acme import challenges, messages  # noqa: E402
from acme import client as acme_client  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.hazmat.primitives.serialization import (  # noqa: E402
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from tests.test_acme_orders import Responder, free_port  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
from node_process import percentile, start_node  # noqa: E402

ORIGIN = "trust.example.net"
NAME = f"www.alpha.{ORIGIN}"
TARGET = 0.5


def run_orders(directory: str, responder: Responder, orders: int, clients: int
               ) -> dict[str, float]:
    """``orders`` complete orders from ``clients`` threads; rate and latency."""
    warnings.filterwarnings("ignore")  # unverified HTTPS to [::1]: both servers alike
    lock, taken, latencies, failures = threading.Lock(), [0], list[float](), list[str]()
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).add_extension(
        x509.SubjectAlternativeName([x509.DNSName(NAME)]), critical=False
    ).sign(key, hashes.SHA256()).public_bytes(Encoding.PEM)

    def worker() -> None:
        net = acme_client.ClientNetwork(
            josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1())), alg=josepy.ES256,
            verify_ssl=False, user_agent="trustchain-benchmark")
        client = acme_client.ClientV2(messages.Directory.from_json(
            net.get(directory).json()), net)
        client.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
        while True:
            with lock:
                if taken[0] >= orders:
                    return
                taken[0] += 1
            started = time.perf_counter()
            try:
                order = client.new_order(csr)
                (authz,) = order.authorizations
                if authz.body.status != messages.STATUS_VALID:  # (Pebble reuses valid ones)
                    body = next(c for c in authz.body.challenges
                                if isinstance(c.chall, challenges.HTTP01))
                    response, validation = body.response_and_validation(net.key)
                    responder.tokens[body.chall.encode("token")] = validation
                    client.answer_challenge(body, response)
                client.poll_and_finalize(order, datetime.now() + timedelta(seconds=120))
            except Exception as exc:  # noqa: BLE001 - counted, the run goes on
                detail = [a.body.challenges for a in getattr(exc, "failed_authzrs", [])]
                failures.append(f"{exc!r} {detail}"[:400])
                continue
            with lock:
                latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        print(f"  {len(failures)} orders failed, e.g. {failures[0]}", file=sys.stderr)
    return {"orders_per_s": len(latencies) / elapsed, "done": len(latencies),
            "failed": len(failures), "p50_ms": percentile(latencies, 0.5) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000}


def pebble_tls(work: Path) -> tuple[Path, Path]:
    """A self-signed certificate for Pebble's HTTPS listener on [::1]."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "pebble")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("::1")), x509.DNSName("localhost")]),
                critical=False).sign(key, hashes.SHA256()))
    (work / "pebble.pem").write_bytes(cert.public_bytes(Encoding.PEM))
    (work / "pebble.key").write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8,
                                                        NoEncryption()))
    return work / "pebble.pem", work / "pebble.key"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="the figures as JSON on stdout")
    args = parser.parse_args()
    pebble = shutil.which("pebble")
    if pebble is None:
        print("error: needs Debian's pebble (apt-get install pebble)", file=sys.stderr)
        return 1
    out: dict[str, Any] = {"date": datetime.now(UTC).date().isoformat(),
                           "cpus": os.cpu_count(), "orders": args.orders,
                           "clients": args.clients}
    responder = Responder()
    threading.Thread(target=responder.serve_forever, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRUSTCHAIN_")}
    env["TRUSTCHAIN_PASSPHRASE"] = "benchmark passphrase of the acme run"
    for setting in ("DNS_PORT", "QUIC_PORT", "HTTPS_PORT", "HTTP_PORT"):
        env[f"TRUSTCHAIN_{setting}"] = "0"
    with tempfile.TemporaryDirectory(prefix="acme-bench-") as tmp:
        work = Path(tmp)
        data = work / "node"
        subprocess.run([sys.executable, "-m", "trustchain", "init", "--data-dir", str(data),
                        "--origin", ORIGIN + "."], env=env, check=True, capture_output=True,
                       cwd=REPO)
        limits = "".join(f"[ca_rate_limits.{name}]\ncount = 1000000000\nperiod_seconds = 1\n"
                         for name in ("identity", "network", "domain", "names", "address"))
        config = data / "trustchain.toml"
        kept = [line for line in config.read_text().splitlines()
                if not line.lstrip("# ").startswith(("acme_http01_port", "dns_rate_limit "))]
        # RRL off: Pebble asks the node's DNS for every validation, all from [::1].
        config.write_text("\n".join([f"acme_http01_port = {responder.server_address[1]}",
                                     "dns_rate_limit = 0", *kept]) + "\n" + limits)
        proc, ports = start_node(data, env, "quic", "https", "dns")
        pebble_proc = None
        try:
            admin = ["--data-dir", str(data), "--server", f"[::1]:{ports['quic']}"]
            for command in (["network", "register", "alpha"],
                            ["record", "add", NAME, "AAAA", "::1"]):
                subprocess.run([sys.executable, "-m", "trustchain", *command, *admin], env=env,
                               check=True, capture_output=True, cwd=REPO)
            print(f"TrustChain: {args.orders} orders, {args.clients} clients ...",
                  file=sys.stderr)
            out["trustchain"] = run_orders(f"https://[::1]:{ports['https']}/acme/directory",
                                           responder, args.orders, args.clients)
            cert, key = pebble_tls(work)
            port = free_port()
            (work / "pebble.json").write_text(json.dumps({"pebble": {
                "listenAddress": f"[::1]:{port}", "managementListenAddress": f"[::1]:{free_port()}",
                "certificate": str(cert), "privateKey": str(key),
                "httpPort": responder.server_address[1], "tlsPort": free_port(),
                "ocspResponderURL": "", "externalAccountBindingRequired": False}}))
            pebble_proc = subprocess.Popen(
                [pebble, "-config", str(work / "pebble.json"), "-dnsserver",
                 f"[::1]:{ports['dns']}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True, env={**os.environ, "PEBBLE_VA_NOSLEEP": "1",
                                "PEBBLE_WFE_NONCEREJECT": "0"})
            assert pebble_proc.stdout is not None
            for line in pebble_proc.stdout:  # its own readiness line, not a sleep
                if "Listening on" in line:
                    break
            threading.Thread(target=pebble_proc.stdout.read, daemon=True).start()
            print(f"Pebble: {args.orders} orders, {args.clients} clients ...", file=sys.stderr)
            out["pebble"] = run_orders(f"https://[::1]:{port}/dir", responder, args.orders,
                                       args.clients)
        finally:
            if pebble_proc is not None:
                pebble_proc.kill()
                pebble_proc.wait()
            proc.terminate()
            proc.wait(timeout=30)
    responder.shutdown()
    out["ratio"] = out["trustchain"]["orders_per_s"] / max(out["pebble"]["orders_per_s"], 1e-9)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    for name in ("trustchain", "pebble"):
        r = out[name]
        print(f"{name:>10}: {r['orders_per_s']:.1f} orders/s ({r['done']} done, {r['failed']} "
              f"failed), latency p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms")
    print(f"TrustChain / Pebble: {out['ratio']:.2f} x (target >= {TARGET} x: "
          f"{'met' if out['ratio'] >= TARGET else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
