"""The node as an authoritative server, asked by dig, kdig and dnspython over UDP, TCP
and DoQ, managed through the CLI (admin API over mutual TLS)."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
from pathlib import Path

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import pytest

from bootstrap.init import InitResult
from tests.support import NodeProcess, run_cli, serve_zone
from tests.trustchain.dns.zonedata import EXAMPLE


@pytest.fixture
def served(node: InitResult, data_dir: Path, node_processes: list[NodeProcess]):
    return serve_zone(data_dir, node_processes, EXAMPLE)


def dig(proc: NodeProcess, *args: str) -> str:
    host, port = proc.address("dns")
    out = subprocess.run(["dig", f"@{host}", "-p", str(port), "+norec", "+time=5", "+tries=1",
                          *args], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_dig_udp_and_tcp(served) -> None:
    proc, _ = served
    for transport in ("+notcp", "+tcp"):
        assert dig(proc, "www.example.net", "AAAA", "+short", transport).split() == ["2001:db8::10"]
        out = dig(proc, "chain.example.net", "A", transport)
        assert "status: NOERROR" in out and "flags: qr aa" in out
        assert "www.example.net.\t300\tIN\tA\t192.0.2.10" in out
    assert "status: NXDOMAIN" in dig(proc, "nope.example.net", "A")
    out = dig(proc, "www.example.net", "MX")
    assert "status: NOERROR" in out and "ANSWER: 0" in out and "SOA" in out
    out = dig(proc, "x.wild.example.net", "TXT", "+short")
    assert out.strip() == '"wildcard"'
    out = dig(proc, "www.example.org", "A")
    assert "status: REFUSED" in out


def test_dig_referral_badvers_and_truncation(served) -> None:
    proc, _ = served
    out = dig(proc, "host.sub.example.net", "A")
    assert "flags: qr;" in out and "AUTHORITY: 1" in out and "ns.sub.example.net.\t300\tIN\tA" in out
    assert "status: BADVERS" in dig(proc, "www.example.net", "A", "+edns=1", "+noednsneg")
    out = dig(proc, "big.example.net", "TXT", "+bufsize=512", "+ignore")
    assert "flags: qr aa tc" in out
    out = dig(proc, "big.example.net", "TXT", "+bufsize=512")  # dig retries over TCP itself
    assert "flags: qr aa;" in out and "ANSWER: 1" in out


def test_kdig_udp_tcp_and_doq(served, node: InitResult, data_dir: Path, tmp_path: Path) -> None:
    proc, _ = served
    host, port = proc.address("dns")
    for mode in ("+notcp", "+tcp"):
        out = subprocess.run(["kdig", f"@{host}", "-p", str(port), mode, "www.example.net", "A",
                              "+short"], capture_output=True, text=True, timeout=30)
        assert out.stdout.split() == ["192.0.2.10"], out.stderr
    root = tmp_path / "root.pem"
    root.write_text(run_cli("genesis", "show", "--data-dir", data_dir, "--root-pem").stdout)
    qhost, qport = proc.address("quic")
    out = subprocess.run(["kdig", f"@{qhost}", "-p", str(qport), f"+tls-ca={root}",
                          "+tls-hostname=trust.example.net", "+quic", "www.example.net", "AAAA",
                          "+short"], capture_output=True, text=True, timeout=30)
    assert out.stdout.split() == ["2001:db8::10"], out.stderr


def test_dnspython_doq_against_the_node(served, data_dir: Path, tmp_path: Path) -> None:
    proc, _ = served
    root = tmp_path / "root.pem"
    root.write_text(run_cli("genesis", "show", "--data-dir", data_dir, "--root-pem").stdout)
    host, port = proc.address("quic")
    response = asyncio.run(dns.asyncquery.quic(
        dns.message.make_query("alias.example.net", "A"), host, port=port, timeout=10,
        verify=str(root), server_hostname="trust.example.net"))
    assert response.rcode() == dns.rcode.NOERROR and len(response.answer) == 2


def test_garbage_gets_formerr_and_the_server_lives_on(served) -> None:
    proc, _ = served
    host, port = proc.address("dns")
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07garbage", (host, port))
        reply, _ = sock.recvfrom(512)
    parsed = dns.message.from_wire(reply)
    assert parsed.id == 0xABCD and parsed.rcode() == dns.rcode.FORMERR
    assert dig(proc, "www.example.net", "A", "+short").split() == ["192.0.2.10"]


def test_export_passes_named_checkzone_and_round_trips(served, tmp_path: Path) -> None:
    _, admin = served
    exported = run_cli("zone", "export", "example.net", *admin)
    assert exported.returncode == 0, exported.stderr
    path = tmp_path / "exported.zone"
    path.write_text(exported.stdout)
    check = subprocess.run(["named-checkzone", "example.net", str(path)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "loaded serial 2026112500" in check.stdout
    again = run_cli("zone", "import", path, "--replace", *admin)
    assert again.returncode == 0
    second = run_cli("zone", "export", "example.net", *admin).stdout

    def without_soa(text: str) -> list[str]:
        return [line for line in text.splitlines() if " SOA " not in line]

    assert without_soa(second) == without_soa(exported.stdout)


def test_records_through_the_cli(served) -> None:
    proc, admin = served
    add = run_cli("record", "add", "api.example.net", "AAAA", "2001:db8::42", "--ttl", "120",
                  *admin)
    assert add.returncode == 0, add.stderr
    assert dig(proc, "api.example.net", "AAAA", "+short").split() == ["2001:db8::42"]
    bad = run_cli("record", "add", "www.example.net", "CNAME", "alias", *admin)
    assert bad.returncode == 1 and "nothing applied" in bad.stderr
    listing = json.loads(run_cli("record", "list", "example.net", "--json", *admin).stdout)
    assert {"name": "api.example.net.", "type": "AAAA", "ttl": 120,
            "data": "2001:db8::42"} in listing
    gone = run_cli("record", "delete", "api.example.net", "AAAA", *admin)
    assert gone.returncode == 0
    assert "status: NXDOMAIN" in dig(proc, "api.example.net", "AAAA")
    listed = json.loads(run_cli("zone", "list", "--json", *admin).stdout)
    (zone,) = [z for z in listed if z["zone"] == "example.net."]  # beside the federation's
    assert zone["rrsets"] == 19
    assert zone["serial"] > 2026112500  # two changes, each moved it on (date-based)


def test_change_survives_kill_9_right_after_the_answer(
    served, data_dir: Path, node_processes: list[NodeProcess]
) -> None:
    proc, admin = served
    assert run_cli("record", "add", "durable.example.net", "A", "192.0.2.99", *admin).returncode == 0
    proc.proc.send_signal(signal.SIGKILL)
    proc.proc.wait()
    again = NodeProcess.start(data_dir)
    node_processes.append(again)
    again.wait_ready()
    assert dig(again, "durable.example.net", "A", "+short").split() == ["192.0.2.99"]


def test_management_needs_the_admin_certificate(served, node: InitResult) -> None:
    proc, _ = served
    from transport.client import connect

    host, port = proc.address("quic")

    async def anonymous() -> int:
        async with connect(host, port, root=node.genesis.root_certificate,
                           server_name="trust.example.net") as client:
            body = b'{"add":[{"name":"evil.example.net","type":"A","data":"192.0.2.66"}]}'
            return (await client.request("admin", "records-change", body)).status

    assert asyncio.run(anonymous()) == 403
    assert "NXDOMAIN" in dig(proc, "evil.example.net", "A")


def test_response_rate_limiting_over_udp(
    node: InitResult, data_dir: Path, node_processes: list[NodeProcess], tmp_path: Path
) -> None:
    from tests.support import cli_env

    proc, _ = serve_zone(data_dir, node_processes, EXAMPLE, env=cli_env(
        TRUSTCHAIN_DNS_RATE_LIMIT="3", TRUSTCHAIN_DNS_RATE_LIMIT_SLIP="2"))
    host, port = proc.address("dns")
    query = dns.message.make_query("www.example.net", "A")
    answers, truncated = 0, 0
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        for _ in range(20):
            sock.sendto(query.to_wire(), (host, port))
        for _ in range(20):
            try:
                reply = dns.message.from_wire(sock.recvfrom(4096)[0])
            except TimeoutError:
                break
            if reply.flags & dns.flags.TC:
                truncated += 1
            else:
                answers += 1
    assert answers <= 4  # the burst (3), maybe one refilled token
    assert truncated >= 5  # half of the rest slip, so a real client falls back to TCP
    assert dig(proc, "www.example.net", "A", "+tcp", "+short").split() == ["192.0.2.10"]


def test_network_register_hosted_and_delegated(
    node: InitResult, data_dir: Path, node_processes: list[NodeProcess]
) -> None:
    proc = NodeProcess.start(data_dir)
    node_processes.append(proc)
    proc.wait_ready()
    admin = ["--data-dir", str(data_dir), "--server", "[{}]:{}".format(*proc.address("quic"))]
    # The origin is one of the federation's zones: this lone node serves it once it has
    # published its keys and declared itself; a registration gives the network its zone.
    proc.wait_for(r"serving the federation's zones")
    early = run_cli("network", "register", "alpha", *admin)
    assert early.returncode == 0, early.stderr
    assert "registered at height" in early.stdout and "(hosted)" in early.stdout
    listed = json.loads(run_cli("network", "list", "--json", *admin).stdout)
    assert [(n["name"], n["zone"], n["mode"]) for n in listed] == [
        ("alpha", "alpha.trust.example.net.", "hosted")]
    proc.wait_for(r"serving the federation's zones: .*alpha\.trust\.example\.net")
    soa = dig(proc, "alpha.trust.example.net", "SOA")
    assert "flags: qr aa;" in soa and "ANSWER: 1" in soa
    assert "status: NXDOMAIN" in dig(proc, "www.alpha.trust.example.net", "A")
    delegated = run_cli("network", "register", "beta", "--delegate",
                        "ns1.beta.trust.example.net=2001:db8::99", "--ds",
                        "12345 13 2 " + "AB" * 32, *admin)
    assert delegated.returncode == 0, delegated.stderr
    referral = dig(proc, "host.beta.trust.example.net", "AAAA")
    assert "flags: qr;" in referral
    assert "beta.trust.example.net.\t3600\tIN\tNS\tns1.beta.trust.example.net." in referral
    assert "ns1.beta.trust.example.net. 3600 IN\tAAAA\t2001:db8::99" in referral.replace(
        ".\t3600\tIN", ". 3600 IN")
    assert "12345 13 2" in dig(proc, "beta.trust.example.net", "DS", "+short")
    again = run_cli("network", "register", "beta", *admin)
    assert again.returncode == 1 and "already registered" in again.stderr
    listing = json.loads(run_cli("network", "list", "--json", *admin).stdout)
    assert [(n["name"], n["mode"]) for n in listing] == [("alpha", "hosted"), ("beta", "delegated")]


def test_dnspython_udp_tcp_soa_and_ns(served) -> None:
    import dns.query

    proc, _ = served
    host, port = proc.address("dns")
    for send in (dns.query.udp, dns.query.tcp):
        soa = send(dns.message.make_query("example.net", "SOA"), host, port=port, timeout=5)
        assert soa.answer[0][0].serial == 2026112500 and soa.flags & dns.flags.AA
        ns = send(dns.message.make_query("example.net", "NS"), host, port=port, timeout=5)
        assert sorted(r.target.to_text() for r in ns.answer[0]) == [
            "ns1.example.net.", "ns2.elsewhere.org."]


def test_tcp_pipelining_and_idle_timeout(
    node: InitResult, data_dir: Path, node_processes: list[NodeProcess], tmp_path: Path
) -> None:
    from tests.support import cli_env

    proc, _ = serve_zone(data_dir, node_processes, EXAMPLE,
                         env=cli_env(TRUSTCHAIN_DNS_TCP_IDLE_TIMEOUT_SECONDS="1"))
    host, port = proc.address("dns")
    queries = [dns.message.make_query(n, "A") for n in ("www.example.net", "nope.example.net",
                                                        "alias.example.net")]
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(b"".join(len(w).to_bytes(2, "big") + w
                              for w in (q.to_wire() for q in queries)))  # one write, 3 queries
        stream = conn.makefile("rb")
        answers = []
        for _ in queries:
            size = int.from_bytes(stream.read(2), "big")
            answers.append(dns.message.from_wire(stream.read(size)))
        assert [a.id for a in answers] == [q.id for q in queries]
        assert [a.rcode() for a in answers] == [0, 3, 0]
        assert stream.read(1) == b""  # closed by the server after 1 s without a query
