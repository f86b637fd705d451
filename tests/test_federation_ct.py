"""The federation's CT logs on real node processes (``trustchain devnet``, four nodes on
[::1]): every node serves one log list of four operators, derived from committed state;
a certificate issued at node-1 carries SCTs from logs of two *other* nodes, and is in
both logs (``trustchain ct verify-inclusion`` against each); with one of those nodes
killed, the next certificate still gets two operators from the rest."""

from __future__ import annotations

import base64
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.support import run_cli
from tests.test_federation import NAMES, Federation, running_devnet, wait_for

ORIGIN = "trust.hypermesh.online"


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    yield from running_devnet(tmp_path_factory, "ct")


def public(federation: Federation, name: str) -> list[str | Path]:
    """The node (CT reads are public): its address, the trust anchor from its data dir."""
    quic = next(n for n in federation.status()["nodes"] if n["name"] == name)["addresses"]["quic"]
    return ["--data-dir", federation.base / name, "--server", quic]


def admin(federation: Federation, name: str) -> list[str | Path]:
    return [*public(federation, name), "--passphrase-file", federation.base / "passphrase"]


def log_list(federation: Federation, name: str) -> dict[str, object]:
    result = run_cli("ct", "logs", *public(federation, name), env=federation.env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def sct_operators(pem: str, listing: dict[str, object]) -> list[tuple[str, str]]:
    """(operator, log name) of each SCT embedded in the certificate, by its log ID."""
    by_id = {log["log_id"]: (operator["name"], log["url"].rstrip("/").rsplit("/", 1)[1])
             for operator in listing["operators"]  # type: ignore[attr-defined]
             for log in operator["logs"]}
    leaf = x509.load_pem_x509_certificate(pem.encode())
    scts = leaf.extensions.get_extension_for_class(
        x509.PrecertificateSignedCertificateTimestamps).value
    return [by_id[base64.b64encode(sct.log_id).decode()] for sct in scts]


def test_a_certificate_carries_scts_of_two_other_operators_and_is_in_both_logs(
        federation: Federation, tmp_path: Path) -> None:
    from tests.test_ca_server import make_csr

    node_ids = {n["name"]: n["node_id"] for n in federation.status()["nodes"]}
    wait_for("every node serves a log list of the four operators", lambda: all(
        len(log_list(federation, n)["operators"]) == 4 for n in NAMES))  # type: ignore[arg-type]
    listing = log_list(federation, "node-1")
    first = listing["operators"][0]  # type: ignore[index]
    assert first["name"] == node_ids["node-1"]  # the node asked leads
    url = first["logs"][0]["url"]
    assert url == f"https://{node_ids['node-1']}.nodes.{ORIGIN}:" \
        f"{url.split(':')[2].split('/')[0]}/logs/a/"
    assert first["tiled_logs"][0]["monitoring_url"] == url
    registered = run_cli("network", "register", "beta", *admin(federation, "node-1"),
                         env=federation.env)
    assert registered.returncode == 0, registered.stderr

    issued = run_cli("ca", "issue", "--csr", make_csr(tmp_path, f"www.beta.{ORIGIN}"),
                     *admin(federation, "node-1"), env=federation.env)
    assert issued.returncode == 0, issued.stderr
    assert "SCTs from logs of other operators" in issued.stderr, issued.stderr
    used = sct_operators(issued.stdout, listing)
    operators = {operator for operator, _ in used}
    assert len(used) == 2 and len(operators) == 2 and node_ids["node-1"] not in operators
    (tmp_path / "www.pem").write_text(issued.stdout)
    by_id = {v: k for k, v in node_ids.items()}
    for operator, name in used:
        included = run_cli("ct", "verify-inclusion", tmp_path / "www.pem", "--log", name,
                           *public(federation, by_id[operator]), env=federation.env)
        assert included.returncode == 0, included.stderr
        assert included.stdout.startswith("OK: entry"), included.stdout

    # One of those operators killed: the next certificate gets two from the others.
    victim = by_id[sorted(operators)[0]]
    pid = next(n["pid"] for n in federation.status()["nodes"] if n["name"] == victim)
    os.kill(pid, signal.SIGKILL)
    again = run_cli("ca", "issue", "--csr", make_csr(tmp_path, f"api.beta.{ORIGIN}"),
                    *admin(federation, "node-1"), env=federation.env)
    assert again.returncode == 0, again.stderr
    after = {operator for operator, _ in sct_operators(again.stdout, listing)}
    assert len(after) == 2 and node_ids[victim] not in after and node_ids["node-1"] not in after
    restarted = run_cli("devnet", "up", "--base-dir", federation.base, env=federation.env)
    assert restarted.returncode == 0, restarted.stderr  # four again, for the tests below


def test_every_log_checkpoint_reaches_the_cosignature_quorum(federation: Federation) -> None:
    """Each log of the running nodes (empty or not) serves, at its monitoring prefix and in
    its static checkpoint file, its checkpoint signed with its note key and cosigned by the
    witnesses of more than 2/3 of the stake (four equal stakes: three), each cosignature
    checked by a verifier written from the C2SP specs alone (tests/c2sp_verifier.py)."""
    import urllib.request

    from tests.c2sp_verifier import verify_cosignature, verify_note_signature
    from trustchain.datadir import DataDir

    status = federation.consensus_status("node-1")
    witnesses, note_keys = status["witnesses"], status["log_note_keys"]
    assert len(witnesses) == 4 and len(note_keys) == 8
    live = [n for n in federation.status()["nodes"] if n["up"]]

    def checkpoints() -> dict[str, str]:
        out = {}
        for node in live:
            for name in ("a", "b"):
                url = f"http://{node['addresses']['http']}/logs/{name}/checkpoint"
                with urllib.request.urlopen(url, timeout=10) as answer:
                    out[f"{node['name']}/{name}"] = answer.read().decode()
        return out

    def cosigned(text: str) -> set[str]:
        return {node for node, vkey in witnesses.items()
                if verify_cosignature(text, vkey) is not None}

    def quorum() -> bool:
        found = list(checkpoints().values())
        return len(found) == 2 * len(live) and all(len(cosigned(t)) >= 3 for t in found)

    wait_for("every log's checkpoint cosigned by three witnesses", quorum, 30.0)
    for text in checkpoints().values():
        origin = text.split("\n", 1)[0]
        assert verify_note_signature(text, note_keys[origin]), text

    def static_files() -> list[str]:  # what a web server serving ct_tiles_dir hands out
        return [(DataDir(federation.base / node["name"]).ct_tiles_dir / name / "checkpoint"
                 ).read_text() for node in live for name in ("a", "b")]

    wait_for("the static checkpoint files carry the cosignatures too", lambda: all(
        len(cosigned(t)) >= 3 and verify_note_signature(t, note_keys[t.split("\n", 1)[0]])
        for t in static_files()), 30.0)

    # ... and made final through the consensus: every node holds the same final sizes
    sizes = {t.split("\n")[0]: int(t.split("\n")[1]) for t in checkpoints().values()}
    busy = {origin: size for origin, size in sizes.items() if size > 0}

    def final(name: str) -> dict[str, int]:
        return {o: f["size"] for o, f in
                federation.consensus_status(name)["final_checkpoints"].items()}

    wait_for("the cosigned checkpoints are final at every running node", lambda: all(
        all(final(n["name"]).get(o) == size for o, size in busy.items()) for n in live), 30.0)


def test_a_witness_answers_over_http_as_tlog_witness_says(federation: Federation) -> None:
    """The node's witness over HTTP (``POST /witness/add-checkpoint``): a stale ``old``
    gets 409 with the size it cosigned (``text/x.tlog.size``), an unknown origin 404, a
    malformed body 400 (every code, one test each, is in tests/trustchain/ct/test_witness.py;
    this is the wire)."""
    import urllib.error
    import urllib.request

    node = next(n for n in federation.status()["nodes"] if n["up"])
    http = node["addresses"]["http"]
    checkpoints = []
    for other in federation.status()["nodes"]:
        if other["up"]:
            with urllib.request.urlopen(f"http://{other['addresses']['http']}/logs/a/checkpoint",
                                        timeout=10) as answer:
                checkpoints.append(answer.read().decode())
    text = next(t for t in checkpoints if t.split("\n")[1] != "0")  # cosigned by now

    def post(body: bytes) -> tuple[int, str, str]:
        request = urllib.request.Request(f"http://{http}/witness/add-checkpoint", data=body,
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, answer.headers["content-type"], answer.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers["content-type"], exc.read().decode()

    status, kind, body = post(f"old 0\n\n{text}".encode())
    assert (status, kind) == (409, "text/x.tlog.size"), (status, kind, body)
    assert int(body) == int(text.split("\n")[1])
    status, _, _ = post(f"old 0\n\nelsewhere.example/log\n1\n{text.split(chr(10))[2]}\n\n"
                        f"{text.split(chr(10) + chr(10), 1)[1]}".encode())
    assert status == 404
    assert post(b"not a request")[0] == 400


def test_verify_consistency_needs_the_witness_quorum_of_its_policy(
        federation: Federation, tmp_path: Path) -> None:
    """``ct verify-consistency`` takes the log's cosigned checkpoint as its tree head: with
    the default policy (the validators, more than 2/3 of the stake) it passes and says by
    how many witnesses; with a policy whose quorum is a witness that never cosigned (its
    key made here) it refuses."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from trustchain.ct.note import CosignatureV1Signer

    node = next(n for n in federation.status()["nodes"]
                if n["up"] and int(log_list_size(federation, n["name"])) > 0)
    size = int(log_list_size(federation, node["name"]))
    ok = run_cli("ct", "verify-consistency", "a", "1", str(size),
                 *public(federation, node["name"]), env=federation.env)
    assert ok.returncode == 0, ok.stderr
    assert "cosigned by 3 witnesses" in ok.stdout or "cosigned by 4 witnesses" in ok.stdout
    stranger = CosignatureV1Signer("stranger.example", ed25519.Ed25519PrivateKey.generate())
    policy = tmp_path / "policy.txt"
    policy.write_text(f"witness w1 {stranger.verifier().vkey()}\nquorum w1\n")
    refused = run_cli("ct", "verify-consistency", "a", "1", str(size), "--policy", policy,
                      "--wait", "1", *public(federation, node["name"]), env=federation.env)
    assert refused.returncode == 1 and "lacks the witness quorum" in refused.stderr, \
        refused.stderr

    # The same from the static files alone, as a web server publishes ct_tiles_dir: a
    # certificate issued at node-1 proven in another node's log with the node's policy.
    import functools
    import http.server
    import socket
    import threading
    import urllib.request

    from tests.test_ca_server import make_csr
    from trustchain.datadir import DataDir

    issued = run_cli("ca", "issue", "--csr", make_csr(tmp_path, f"tiles.beta.{ORIGIN}"),
                     *admin(federation, "node-1"), env=federation.env)
    assert issued.returncode == 0, issued.stderr
    (tmp_path / "tiles.pem").write_text(issued.stdout)
    listing = log_list(federation, "node-1")
    operator, name = sct_operators(issued.stdout, listing)[0]
    holder = next(n for n in federation.status()["nodes"] if n["node_id"] == operator)
    key = next(log["key"] for o in listing["operators"] for log in o["logs"]  # type: ignore[attr-defined]
               if o["name"] == operator and log["url"].endswith(f"/logs/{name}/"))
    with urllib.request.urlopen(f"http://{holder['addresses']['http']}/witness/policy",
                                timeout=10) as answer:
        policy.write_bytes(answer.read())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(DataDir(federation.base / holder["name"])
                                              .ct_tiles_dir / name))
    class V6Server(http.server.ThreadingHTTPServer):
        address_family = socket.AF_INET6

    server = V6Server(("::1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://[::1]:{server.server_address[1]}/"
        proven = run_cli("ct", "verify-inclusion", tmp_path / "tiles.pem", "--tiles", url,
                         "--log-key", key, "--policy", policy, env=federation.env)
        assert proven.returncode == 0, proven.stderr
        assert "witnesses (the policy's quorum)" in proven.stdout, proven.stdout
        stranger_policy = tmp_path / "stranger.txt"
        stranger_policy.write_text(f"witness w1 {stranger.verifier().vkey()}\nquorum w1\n")
        refused = run_cli("ct", "verify-inclusion", tmp_path / "tiles.pem", "--tiles", url,
                          "--log-key", key, "--policy", stranger_policy, "--wait", "1",
                          env=federation.env)
        assert refused.returncode == 1 and "lacks the witness quorum" in refused.stderr, \
            refused.stderr
    finally:
        server.shutdown()
        server.server_close()


def log_list_size(federation: Federation, name: str) -> str:
    """The size of log ``a`` of node ``name`` (its checkpoint's second line)."""
    import urllib.request

    http = next(n for n in federation.status()["nodes"] if n["name"] == name)["addresses"]["http"]
    with urllib.request.urlopen(f"http://{http}/logs/a/checkpoint", timeout=10) as answer:
        return answer.read().decode().split("\n")[1]


def test_a_log_that_signs_a_split_view_is_untrusted_everywhere(
        federation: Federation, tmp_path: Path) -> None:
    """The fault is injected from outside the node: the test takes one node's log note key
    from that node's key store and signs a checkpoint three entries beyond the size
    another node's witness cosigned, of a tree whose first entries are others, and sends
    it with that tree's own consistency proof.  The witness refuses it (422); the proof
    leads to the forged root from another root at the cosigned size (one not a power of
    two: there the proof holds no old root), which with both signed checkpoints is the
    evidence (``log-fork``).  Once committed, every running node lists the log as
    untrusted, its operator is removed (from the validators and the log list), and new
    certificates carry no SCT of it."""
    import urllib.error
    import urllib.request

    from cryptography.hazmat.primitives.serialization import Encoding

    from tests.test_ca_server import make_csr
    from trustchain.ct.merkle import consistency_proof, leaf_hash, root
    from trustchain.ct.note import Checkpoint, Ed25519Signer, sign_note
    from trustchain.datadir import DataDir
    from trustchain.keystore import KeyStore

    live = [n for n in federation.status()["nodes"] if n["up"]]
    liar = next(n for n in live if int(log_list_size(federation, n["name"])) > 0)
    witness = next(n for n in live if n["name"] != liar["name"])
    with urllib.request.urlopen(f"http://{liar['addresses']['http']}/logs/a/checkpoint",
                                timeout=10) as answer:
        origin = answer.read().decode().split("\n")[0]
    keys = KeyStore.open(DataDir(federation.base / liar["name"]).keys_dir,
                         (federation.base / "passphrase").read_text().strip())
    signer = Ed25519Signer(origin, keys.private_key(keys.active("ct-note:a").id))  # type: ignore[arg-type]
    add = f"http://{witness['addresses']['http']}/witness/add-checkpoint"
    log_id = next(log["log_id"] for operator in log_list(federation, witness["name"])["operators"]
                  for log in operator["logs"] if log["url"] == f"https://{origin}/")
    hex_id = base64.b64decode(log_id).hex()

    def post(body: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(urllib.request.Request(add, data=body.encode(),
                                                               method="POST"), timeout=10):
                return 200, ""
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def cosigned() -> int:
        """The size the witness cosigned: its 409 to the log's own checkpoint with a stale
        ``old`` (0)."""
        with urllib.request.urlopen(f"http://{liar['addresses']['http']}/logs/a/checkpoint",
                                    timeout=10) as answer:
            code, size = post(f"old 0\n\n{answer.read().decode()}")
        assert code == 409, (code, size)
        return int(size)

    def grow() -> None:
        """One more entry in the liar's log: a certificate issued at node-1, logged there."""
        issued = run_cli("ca", "issue", "--csr", make_csr(tmp_path, f"g{os.urandom(4).hex()}"
                                                          f".beta.{ORIGIN}"),
                         *admin(federation, "node-1"), env=federation.env)
        assert issued.returncode == 0, issued.stderr
        chain = [base64.b64encode(c.public_bytes(Encoding.DER)).decode()
                 for c in x509.load_pem_x509_certificates(issued.stdout.encode())]
        request = urllib.request.Request(
            f"http://{liar['addresses']['http']}/logs/a/ct/v1/add-chain",
            data=json.dumps({"chain": chain}).encode(), method="POST",
            headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200

    size = cosigned()
    while size < 3 or size & (size - 1) == 0:  # a size whose proofs carry its root
        before = size
        grow()
        wait_for("the witness cosigns the grown log", lambda b=before: cosigned() > b, 30.0)
        size = cosigned()
    forged = [leaf_hash(b"a split view %d" % i) for i in range(size + 3)]
    note = sign_note(Checkpoint(origin, size + 3, root(forged)).text(), [signer])
    proof = "".join(base64.b64encode(p).decode() + "\n"
                    for p in consistency_proof(size, forged))
    code, reason = post(f"old {size}\n{proof}\n{note}")
    assert code == 422, (code, reason)

    wait_for("every running node untrusts the log", lambda: all(
        hex_id in federation.consensus_status(n["name"])["untrusted_logs"] for n in live), 30.0)
    why = federation.consensus_status(live[0]["name"])["untrusted_logs"][hex_id]
    assert f"the checkpoint of size {size + 3} does not extend the one of size {size}" in why
    evidence = federation.consensus_status(witness["name"])["log_forks"][hex_id]
    assert evidence["checkpoints"][1] == note  # the forged checkpoint, as signed
    shown = run_cli("federation", "status", *public(federation, witness["name"]),
                    env=federation.env)
    assert shown.returncode == 0 and f"  {hex_id}  {why}" in shown.stdout, shown.stdout
    validators = {v["node_id"] for v in federation.consensus_status(witness["name"])[
        "validators"]}
    assert liar["node_id"] not in validators  # its operator is removed, as for a double vote
    listing = log_list(federation, "node-1")
    assert liar["node_id"] not in {o["name"] for o in listing["operators"]}  # removed
    issued = run_cli("ca", "issue", "--csr", make_csr(tmp_path, f"late.beta.{ORIGIN}"),
                     *admin(federation, "node-1"), env=federation.env)
    assert issued.returncode == 0, issued.stderr
    leaf = x509.load_pem_x509_certificate(issued.stdout.encode())
    scts = leaf.extensions.get_extension_for_class(
        x509.PrecertificateSignedCertificateTimestamps).value
    assert base64.b64decode(log_id) not in {sct.log_id for sct in scts}


def test_a_split_view_shown_to_one_node_is_caught_by_gossip(federation: Federation) -> None:
    """A forged checkpoint of another log goes to one node only, as gossip (``POST
    /gossip/checkpoint``), never to a witness: a tree one entry smaller than the log's, of
    other entries.  A node that saw the log's checkpoint of that size sends both (one size,
    two roots); one that did not checks it against the operator's newest over stoq/1 (the
    operator's consistency proof fails; the inclusion proof of the leaf at that index gives
    the operator's root there, another) and sends the evidence across the two sizes
    (``tests/trustchain/ct/test_split_views.py`` pins each path).  Either way every running
    node untrusts the log."""
    import urllib.request

    from trustchain.ct.merkle import leaf_hash, root
    from trustchain.ct.note import Checkpoint, Ed25519Signer, sign_note
    from trustchain.datadir import DataDir
    from trustchain.keystore import KeyStore

    live = [n for n in federation.status()["nodes"] if n["up"]]
    untrusted = federation.consensus_status(live[0]["name"])["untrusted_logs"]
    listing = log_list(federation, live[0]["name"])
    ids = {log["url"]: base64.b64decode(log["log_id"]).hex()
           for o in listing["operators"] for log in o["logs"]}
    target = None
    for node in live:
        for name in ("a", "b"):
            with urllib.request.urlopen(f"http://{node['addresses']['http']}/logs/{name}/"
                                        "checkpoint", timeout=10) as answer:
                text = answer.read().decode()
            origin = text.split("\n")[0]
            known = ids.get(f"https://{origin}/")  # a removed operator's logs are not
            if int(text.split("\n")[1]) > 1 and known is not None and known not in untrusted:
                target = (node, name, origin, int(text.split("\n")[1]))
    assert target is not None, "no trusted log of two entries or more left to fork"
    liar, name, origin, size = target
    validators = {v["node_id"] for v in federation.consensus_status(live[0]["name"])[
        "validators"]}
    told = next(n for n in live if n["name"] != liar["name"] and n["node_id"] in validators)
    keys = KeyStore.open(DataDir(federation.base / liar["name"]).keys_dir,
                         (federation.base / "passphrase").read_text().strip())
    note_key = keys.private_key(keys.active(f"ct-note:{name}").id)
    other = root([leaf_hash(b"gossiped fork %d" % i) for i in range(size - 1)])
    forged = sign_note(Checkpoint(origin, size - 1, other).text(),
                       [Ed25519Signer(origin, note_key)])  # type: ignore[arg-type]
    request = urllib.request.Request(f"http://{told['addresses']['http']}/gossip/checkpoint",
                                     data=forged.encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
    hex_id = ids[f"https://{origin}/"]
    wait_for("every running node untrusts the gossiped log", lambda: all(
        hex_id in federation.consensus_status(n["name"])["untrusted_logs"] for n in live), 30.0)
    reason = federation.consensus_status(live[0]["name"])["untrusted_logs"][hex_id]
    assert reason.startswith("split view: "), reason
