#!/usr/bin/env python3
"""DNS over UDP: TrustChain against NSD, same zone, same queries, same run.

Generates a zone (1,000 names with A and AAAA records, a wildcard, a
delegation) and a query file (hits, NXDOMAIN, NODATA, wildcard), serves the
zone with NSD and with a TrustChain node on [::1], and drives each with
dnsperf for ``--seconds``.  It prints queries per second and queries per
server CPU-second (user + system time of the server's processes during the
run, from /proc) for both, and the ratio.  Target: TrustChain >= 0.6 x NSD
per server CPU-second.  A third run sets DO=1 (the zone is signed): signed answers
should keep >= 0.9 x the unsigned qps.

    python benchmarks/dns_udp.py [--seconds 10] [--clients 4]

Needs nsd and dnsperf (Debian packages) and the project installed (.venv).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support import free_dns_port  # noqa: E402

ZONE = "bench.example."
TICKS = os.sysconf("SC_CLK_TCK")


def make_zone(directory: Path) -> tuple[Path, Path]:
    lines = [f"$ORIGIN {ZONE}", "$TTL 300",
             "@ SOA ns1 hostmaster 2026112500 7200 3600 1209600 300",
             "@ NS ns1", "ns1 A 192.0.2.1", "ns1 AAAA 2001:db8::1",
             "*.wild TXT \"wildcard\"", "sub NS ns.sub", "ns.sub A 192.0.2.53"]
    queries = []
    for i in range(1000):
        lines.append(f"host{i} A 192.0.2.{i % 250 + 1}")
        lines.append(f"host{i} AAAA 2001:db8::{i:x}")
        queries += [f"host{i}.{ZONE} A", f"host{i}.{ZONE} AAAA"]
    queries += [f"missing{i}.{ZONE} A" for i in range(100)]
    queries += [f"host{i}.{ZONE} MX" for i in range(100)]
    queries += [f"x{i}.wild.{ZONE} TXT" for i in range(100)]
    zone = directory / "bench.zone"
    zone.write_text("\n".join(lines) + "\n")
    query_file = directory / "queries.txt"
    query_file.write_text("\n".join(queries) + "\n")
    return zone, query_file


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / TICKS


def family(root_pid: int) -> list[int]:
    """``root_pid`` and all its descendants (NSD forks its workers)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def dnsperf(port: int, query_file: Path, seconds: int, clients: int, do: bool = False) -> float:
    result = subprocess.run(
        ["dnsperf", "-s", "::1", "-p", str(port), "-d", str(query_file), "-l", str(seconds),
         "-c", str(clients), "-q", "200", "-t", "2", *(["-D"] if do else [])],
        capture_output=True, text=True, check=True,
    )
    match = re.search(r"Queries per second:\s+([\d.]+)", result.stdout)
    lost = re.search(r"Queries lost:\s+(\d+)", result.stdout)
    if match is None:
        raise RuntimeError(result.stdout + result.stderr)
    if lost and int(lost[1]):
        print(f"  (dnsperf reports {lost[1]} queries lost)")
    return float(match[1])


def measure(pid: int, port: int, query_file: Path, seconds: int, clients: int,
            do: bool = False) -> tuple[float, float]:
    dnsperf(port, query_file, 1, clients, do)  # warm-up (fills caches)
    pids = family(pid)
    before = cpu_seconds(pids)
    qps = dnsperf(port, query_file, seconds, clients, do)
    used = cpu_seconds(pids) - before
    return qps, qps * seconds / used if used else float("inf")


def run_nsd(directory: Path, zone: Path, port: int) -> subprocess.Popen[bytes]:
    conf = directory / "nsd.conf"
    conf.write_text(f"""server:
    ip-address: ::1@{port}
    do-ip4: no
    server-count: 1
    username: ""
    chroot: ""
    zonesdir: "{directory}"
    database: ""
    zonelistfile: "{directory}/zone.list"
    xfrdfile: "{directory}/xfrd.state"
    pidfile: "{directory}/nsd.pid"
    logfile: "{directory}/nsd.log"
    verbosity: 0
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: "{ZONE}"
    zonefile: "{zone}"
""")
    proc = subprocess.Popen(["nsd", "-d", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_for_answer(port)
    return proc


def wait_for_answer(port: int, tries: int = 100) -> None:
    """Poll with a SOA query until the server answers (bounded)."""
    import dns.message
    import dns.query

    query = dns.message.make_query(ZONE, "SOA")
    for _ in range(tries):
        try:
            if dns.query.udp(query, "::1", port=port, timeout=0.2).answer:
                return
        except Exception:  # not up yet
            pass
    raise RuntimeError(f"no answer on port {port}")


def run_trustchain(directory: Path, zone: Path) -> tuple[subprocess.Popen[str], int]:
    data = directory / "node"
    env = {**os.environ, "TRUSTCHAIN_PASSPHRASE": secrets.token_urlsafe(24),
           "TRUSTCHAIN_HTTP_PORT": "0", "TRUSTCHAIN_HTTPS_PORT": "0", "TRUSTCHAIN_QUIC_PORT": "0",
           "TRUSTCHAIN_DNS_PORT": "0", "TRUSTCHAIN_LOG_LEVEL": "warning",
           # dnsperf sends from one address: no rate limiting, as NSD's rrl-ratelimit: 0.
           "TRUSTCHAIN_DNS_RATE_LIMIT": "0"}
    cli = [sys.executable, "-m", "trustchain"]
    subprocess.run([*cli, "init", "--data-dir", str(data)], env=env, check=True,
                   capture_output=True)
    env["TRUSTCHAIN_LOG_LEVEL"] = "info"
    proc = subprocess.Popen([*cli, "serve", "--data-dir", str(data)], env=env,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    ports: dict[str, int] = {}
    for line in proc.stderr:
        if m := re.search(r"listening: (dns|quic) on \[::1\]:(\d+)/(udp)", line):
            ports[m[1]] = int(m[2])
        if "node ready" in line:
            break
    subprocess.run([*cli, "zone", "import", str(zone), "--data-dir", str(data),
                    "--server", f"[::1]:{ports['quic']}"], env=env, check=True,
                   capture_output=True)
    wait_for_answer(ports["dns"])
    return proc, ports["dns"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    for tool in ("nsd", "dnsperf"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (apt-get install nsd dnsperf)", file=sys.stderr)
            return 1
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        zone, queries = make_zone(directory)
        print(f"zone: 2,009 RRs; queries: {len(queries.read_text().splitlines())} names "
              f"(hits, NXDOMAIN, NODATA, wildcard); dnsperf {args.seconds}s, "
              f"{args.clients} clients; cpus: {os.cpu_count()}")
        nsd_port = free_dns_port()
        nsd = run_nsd(directory, zone, nsd_port)
        try:
            nsd_qps, nsd_per_cpu = measure(nsd.pid, nsd_port, queries, args.seconds, args.clients)
        finally:
            nsd.send_signal(signal.SIGTERM)
            nsd.wait()
        node, port = run_trustchain(directory, zone)
        try:
            tc_qps, tc_per_cpu = measure(node.pid, port, queries, args.seconds, args.clients)
            do_qps, do_per_cpu = measure(node.pid, port, queries, args.seconds, args.clients,
                                         do=True)
        finally:
            node.send_signal(signal.SIGTERM)
            node.wait()
        print(f"NSD 4         : {nsd_qps:9.0f} qps  {nsd_per_cpu:9.0f} qps per server CPU-second")
        print(f"TrustChain    : {tc_qps:9.0f} qps  {tc_per_cpu:9.0f} qps per server CPU-second")
        ratio = tc_per_cpu / nsd_per_cpu
        print(f"ratio per CPU : {ratio:9.2f} x NSD  (target >= 0.60: "
              f"{'met' if ratio >= 0.6 else 'NOT met'})")
        print(f"TrustChain DO=1 (signed answers, RRSIGs and NSEC proofs): {do_qps:9.0f} qps  "
              f"{do_per_cpu:9.0f} qps per server CPU-second")
        signed_ratio = do_qps / tc_qps
        print(f"signed / unsigned qps: {signed_ratio:5.2f} x  (target >= 0.90: "
              f"{'met' if signed_ratio >= 0.9 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
