#!/usr/bin/env python3
"""CT submission throughput, merge delay and proof latency, with same-run baselines.

1. **End to end.**  Starts a TrustChain node on [::1], signs ``--entries``
   distinct leaf certificates under the node's infrastructure CA, and posts
   them to ``/logs/a/ct/v1/add-chain`` over ``--connections`` keep-alive
   HTTP/1.1 connections.  An add-chain answer arrives only after the entry
   is sequenced, stored and covered by a signed tree head, so its latency
   *is* the merge delay.  Prints submissions per second and p50/p99 delay.
   Targets: >= 2,000 submissions/s; merge delay <= 1 s.
2. **Floor, same run, same machine:** the bare work no log can skip, done
   in-process with ``cryptography``: parsing each chain, verifying the
   leaf's signature and signing its SCT.  The ratio shows what HTTP, sequencing, SQLite and SCT
   signing cost on top.
3. **Proofs at scale:** a Merkle tree of ``--proof-leaves`` (default 1,000,000)
   leaves, built with the log's own tree (trustchain.ct.tree), then random
   inclusion and consistency proofs; prints p50/p99 per proof.  This measures
   the proof code the log answers with; it does not go through HTTP.

    python benchmarks/ct_submit.py [--entries 30000] [--connections 1000]

Needs only the project installed (.venv).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.hazmat.primitives.serialization import Encoding  # noqa: E402

from bootstrap.transport_certs import INFRA_CA_PURPOSE, build_leaf  # noqa: E402
from trustchain.ct.structs import Entry, EntryType, leaf_index_extension, sign_sct  # noqa: E402
from trustchain.ct.tree import MerkleTree  # noqa: E402
from trustchain.keystore import KeyStore  # noqa: E402
from trustchain.storage.database import open_database  # noqa: E402
from trustchain.storage.node import NodeStore  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
from node_process import cpu_seconds, init_node, node_env, percentile, start_node  # noqa: E402


def make_chains(data: Path, passphrase: str, count: int) -> list[list[str]]:
    keystore = KeyStore.open(data / "keys", passphrase)
    ca_key = keystore.private_key(keystore.active(INFRA_CA_PURPOSE).id)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    with open_database(data, readonly=True) as db:
        ca = NodeStore(db).latest_certificate(INFRA_CA_PURPOSE)
    assert ca is not None, "the node has no infrastructure CA certificate"
    ca_b64 = base64.b64encode(ca.public_bytes(Encoding.DER)).decode()
    subject_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    now = datetime.now(UTC)
    chains = []
    for i in range(count):
        if i and i % 2000 == 0:
            print(f"  signed {i:,} / {count:,} leaf certificates", file=sys.stderr)
        cert = build_leaf(ca_key, ca, subject_key, common_name=f"bench{i}", network="bench",
                          uri=f"trustchain://bench/node/bench{i}",
                          dns_names=[f"bench{i}.example"], server=True, now=now)
        chains.append([base64.b64encode(cert.public_bytes(Encoding.DER)).decode(), ca_b64])
    return chains


def floor(chains: list[list[str]]) -> float:
    """Chains per second for parse + leaf signature check + SCT signature, one core."""
    log_key = ec.generate_private_key(ec.SECP256R1())
    start = time.perf_counter()
    for i, (leaf_b64, ca_b64) in enumerate(chains):
        der = base64.b64decode(leaf_b64)
        leaf = x509.load_der_x509_certificate(der)
        ca = x509.load_der_x509_certificate(base64.b64decode(ca_b64))
        leaf.verify_directly_issued_by(ca)
        sign_sct(log_key, 1_700_000_000_000, Entry(EntryType.X509, der),
                 leaf_index_extension(i))
    return len(chains) / (time.perf_counter() - start)


async def submit_all(port: int, chains: list[list[str]],
                     connections: int) -> tuple[float, list[float]]:
    queue: asyncio.Queue[list[str]] = asyncio.Queue()
    for chain in chains:
        queue.put_nowait(chain)
    delays: list[float] = []

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("::1", port)
        try:
            while not queue.empty():
                chain = queue.get_nowait()
                body = json.dumps({"chain": chain}).encode()
                started = time.perf_counter()
                writer.write(b"POST /logs/a/ct/v1/add-chain HTTP/1.1\r\nHost: bench\r\n"
                             b"Content-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(body) + body)
                status = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                answer = await reader.readexactly(length)
                if b" 200 " not in status:
                    raise RuntimeError(f"{status!r}: {answer!r}")
                delays.append(time.perf_counter() - started)
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return len(chains) / (time.perf_counter() - start), delays


def proofs(leaves: int, samples: int) -> None:
    tree = MerkleTree()
    started = time.perf_counter()
    for i in range(leaves):
        tree.append(i.to_bytes(32, "big"))
        if i and i % 250_000 == 0:
            print(f"  tree: {i:,} / {leaves:,} leaves", file=sys.stderr)
    print(f"tree of {leaves:,} leaves built in {time.perf_counter() - started:.1f} s")
    rng = random.Random(6962)
    inclusion, consistency = [], []
    for _ in range(samples):
        index = rng.randrange(leaves)
        t = time.perf_counter()
        tree.inclusion_proof(index, leaves)
        inclusion.append(time.perf_counter() - t)
        old = rng.randrange(1, leaves)
        t = time.perf_counter()
        tree.consistency_proof(old, leaves)
        consistency.append(time.perf_counter() - t)
    for name, values in (("inclusion", inclusion), ("consistency", consistency)):
        print(f"{name} proof at {leaves:,}: p50 {percentile(values, .5) * 1e6:.0f} us, "
              f"p99 {percentile(values, .99) * 1e6:.0f} us ({samples:,} samples)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=30_000)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--proof-leaves", type=int, default=1_000_000)
    parser.add_argument("--proof-samples", type=int, default=10_000)
    args = parser.parse_args()
    passphrase = secrets.token_urlsafe(24)
    env = node_env(passphrase)
    print(f"cpus: {os.cpu_count()}; entries: {args.entries:,}; connections: {args.connections}")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "node"
        init_node(data, env)
        chains = make_chains(data, passphrase, args.entries)
        raw = floor(chains)
        print(f"floor (parse + verify the chain + sign the SCT, in-process): {raw:,.0f} chains/s")
        proc, ports = start_node(data, env, "http")
        port = ports["http"]
        cpu_before = cpu_seconds(proc.pid)
        client_before = time.process_time()
        try:
            try:  # the client shares the 2 cores: the lighter event loop, where installed
                import uvloop
                rate, delays = uvloop.run(submit_all(port, chains, args.connections))
            except ImportError:
                rate, delays = asyncio.run(submit_all(port, chains, args.connections))
            node_cpu = cpu_seconds(proc.pid) - cpu_before
            client_cpu = time.process_time() - client_before
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        print(f"trustchain add-chain over HTTP: {rate:,.0f} submissions/s "
              f"({rate / raw:.2f} x the floor); target >= 2,000/s")
        print(f"node CPU: {node_cpu:.1f} s for {len(chains):,} submissions = "
              f"{len(chains) / node_cpu:,.0f} submissions per node CPU-second "
              f"(the client used {client_cpu:.1f} CPU-s on the same cores)")
        print(f"merge delay (add-chain answered = sequenced, stored, head signed): "
              f"p50 {statistics.median(delays) * 1000:.0f} ms, "
              f"p99 {percentile(delays, .99) * 1000:.0f} ms; target <= 1,000 ms")
        with open_database(data, readonly=True) as db:
            size = db.conn.execute("SELECT COUNT(*) FROM ct_entries WHERE log = 'a'").fetchone()[0]
        db_bytes = sum(f.stat().st_size for f in data.glob("node.db*"))
        print(f"log a holds {size:,} entries; database files {db_bytes / 1e6:.1f} MB "
              f"for both logs ({db_bytes / max(size, 1):,.0f} bytes per entry incl. chains)")
    proofs(args.proof_leaves, args.proof_samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
