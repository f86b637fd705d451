"""The node's CT logs over HTTP: add-chain, SCTs after sequencing, proofs that verify."""

from __future__ import annotations

import base64
import http.client
import json
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding, load_der_public_key

from bootstrap.init import InitResult
from tests.support import PASSPHRASE, NodeProcess
from tests.test_federation import wait_for
from trustchain.ct.merkle import leaf_hash, verify_inclusion
from trustchain.ct.structs import SCT, Entry, EntryType, TreeHead, merkle_tree_leaf
from trustchain.keystore import KeyStore
from trustchain.storage.database import open_database
from trustchain.storage.node import NodeStore


def request(host: str, port: int, method: str, path: str, body: object = None):
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"content-type": "application/json"})
        response = conn.getresponse()
        return response.status, response.getheader("content-type"), response.read()
    finally:
        conn.close()


def start_node(data_dir: Path, started: list[NodeProcess]) -> tuple[NodeProcess, str, int]:
    """``trustchain serve`` in ``data_dir``, ready; with its plain-HTTP address."""
    proc = NodeProcess.start(data_dir)
    started.append(proc)
    proc.wait_ready()
    host, port = proc.address("http")
    return proc, host, port


def node_chain(data_dir: Path) -> list[str]:
    KeyStore.open(data_dir / "keys", PASSPHRASE)
    with open_database(data_dir, readonly=True) as db:
        store = NodeStore(db)
        certs = [store.latest_certificate(p) for p in ("node-tls", "infrastructure-ca")]
    return [base64.b64encode(c.public_bytes(Encoding.DER)).decode() for c in certs]


def test_add_chain_then_prove_inclusion(
    node: InitResult, data_dir: Path, node_processes: list[NodeProcess]
) -> None:
    proc, host, port = start_node(data_dir, node_processes)
    status, _, body = request(host, port, "GET", "/logs")
    logs = json.loads(body)["operators"][0]["logs"]
    assert status == 200 and len(logs) == 2
    keys = {entry["url"].rstrip("/").rsplit("/", 1)[1]: load_der_public_key(
        base64.b64decode(entry["key"])) for entry in logs}

    chain = node_chain(data_dir)
    answers = {}
    for name in ("a", "b"):
        status, _, body = request(host, port, "POST", f"/logs/{name}/ct/v1/add-chain",
                                  {"chain": chain})
        assert status == 200, body
        answer = answers[name] = json.loads(body)
        sct = SCT(base64.b64decode(answer["id"]), answer["timestamp"],
                  base64.b64decode(answer["extensions"]),
                  base64.b64decode(answer["signature"])[4:])
        entry = Entry(EntryType.X509, base64.b64decode(chain[0]))
        sct.verify(entry, keys[name])
        assert sct.leaf_index == 0
        # The SCT came after sequencing: the tree head already covers it.
        status, _, body = request(host, port, "GET", f"/logs/{name}/ct/v1/get-sth")
        sth = json.loads(body)
        head = TreeHead(sth["tree_size"], sth["timestamp"],
                        base64.b64decode(sth["sha256_root_hash"]),
                        base64.b64decode(sth["tree_head_signature"])[4:])
        head.verify(keys[name])
        assert head.size == 1
        hashed = leaf_hash(merkle_tree_leaf(sct.timestamp, entry, sct.extensions))
        query = (f"/logs/{name}/ct/v1/get-proof-by-hash?tree_size=1&hash="
                 + base64.b64encode(hashed).decode().replace("+", "%2B").replace("/", "%2F")
                 .replace("=", "%3D"))
        status, _, body = request(host, port, "GET", query)
        proof = json.loads(body)
        verify_inclusion(hashed, proof["leaf_index"], 1,
                         [base64.b64decode(p) for p in proof["audit_path"]], head.root)
        status, _, body = request(host, port, "GET",
                                  f"/logs/{name}/ct/v1/get-entry-and-proof?leaf_index=0&tree_size=1")
        assert status == 200 and json.loads(body)["audit_path"] == []
        assert leaf_hash(base64.b64decode(json.loads(body)["leaf_input"])) == hashed
    # The same chain again: the existing SCT, no new entry.
    status, _, body = request(host, port, "POST", "/logs/a/ct/v1/add-chain", {"chain": chain})
    assert status == 200 and json.loads(body) == answers["a"]
    status, _, body = request(host, port, "GET", "/logs/a/ct/v1/get-sth")
    assert json.loads(body)["tree_size"] == 1
    assert proc.stop() == 0


def test_bad_submissions_get_problem_documents(
    node: InitResult, data_dir: Path, node_processes: list[NodeProcess]
) -> None:
    proc, host, port = start_node(data_dir, node_processes)
    for body in ({"chain": ["!!"]}, {"nochain": 1}, {"chain": [base64.b64encode(b"x").decode()]}):
        status, ctype, payload = request(host, port, "POST", "/logs/a/ct/v1/add-chain", body)
        assert (status, ctype) == (400, "application/problem+json"), payload
    status, ctype, _ = request(host, port, "POST", "/logs/a/ct/v1/add-chain",
                               {"chain": ["A" * 100_000] * 10})
    assert (status, ctype) == (400, "application/problem+json")
    status, _, _ = request(host, port, "POST", "/logs/a/ct/v1/add-chain", "not an object")
    assert status == 400
    status, _, _ = request(host, port, "GET", "/logs/a/ct/v1/get-entries?start=5&end=1")
    assert status == 400
    assert json.loads(request(host, port, "GET", "/logs/a/ct/v1/get-sth")[2])["tree_size"] == 0
    status, _, _ = request(host, port, "GET",
                           "/logs/a/ct/v1/get-entry-and-proof?leaf_index=0&tree_size=0")
    assert status == 400
    status, _, _ = request(host, port, "GET", "/logs/zz/ct/v1/get-sth")
    assert status == 404
    assert proc.stop() == 0


def test_ct_client_commands(
    node: InitResult, data_dir: Path, node_processes: list[NodeProcess], tmp_path: Path
) -> None:
    from tests.support import run_cli

    proc, host, port = start_node(data_dir, node_processes)
    with open_database(data_dir, readonly=True) as db:
        store = NodeStore(db)
        node_cert, admin_cert, ca = (store.latest_certificate(p) for p in (
            "node-tls", "admin-tls", "infrastructure-ca"))
    der = [base64.b64encode(c.public_bytes(Encoding.DER)).decode() for c in (node_cert, admin_cert, ca)]
    for chain in ([der[0], der[2]], [der[1], der[2]], [der[2]]):
        status, _, body = request(host, port, "POST", "/logs/a/ct/v1/add-chain", {"chain": chain})
        assert status == 200, body
    qhost, qport = proc.address("quic")
    common = ["--server", f"[{qhost}]:{qport}", "--data-dir", data_dir]
    listing = json.loads(run_cli("ct", "logs", *common).stdout)
    assert len(listing["operators"][0]["logs"]) == 2
    sth = run_cli("ct", "get-sth", "a", "--json", *common)
    assert sth.returncode == 0 and json.loads(sth.stdout)["tree_size"] == 3
    assert "signature verified" in sth.stderr
    human = run_cli("ct", "get-sth", "a", *common)
    assert human.stdout.startswith("log a: tree size 3, signed "), human.stdout
    pem = tmp_path / "admin.pem"
    pem.write_bytes(admin_cert.public_bytes(Encoding.PEM))
    included = run_cli("ct", "verify-inclusion", pem, "--log", "a", *common)
    assert included.returncode == 0, included.stderr
    assert included.stdout.startswith("OK: entry 1 of log a")
    missing = run_cli("ct", "verify-inclusion", pem, "--log", "b", *common)
    assert missing.returncode == 1 and "not in log b" in missing.stderr
    consistent = run_cli("ct", "verify-consistency", "a", "1", "3", *common)
    assert consistent.returncode == 0, consistent.stderr
    assert proc.stop() == 0


def test_static_ct_read_path(
    node: InitResult, data_dir: Path, node_processes: list[NodeProcess]
) -> None:
    """A monitor that reads only the checkpoint, tiles and issuers sees the same tree."""
    import hashlib

    from trustchain.ct import tiles
    from trustchain.ct.structs import log_id
    from trustchain.ct.tree import MerkleTree

    proc, host, port = start_node(data_dir, node_processes)
    chain = node_chain(data_dir)
    status, _, body = request(host, port, "POST", "/logs/b/ct/v1/add-chain", {"chain": chain})
    assert status == 200, body
    entry = json.loads(request(host, port, "GET", "/logs")[2])["operators"][0]["logs"][1]
    key = load_der_public_key(base64.b64decode(entry["key"]))
    status, ctype, text = request(host, port, "GET", "/logs/b/checkpoint")
    assert status == 200 and ctype.startswith("text/plain")
    origin = text.decode().split("\n")[0]
    assert origin.endswith("/logs/b") and "://" not in origin
    head = tiles.verify_checkpoint(text.decode(), origin, log_id(key), key)  # type: ignore[arg-type]
    sth = json.loads(request(host, port, "GET", "/logs/b/ct/v1/get-sth")[2])
    assert (head.size, base64.b64encode(head.root).decode()) == (1, sth["sha256_root_hash"])
    status, ctype, tile = request(host, port, "GET", "/logs/b/tile/0/000.p/1")
    assert (status, ctype) == (200, "application/octet-stream")
    tree = MerkleTree()
    tree.append(tile)
    assert tree.root() == head.root
    status, _, data = request(host, port, "GET", "/logs/b/tile/data/000.p/1")
    assert status == 200 and data[-32:] == hashlib.sha256(base64.b64decode(chain[1])).digest()
    status, ctype, der = request(host, port, "GET", "/logs/b/issuer/" + data[-32:].hex())
    assert (status, ctype, der) == (200, "application/pkix-cert", base64.b64decode(chain[1]))
    for path in ("/logs/b/tile/0/000", "/logs/b/tile/9/000", "/logs/b/issuer/" + "0" * 64):
        status, ctype, _ = request(host, port, "GET", path)
        assert (status, ctype) == (404, "application/problem+json"), path
    assert proc.stop() == 0


def test_kill_9_under_load_loses_no_acknowledged_entry(
    node: InitResult, data_dir: Path, node_processes: list[NodeProcess]
) -> None:
    """Every SCT handed out before a SIGKILL is honoured by the restarted log."""
    import threading
    from datetime import UTC, datetime

    from cryptography.hazmat.primitives.asymmetric import ec

    from bootstrap.transport_certs import INFRA_CA_PURPOSE
    from tests.pki import der_b64, new_key, node_leaf
    from trustchain.ct.merkle import verify_consistency

    keystore = KeyStore.open(data_dir / "keys", PASSPHRASE)
    ca_key = keystore.private_key(keystore.active(INFRA_CA_PURPOSE).id)
    with open_database(data_dir, readonly=True) as db:
        ca = NodeStore(db).latest_certificate(INFRA_CA_PURPOSE)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey) and ca is not None
    subject = new_key().public_key()
    ca_b64 = der_b64(ca)
    chains = [[der_b64(node_leaf(ca_key, ca, subject, node_id=f"k{i}", network="testnet",
                                 now=datetime.now(UTC))), ca_b64]
              for i in range(400)]

    proc, host, port = start_node(data_dir, node_processes)
    acknowledged: list[tuple[str, dict[str, object]]] = []
    lock, enough = threading.Lock(), threading.Event()

    def submitter(share: list[list[str]]) -> None:
        for chain in share:
            try:
                status, _, body = request(host, port, "POST", "/logs/a/ct/v1/add-chain",
                                          {"chain": chain})
            except (OSError, http.client.HTTPException):
                return  # the node died under us: expected
            if status != 200:
                return
            with lock:
                acknowledged.append((chain[0], json.loads(body)))
                if len(acknowledged) >= 40:
                    enough.set()

    threads = [threading.Thread(target=submitter, args=(chains[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    assert enough.wait(timeout=120), "no SCTs arrived"
    sth_before = json.loads(request(host, port, "GET", "/logs/a/ct/v1/get-sth")[2])
    proc.kill()  # SIGKILL, mid-load
    for thread in threads:
        thread.join(timeout=60)
    with lock:
        honoured = list(acknowledged)

    restarted = NodeProcess.start(data_dir)
    node_processes.append(restarted)
    restarted.wait_ready()
    host, port = restarted.address("http")
    sth = json.loads(request(host, port, "GET", "/logs/a/ct/v1/get-sth")[2])
    assert sth["tree_size"] >= max(len(honoured), sth_before["tree_size"])
    consistency = json.loads(request(
        host, port, "GET", f"/logs/a/ct/v1/get-sth-consistency?first={sth_before['tree_size']}"
        f"&second={sth['tree_size']}")[2])["consistency"]
    verify_consistency(sth_before["tree_size"], sth["tree_size"],
                       [base64.b64decode(p) for p in consistency],
                       base64.b64decode(sth_before["sha256_root_hash"]),
                       base64.b64decode(sth["sha256_root_hash"]))
    root = base64.b64decode(sth["sha256_root_hash"])
    for leaf_b64, sct in honoured:
        extensions = base64.b64decode(str(sct["extensions"]))
        index = SCT(b"", 0, extensions, b"").leaf_index
        leaf = merkle_tree_leaf(int(str(sct["timestamp"])),
                                Entry(EntryType.X509, base64.b64decode(leaf_b64)), extensions)
        answer = json.loads(request(host, port, "GET", "/logs/a/ct/v1/get-entry-and-proof?"
                                    f"leaf_index={index}&tree_size={sth['tree_size']}")[2])
        assert base64.b64decode(answer["leaf_input"]) == leaf
        verify_inclusion(leaf_hash(leaf), index, sth["tree_size"],
                         [base64.b64decode(p) for p in answer["audit_path"]], root)
    assert restarted.stop() == 0


def test_an_independent_rfc6962_verifier_accepts_the_log(
    node: InitResult, data_dir: Path, node_processes: list[NodeProcess]
) -> None:
    """tests/rfc6962_reference.py (no trustchain.ct code) audits heads, every entry, growth."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests import rfc6962_reference as ref

    proc, host, port = start_node(data_dir, node_processes)
    with open_database(data_dir, readonly=True) as db:
        store = NodeStore(db)
        certs = [store.latest_certificate(p) for p in ("node-tls", "admin-tls",
                                                       "infrastructure-ca")]
    der = [base64.b64encode(c.public_bytes(Encoding.DER)).decode() for c in certs]  # type: ignore[union-attr]
    entry = json.loads(request(host, port, "GET", "/logs")[2])["operators"][0]["logs"][0]
    key = load_der_public_key(base64.b64decode(entry["key"]))
    assert isinstance(key, ec.EllipticCurvePublicKey)

    def sth() -> dict[str, object]:
        head = json.loads(request(host, port, "GET", "/logs/a/ct/v1/get-sth")[2])
        ref.check_sth(head, key)
        return head

    heads = [sth()]
    for chain in ([der[0], der[2]], [der[1], der[2]], [der[2]]):  # three batches, three heads
        assert request(host, port, "POST", "/logs/a/ct/v1/add-chain", {"chain": chain})[0] == 200
        heads.append(sth())
    assert [h["tree_size"] for h in heads] == [0, 1, 2, 3]
    final = heads[-1]
    root = base64.b64decode(str(final["sha256_root_hash"]))
    entries = json.loads(request(host, port, "GET", "/logs/a/ct/v1/get-entries?start=0&end=9")[2])
    assert len(entries["entries"]) == 3
    for index, item in enumerate(entries["entries"]):
        hashed = ref.hash_leaf(base64.b64decode(item["leaf_input"]))
        quoted = base64.b64encode(hashed).decode().replace("+", "%2B").replace("/", "%2F") \
            .replace("=", "%3D")
        proof = json.loads(request(host, port, "GET",
                                   f"/logs/a/ct/v1/get-proof-by-hash?tree_size=3&hash={quoted}")[2])
        assert proof["leaf_index"] == index
        ref.check_inclusion(index, 3, hashed, [base64.b64decode(p) for p in proof["audit_path"]],
                            root)
    for old in heads[1:]:
        proof = json.loads(request(host, port, "GET", "/logs/a/ct/v1/get-sth-consistency?"
                                   f"first={old['tree_size']}&second=3")[2])["consistency"]
        ref.check_consistency(int(str(old["tree_size"])), 3,
                              base64.b64decode(str(old["sha256_root_hash"])), root,
                              [base64.b64decode(p) for p in proof])
    assert proc.stop() == 0


def test_logs_sharded_by_expiry_with_tiles_outside_the_data_directory(
    node: InitResult, data_dir: Path, node_processes: list[NodeProcess], tmp_path: Path
) -> None:
    """An operator's trustchain.toml: two shards by notAfter, tiles where nginx can read."""
    import stat

    public = tmp_path / "public-ct"
    config = data_dir / "trustchain.toml"
    kept = [line for line in config.read_text().splitlines() if not line.startswith("ct_logs")]
    config.write_text("\n".join([
        *kept, f'ct_tiles_dir = "{public}"',
        '[[ct_logs]]', 'name = "past"', "not_after_end = 2000-01-01T00:00:00Z",
        '[[ct_logs]]', 'name = "current"', "not_after_start = 2000-01-01T00:00:00Z",
    ]) + "\n")
    proc, host, port = start_node(data_dir, node_processes)
    logs = json.loads(request(host, port, "GET", "/logs")[2])["operators"][0]["logs"]
    assert [(e["url"].rstrip("/").rsplit("/", 1)[1], e["temporal_interval"]) for e in logs] == [
        ("past", {"start_inclusive": "1970-01-01T00:00:00Z",
                  "end_exclusive": "2000-01-01T00:00:00Z"}),
        ("current", {"start_inclusive": "2000-01-01T00:00:00Z",
                     "end_exclusive": "9999-12-31T00:00:00Z"}),
    ]
    chain = node_chain(data_dir)
    status, ctype, body = request(host, port, "POST", "/logs/past/ct/v1/add-chain",
                                  {"chain": chain})
    assert (status, ctype) == (400, "application/problem+json")
    assert "this log accepts certificates expiring" in json.loads(body)["detail"]
    status, _, body = request(host, port, "POST", "/logs/current/ct/v1/add-chain",
                              {"chain": chain})
    assert status == 200, body
    assert json.loads(request(host, port, "GET", "/logs/past/ct/v1/get-sth")[2])["tree_size"] == 0
    checkpoint = public / "current" / "checkpoint"
    # The file follows the checkpoint the node serves: plain first, then cosigned by the
    # node's witness (the quorum of one), within a round trip.
    wait_for("the static checkpoint is the one served, cosigned", lambda: (
        checkpoint.read_bytes() == request(host, port, "GET", "/logs/current/checkpoint")[2]
        and checkpoint.read_bytes().count(b"\n\xe2\x80\x94 ") == 3), 10.0)
    assert stat.S_IMODE(public.stat().st_mode) == 0o755
    assert not (data_dir / "ct-tiles").exists()
    assert proc.stop() == 0


def test_bad_stoq_ct_arguments_get_problem_documents_and_the_log_carries_on(
    node: InitResult, data_dir: Path, node_processes: list[NodeProcess]
) -> None:
    """The same argument checks as over HTTP: a non-integer, NaN, an infinity or an
    out-of-range number is a 400 problem (never a reset), an unknown log a 404."""
    import asyncio

    from bootstrap.genesis import parse_genesis
    from transport.client import connect

    proc, _, _ = start_node(data_dir, node_processes)
    quic_host, quic_port = proc.address("quic")
    genesis = parse_genesis((data_dir / "genesis.json").read_bytes())
    root, origin = genesis.root_certificate, genesis.body.origin.rstrip(".")

    async def calls() -> list[tuple[str, int, dict]]:
        out = []
        async with connect(quic_host, quic_port, root=root, server_name=origin) as anon:
            for method, message in (
                ("get-sth-consistency", b'{"log": "a", "first": "x", "second": 1}'),
                ("get-sth-consistency", b'{"log": "a", "first": 0, "second": Infinity}'),
                ("get-entries", b'{"log": "a", "start": "abc", "end": 1}'),
                ("get-entries", b'{"log": "a", "start": NaN, "end": 1}'),
                ("get-entry-and-proof", b'{"log": "a", "leaf_index": 1e400, "tree_size": 1}'),
                ("add-chain", b'{"log": "a", "chain": [1, 2]}'),
                ("get-sth", b'[1, 2]'),
                ("get-sth", b'{"log": "zz"}'),
            ):
                response = await anon.request("ct", method, message)
                out.append((method, response.status, json.loads(response.message)))
            response = await anon.request("ct", "get-sth", b'{"log": "a"}')
            out.append(("get-sth", response.status, json.loads(response.message)))
        return out

    *refused, (_, unknown_status, unknown), (_, ok_status, sth) = asyncio.run(calls())
    for method, status, problem in refused:
        assert (status, problem["status"]) == (400, 400), (method, problem)
        assert problem["detail"], (method, problem)
    assert (unknown_status, unknown["status"]) == (404, 404)
    assert ok_status == 200 and sth["tree_size"] == 0
    assert proc.stop() == 0
