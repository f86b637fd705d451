"""Zone transfers to a real secondary: NSD, fed by AXFR then IXFR after NOTIFY, with TSIG."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bootstrap.init import InitResult
from tests.support import NodeProcess, free_dns_port, run_cli, serve_zone, trust_anchor
from tests.trustchain.dns.zonedata import EXAMPLE


def dig(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["dig", "@::1", "-p", str(port), "+norec", "+time=1", "+tries=1", *args],
                          capture_output=True, text=True, timeout=30)


def eventually(check: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    """Re-check an observable condition until it holds (each check waits on the network)."""
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def primary(node: InitResult, data_dir: Path, node_processes: list[NodeProcess]):
    return serve_zone(data_dir, node_processes, EXAMPLE)


def test_transfer_without_the_key_is_refused(primary) -> None:
    proc, admin = primary
    _, port = proc.address("dns")
    out = dig(port, "example.net", "AXFR").stdout
    assert "Transfer failed" in out and "192.0.2.10" not in out
    added = run_cli("zone", "secondary", "add", "example.net", "[::1]:5399", "--json", *admin)
    assert added.returncode == 0, added.stderr
    import json

    key = json.loads(added.stdout)
    good = dig(port, "-y", f"hmac-sha256:{key['key']}:{key['secret']}", "example.net", "AXFR")
    assert "192.0.2.10" in good.stdout and good.stdout.count("\tSOA\t") == 2
    wrong = dig(port, "-y", f"hmac-sha256:{key['key']}:{'A' * 43}=", "example.net", "AXFR")
    assert "192.0.2.10" not in wrong.stdout


def test_nsd_secondary_follows_axfr_then_ixfr_after_notify(primary, tmp_path: Path) -> None:
    proc, admin = primary
    _, primary_port = proc.address("dns")
    nsd_port = free_dns_port()
    added = run_cli("zone", "secondary", "add", "example.net", f"[::1]:{nsd_port}", "--json",
                    *admin)
    assert added.returncode == 0, added.stderr
    import json

    key = json.loads(added.stdout)
    work = tmp_path / "nsd"
    work.mkdir()
    conf = work / "nsd.conf"
    conf.write_text(f"""server:
    ip-address: ::1@{nsd_port}
    do-ip4: no
    server-count: 1
    username: ""
    chroot: ""
    zonesdir: "{work}"
    database: ""
    zonelistfile: "{work}/zone.list"
    xfrdfile: "{work}/xfrd.state"
    pidfile: "{work}/nsd.pid"
    logfile: "{work}/nsd.log"
    xfrdir: "{work}"
    verbosity: 2
    xfrd-reload-timeout: 0
remote-control:
    control-enable: no
key:
    name: "{key['key']}"
    algorithm: hmac-sha256
    secret: "{key['secret']}"
zone:
    name: "example.net."
    zonefile: "example.net.zone"
    request-xfr: ::1@{primary_port} {key['key']}
    allow-notify: ::1 {key['key']}
""")
    check = subprocess.run(["nsd-checkconf", str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    nsd = subprocess.Popen(["nsd", "-d", "-c", str(conf)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        eventually(lambda: dig(nsd_port, "www.example.net", "A", "+short").stdout.split()
                   == ["192.0.2.10"], "NSD to load the zone by AXFR")
        # The signed zone validates when NSD serves it, from the DS our node publishes.
        anchor = trust_anchor("example.net", admin, tmp_path / "anchor.conf")
        delv = subprocess.run(["delv", "@::1", "-p", str(nsd_port), "-a", str(anchor),
                               "+root=example.net", "www.example.net", "A"],
                              capture_output=True, text=True, timeout=30)
        assert "; fully validated" in delv.stdout + delv.stderr, delv.stdout + delv.stderr
        changed = run_cli("record", "add", "new.example.net", "AAAA", "2001:db8::77", *admin)
        assert changed.returncode == 0, changed.stderr
        eventually(lambda: dig(nsd_port, "new.example.net", "AAAA", "+short").stdout.split()
                   == ["2001:db8::77"], "NSD to follow the change after NOTIFY")
        primary_soa = dig(primary_port, "example.net", "SOA", "+short").stdout.split()[2]
        assert dig(nsd_port, "example.net", "SOA", "+short").stdout.split()[2] == primary_soa
        proc.drain_available()
        log = "\n".join(proc.log)
        assert "AXFR of example.net." in log or "IXFR of example.net." in log
        # NSD asked for the change incrementally; the zone is signed, so it was sent whole.
        assert "IXFR of example.net." in log
        assert "acknowledged by ::1" in log  # our NOTIFY reached NSD
    finally:
        nsd.send_signal(signal.SIGTERM)
        nsd.wait(timeout=30)


def test_axfr_over_doq_with_kdig(primary, data_dir: Path, tmp_path: Path) -> None:
    """RFC 9250 allows zone transfers over DoQ: several responses on one stream."""
    import json

    proc, admin = primary
    key = json.loads(run_cli("zone", "secondary", "add", "example.net", "[::1]:5399", "--json",
                             *admin).stdout)
    root = tmp_path / "root.pem"
    root.write_text(run_cli("genesis", "show", "--data-dir", data_dir, "--root-pem").stdout)
    host, port = proc.address("quic")
    out = subprocess.run(
        ["kdig", f"@{host}", "-p", str(port), f"+tls-ca={root}", "+tls-hostname=trust.example.net",
         "+quic", "-y", f"hmac-sha256:{key['key']}:{key['secret']}", "example.net", "AXFR"],
        capture_output=True, text=True, timeout=30)
    assert "192.0.2.10" in out.stdout, out.stdout + out.stderr
    assert out.stdout.count("\tSOA\t") == 2
