#!/usr/bin/env python3
"""Web console search latency with a large log, beside ``/healthz`` in the same run.

Why: the console's search (``/ui/search``) must stay fast as logs grow, because it
reads an index (trustchain/storage/ct_search.py), never a scan of the entries.
Target: p99 <= 200 ms with 100,000 entries in a log.

1. ``trustchain init`` in a temporary directory; then, in-process, through the storage
   API: ``--entries`` leaf certificates (names ``bench<i>.example``, under the node's
   infrastructure CA) taken by log ``a`` (``Log.accept``: the chain checks are skipped,
   the entries are sequenced, stored and signed as the node does) and indexed from
   the watermark (``CtSearchIndex.catch_up``, the same code the node runs at start);
   prints the indexing rate.
2. ``trustchain serve``; one keep-alive HTTP/1.1 client on the plain-HTTP port asks,
   in turn, ``--samples`` times each: a search for one exact name (a random
   ``bench<i>.example``), a search for a serial, a broad search (``%.example``: every
   entry matches; the page reads its first 1,000 index rows and shows 100
   certificates), a certificate page, and ``/healthz`` (the cheapest endpoint: the
   baseline of HTTP and the event loop).  Prints p50/p99 of each.

    python benchmarks/console.py [--entries 100000] [--samples 300]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import random
import secrets
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from trustchain.config import load_config  # noqa: E402
from trustchain.ct.log import Checked  # noqa: E402
from trustchain.ct.structs import Entry, EntryType  # noqa: E402
from trustchain.datadir import DataDir  # noqa: E402
from trustchain.storage.ct_search import CtSearchIndex  # noqa: E402
from trustchain.wiring.ct import build_ct_logs  # noqa: E402
from trustchain.wiring.node import open_node  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
from ct_submit import make_chains  # noqa: E402
from node_process import init_node, node_env, percentile, start_node  # noqa: E402

TARGET_MS = 200.0


def fill(data: Path, passphrase: str, count: int) -> list[int]:
    """Log ``a`` holds ``count`` new entries, all indexed; their serials."""
    chains = make_chains(data, passphrase, count)
    node = open_node(DataDir(data), load_config(data), lambda: passphrase)
    try:
        log = next(lg for lg in build_ct_logs(node) if lg.name == "a")
        start = time.perf_counter()
        for i, (leaf_b64, ca_b64) in enumerate(chains):
            log.accept(Checked(Entry(EntryType.X509, base64.b64decode(leaf_b64)),
                               [base64.b64decode(ca_b64)]))
            if log.pending >= 4096 or i == len(chains) - 1:
                while log.pending:
                    log.sequence(int(time.time() * 1000))
        print(f"log a: {log.tree_size:,} entries sequenced and stored in "
              f"{time.perf_counter() - start:.1f} s")
        index = CtSearchIndex(node.db)
        start = time.perf_counter()
        indexed = 0
        while done := index.catch_up(1000):
            indexed += done
        took = time.perf_counter() - start
        print(f"indexed {indexed:,} entries in {took:.1f} s: {indexed / took:,.0f} entries/s "
              "(catch-up from the watermark, as at start)")
        serials = [int(row[0], 16) for row in node.db.conn.execute(
            "SELECT serial FROM ctsearch_certificates WHERE log = 'a'").fetchall()]
    finally:
        node.db.close()
    return serials


def measure(port: int, count: int, serials: list[int], samples: int) -> dict[str, list[float]]:
    connection = http.client.HTTPConnection("::1", port, timeout=30)
    rng = random.Random(7)
    kinds: dict[str, list[float]] = {}

    def get(kind: str, path: str, expect: bytes) -> None:
        start = time.perf_counter()
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        kinds.setdefault(kind, []).append(time.perf_counter() - start)
        if response.status != 200 or expect not in body:
            raise RuntimeError(f"{path}: {response.status} {body[:200]!r}")

    for _ in range(samples):
        i = rng.randrange(count)
        serial = f"{rng.choice(serials):x}"
        get("search: one exact name", f"/ui/search?q=bench{i}.example",
            f"bench{i}.example".encode())
        get("search: a serial", f"/ui/search?q={serial}", serial.encode())
        get("search: %.example (all match)", "/ui/search?q=%25.example", b"narrow the search")
        get("certificate page", f"/ui/certificate/{serial}", serial.encode())
        get("/healthz (baseline)", "/healthz", b"ok")
    connection.close()
    return kinds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    passphrase = secrets.token_urlsafe(24)
    env = node_env(passphrase)
    print(f"cpus: {os.cpu_count()}; entries: {args.entries:,}; samples: {args.samples} each")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "node"
        init_node(data, env)
        serials = fill(data, passphrase, args.entries)
        start = time.perf_counter()
        proc, ports = start_node(data, env, "http")
        print(f"node ready in {time.perf_counter() - start:.1f} s")
        try:
            kinds = measure(ports["http"], args.entries, serials, args.samples)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    worst = 0.0
    for kind, values in kinds.items():
        p50, p99 = percentile(values, .5) * 1000, percentile(values, .99) * 1000
        if kind.startswith(("search", "certificate")):
            worst = max(worst, p99)
        print(f"{kind}: p50 {p50:.1f} ms, p99 {p99:.1f} ms ({len(values)} requests)")
    verdict = "met" if worst <= TARGET_MS else "NOT met"
    print(f"console pages p99 at most {worst:.1f} ms with {args.entries:,} entries in a log; "
          f"target <= {TARGET_MS:.0f} ms: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
