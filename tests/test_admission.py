"""Admission by consensus on a 4-node devnet: a fifth machine runs ``trustchain join``
with the four proofs (a k=19 plot registered first, work and time bound to a recent
block, the validators' endorsement), is admitted by a committed ``node-admission``,
receives its node certificate, serves, catches up, and signs commits as a fifth
validator.  A forged proof, and a founding node asking to join again, are refused with
their reason.  Then the validators' operators change its stake
(``trustchain federation validator`` on four of the five nodes), and the proofs'
parameters (``trustchain federation configure``).
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.dnssec
import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rdata
import dns.rdatatype
import dns.rrset
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from bootstrap.admission import admit_request, ensure_plot, plot_request
from bootstrap.devnet import node_config_text, pick_ports
from bootstrap.genesis import parse_genesis
from bootstrap.init import CONSENSUS_ED25519_PURPOSE, CONSENSUS_ML_DSA_PURPOSE
from bootstrap.join import _request
from tests.support import NodeProcess, run_cli
from tests.test_federation import NAMES, Federation, check_invariants, running_devnet, wait_for
from transport.client import connect
from trustchain.config import CONFIG_FILE_NAME
from trustchain.keystore import KeyStore


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    yield from running_devnet(tmp_path_factory, "admission")


def _chain(db_file: Path) -> dict[int, tuple[bytes, list[str]]]:
    """Height -> (hash, the validators whose precommits certify it)."""
    with sqlite3.connect(f"file:{db_file}?mode=ro", uri=True) as db:
        return {h: (bytes(hsh), [n for n, _s in json.loads(sigs)]) for h, hsh, sigs in db.execute(
            "SELECT height, hash, signatures FROM consensus_blocks")}


def _validators(federation: Federation, name: str) -> dict[str, int]:
    return {v["node_id"]: v["stake"] for v in federation.consensus_status(name)["validators"]}


def test_a_fifth_node_joins_by_consensus_and_signs_commits(
        federation: Federation, tmp_path: Path, node_processes: list[NodeProcess]) -> None:
    devnet = federation.status()
    quic = [n["addresses"]["quic"] for n in devnet["nodes"]]
    # The federation's zones: a short TTL (a joining node waits one before it serves), and a
    # resolver with a cache that validates answers from every name server throughout.
    key_store = ["--passphrase-file", federation.base / "passphrase"]
    ttl = run_cli("zone", "ttl", ORIGIN, "3", "--data-dir", federation.base / "node-1",
                  *key_store, "--server", quic[0], env=federation.env)
    assert ttl.returncode == 0, ttl.stderr
    ports = {n["node_id"]: int(n["addresses"]["dns"].rpartition(":")[2])
             for n in devnet["nodes"]}
    wait_for("every node serves the DNSKEY RRset with the new TTL", lambda: all(
        _dnskey(port).ttl == 3 for port in ports.values()))
    ds = _ds(federation, quic[0])
    resolver = CachingResolver(ports, ds)
    resolver.start()
    data = tmp_path / "node-5"
    data.mkdir(mode=0o700)
    (data / CONFIG_FILE_NAME).write_text(node_config_text("::1", pick_ports("::1", 1)[0], quic))
    env = {k: v for k, v in federation.env.items() if not k.endswith("_PORT")}  # its own ports
    result = run_cli("join", "--data-dir", data, "--genesis",
                     federation.base / "node-1" / "genesis.json", "--pin",
                     devnet["genesis_sha256"], "--peer", quic[0], "--stake", "100", env=env)
    assert result.returncode == 0, result.stderr
    node_id = re.search(r"as node ([0-9a-f]{32})", result.stdout)[1]  # type: ignore[index]
    assert not (data / ".join.tmp").exists()  # keys in place, the plot removed

    wait_for("every node counts five validators", lambda: all(
        _validators(federation, n).get(node_id) == 100 for n in NAMES))
    member = federation.consensus_status("node-3")["members"]
    assert [m["node_id"] for m in member] == [node_id]

    node5 = NodeProcess.start(data, env=env)
    node_processes.append(node5)
    node5.wait_ready()
    ports[node_id] = node5.address("dns")[1]
    wait_for("the resolver validated answers of node-5, named in the NS set",
             lambda: resolver.validated.get(node_id, 0) >= 3, bound=60.0)
    resolver.stop()
    assert resolver.failures == [], resolver.failures  # no window where validation failed
    assert all(resolver.validated.get(n, 0) >= 3 for n in ports), resolver.validated
    assert _ds(federation, quic[0]) == ds  # the joiner changed no DS
    anchor = tmp_path / "anchor.conf"
    anchor.write_text("trust-anchors {\n" + "".join(
        f'{ORIGIN} static-ds {d.key_tag} {d.algorithm} {d.digest_type} "{d.digest.hex()}";\n'
        for d in ds) + "};\n")
    for port in ports.values():
        delv = subprocess.run(["delv", "@::1", "-p", str(port), "-a", str(anchor),
                               f"+root={ORIGIN}", ORIGIN, "NS"],
                              capture_output=True, text=True, timeout=30)
        assert "; fully validated" in delv.stdout + delv.stderr, delv.stdout + delv.stderr
        assert f"{node_id}.nodes.{ORIGIN}" in delv.stdout  # five name servers
    admitted = min(federation.height(n) for n in NAMES)
    wait_for("node-5 catches up and its precommits certify blocks", lambda: any(
        node_id in signers for h, (_hash, signers) in _chain(data / "node.db").items()
        if h > admitted), bound=60.0)
    check_invariants(federation, NAMES)
    mine, theirs = _chain(data / "node.db"), federation.chain("node-1")
    assert all(theirs[h][0] == block for h, (block, _s) in mine.items() if h in theirs)

    # The operators of four of the five validators (more than 2/3 of the stake) halve it.
    answers = []
    for name, address in zip(NAMES, quic, strict=True):
        answer = run_cli("federation", "validator", node_id, "--stake", "50", "--data-dir",
                         federation.base / name, *key_store, "--server", address,
                         env=federation.env)
        assert answer.returncode == 0, answer.stderr
        answers.append(answer.stdout)
    assert "not yet committed" in answers[0] and "validators holding" in answers[0]
    assert "validators holding 300 of 500" in answers[2]  # not yet: 3/5 is not above 2/3
    assert f"validator {node_id}: stake 50, committed at height" in answers[3]
    wait_for("every node applies the change", lambda: all(
        _validators(federation, n).get(node_id) == 50 for n in NAMES))

    # The federation's configuration the same way: four founders (400 of 450) lower the work.
    for name, address in zip(NAMES, quic, strict=True):
        answer = run_cli("federation", "configure", "--work-difficulty-bits", "15",
                         "--data-dir", federation.base / name, *key_store, "--server", address,
                         env=federation.env)
        assert answer.returncode == 0, answer.stderr
    assert "configuration: work-difficulty-bits 15, committed at height" in answer.stdout
    wait_for("every node checks proofs of 15 bits", lambda: all(
        federation.consensus_status(n)["parameters"]["work_difficulty_bits"] == 15
        for n in [*NAMES]))

    # node-5 leaves the federation's DNS, the resolver watching again: out of the NS sets
    # while it serves on, its ZSK removed only once the caches have let it go.
    resolver = CachingResolver(ports, ds)
    resolver.start()
    wait_for("the resolver validated node-5 again", lambda: resolver.validated.get(node_id, 0) >= 3)
    # (a joined node holds no admin certificate yet: a founder's admin acts on it)
    left = run_cli("federation", "leave", "--data-dir", federation.base / "node-1",
                   *key_store, "--server", "[{}]:{}".format(*node5.address("quic")),
                   env=federation.env)
    assert left.returncode == 0, left.stderr
    assert "left the NS sets" in left.stdout and "removed in 3 s" in left.stdout, left.stdout  # the TTL
    founders = [p for n, p in ports.items() if n != node_id]
    wait_for("every founder serves a DNSKEY RRset without node-5's ZSK", lambda: all(
        len(_dnskey(port)) == 8 for port in founders), bound=60.0)
    wait_for("node-5 no longer serves the federation's zones", lambda: not any(
        r.rdtype == dns.rdatatype.SOA for r in _ask(ports[node_id], ORIGIN, "SOA").answer))
    resolver.stop()
    assert resolver.failures == [], resolver.failures  # no lame or bogus answer
    assert _ds(federation, quic[0]) == ds
    for port in founders:
        ns = next(r for r in _ask(port, ORIGIN, "NS").answer if r.rdtype == dns.rdatatype.NS)
        assert len(ns) == 4 and f"{node_id}.nodes.{ORIGIN}" not in ns.to_text()
        delv = subprocess.run(["delv", "@::1", "-p", str(port), "-a", str(anchor),
                               f"+root={ORIGIN}", ORIGIN, "SOA"],
                              capture_output=True, text=True, timeout=30)
        assert "; fully validated" in delv.stdout + delv.stderr, delv.stdout + delv.stderr
    assert node5.stop() == 0


ORIGIN = "trust.hypermesh.online."


def _ask(port: int, name: str, rdtype: str) -> dns.message.Message:
    """Over UDP, then TCP if truncated: the DNSKEY RRset of five signers and its four RRSIGs
    no longer fit in 1,232 bytes (RFC 8901 section 10), as a resolver does."""
    query = dns.message.make_query(name, rdtype, want_dnssec=True)
    return dns.query.udp_with_fallback(query, "::1", port=port, timeout=2)[0]


def _dnskey(port: int) -> dns.rrset.RRset:
    return next(r for r in _ask(port, ORIGIN, "DNSKEY").answer
                if r.rdtype == dns.rdatatype.DNSKEY)


def _ds(federation: Federation, server: str) -> set[Any]:
    result = run_cli("dnssec", "ds", ORIGIN, "--json", "--data-dir",
                     federation.base / "node-1", "--passphrase-file",
                     federation.base / "passphrase", "--server", server, env=federation.env)
    assert result.returncode == 0, result.stderr
    return {dns.rdata.from_text("IN", "DS", d) for d in json.loads(result.stdout)["ds"]}


class CachingResolver(threading.Thread):
    """What a validating resolver does, with a cache: the DNSKEY RRset, validated from the
    DS set, and the NS set are kept for their TTL, and answers (the origin's SOA) from every
    name server of the cached NS set are validated with the cached keys.  A joining node
    whose ZSK such a cache does not hold yet would fail here, and so would a leaving node
    that stopped answering while a cached NS set still names it (a lame server)."""

    def __init__(self, ports: dict[str, int], ds: set[Any]) -> None:
        super().__init__(daemon=True)
        self.ports = ports  # node id -> DNS port (node-5's added once it runs)
        self.ds = ds
        self.validated: dict[str, int] = {}
        self.validated_with: dict[int, int] = {}  # answers validated by DNSKEY RRset size
        self.failures: list[str] = []
        self.unanswered = 0
        self._done = threading.Event()

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=30)

    def run(self) -> None:
        origin = dns.name.from_text(ORIGIN)
        keys: dns.rrset.RRset | None = None
        ns: dns.rrset.RRset | None = None
        fetched = ns_fetched = 0.0
        while not self._done.is_set():
            try:
                some = next(iter(self.ports.values()))
                if keys is None or time.monotonic() - fetched >= keys.ttl:
                    answer = _ask(some, ORIGIN, "DNSKEY").answer
                    keys = next(r for r in answer if r.rdtype == dns.rdatatype.DNSKEY)
                    sigs = next(r for r in answer if r.rdtype == dns.rdatatype.RRSIG)
                    # signed by a key the DS set matches (a DS matching none is passed over)
                    anchors = [k for k in keys if dns.dnssec.make_ds(origin, k, "SHA256")
                               in self.ds]
                    assert anchors, "no DNSKEY matches the DS set"
                    dns.dnssec.validate(keys, sigs, {origin: dns.rrset.from_rdata_list(
                        origin, keys.ttl, anchors)})
                    fetched = time.monotonic()
                if ns is None or time.monotonic() - ns_fetched >= ns.ttl:
                    ns = next(r for r in _ask(some, ORIGIN, "NS").answer
                              if r.rdtype == dns.rdatatype.NS)
                    ns_fetched = time.monotonic()
                servers = [r.target.labels[0].decode() for r in ns]
            except dns.exception.Timeout:
                self.unanswered += 1  # a busy node (a resolver asks again): not a failure
                continue
            except Exception as exc:  # noqa: BLE001 - every failure is the finding
                self.failures.append(f"keys or NS: {exc!r}")
                continue
            for server in servers:
                port = self.ports.get(server)
                if port is None:
                    continue  # named before the test knows its port (node-5 starting)
                try:
                    answer = _ask(port, ORIGIN, "SOA").answer
                except dns.exception.Timeout:
                    self.unanswered += 1
                    continue
                soa = [r for r in answer if r.rdtype == dns.rdatatype.SOA]
                sigs = [r for r in answer if r.rdtype == dns.rdatatype.RRSIG]
                if not soa:
                    if self.validated.get(server):  # it answered before: now it is lame
                        self.failures.append(f"{server}: no answer while the NS set names it")
                    continue  # not serving yet (it applies the block a moment later)
                try:
                    dns.dnssec.validate(soa[0], sigs[0], {origin: keys})
                except (dns.dnssec.ValidationFailure, IndexError) as exc:
                    self.failures.append(f"{server}: {exc!r}")
                    continue
                self.validated[server] = self.validated.get(server, 0) + 1
                self.validated_with[len(keys)] = self.validated_with.get(len(keys), 0) + 1
            self._done.wait(0.05)  # paced, as a resolver's clients are (and under RRL)


def _founder_keys(federation: Federation, name: str) -> tuple[Any, Any, str]:
    passphrase = (federation.base / "passphrase").read_text().strip()
    keystore = KeyStore.open(federation.base / name / "keys", passphrase)
    node_id = keystore.active(CONSENSUS_ED25519_PURPOSE).id
    return (keystore.private_key(node_id),
            keystore.private_key(keystore.active(CONSENSUS_ML_DSA_PURPOSE).id), node_id)


def test_a_forged_proof_and_a_founder_joining_again_are_refused(
        federation: Federation, tmp_path: Path) -> None:
    """Node-2's own keys (it holds them) ask node-1 for an admission, over the wire."""
    ed, ml, node_id = _founder_keys(federation, "node-2")
    genesis = parse_genesis((federation.base / "node-1" / "genesis.json").read_bytes())
    devnet = federation.status()
    port, pin = int(devnet["nodes"][0]["addresses"]["quic"].rpartition(":")[2]), \
        devnet["genesis_sha256"]
    plot, seed = ensure_plot(tmp_path / "plot", node_id, 19, lambda _m: None)

    def call(*calls: tuple[str, str, dict[str, Any] | None]) -> list[tuple[int, Any]]:
        """One connection for these calls (proofs are made between connections: an open
        one would go idle while a proof of work takes its time)."""

        async def run() -> list[tuple[int, Any]]:
            async with connect("::1", port, root=genesis.root_certificate,
                               server_name=genesis.body.origin.rstrip(".")) as peer:
                if not calls:
                    await _request(peer, genesis, ed, ml,
                                   ec.generate_private_key(ec.SECP256R1()), node_id)
                answers = []
                for service, method, message in calls:
                    response = await peer.request(service, method,
                                                  json.dumps(message or {}).encode())
                    answers.append((response.status, json.loads(response.message)))
                return answers

        return asyncio.run(run())

    call()  # enrol node-2's keys with node-1
    ((_ok, status),) = call(("consensus", "status", None))
    ((registered, _), (_ok, status)) = call(("ca", "enrol-plot", plot_request(node_id, seed, status)),
                                            ("consensus", "status", None))
    assert registered == 200
    request = admit_request(node_id=node_id, genesis_pin=pin, ed_key=ed.public_key(),
                            ml_key=ml.public_key(), stake=0, address="[::1]:9", plot=plot,
                            seed=seed, status=status)
    forged = json.loads(json.dumps(request))
    forged["proofs"]["work"]["nonce"] += 1  # no longer meets the difficulty
    answers = [(code, body["detail"]) for code, body in call(("ca", "enrol-admit", forged),
                                                             ("ca", "enrol-admit", request))]
    (forged_status, forged_reason), (again_status, again_reason) = answers
    assert forged_status == 400 and forged_reason.startswith("work:"), forged_reason
    assert again_status == 400
    assert f"node {node_id} is already a member of the federation" in again_reason


def test_a_founder_leaves_and_every_answer_validates_from_the_old_ds_set_and_the_new(
        federation: Federation, tmp_path: Path) -> None:
    """Node-4, a founder, leaves: its KSK goes from the DNSKEY RRsets with its ZSK (the end
    of a double-DS rollover, RFC 6781 4.1.2), so the parent's DS set shrinks afterwards; a
    caching resolver holding the old DS set sees no failure throughout, and ``delv``
    validates from the old DS set and from the new."""
    devnet = federation.status()
    quic = [n["addresses"]["quic"] for n in devnet["nodes"]]
    ports = {n["node_id"]: int(n["addresses"]["dns"].rpartition(":")[2])
             for n in devnet["nodes"]}
    leaver = devnet["nodes"][3]["node_id"]
    key_store = ["--passphrase-file", federation.base / "passphrase"]
    ttl = run_cli("zone", "ttl", ORIGIN, "3", "--data-dir", federation.base / "node-1",
                  *key_store, "--server", quic[0], env=federation.env)
    assert ttl.returncode == 0, ttl.stderr
    wait_for("every node serves the DNSKEY RRset with a TTL of 3 s", lambda: all(
        _dnskey(port).ttl == 3 for port in ports.values()))
    old_ds = _ds(federation, quic[0])
    assert len(old_ds) == 4  # the four founders' KSKs
    resolver = CachingResolver(ports, old_ds)
    resolver.start()
    wait_for("the resolver validated node-4", lambda: resolver.validated.get(leaver, 0) >= 3)
    left = run_cli("federation", "leave", "--data-dir", federation.base / "node-4",
                   *key_store, "--server", quic[3], env=federation.env)
    assert left.returncode == 0, left.stderr
    assert "left the NS sets" in left.stdout, left.stdout
    stayers = [p for n, p in ports.items() if n != leaver]
    wait_for("the three others serve a DNSKEY RRset of their three KSKs and ZSKs", lambda: all(
        len(_dnskey(port)) == 6 for port in stayers), bound=60.0)
    wait_for("node-4 no longer serves the federation's zones", lambda: not any(
        r.rdtype == dns.rdatatype.SOA for r in _ask(ports[leaver], ORIGIN, "SOA").answer))
    wait_for("the resolver fetched the new keys and validated the others with them",
             lambda: resolver.validated_with.get(6, 0) >= 9)
    resolver.stop()
    assert resolver.failures == [], resolver.failures  # no bogus or lame answer
    new_ds = _ds(federation, quic[0])
    assert len(new_ds) == 3 and new_ds < old_ds  # for the parent to take up
    for n, ds in (("old", old_ds), ("new", new_ds)):
        anchor = tmp_path / f"{n}.conf"
        anchor.write_text("trust-anchors {\n" + "".join(
            f'{ORIGIN} static-ds {d.key_tag} {d.algorithm} {d.digest_type} "{d.digest.hex()}";\n'
            for d in ds) + "};\n")
        for port in stayers:
            delv = subprocess.run(["delv", "@::1", "-p", str(port), "-a", str(anchor),
                                   f"+root={ORIGIN}", ORIGIN, "DNSKEY"],
                                  capture_output=True, text=True, timeout=30)
            assert "; fully validated" in delv.stdout + delv.stderr, delv.stdout + delv.stderr
    again = run_cli("federation", "leave", "--data-dir", federation.base / "node-4",
                    *key_store, "--server", quic[3], env=federation.env)
    assert again.returncode != 0 and "serves no federation zone" in again.stderr, again.stderr
