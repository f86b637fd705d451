#!/usr/bin/env python3
"""Scale of a zone change: the time one record change takes as signed zones grow, and what
a stream of changes does to DNS latency, each beside its baseline from the same run.

Why: a change to a zone is checked, stored, re-signed and published while the node's event
loop answers queries.  If its cost grows with the zone, large zones make every change slow
and stall the answers to every query meanwhile (issue 16, part 3).

(1) Per change.  For each of ``--sizes`` (RRsets, not counting DNSSEC records), a zone file
    is imported as ``trustchain zone import`` does (``DnsService.zones.import_text``,
    DNSSEC on with the node's default choices: ECDSA P-256, KSK + ZSK, NSEC), then
    ``--changes`` times one AAAA record is added to an existing name through the path of
    ``trustchain record add`` (``DnsService.zones.change(add=[...])``: checked, stored,
    re-signed, published).  Prints p50/p99/mean ms per change, the import time, and
    re-signing an unchanged version alone.  Target: p99 <= 5 ms at every size (flat).
    ``--budget`` bounds each size: a zone whose import and one change are predicted, from
    the smaller sizes, to take longer is not built (the prediction and the figures it
    rests on are printed instead), and changes stop (after the first) once it is spent.
(2) Latency under changes.  A zone of ``--latency-size`` RRsets is served on [::1] (port
    0) by the node's UDP listener (``transport.dns.DnsListener`` over ``handle`` and
    ``handle_stream``, as ``trustchain serve`` wires it), and a separate process asks
    it, one query at a time with ``dns.query.udp`` (A of a random name, DO=1), for
    ``--seconds``: first with no changes (baseline), then while a task on the listener's
    event loop makes one change every ``--interval`` seconds as ``records-change`` does
    (``ChangesOffLoop``: prepared and signed in a worker thread, committed on the loop).
    Target: p99 with changes <= 2 x the baseline p99.  Part (1)'s zone of that size is reused if it built one;
    if the budget rules a change at that size out, the prediction is printed.

The node is made in a temporary directory (``init_node`` with cheap Argon2id,
``open_node``, ``build_dns``: SQLite and key store as in production), removed at the end.

    python benchmarks/dns_changes.py [--sizes 1000,10000,100000] [--changes 100]
        [--latency-size 10000] [--seconds 10] [--interval 0.05] [--budget 900] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from math import log
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import dns.exception  # noqa: E402
import dns.message  # noqa: E402
import dns.name  # noqa: E402
import dns.query  # noqa: E402
import dns.rcode  # noqa: E402

from bootstrap.init import init_node  # noqa: E402
from transport.dns import DnsListener  # noqa: E402
from trustchain.config import load_config  # noqa: E402
from trustchain.datadir import DataDir  # noqa: E402
from trustchain.dns.records import Record  # noqa: E402
from trustchain.dns.service import DnsService  # noqa: E402
from trustchain.dns.zones import SigningChoices  # noqa: E402
from trustchain.keystore import KdfParams  # noqa: E402
from trustchain.wiring.dns import ChangesOffLoop, build_dns  # noqa: E402
from trustchain.wiring.node import open_node  # noqa: E402
from trustchain.wiring.serve import loop_factory  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
from node_process import percentile  # noqa: E402

PASSPHRASE = "dns-changes benchmark"
TARGET_CHANGE_MS, TARGET_RATIO = 5.0, 2.0
#: The apex and the name server's records; the rest of a zone is ``host<i> A``.
FIXED_RRSETS = 4
#: Seconds a client waits for an answer: long, so that an answer delayed by a change (the
#: query waits in the listener's socket buffer) is measured, not lost; a lost one counts as this.
QUERY_TIMEOUT = 30.0
#: Part (2)'s changes are numbered from here, so they add records part (1) did not.
LATENCY_CHANGES = 1_000_000


def zone_text(origin: str, size: int) -> str:
    """A zone file of ``size`` RRsets: SOA, NS, the name server's A and AAAA, hosts' A."""
    lines = [f"$ORIGIN {origin}", "$TTL 300", "@ SOA ns1 hostmaster 1 7200 3600 1209600 300",
             "@ NS ns1", "ns1 A 192.0.2.1", "ns1 AAAA 2001:db8::1"]
    lines += [f"host{i} A 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
              for i in range(size - FIXED_RRSETS)]
    return "\n".join(lines) + "\n"


def record_for(origin: dns.name.Name, hosts: int, k: int) -> Record:
    """Change ``k``'s record: one AAAA record at an existing name."""
    return Record(dns.name.from_text(f"host{k * 7919 % hosts}", origin), "AAAA",
                  f"2001:db8:1:{k >> 16 & 0xffff:x}::{k & 0xffff:x}")


def change(service: DnsService, origin: dns.name.Name, hosts: int, k: int) -> float:
    """Change ``k``, as ``trustchain record add`` does (all in this thread); its seconds."""
    record = record_for(origin, hosts, k)
    start = time.perf_counter()
    service.zones.change(add=[record])
    return time.perf_counter() - start


def import_zone(service: DnsService, origin: str, size: int) -> float:
    """Import and sign a zone of ``size`` RRsets as ``trustchain zone import`` does; seconds."""
    text = zone_text(origin, size)
    start = time.perf_counter()
    service.zones.import_text(text, dnssec=SigningChoices())
    return time.perf_counter() - start


def ms(seconds: list[float]) -> dict[str, float]:
    return {"p50_ms": percentile(seconds, .5) * 1000, "p99_ms": percentile(seconds, .99) * 1000,
            "mean_ms": statistics.fmean(seconds) * 1000}


def predict(measured: list[dict[str, Any]], size: int, key: str) -> tuple[float, float]:
    """(seconds, growth exponent) for ``key`` at ``size``, from the sizes measured: growth
    as between the last two (at least linear), or quadratic after only one."""
    last = measured[-1]
    exponent = 2.0
    if len(measured) > 1:
        before = measured[-2]
        exponent = max(1.0, log(last[key] / before[key]) / log(last["size"] / before["size"]))
    return last[key] * (size / last["size"]) ** exponent, exponent


def too_big(measured: list[dict[str, Any]], size: int, budget: float,
            imported: bool = False) -> dict[str, Any] | None:
    """Why a zone of ``size`` is not built (its import and one change predicted to take more
    than ``budget`` seconds), with the prediction; None if it fits or nothing was measured."""
    if not measured:
        return None
    build, e_build = predict(measured, size, "import_s")
    each, e_change = predict(measured, size, "mean_s")
    if (0.0 if imported else build) + each <= budget:
        return None
    last = measured[-1]
    return {"size": size, "predicted_import_s": build, "predicted_change_s": each,
            "skipped": f"not built: at {last['size']:,} RRsets the import took "
                       f"{last['import_s']:.1f} s and a change {last['mean_s']:.2f} s; growing "
                       + (f"as size^{e_build:.1f} and size^{e_change:.1f}" if len(measured) > 1
                          else "as size^2 (assumed: one size measured)")
                       + f", {size:,} RRsets would take ~{build:,.0f} s to import and "
                       f"~{each:,.0f} s a change, more than --budget {budget:.0f} s"}


def origin_of(size: int) -> str:
    return f"size{size}.bench.example."


def per_change(service: DnsService, sizes: list[int], changes: int, budget: float, keep: int,
               say: Callable[..., None]) -> list[dict[str, Any]]:
    """Part (1): every size in turn, each zone deleted once measured (but the one of size
    ``keep``, for part (2)).  Changes stop early when the size's budget is spent."""
    results: list[dict[str, Any]] = []
    measured: list[dict[str, Any]] = []
    for size in sizes:
        if (skipped := too_big(measured, size, budget)) is not None:
            say(f"  {size:>9,} RRsets: {skipped['skipped']}")
            results.append(skipped)
            continue
        name = dns.name.from_text(origin_of(size))
        imported = import_zone(service, origin_of(size), size)
        started = time.perf_counter() - imported  # the budget counts the import
        times: list[float] = []
        while len(times) < changes and (not times or time.perf_counter() - started < budget):
            times.append(change(service, name, size - FIXED_RRSETS, len(times)))
        resign: float | None = None
        if time.perf_counter() - started + max(times) < budget:
            signed = service.zoneset.signed[name]
            begin = time.perf_counter()
            service.signer.sign(signed.zone, signed)
            resign = (time.perf_counter() - begin) * 1000
        if size != keep:
            service.zones.delete(name)
        row: dict[str, Any] = {"size": size, "import_s": imported, "changes": len(times),
                               **ms(times), "mean_s": statistics.fmean(times),
                               "resign_ms": resign}
        row["met"] = row["p99_ms"] <= TARGET_CHANGE_MS
        measured.append(row)
        results.append(row)
        cut = " (the budget ran out)" if len(times) < changes else ""
        alone = "not run (budget)" if resign is None else f"{resign:,.1f} ms"
        say(f"  {size:>9,} RRsets: import + sign {imported:8.2f} s; {len(times)} changes{cut}: "
            f"p50 {row['p50_ms']:9,.1f} ms  p99 {row['p99_ms']:9,.1f} ms  mean "
            f"{row['mean_ms']:9,.1f} ms; target p99 <= {TARGET_CHANGE_MS:.0f} ms: "
            f"{'met' if row['met'] else 'NOT met'}")
        say(f"  {'':>16} of which re-signing alone (an unchanged version, every signature "
            f"reused): {alone}")
    return results


def ask(port: int, origin: str, hosts: int, seconds: float) -> dict[str, Any]:
    """In the client process: one query at a time for ``seconds``; latencies and failures."""
    rng = random.Random(port)
    latencies: list[float] = []
    lost = wrong = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        query = dns.message.make_query(f"host{rng.randrange(hosts)}.{origin}", "A",
                                       want_dnssec=True)
        start = time.perf_counter()
        try:
            answer = dns.query.udp(query, "::1", port=port, timeout=QUERY_TIMEOUT)
        except dns.exception.Timeout:
            lost += 1
            latencies.append(QUERY_TIMEOUT)
            continue
        latencies.append(time.perf_counter() - start)
        wrong += answer.rcode() != dns.rcode.NOERROR or len(answer.answer) != 2  # A + RRSIG
    return {"queries": len(latencies), "lost": lost, "wrong": wrong, **ms(latencies)}


async def stream_changes(service: DnsService, origin: dns.name.Name, hosts: int,
                         interval: float, seconds: float, stop: asyncio.Event) -> list[float]:
    """One change every ``interval`` seconds (no catching up when late), for ``seconds`` or
    until ``stop``, as the admin method ``records-change`` makes them: prepared and signed
    in a worker thread, committed on this event loop (:class:`trustchain.wiring.dns.ChangesOffLoop`)."""
    loop = asyncio.get_running_loop()
    changes = ChangesOffLoop(service.zones, service.signer.signing)
    times: list[float] = []
    due, end = loop.time(), loop.time() + seconds
    while not stop.is_set() and loop.time() < end:
        record = record_for(origin, hosts, LATENCY_CHANGES + len(times))
        start = time.perf_counter()
        await changes.change([record], [])
        times.append(time.perf_counter() - start)
        due = max(due + interval, loop.time())
        await asyncio.sleep(due - loop.time())
    return times


async def latency(service: DnsService, size: int, seconds: float,
                  interval: float) -> dict[str, Any]:
    """Part (2): the zone (part (1)'s, if it built one of ``size``) served by the node's UDP
    listener, queried without, then with changes streaming in."""
    origin = origin_of(size)
    name, hosts = dns.name.from_text(origin), size - FIXED_RRSETS
    imported = None if service.zones.get(name) else import_zone(service, origin, size)
    listener = DnsListener(service.handle, service.handle_stream, ["::1"], 0)
    (_, port), = await listener.start()
    loop = asyncio.get_running_loop()
    client = functools.partial(ask, port, origin, hosts)
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            await loop.run_in_executor(pool, client, 1.0)  # the client's start-up, a warm cache
            quiet = await loop.run_in_executor(pool, client, seconds)
            stop = asyncio.Event()
            started = time.perf_counter()
            changer = asyncio.ensure_future(stream_changes(service, name, hosts, interval, seconds,
                                                          stop))
            try:
                busy = await loop.run_in_executor(pool, client, seconds)
            finally:
                stop.set()
                times = await changer
            elapsed = time.perf_counter() - started
    finally:
        await listener.stop()
    ratio = busy["p99_ms"] / quiet["p99_ms"]
    return {"size": size, "import_s": imported, "quiet": quiet,
            "busy": {**busy, "seconds": elapsed, "changes": len(times),
                     "changes_per_s": len(times) / elapsed, "change": ms(times)},
            "ratio": ratio, "met": ratio <= TARGET_RATIO}


def report_latency(lat: dict[str, Any], interval: float, say: Callable[..., None]) -> None:
    quiet, busy = lat["quiet"], lat["busy"]
    say("  import + sign: " + ("the zone of part (1)" if lat["import_s"] is None
                               else f"{lat['import_s']:.2f} s"))
    for label, phase in (("no changes  ", quiet), ("with changes", busy)):
        say(f"  {label}: {phase['queries']:7,} queries  p50 {phase['p50_ms']:9,.2f} ms  "
            f"p99 {phase['p99_ms']:9,.2f} ms  ({phase['lost']} lost, {phase['wrong']} wrong)")
    say(f"  changes (prepared and signed in a worker thread, committed on the loop): "
        f"{busy['changes']} in "
        f"{busy['seconds']:.1f} s ({busy['changes_per_s']:.1f}/s; asked {1 / interval:g}/s), "
        f"each p50 {busy['change']['p50_ms']:,.1f} ms, p99 {busy['change']['p99_ms']:,.1f} ms")
    say(f"  p99 with changes / without: {lat['ratio']:,.2f} x  (target <= {TARGET_RATIO:.0f} x: "
        f"{'met' if lat['met'] else 'NOT met'})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="RRsets, comma-separated")
    parser.add_argument("--changes", type=int, default=100, help="changes timed at each size")
    parser.add_argument("--latency-size", type=int, default=10_000, help="RRsets in part (2)")
    parser.add_argument("--seconds", type=float, default=10.0, help="of each latency phase")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between changes")
    parser.add_argument("--budget", type=float, default=900.0,
                        help="seconds a zone size may take (import + changes)")
    parser.add_argument("--json", action="store_true", help="the figures as JSON on stdout")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if min(sizes + [args.latency_size]) <= FIXED_RRSETS or args.changes < 1:
        parser.error(f"sizes must exceed {FIXED_RRSETS} RRsets and --changes be at least 1")
    say = functools.partial(print, file=sys.stderr if args.json else sys.stdout, flush=True)
    say(f"cpus: {os.cpu_count()}; signed zones (ECDSA P-256, KSK + ZSK, NSEC); "
        f"{args.changes} changes a size; budget {args.budget:g} s a size")
    out: dict[str, Any] = {"args": vars(args)}
    with tempfile.TemporaryDirectory(prefix="trustchain-dns-changes-") as tmp:
        data = Path(tmp) / "node"
        init_node(data, PASSPHRASE, network_name="bench", origin="trust.example.net.",
                  now=datetime.now(UTC), kdf=KdfParams(iterations=1, lanes=1, memory_cost_kib=8192))
        layout = DataDir(data)
        with layout.lock():
            node = open_node(layout, load_config(data, environ={}), lambda: PASSPHRASE)
            node.db.checkpoint_in_background()  # as trustchain serve does
            try:
                service = build_dns(node)
                say("(1) one record added to a signed zone (zones.change), by zone size:")
                rows = per_change(service, sizes, args.changes, args.budget, args.latency_size,
                                  say)
                out["per_change"] = rows
                say(f"(2) DNS over UDP on [::1], {args.seconds:g} s without changes, then "
                    f"{args.seconds:g} s with one every {args.interval:g} s "
                    f"({args.latency_size:,} RRsets):")
                kept = service.zones.get(dns.name.from_text(origin_of(args.latency_size)))
                skipped = too_big([r for r in rows if "skipped" not in r], args.latency_size,
                                  args.budget, imported=kept is not None)
                if skipped is not None:
                    say(f"  {skipped['skipped']}; queries would wait ~"
                        f"{skipped['predicted_change_s']:,.0f} s behind each change: NOT met")
                    out["latency"] = skipped
                else:
                    with asyncio.Runner(loop_factory=loop_factory()) as runner:
                        out["latency"] = runner.run(latency(service, args.latency_size,
                                                            args.seconds, args.interval))
                    report_latency(out["latency"], args.interval, say)
            finally:
                node.db.close()
    if args.json:
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
