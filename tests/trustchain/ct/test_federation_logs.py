"""The federation's CT logs (trustchain.ct.federation): what a node may announce, the log
list every node derives (Chrome v3 shape, one operator per node), and the candidates a
CA takes SCTs from (other operators' logs covering the certificate's expiry)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from trustchain.ct.federation import FederatedLog, FederationLogs, LogsRefused, announcement
from trustchain.ct.log import ExpiryRange
from trustchain.ct.note import CosignatureV1Signer, Ed25519Signer


def spki(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def logs_of(node: str, *shards: ExpiryRange) -> list[FederatedLog]:
    out = []
    for i, shard in enumerate(shards):
        origin = f"{node}.nodes.fed.example:8443/logs/l{i}"
        note = Ed25519Signer(origin, ed25519.Ed25519PrivateKey.generate())
        out.append(FederatedLog(node, f"l{i}", spki(ec.generate_private_key(ec.SECP256R1())),
                                f"https://{origin}/", 1, shard, note.verifier().vkey()))
    return out


def witness(node: str) -> str:
    return CosignatureV1Signer(f"{node}.nodes.fed.example",
                               ed25519.Ed25519PrivateKey.generate()).verifier().vkey()


H1 = ExpiryRange(datetime(2027, 1, 1, tzinfo=UTC), datetime(2027, 7, 1, tzinfo=UTC))
H2 = ExpiryRange(datetime(2027, 7, 1, tzinfo=UTC), None)


def federation() -> FederationLogs:
    state = FederationLogs()
    for node, shards in (("n1", (H1, H2)), ("n2", (H1,)), ("n3", (H2,))):
        body = announcement(logs_of(node, *shards), witness(node))
        state.check("node-logs", node, body)
        state.apply("node-logs", node, body, 1)
    return state


def test_every_node_derives_one_log_list_of_one_operator_per_node() -> None:
    state = federation()
    listing = state.log_list(first="n2")
    assert [o["name"] for o in listing["operators"]] == ["n2", "n1", "n3"]
    n1 = listing["operators"][1]
    assert len(n1["logs"]) == 2 and len(n1["tiled_logs"]) == 2
    entry, tiled = n1["logs"][0], n1["tiled_logs"][0]
    assert entry["url"] == "https://n1.nodes.fed.example:8443/logs/l0/"
    assert tiled["submission_url"] == tiled["monitoring_url"] == entry["url"]
    assert entry["temporal_interval"] == {"start_inclusive": "2027-01-01T00:00:00Z",
                                          "end_exclusive": "2027-07-01T00:00:00Z"}
    assert n1["logs"][1]["temporal_interval"]["end_exclusive"] == "9999-12-31T00:00:00Z"
    key = base64.b64decode(entry["key"])
    assert state.logs["n1"]["l0"].key == key and state.logs["n1"]["l0"].expiry == H1


def test_a_ca_takes_other_operators_logs_covering_the_expiry() -> None:
    state = federation()
    march = datetime(2027, 3, 1, tzinfo=UTC)
    assert [(lg.operator, lg.name) for lg in state.candidates("n1", march)] == [("n2", "l0")]
    assert {lg.operator for lg in state.candidates("n3", march)} == {"n1", "n2"}
    state.remove_operator("n2")  # slashed: its logs are rejected in the list
    assert [lg.operator for lg in state.candidates("n3", march)] == ["n1"]
    assert "n2" not in {o["name"] for o in state.log_list()["operators"]}


def test_announcements_the_federation_refuses() -> None:
    state = federation()
    mine = logs_of("n4", ExpiryRange())[0]
    taken = announcement([FederatedLog("n4", "x", state.logs["n1"]["l0"].key, mine.url, 1,
                                       ExpiryRange(), mine.note_key)], witness("n4"))
    with pytest.raises(LogsRefused, match="node n1's"):
        state.check("node-logs", "n4", taken)
    good = announcement(logs_of("n4", ExpiryRange()), witness("n4"))["logs"][0]
    w = witness("n4")
    for bad, match in (
            ({**good, "name": "Bad Name"}, "name"),
            ({**good, "url": "http://n4.example/logs/x/"}, "https prefix"),
            ({**good, "mmd": 0}, "mmd"),
            ({**good, "key": base64.b64encode(spki(ed25519.Ed25519PrivateKey.generate()))
              .decode()}, "P-256"),
            ({**good, "key": "not base64!"}, "base64"),
            ({**good, "not_after_start": "2027-01-01T00:00:00"}, "time zone"),
            ({**good, "not_after_start": "2028-01-01T00:00:00Z",
              "not_after_end": "2027-01-01T00:00:00Z"}, "start before"),
            ({k: v for k, v in good.items() if k != "mmd"}, "each log has")):
        with pytest.raises(LogsRefused, match=match):
            state.check("node-logs", "n4", {"logs": [bad], "witness": w})
    with pytest.raises(LogsRefused, match="twice"):
        state.check("node-logs", "n4", {"logs": [good, good], "witness": w})
    with pytest.raises(LogsRefused, match="1 to 16"):
        state.check("node-logs", "n4", {"logs": [], "witness": w})
    with pytest.raises(LogsRefused, match="named n4.nodes"):  # another log's origin
        state.check("node-logs", "n4", {"logs": [{**good, "note_key": state.logs["n1"][
            "l0"].note_key}], "witness": w})
    with pytest.raises(LogsRefused, match="cosignature/v1"):  # a note key, not a witness's
        state.check("node-logs", "n4", {"logs": [good], "witness": good["note_key"]})


def test_a_checkpoint_is_final_with_witnesses_of_more_than_two_thirds_of_the_stake() -> None:
    """``log-final``: the log's note signature, cosignatures of witnesses holding more
    than 2/3 of the stake, and consistency with the last final checkpoint of that log."""
    from trustchain.ct.merkle import EMPTY_ROOT
    from trustchain.ct.note import Checkpoint, sign_note
    from trustchain.ct.tree import MerkleTree

    state = FederationLogs()
    origin = "n1.nodes.fed.example:8443/logs/l0"
    note_key = Ed25519Signer(origin, ed25519.Ed25519PrivateKey.generate())
    cosigners = {n: CosignatureV1Signer(f"{n}.nodes.fed.example",
                                        ed25519.Ed25519PrivateKey.generate())
                 for n in ("n1", "n2", "n3", "n4")}
    log = FederatedLog("n1", "l0", spki(ec.generate_private_key(ec.SECP256R1())),
                       f"https://{origin}/", 1, ExpiryRange(), note_key.verifier().vkey())
    for node, signer in cosigners.items():
        mine = [log] if node == "n1" else logs_of(node, ExpiryRange())
        state.apply("node-logs", node, announcement(mine, signer.verifier().vkey()), 1)
    state.stakes = lambda: dict.fromkeys(cosigners, 100)
    tree = MerkleTree()
    for i in range(5):
        tree.append(bytes([i]) * 32)

    def checkpoint(size: int, by: list[str], root: bytes | None = None) -> str:
        point = Checkpoint(origin, size, root or tree.root(size))
        text = sign_note(point.text(), [note_key])
        return text + "".join(cosigners[n].cosign(point, 1_800_000_000).line() for n in by)

    def body(text: str, proof: list[bytes] = ()) -> dict[str, object]:  # type: ignore[assignment]
        return {"log": origin, "checkpoint": text,
                "proof": [base64.b64encode(p).decode() for p in proof]}

    with pytest.raises(LogsRefused, match="cosigned by 2 witnesses"):
        state.check("log-final", "n1", body(checkpoint(3, ["n1", "n2"])))
    state.check("log-final", "n1", body(checkpoint(3, ["n1", "n2", "n4"])))
    state.apply("log-final", "n1", body(checkpoint(3, ["n1", "n2", "n4"])), 7)
    assert state.final[origin][:2] == (3, tree.root(3)) and state.final[origin][2] == 7
    with pytest.raises(LogsRefused, match="not beyond"):
        state.check("log-final", "n1", body(checkpoint(3, list(cosigners))))
    forked = checkpoint(5, list(cosigners), root=EMPTY_ROOT)
    with pytest.raises(LogsRefused, match="not consistent"):
        state.check("log-final", "n1", body(forked, tree.consistency_proof(3, 5)))
    state.check("log-final", "n1", body(checkpoint(5, ["n2", "n3", "n4"]),
                                            tree.consistency_proof(3, 5)))
    unsigned = checkpoint(5, list(cosigners)).replace(note_key.sign(
        Checkpoint(origin, 5, tree.root(5)).text()).line(), "")
    with pytest.raises(LogsRefused, match="not a checkpoint of that log"):
        state.check("log-final", "n1", body(unsigned, tree.consistency_proof(3, 5)))


def test_two_signed_checkpoints_of_one_size_and_two_roots_untrust_the_log() -> None:
    from trustchain.ct.note import Checkpoint, sign_note

    state = federation()
    log = state.logs["n2"]["l0"]
    key = ed25519.Ed25519PrivateKey.generate()
    signer = Ed25519Signer(log.origin, key)
    state.logs["n2"]["l0"] = FederatedLog(log.operator, log.name, log.key, log.url, log.mmd,
                                          log.expiry, signer.verifier().vkey())

    def note(size: int, root: bytes, by: Ed25519Signer = signer) -> str:
        return sign_note(Checkpoint(log.origin, size, root).text(), [by])

    honest, forked = note(4, b"\1" * 32), note(4, b"\2" * 32)
    for bad, match in (([honest, note(4, b"\1" * 32)], "two roots"),
                       ([honest, note(5, b"\2" * 32)], "need proof and prefix"),
                       ([honest, note(4, b"\2" * 32, Ed25519Signer(
                           log.origin, ed25519.Ed25519PrivateKey.generate()))], "did not sign")):
        with pytest.raises(LogsRefused, match=match):
            state.check("log-fork", "n3", {"log": log.origin, "operator": "n2",
                                           "checkpoints": bad})
    march = datetime(2027, 3, 1, tzinfo=UTC)
    assert [lg.operator for lg in state.candidates("n1", march)] == ["n2"]
    with pytest.raises(LogsRefused, match="runs no log"):  # the operator named is not its
        state.check("log-fork", "n3", {"log": log.origin, "operator": "n3",
                                       "checkpoints": [honest, forked]})
    state.apply("log-fork", "n3", {"log": log.origin, "operator": "n2",
                                   "checkpoints": [honest, forked]}, 9)
    assert "split view" in state.untrusted[log.log_id.hex()]
    assert state.candidates("n1", march) == []  # no CA takes its SCTs any more
    with pytest.raises(LogsRefused, match="committed already"):
        state.check("log-fork", "n4", {"log": log.origin, "operator": "n2",
                                       "checkpoints": [honest, forked]})


def test_a_larger_checkpoint_that_does_not_extend_a_smaller_one_untrusts_the_log() -> None:
    """Split views across sizes: the log signed (3, A) and a tree of 6 whose first three
    leaves are others.  The larger tree's own consistency proof joins its prefix to its
    root; a prefix other than A is the evidence.  The honest extension, a proof that does
    not join, and a prefix equal to A are refused."""
    from trustchain.ct.merkle import consistency_proof, leaf_hash, root
    from trustchain.ct.note import Checkpoint, sign_note

    state = federation()
    log = state.logs["n2"]["l0"]
    signer = Ed25519Signer(log.origin, ed25519.Ed25519PrivateKey.generate())
    state.logs["n2"]["l0"] = FederatedLog(log.operator, log.name, log.key, log.url, log.mmd,
                                          log.expiry, signer.verifier().vkey())
    honest = [leaf_hash(bytes([i])) for i in range(6)]
    forked = [leaf_hash(b"x" + bytes([i])) for i in range(6)]

    def note(leaves: list[bytes]) -> str:
        return sign_note(Checkpoint(log.origin, len(leaves), root(leaves)).text(), [signer])

    def b64(items: list[bytes]) -> list[str]:
        return [base64.b64encode(i).decode() for i in items]

    def fork(small: list[bytes], large: list[bytes], prefix: bytes,
             proof: list[bytes]) -> dict[str, object]:
        return {"log": log.origin, "operator": "n2", "checkpoints": [note(large), note(small)],
                "proof": b64(proof), "prefix": b64([prefix])[0]}

    for small_size in (3, 4):  # the proof carries the old root; or not (a power of two)
        small, proof = honest[:small_size], consistency_proof(small_size, forked)
        for bad, match in (
                (fork(small, honest, root(small), consistency_proof(small_size, honest)),
                 "extends"),
                (fork(small, forked, root(forked[:small_size]), proof[1:]), "does not join"),
                (fork(small, forked, root(small), proof), "does not join")):
            with pytest.raises(LogsRefused, match=match):
                state.check("log-fork", "n3", bad)
        state.check("log-fork", "n3", fork(small, forked, root(forked[:small_size]), proof))
    evidence = fork(honest[:3], forked, root(forked[:3]), consistency_proof(3, forked))
    state.apply("log-fork", "n3", evidence, 12)
    assert state.untrusted[log.log_id.hex()] == (
        "split view: the checkpoint of size 6 does not extend the one of size 3 "
        "(committed at height 12)")
