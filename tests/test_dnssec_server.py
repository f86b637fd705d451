"""A signed zone served by the node, judged by validators we did not write:
delv (BIND), dnssec-verify (BIND), ldns-verify-zone and kzonecheck (Knot)."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from bootstrap.init import InitResult
from tests.support import NodeProcess, run_cli, serve_zone, trust_anchor
from tests.trustchain.dns.zonedata import EXAMPLE


@pytest.fixture
def signed(node: InitResult, data_dir: Path, node_processes: list[NodeProcess], tmp_path: Path):
    proc, admin = serve_zone(data_dir, node_processes, EXAMPLE)
    return proc, admin, trust_anchor("example.net", admin, tmp_path / "anchor.conf")


def delv(port: int, anchor: Path, *args: str) -> str:
    out = subprocess.run(["delv", "@::1", "-p", str(port), "-a", str(anchor),
                          "+root=example.net", *args], capture_output=True, text=True, timeout=30)
    return out.stdout + out.stderr


def test_delv_fully_validates_answers_and_denials(signed) -> None:
    proc, _, anchor = signed
    _, port = proc.address("dns")
    assert "; fully validated" in delv(port, anchor, "www.example.net", "AAAA")
    assert "; fully validated" in delv(port, anchor, "chain.example.net", "A")
    assert "; fully validated" in delv(port, anchor, "x.wild.example.net", "TXT")
    nxdomain = delv(port, anchor, "nope.example.net", "A")
    assert "; negative response, fully validated" in nxdomain and "NXDOMAIN" in nxdomain
    nodata = delv(port, anchor, "www.example.net", "MX")
    assert "; negative response, fully validated" in nodata


def test_dnssec_status_and_ds(signed) -> None:
    _, admin, _ = signed
    status = json.loads(run_cli("dnssec", "status", "example.net", "--json", *admin).stdout)
    assert status["signed"] and sorted(k["role"] for k in status["keys"]) == ["ksk", "zsk"]
    assert all(k["algorithm"] == 13 for k in status["keys"])
    text = run_cli("dnssec", "ds", "example.net", *admin).stdout
    assert " IN DS " in text and " 13 2 " in text


class _TamperingProxy:
    """A UDP relay in front of the node that changes one address in every answer."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.sock.bind(("::1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.upstream = upstream
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as up:
            up.settimeout(5)
            while self.running:
                try:
                    data, client = self.sock.recvfrom(65535)
                except TimeoutError:
                    continue
                up.sendto(data, self.upstream)
                reply, _ = up.recvfrom(65535)
                self.sock.sendto(reply.replace(bytes([192, 0, 2, 10]), bytes([192, 0, 2, 66])),
                                 client)

    def close(self) -> None:
        self.running = False
        self.thread.join()
        self.sock.close()


def test_a_tampered_record_fails_validation(signed) -> None:
    proc, _, anchor = signed
    host, port = proc.address("dns")
    proxy = _TamperingProxy((host, port))
    try:
        out = delv(proxy.port, anchor, "www.example.net", "A")
    finally:
        proxy.close()
    assert "fully validated" not in out
    assert "RRSIG failed to verify" in out


def _axfr(proc: NodeProcess, admin: list[str], path: Path) -> None:
    key = json.loads(run_cli("zone", "secondary", "add", "example.net", "[::1]:5399", "--json",
                             *admin).stdout)
    _, port = proc.address("dns")
    out = subprocess.run(["dig", "@::1", "-p", str(port), "-y",
                          f"hmac-sha256:{key['key']}:{key['secret']}", "example.net", "AXFR",
                          "+nocmd", "+nostats", "+nocomments"],
                         capture_output=True, text=True, timeout=30).stdout
    # dig prints the SOA twice (start and end of the transfer) and the TSIG: zone files want neither
    lines = [line for line in out.splitlines() if line and "\tTSIG\t" not in line]
    path.write_text("\n".join(lines[:-1]) + "\n")


def test_zone_as_transferred_passes_dnssec_verify_and_ldns(signed, tmp_path: Path) -> None:
    proc, admin, _ = signed
    zone = tmp_path / "axfr.zone"
    _axfr(proc, admin, zone)
    bind = subprocess.run(["dnssec-verify", "-o", "example.net", str(zone)],
                          capture_output=True, text=True)
    assert bind.returncode == 0, bind.stdout + bind.stderr
    assert "Zone fully signed" in bind.stdout + bind.stderr
    ldns = subprocess.run(["ldns-verify-zone", str(zone)], capture_output=True, text=True)
    assert ldns.returncode == 0, ldns.stdout + ldns.stderr
    knot = subprocess.run(["kzonecheck", "-o", "example.net", "-d", "on", str(zone)],
                          capture_output=True, text=True)
    assert knot.returncode == 0 and knot.stdout.strip() == "", knot.stdout + knot.stderr


def test_dnskey_query_over_udp(signed) -> None:
    proc, _, _ = signed
    import dns.query

    host, port = proc.address("dns")
    response = dns.query.udp(dns.message.make_query("example.net", "DNSKEY", want_dnssec=True),
                             host, port=port, timeout=5)
    types = [r.rdtype for r in response.answer]
    assert types == [dns.rdatatype.DNSKEY, dns.rdatatype.RRSIG]


def test_chain_of_trust_from_the_origin_to_a_hosted_network(
    node: InitResult, data_dir: Path, node_processes: list[NodeProcess], tmp_path: Path
) -> None:
    proc = NodeProcess.start(data_dir)
    node_processes.append(proc)
    proc.wait_ready()
    admin = ["--data-dir", str(data_dir), "--server", "[{}]:{}".format(*proc.address("quic"))]
    assert run_cli("network", "register", "alpha", *admin).returncode == 0
    added = run_cli("record", "add", "www.alpha.trust.example.net", "AAAA", "2001:db8::a",
                    *admin)
    assert added.returncode == 0, added.stderr
    proc.wait_for(r"serving the federation's zones: .*alpha\.trust\.example\.net")
    anchor = trust_anchor("trust.example.net", admin, tmp_path / "origin-anchor.conf")
    _, port = proc.address("dns")
    out = subprocess.run(["delv", "@::1", "-p", str(port), "-a", str(anchor),
                          "+root=trust.example.net", "www.alpha.trust.example.net", "AAAA"],
                         capture_output=True, text=True, timeout=30)
    assert "; fully validated" in out.stdout + out.stderr, out.stdout + out.stderr


def test_rollovers_started_by_hand(signed) -> None:
    proc, admin, anchor = signed
    _, port = proc.address("dns")
    zsk = run_cli("dnssec", "rollover", "example.net", "--zsk", *admin)
    assert zsk.returncode == 0, zsk.stderr
    assert "zsk" in zsk.stdout and "published" in zsk.stdout
    again = run_cli("dnssec", "rollover", "example.net", "--zsk", *admin)
    assert again.returncode == 1 and "already under way" in again.stderr
    ksk = run_cli("dnssec", "rollover", "example.net", "--ksk", *admin)
    assert ksk.returncode == 0, ksk.stderr
    # CDS/CDNSKEY now name the new KSK for the parent; the old DS still validates everything.
    cds = subprocess.run(["dig", "@::1", "-p", str(port), "example.net", "CDS", "+short"],
                         capture_output=True, text=True).stdout.split()
    status = json.loads(run_cli("dnssec", "status", "example.net", "--json", *admin).stdout)
    ksks = [k for k in status["keys"] if k["role"] == "ksk"]
    assert len(ksks) == 2 and all(k["active"] for k in ksks)
    assert int(cds[0]) in {k["tag"] for k in ksks}
    assert "; fully validated" in delv(port, anchor, "www.example.net", "AAAA")
    assert "; fully validated" in delv(port, anchor, "example.net", "DNSKEY")
    published = run_cli("dnssec", "ds-published", "example.net", *admin)
    assert published.returncode == 0, published.stderr
    status = json.loads(run_cli("dnssec", "status", "example.net", "--json", *admin).stdout)
    assert any(k["ds_published"] for k in status["keys"] if k["role"] == "ksk")


def test_the_keys_of_a_federation_zone_are_not_one_nodes_to_roll(
    node: InitResult, data_dir: Path, node_processes: list[NodeProcess], tmp_path: Path
) -> None:
    """A hosted network's zone is the federation's: its DNSKEY RRset is agreed through the
    consensus, so a node refuses to roll its keys alone (and to delete the zone)."""
    proc = NodeProcess.start(data_dir)
    node_processes.append(proc)
    proc.wait_ready()
    admin = ["--data-dir", str(data_dir), "--server", "[{}]:{}".format(*proc.address("quic"))]
    assert run_cli("network", "register", "alpha", *admin).returncode == 0
    proc.wait_for(r"serving the federation's zones: .*alpha\.trust\.example\.net")
    rolled = run_cli("dnssec", "rollover", "alpha.trust.example.net", "--ksk", *admin)
    assert rolled.returncode == 1 and "federation zone" in rolled.stderr
    deleted = run_cli("zone", "delete", "alpha.trust.example.net", *admin)
    assert deleted.returncode == 1 and "federation's zones" in deleted.stderr
    status = json.loads(run_cli("dnssec", "status", "alpha.trust.example.net", "--json",
                                *admin).stdout)
    assert {k["role"] for k in status["keys"]} == {"ksk", "zsk"}
    anchor = trust_anchor("trust.example.net", admin, tmp_path / "origin.conf")
    _, port = proc.address("dns")
    out = subprocess.run(["delv", "@::1", "-p", str(port), "-a", str(anchor),
                          "+root=trust.example.net", "alpha.trust.example.net", "SOA"],
                         capture_output=True, text=True, timeout=30)
    assert "; fully validated" in out.stdout + out.stderr, out.stdout + out.stderr


@pytest.mark.parametrize("choices", [["--nsec3"], ["--algorithm", "15", "--csk"],
                                     ["--nsec3", "--algorithm", "15"]])
def test_other_dnssec_choices_validate(
    node: InitResult, data_dir: Path, node_processes: list[NodeProcess], tmp_path: Path,
    choices: list[str],
) -> None:
    proc = NodeProcess.start(data_dir)
    node_processes.append(proc)
    proc.wait_ready()
    admin = ["--data-dir", str(data_dir), "--server", "[{}]:{}".format(*proc.address("quic"))]
    zone_file = tmp_path / "z.zone"
    zone_file.write_text(EXAMPLE)
    imported = run_cli("zone", "import", zone_file, *choices, *admin)
    assert imported.returncode == 0, imported.stderr
    status = json.loads(run_cli("dnssec", "status", "example.net", "--json", *admin).stdout)
    assert status["policy"]["nsec3"] == ("--nsec3" in choices)
    roles = sorted(k["role"] for k in status["keys"])
    assert roles == (["csk"] if "--csk" in choices else ["ksk", "zsk"])
    assert {k["algorithm"] for k in status["keys"]} == {15 if "15" in choices else 13}
    anchor = trust_anchor("example.net", admin, tmp_path / "anchor.conf")
    _, port = proc.address("dns")
    assert "; fully validated" in delv(port, anchor, "www.example.net", "AAAA")
    assert "; fully validated" in delv(port, anchor, "x.wild.example.net", "TXT")
    assert "; negative response, fully validated" in delv(port, anchor, "nope.example.net", "A")
    assert "; negative response, fully validated" in delv(port, anchor, "www.example.net", "MX")
    assert "; negative response, fully validated" in delv(port, anchor, "x.wild.example.net", "A")
    zone = tmp_path / "axfr.zone"
    _axfr(proc, admin, zone)
    # A CSK carries the KSK flag and signs everything: dnssec-verify's -z says so.
    csk = ["-z"] if "--csk" in choices else []
    bind = subprocess.run(["dnssec-verify", *csk, "-o", "example.net", str(zone)],
                          capture_output=True, text=True)
    assert bind.returncode == 0, bind.stdout + bind.stderr
    ldns = subprocess.run(["ldns-verify-zone", str(zone)], capture_output=True, text=True)
    assert ldns.returncode == 0, ldns.stdout + ldns.stderr
    knot = subprocess.run(["kzonecheck", "-o", "example.net", "-d", "on", str(zone)],
                          capture_output=True, text=True)
    assert knot.returncode == 0 and knot.stdout.strip() == "", knot.stdout + knot.stderr
