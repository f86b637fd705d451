"""``trustchain init --no-zone``: the node does not answer for the origin zone (REFUSED, as
for any zone it does not serve), while the zone is kept as ever: a record added to it is
committed (at a new serial)."""

from __future__ import annotations

from pathlib import Path

import dns.message
import dns.query
import dns.rcode

from tests.support import NodeProcess, run_cli

ORIGIN = "trust.example.net"


def test_init_no_zone_leaves_the_origin_unanswered_but_kept(
        tmp_path: Path, node_processes: list[NodeProcess]) -> None:
    data = tmp_path / "data"
    made = run_cli("init", "--data-dir", data, "--origin", ORIGIN, "--no-zone")
    assert made.returncode == 0, made.stderr
    assert "serve_federation_zones = false" in (data / "trustchain.toml").read_text()
    proc = NodeProcess.start(data)
    node_processes.append(proc)
    proc.wait_ready()
    host, port = proc.address("dns")
    answer = dns.query.udp(dns.message.make_query(ORIGIN, "SOA"), host, port=port, timeout=5)
    assert answer.rcode() == dns.rcode.REFUSED
    admin = ["--data-dir", data, "--server", "[{}]:{}".format(*proc.address("quic"))]
    added = run_cli("record", "add", f"www.{ORIGIN}", "AAAA", "2001:db8::80", *admin)
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith(f"zone {ORIGIN}. now at serial "), added.stdout
    again = dns.query.udp(dns.message.make_query(f"www.{ORIGIN}", "AAAA"), host, port=port,
                          timeout=5)
    assert again.rcode() == dns.rcode.REFUSED
