"""``GET /metrics``: a running node's Prometheus metrics, read by Prometheus's own parser.

One node process answers DNS over UDP and TCP (dnspython), issues a certificate
(``trustchain ca issue`` over stoq/1, its precertificate submitted to the node's CT
logs) and serves an OCSP request; the counters of each must have moved between two
scrapes, parsed with ``prometheus_client.parser`` (the text format's reference parser).
"""

from __future__ import annotations

import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import dns.message
import dns.name
import dns.query
import dns.rcode
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bootstrap.init import InitResult
from tests.support import NodeProcess, run_cli, serve_zone
from tests.trustchain.dns.zonedata import EXAMPLE
from trustchain.dns.handler import QueryContext
from trustchain.metrics import DNS_TIMED_EVERY, DnsTally
from trustchain.wiring.metrics import DnsCounting, _labels, _name_end

ZONE = "example.net."
NETWORK = "alpha"
NETWORK_NAME = "www.alpha.trust.example.net"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(proc: NodeProcess, accept: str | None = None) -> tuple[str, str]:
    """The exposition and its content type, from the plain-HTTP port."""
    host, port = proc.address("http")
    request = urllib.request.Request(f"http://[{host}]:{port}/metrics")
    if accept is not None:
        request.add_header("Accept", accept)
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read().decode(), response.headers["content-type"]


def samples(proc: NodeProcess) -> Samples:
    """Every sample of a scrape, by name and labels, as the Prometheus parser reads it."""
    text, _ = scrape(proc)
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(seen: Samples, name: str, **labels: str) -> float:
    return seen.get((name, frozenset(labels.items())), 0.0)


def total(seen: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in seen.items() if n == name and want <= ls)


def until(proc: NodeProcess, check: Callable[[Samples], bool], timeout: float = 10.0) -> Samples:
    """Scrape until ``check`` holds (counters the node updates as it answers)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = samples(proc)
        if check(seen) or time.monotonic() > deadline:
            return seen


def make_csr(tmp_path: Path, name: str) -> Path:
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", tmp_path / "key.pem",
                    "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
                    "-out", tmp_path / "csr.pem"], check=True, capture_output=True)
    return tmp_path / "csr.pem"


def test_metrics_count_what_the_node_does(node: InitResult, data_dir: Path, tmp_path: Path,
                                          node_processes: list[NodeProcess]) -> None:
    proc, admin = serve_zone(data_dir, node_processes, EXAMPLE)  # example.net.
    text, content_type = scrape(proc)
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("process_cpu_seconds", "process_resident_memory_bytes", "process_open_fds"):
        assert name in families, name
    assert families["trustchain_consensus_height"].type == "gauge"
    assert families["trustchain_dns_queries"].type == "counter"
    assert families["trustchain_ct_merge_delay_seconds"].type == "histogram"
    before = samples(proc)
    assert value(before, "process_open_fds") > 0
    assert value(before, "process_resident_memory_bytes") > 0
    assert ("trustchain_consensus_height", frozenset()) in before
    assert value(before, "trustchain_ct_tree_size", log="a") == 0
    assert value(before, "trustchain_dns_zones") >= 1

    # DNS over UDP and TCP: an answer in the zone, a name outside every zone (REFUSED).
    host, port = proc.address("dns")
    ask = dns.message.make_query("www.example.net.", "AAAA")
    for _ in range(DNS_TIMED_EVERY + 1):  # so that one of them is timed
        assert dns.query.udp(ask, host, port=port, timeout=5).rcode() == dns.rcode.NOERROR
    assert dns.query.tcp(ask, host, port=port, timeout=5).rcode() == dns.rcode.NOERROR
    elsewhere = dns.message.make_query("www.example.org.", "A")
    assert dns.query.udp(elsewhere, host, port=port, timeout=5).rcode() == dns.rcode.REFUSED
    seen = samples(proc)
    for transport, rcode, zone, count in (("udp", "NOERROR", ZONE, DNS_TIMED_EVERY + 1),
                                          ("tcp", "NOERROR", ZONE, 1),
                                          ("udp", "REFUSED", "other", 1)):
        labels = {"transport": transport, "rcode": rcode, "zone": zone}
        assert value(seen, "trustchain_dns_queries_total", **labels) \
            - value(before, "trustchain_dns_queries_total", **labels) == count, labels
    assert value(seen, "trustchain_dns_query_duration_seconds_count", transport="udp") \
        > value(before, "trustchain_dns_query_duration_seconds_count", transport="udp")
    assert value(seen, "trustchain_dns_query_duration_seconds_sum", transport="udp") > 0
    assert value(seen, "trustchain_dns_answer_cache_hits_total") \
        > value(before, "trustchain_dns_answer_cache_hits_total")  # the second query

    # A certificate: stoq/1 requests, an issuance, its precertificate in both logs.
    assert run_cli("network", "register", NETWORK, *admin).returncode == 0
    issued = run_cli("ca", "issue", "--csr", make_csr(tmp_path, NETWORK_NAME), *admin)
    assert issued.returncode == 0, issued.stderr
    seen = until(proc, lambda s: total(s, "trustchain_ct_submissions_total",
                                       outcome="sequenced") >= 2)
    assert value(seen, "trustchain_ca_issuances_total", profile="server-90d",
                 network=NETWORK) == 1
    assert total(seen, "trustchain_ct_submissions_total", outcome="sequenced") >= 2
    assert total(seen, "trustchain_ct_merge_delay_seconds_count") >= 2
    assert sum(value(seen, "trustchain_ct_tree_size", log=name) for name in ("a", "b")) >= 1
    assert total(seen, "trustchain_ct_checkpoint_age_seconds") >= 0
    assert value(seen, "trustchain_stoq_requests_total", service="ca", method="issue",
                 status="200") == 1
    assert value(seen, "trustchain_stoq_requests_total", service="admin",
                 method="network-register", status="200") == 1
    assert value(seen, "trustchain_consensus_height") >= 1  # the network's registration
    assert total(seen, "trustchain_consensus_commit_latency_seconds_count") >= 1
    assert value(seen, "trustchain_quic_connections_accepted_total") >= 2
    assert total(seen, "trustchain_quic_streams_total", alpn="stoq/1") >= 2

    # Refusals by reason class, and an OCSP request (answered, if only to say it is malformed).
    outside = run_cli("ca", "issue", "--csr", make_csr(tmp_path, "www.bank.example"), *admin)
    assert outside.returncode != 0
    seen = until(proc, lambda s: total(s, "trustchain_ca_refusals_total") >= 1)
    assert value(seen, "trustchain_ca_refusals_total", reason="policy") == 1
    http_host, http_port = proc.address("http")
    post = urllib.request.Request(f"http://[{http_host}]:{http_port}/ocsp", data=b"not ocsp",
                                  headers={"content-type": "application/ocsp-request"})
    with urllib.request.urlopen(post, timeout=30) as response:  # malformedRequest (RFC 6960)
        assert response.headers["content-type"] == "application/ocsp-response"
    seen = samples(proc)
    assert value(seen, "trustchain_ca_revocation_requests_total", kind="ocsp",
                 outcome="ok") == 1


def test_metrics_only_on_the_plain_http_port(node: InitResult, data_dir: Path,
                                             node_processes: list[NodeProcess]) -> None:
    proc = NodeProcess.start(data_dir)
    node_processes.append(proc)
    proc.wait_ready()
    text, content_type = scrape(proc, accept="application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert text.endswith("# EOF\n")
    host, port = proc.address("http")
    post = urllib.request.Request(f"http://[{host}]:{port}/metrics", data=b"", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(post, timeout=30)
    assert refused.value.code == 405
    # Not over HTTPS (the REST API's port): the route is the plain listener's alone.
    https_host, https_port = proc.address("https")
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"https://[{https_host}]:{https_port}/metrics", timeout=30,
                               context=insecure)
    assert missing.value.code == 404


def test_dns_zone_labels_are_served_zones_or_other() -> None:
    zones = {dns.name.from_text("Example.NET."): None,
             dns.name.from_text("sub.example.net."): None}
    service = SimpleNamespace(server=SimpleNamespace(zoneset=SimpleNamespace(zones=zones)))
    tally = DnsTally()
    counting = DnsCounting(tally, service)  # type: ignore[arg-type]
    handle = counting.handler(lambda query, context: b"\0\0\x80\x03")  # NXDOMAIN
    for name in ("a.b.EXAMPLE.net.", "x.Sub.example.net.", "example.org.", "net."):
        handle(dns.message.make_query(name, "A").to_wire(), QueryContext("doq"))
    handle(b"\0\0", QueryContext("udp"))  # a runt: no name
    assert tally.totals() == {("doq", "NXDOMAIN", "example.net."): 1,
                             ("doq", "NXDOMAIN", "sub.example.net."): 1,
                             ("doq", "NXDOMAIN", "other"): 2,
                             ("udp", "NXDOMAIN", "other"): 1}
    assert sum(tally.latency("doq").counts) == 0  # 4 queries: none timed yet
    for _ in range(DNS_TIMED_EVERY):
        handle(dns.message.make_query("example.org.", "A").to_wire(), QueryContext("doq"))
    assert sum(tally.latency("doq").counts) == 1  # the handler's 16th query

    # Another zone served from now on: counted under its name, the counts so far kept.
    service.server.zoneset = SimpleNamespace(zones={**zones,
                                                    dns.name.from_text("example.org."): None})
    handle(dns.message.make_query("www.example.org.", "A").to_wire(), QueryContext("doq"))
    assert tally.totals()[("doq", "NXDOMAIN", "example.org.")] == 1
    assert tally.totals()[("doq", "NXDOMAIN", "other")] == 2 + DNS_TIMED_EVERY

    compressed = b"\0\0\0\0\0\1\0\0\0\0\0\0\xc0\x0c\0\1\0\1"
    assert _name_end(compressed) is None
    assert _labels(b"\3WwW\7example\0") == (b"www", b"example", b"")
