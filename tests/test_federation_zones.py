"""The federation's zones on real node processes (``trustchain devnet``, four founders on
[::1]): a network registered at one node is served, DNSSEC-valid from the one DS set of
the origin, by all four, with the same RRsets and serial; a record added at another node
follows within 2 s; with a node killed the other three go on, and the node, restarted,
serves the same serials.  Validation is BIND's ``delv``; RRsets are compared with
dnspython."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype
import dns.rrset
import pytest
from cryptography import x509

from tests.support import run_cli
from tests.test_federation import NAMES, Federation, running_devnet, wait_for

ORIGIN = "trust.hypermesh.online."
#: From a node's answer to the change being served, validated, everywhere (the issue's).
WITHIN = 2.0


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    yield from running_devnet(tmp_path_factory, "zones")


def nodes(federation: Federation) -> dict[str, dict[str, str]]:
    """Each node's addresses (fixed for a devnet: read once)."""
    if not hasattr(federation, "addresses"):
        federation.addresses = {  # type: ignore[attr-defined]
            n["name"]: n["addresses"] for n in federation.status()["nodes"]}
    return federation.addresses  # type: ignore[attr-defined, no-any-return]


def admin(federation: Federation, name: str) -> list[str | Path]:
    return ["--data-dir", federation.base / name, "--passphrase-file",
            federation.base / "passphrase", "--server", nodes(federation)[name]["quic"]]


def dns_port(federation: Federation, name: str) -> int:
    return int(nodes(federation)[name]["dns"].rpartition(":")[2])


def ask(port: int, name: str, rdtype: str) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, want_dnssec=True)
    return dns.query.udp(query, "::1", port=port, timeout=2)


def answer(port: int, name: str, rdtype: str) -> list[dns.rrset.RRset]:
    """The answer's RRsets without signatures (each node signs with its own ZSK)."""
    return [r for r in ask(port, name, rdtype).answer if r.rdtype != dns.rdatatype.RRSIG]


def anchor_file(federation: Federation, path: Path) -> Path:
    """A delv trust-anchors file of the origin's DS set, as node-1 reports it."""
    result = run_cli("dnssec", "ds", ORIGIN, "--json", *admin(federation, "node-1"),
                     env=federation.env)
    assert result.returncode == 0, result.stderr
    lines = []
    for ds in json.loads(result.stdout)["ds"]:
        tag, algorithm, digest_type, digest = ds.split(None, 3)
        lines.append(f'{ORIGIN} static-ds {tag} {algorithm} {digest_type} '
                     f'"{digest.replace(" ", "")}";')
    path.write_text("trust-anchors {\n" + "\n".join(lines) + "\n};\n")
    return path


def validated(port: int, anchor: Path, name: str, rdtype: str) -> bool:
    out = subprocess.run(["delv", "@::1", "-p", str(port), "-a", str(anchor),
                          f"+root={ORIGIN}", name, rdtype],
                         capture_output=True, text=True, timeout=30)
    return "; fully validated" in out.stdout + out.stderr


def wait_validated(federation: Federation, anchor: Path, name: str, rdtype: str,
                   names: list[str], bound: float) -> float:
    """Seconds until every one of ``names`` answers ``name`` signed (polled with dnspython,
    bounded), each answer then checked by delv, validated from the origin's DS set."""
    started = time.monotonic()
    pending = set(names)

    def signed() -> bool:
        for node in sorted(pending):
            response = ask(dns_port(federation, node), name, rdtype)
            if any(r.rdtype == dns.rdatatype.RRSIG for r in response.answer):
                pending.discard(node)
        return not pending

    wait_for(f"{name} {rdtype} signed at {sorted(pending)}", signed, bound)
    elapsed = time.monotonic() - started
    for node in names:
        assert validated(dns_port(federation, node), anchor, name, rdtype), node
    return elapsed


@pytest.fixture(scope="module")
def anchor(federation: Federation, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Every founder serves once its keys are signed in: the DS set lists the four KSKs.
    wait_for("every node serves the origin", lambda: all(
        ask(dns_port(federation, n), ORIGIN, "SOA").answer for n in NAMES))
    path = anchor_file(federation, tmp_path_factory.mktemp("anchor") / "anchor.conf")
    assert path.read_text().count("static-ds") == 4
    return path


def test_a_network_registered_at_one_node_validates_at_all_four(
        federation: Federation, anchor: Path) -> None:
    result = run_cli("network", "register", "alpha", *admin(federation, "node-1"),
                     env=federation.env)
    assert result.returncode == 0, result.stderr
    elapsed = wait_validated(federation, anchor, f"alpha.{ORIGIN}", "SOA", NAMES, 30)
    assert elapsed <= WITHIN, f"{elapsed:.1f} s until every node served alpha, validated"
    # the same RRsets and serial from every node
    for rdtype in ("SOA", "NS", "DNSKEY"):
        answers = [answer(dns_port(federation, n), f"alpha.{ORIGIN}", rdtype) for n in NAMES]
        assert all(a == answers[0] and a for a in answers), rdtype
    ns = answer(dns_port(federation, "node-1"), f"alpha.{ORIGIN}", "NS")[0]
    assert len(ns) == 4  # every node is a name server of every federation zone


def test_a_record_added_at_node_2_is_answered_validated_by_the_others(
        federation: Federation, anchor: Path) -> None:
    name = f"www.alpha.{ORIGIN}"
    added = run_cli("record", "add", name, "AAAA", "2001:db8::80",
                    *admin(federation, "node-2"), env=federation.env)
    assert added.returncode == 0, added.stderr
    elapsed = wait_validated(federation, anchor, name, "AAAA", ["node-1", "node-3", "node-4"],
                             30)
    assert elapsed <= WITHIN, f"{elapsed:.1f} s until nodes 1, 3 and 4 answered, validated"
    serials = {answer(dns_port(federation, n), f"alpha.{ORIGIN}", "SOA")[0][0].serial
               for n in NAMES}
    assert len(serials) == 1
    assert f"serial {serials.pop()}" in added.stdout
    # deleted and added again: the same change twice is two operations, not a replay
    for command in (("delete", name, "AAAA"), ("add", name, "AAAA", "2001:db8::80")):
        again = run_cli("record", *command, *admin(federation, "node-3"), env=federation.env)
        assert again.returncode == 0, again.stderr


def test_a_killed_node_leaves_dns_to_the_others_and_serves_the_same_serials_again(
        federation: Federation, anchor: Path) -> None:
    victim = next(n for n in federation.status()["nodes"] if n["name"] == "node-4")
    os.kill(victim["pid"], signal.SIGKILL)
    others = NAMES[:-1]
    name = f"api.alpha.{ORIGIN}"
    added = run_cli("record", "add", name, "AAAA", "2001:db8::81",
                    *admin(federation, "node-1"), env=federation.env)
    assert added.returncode == 0, added.stderr
    wait_validated(federation, anchor, name, "AAAA", others, 30)
    ns = answer(dns_port(federation, "node-2"), f"alpha.{ORIGIN}", "NS")[0]
    assert len(ns) == 4  # the NS set still lists node-4: resolvers try the others

    result = run_cli("devnet", "up", "--base-dir", federation.base, env=federation.env)
    assert result.returncode == 0, result.stderr
    wait_validated(federation, anchor, name, "AAAA", ["node-4"], 30)
    for zone in (ORIGIN, f"alpha.{ORIGIN}"):
        serials = {answer(dns_port(federation, n), zone, "SOA")[0][0].serial for n in NAMES}
        assert len(serials) == 1, (zone, serials)


def test_a_certificate_issued_at_node_3_and_revoked_at_node_1(
        federation: Federation, anchor: Path, tmp_path: Path) -> None:
    """Every node operates its own intermediate for alpha, signed by the root holder
    (node-1) and committed; node-3 issues, node-1 revokes (a serial it never saw), and
    OCSP at node-3, and at node-4 (relayed to node-3), answers revoked."""
    from tests.test_ca_server import make_csr, split_chain

    wait_for("every node operates an intermediate for alpha", lambda: len(
        federation.consensus_status("node-2")["intermediates"].get("alpha", [])) == 4)
    issued = run_cli("ca", "issue", "--csr", make_csr(tmp_path, f"www.alpha.{ORIGIN}".rstrip(".")),
                     "--network", "alpha", *admin(federation, "node-3"), env=federation.env)
    assert issued.returncode == 0, issued.stderr
    leaf_path, issuer_path = split_chain(issued.stdout, tmp_path)
    root = tmp_path / "root.pem"
    shown = run_cli("genesis", "show", "--data-dir", federation.base / "node-3", "--root-pem",
                    env=federation.env)
    root.write_text(shown.stdout)
    verify = subprocess.run(["openssl", "verify", "-x509_strict", "-CAfile", root,
                             "-untrusted", issuer_path, leaf_path], capture_output=True, text=True)
    assert verify.stdout.strip().endswith("OK"), verify.stdout + verify.stderr

    def ocsp(node: str) -> str:
        result = subprocess.run(
            ["openssl", "ocsp", "-issuer", issuer_path, "-cert", leaf_path, "-CAfile", root,
             "-url", f"http://{nodes(federation)[node]['http']}/ocsp"],
            capture_output=True, text=True, timeout=30)
        assert "Response verify OK" in result.stdout + result.stderr, result.stdout + result.stderr
        return result.stdout

    assert f"{leaf_path}: good" in ocsp("node-3")
    assert f"{leaf_path}: good" in ocsp("node-4")  # relayed to node-3, which signs it
    serial = f"{x509.load_pem_x509_certificate(leaf_path.read_bytes()).serial_number:x}"
    revoked = run_cli("ca", "revoke", serial, "--reason", "key-compromise",
                      *admin(federation, "node-1"), env=federation.env)
    assert revoked.returncode == 0, revoked.stderr
    assert "committed at height" in revoked.stdout
    wait_for("node-3 answers revoked", lambda: f"{leaf_path}: revoked" in ocsp("node-3"))
    assert f"{leaf_path}: revoked" in ocsp("node-4")

    # node-4 down: issuance goes on at the other nodes that operate alpha's intermediates
    victim = next(n for n in federation.status()["nodes"] if n["name"] == "node-4")
    os.kill(victim["pid"], signal.SIGKILL)
    again = run_cli("ca", "issue", "--csr", make_csr(tmp_path, f"api.alpha.{ORIGIN}".rstrip(".")),
                    "--network", "alpha", *admin(federation, "node-2"), env=federation.env)
    assert again.returncode == 0, again.stderr
    restarted = run_cli("devnet", "up", "--base-dir", federation.base, env=federation.env)
    assert restarted.returncode == 0, restarted.stderr
    wait_for("node-4 knows every intermediate again", lambda: len(
        federation.consensus_status("node-4")["intermediates"].get("alpha", [])) == 4)


def test_a_networks_credential_issued_at_node_1_acts_at_the_others_until_revoked(
        federation: Federation, tmp_path: Path) -> None:
    """alpha's network-admin credential, issued at node-1, is good at every node that
    operates an intermediate for alpha: node-3 (stoq/1) and node-2 (HTTPS, curl) issue for
    alpha with it, never having seen it; revoked at node-1, it is refused at node-3 once
    the revocation is committed.  (Runs after node-4 was killed and restarted.)"""
    from tests.test_ca_server import credential_csr, make_csr, split_chain

    wait_for("every node operates an intermediate for alpha", lambda: all(len(
        federation.consensus_status(n)["intermediates"].get("alpha", [])) == 4 for n in NAMES))
    credential_csr(tmp_path)
    given = run_cli("ca", "issue", "--csr", tmp_path / "cred.csr", "--network", "alpha",
                    "--profile", "network-admin", *admin(federation, "node-1"),
                    env=federation.env)
    assert given.returncode == 0, given.stderr
    (tmp_path / "cred.pem").write_text(given.stdout)
    credential = x509.load_pem_x509_certificate(given.stdout.encode())
    pin = run_cli("genesis", "show", "--data-dir", federation.base / "node-1",
                  env=federation.env).stdout.split()[0]

    def as_alpha(node: str) -> list[str | Path]:
        return ["--cert", tmp_path / "cred.pem", "--key", tmp_path / "cred.key", "--genesis",
                federation.base / "node-1" / "genesis.json", "--pin", pin,
                "--data-dir", tmp_path / "no-node-here", "--server", nodes(federation)[node]["quic"]]

    issued = run_cli("ca", "issue", "--csr", make_csr(tmp_path, f"cred.alpha.{ORIGIN}".rstrip(".")),
                     *as_alpha("node-3"), env=federation.env)
    assert issued.returncode == 0, issued.stderr
    leaf = x509.load_pem_x509_certificate(split_chain(issued.stdout, tmp_path)[0].read_bytes())
    def issuer_key(certificate: x509.Certificate) -> bytes | None:
        return certificate.extensions.get_extension_for_class(
            x509.AuthorityKeyIdentifier).value.key_identifier

    assert issuer_key(leaf) != issuer_key(credential)  # node-3's own intermediate for alpha
    beta = run_cli("ca", "issue", "--csr", make_csr(tmp_path, f"www.beta.{ORIGIN}".rstrip(".")),
                   "--network", "beta", *as_alpha("node-3"), env=federation.env)
    assert beta.returncode == 1 and "may not act for network beta" in beta.stderr, beta.stderr

    root = tmp_path / "root.pem"
    root.write_text(run_cli("genesis", "show", "--data-dir", federation.base / "node-1",
                            "--root-pem", env=federation.env).stdout)
    host, _, port = nodes(federation)["node-2"]["https"].rpartition(":")
    (tmp_path / "body.json").write_text(json.dumps(
        {"csr": make_csr(tmp_path, f"curl.alpha.{ORIGIN}".rstrip(".")).read_text()}))
    server = ORIGIN.rstrip(".")
    curl = subprocess.run(
        ["curl", "--silent", "--show-error", "--cacert", root, "--connect-to",
         f"{server}:443:{host}:{port}", "--cert", tmp_path / "cred.pem", "--key",
         tmp_path / "cred.key", "--data-binary", f"@{tmp_path / 'body.json'}",
         "--write-out", "\n%{http_code}", f"https://{server}/ca/v1/issue"],
        capture_output=True, text=True, timeout=60)
    assert curl.returncode == 0, curl.stderr
    assert curl.stdout.rpartition("\n")[2] == "201", curl.stdout

    revoked = run_cli("ca", "revoke", f"{credential.serial_number:x}", "--reason",
                      "key-compromise", *admin(federation, "node-1"), env=federation.env)
    assert revoked.returncode == 0, revoked.stderr
    csr = make_csr(tmp_path, f"late.alpha.{ORIGIN}".rstrip("."))

    def refused() -> bool:
        after = run_cli("ca", "issue", "--csr", csr, *as_alpha("node-3"), env=federation.env)
        return after.returncode == 1 and "was revoked" in after.stderr

    wait_for("node-3 refuses the revoked credential", refused)


def test_acme_at_node_4_validates_dns01_from_the_replicated_zone(
        federation: Federation, tmp_path: Path) -> None:
    """An ACME client at node-4: its dns-01 TXT record written at node-2 reaches node-4's
    copy of the zone by consensus, node-4's CA issues for network alpha (registered at
    node-1), with SCTs from logs of two other operators."""
    from acme import challenges, messages

    from tests.test_acme_orders import challenge, csr_for, new_client

    name = f"acme.alpha.{ORIGIN}".rstrip(".")
    client = new_client("http://" + nodes(federation)["node-4"]["http"])
    order = client.new_order(csr_for(name))
    body = challenge(order, challenges.DNS01)
    response, validation = body.response_and_validation(client.net.key)
    added = run_cli("record", "add", f"_acme-challenge.{name}", "TXT", validation,
                    *admin(federation, "node-2"), env=federation.env)
    assert added.returncode == 0, added.stderr
    wait_for("node-4 serves the TXT record", lambda: bool(
        ask(dns_port(federation, "node-4"), f"_acme-challenge.{name}", "TXT").answer))
    client.answer_challenge(body, response)
    done = client.poll_and_finalize(order)
    assert done.body.status == messages.STATUS_VALID
    leaf = x509.load_pem_x509_certificate(done.fullchain_pem.encode())
    scts = leaf.extensions.get_extension_for_class(
        x509.PrecertificateSignedCertificateTimestamps).value
    node_4 = next(n["node_id"] for n in federation.status()["nodes"] if n["name"] == "node-4")
    listing = json.loads(run_cli("ct", "logs", "--data-dir", federation.base / "node-4",
                                 "--server", nodes(federation)["node-4"]["quic"],
                                 env=federation.env).stdout)
    own_logs = {log["log_id"] for operator in listing["operators"]
                if operator["name"] == node_4 for log in operator["logs"]}
    assert len(own_logs) >= 1 and len(scts) == 2
    assert not {base64.b64encode(s.log_id).decode() for s in scts} & own_logs
