"""The monitor's checks, driven by a real log: honest answers pass, each kind of lie is caught."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.trustchain.ct.test_log import CA_B64, LOG_KEY, db, leaf, new_log  # noqa: F401
from trustchain.ct import monitor, tiles
from trustchain.ct.log import Log
from trustchain.ct.merkle import ProofError
from trustchain.ct.monitor import MonitorError
from trustchain.ct.structs import TreeHead
from trustchain.ct.tree import MerkleTree
from trustchain.errors import RemoteError

OTHER_KEY = ec.generate_private_key(ec.SECP256R1())


def spki_b64(key: ec.EllipticCurvePublicKey) -> str:
    return base64.b64encode(key.public_bytes(Encoding.DER,
                                             PublicFormat.SubjectPublicKeyInfo)).decode()


def log_list(**keys: ec.EllipticCurvePublicKey) -> dict[str, object]:
    """A log list in the shape the node serves (transport/ct.py)."""
    return {"version": "1.0", "operators": [{"name": "node", "email": [], "logs": [
        {"url": f"https://node.example/logs/{name}/", "key": spki_b64(key)}
        for name, key in keys.items()]}]}


def filled(db, count: int) -> tuple[Log, list[bytes]]:  # noqa: F811
    """A log with ``count`` sequenced certificates, and their DER."""
    log = new_log(db)
    ders = []
    for i in range(count):
        cert = leaf(f"m{i}")
        ders.append(base64.b64decode(cert))
        log.check([cert, CA_B64])
    log.sequence(1_700_000_000_000)
    return log, ders


def all_pages(log: Log, size: int) -> list[bytes]:
    """The leaf hashes of the first ``size`` entries, page by page as a client reads them."""
    hashes: list[bytes] = []
    while len(hashes) < size:
        hashes += monitor.leaf_hashes(log.get_entries(len(hashes), size - 1))
    return hashes


# --- get-sth ---------------------------------------------------------------------


def test_a_signed_tree_head_verifies_with_the_key_from_the_log_list(db) -> None:  # noqa: F811
    log, _ = filled(db, 3)
    key = monitor.log_key(log_list(a=LOG_KEY.public_key(), b=OTHER_KEY.public_key()), "a")
    head = monitor.verify_sth(log.get_sth(), key)
    assert head.size == 3 and head.root == base64.b64decode(log.get_sth()["sha256_root_hash"])


def test_a_tree_head_that_was_altered_or_signed_by_another_key_is_refused(db) -> None:  # noqa: F811
    log, _ = filled(db, 3)
    with pytest.raises(MonitorError, match="does not verify"):
        monitor.verify_sth({**log.get_sth(), "tree_size": 4}, LOG_KEY.public_key())
    with pytest.raises(MonitorError, match="does not verify"):
        monitor.verify_sth(log.get_sth(), OTHER_KEY.public_key())


def test_a_log_missing_from_the_list_is_named() -> None:
    with pytest.raises(MonitorError, match=r"no log 'c' \(it has a, b\)"):
        monitor.log_key(log_list(a=LOG_KEY.public_key(), b=OTHER_KEY.public_key()), "c")


# --- consistency -----------------------------------------------------------------


def test_consistency_from_leaf_hashes_and_a_proof(db) -> None:  # noqa: F811
    log, _ = filled(db, 300)  # two pages of get-entries
    head = monitor.verify_sth(log.get_sth(), LOG_KEY.public_key())
    hashes = all_pages(log, 300)
    for first in (0, 1, 255, 256, 299, 300):
        monitor.verify_consistency(first, 300, head, hashes, log.get_sth_consistency(first, 300))
    monitor.verify_consistency(7, 200, head, hashes[:200], log.get_sth_consistency(7, 200))


def test_a_forged_consistency_proof_or_entries_off_the_signed_head_are_caught(db) -> None:  # noqa: F811
    log, _ = filled(db, 20)
    head = monitor.verify_sth(log.get_sth(), LOG_KEY.public_key())
    hashes = all_pages(log, 20)
    proof = log.get_sth_consistency(5, 20)
    forged = {"consistency": [base64.b64encode(b"\x00" * 32).decode(), *proof["consistency"][1:]]}
    with pytest.raises(ProofError):
        monitor.verify_consistency(5, 20, head, hashes, forged)
    # Entries that prove consistent among themselves but are not the tree the log signed.
    other = [hashlib.sha256(h).digest() for h in hashes]
    tree = MerkleTree()
    for h in other:
        tree.append(h)
    own_proof = {"consistency": [base64.b64encode(p).decode()
                                 for p in tree.consistency_proof(5, 20)]}
    with pytest.raises(MonitorError, match="do not match the signed tree head"):
        monitor.verify_consistency(5, 20, head, other, own_proof)
    assert issubclass(MonitorError, RemoteError)


# --- inclusion over get-entries ------------------------------------------------------


def test_a_certificate_is_found_in_its_page_and_its_proof_checked(db) -> None:  # noqa: F811
    log, ders = filled(db, 260)
    head = monitor.verify_sth(log.get_sth(), LOG_KEY.public_key())
    first_page = log.get_entries(0, 259)
    assert monitor.find_certificate(first_page, 0, ders[258]) is None  # on the next page
    found = monitor.find_certificate(log.get_entries(256, 259), 256, ders[258])
    assert found is not None and found.index == 258
    proof = log.get_proof_by_hash(base64.b64encode(found.leaf_hash).decode(), head.size)
    monitor.verify_inclusion(found, proof, head)
    assert monitor.find_certificate(first_page, 0, base64.b64decode(leaf("absent"))) is None


def test_an_inclusion_proof_against_another_root_fails(db) -> None:  # noqa: F811
    log, ders = filled(db, 5)
    head = monitor.verify_sth(log.get_sth(), LOG_KEY.public_key())
    found = monitor.find_certificate(log.get_entries(0, 4), 0, ders[2])
    assert found is not None
    proof = log.get_proof_by_hash(base64.b64encode(found.leaf_hash).decode(), 5)
    wrong = TreeHead(head.size, head.timestamp, b"\x01" * 32, head.signature)
    with pytest.raises(ProofError):
        monitor.verify_inclusion(found, proof, wrong)


# --- static-ct-api tiles -----------------------------------------------------------


def serving(log: Log, **override: bytes) -> Callable[[str], bytes]:
    """``fetch`` over the log's static-ct-api files, with some files replaced."""
    def fetch(path: str) -> bytes:
        if path in override:
            return override[path]
        if path == "checkpoint":
            return log.checkpoint().encode()
        assert path.startswith("tile/")
        return log.tile(path.removeprefix("tile/"))

    return fetch


def test_tiles_prove_a_certificate_by_the_checkpoint_signature_alone(db) -> None:  # noqa: F811
    log, ders = filled(db, 300)  # a full tile and a partial one
    proven = monitor.verify_tiles(serving(log), LOG_KEY.public_key(), ders[270])
    assert (proven.origin, proven.index, proven.tree_size) == ("a", 270, 300)
    assert monitor.verify_tiles(serving(log), LOG_KEY.public_key(), ders[0]).index == 0
    with pytest.raises(MonitorError, match="not in the log at a"):
        monitor.verify_tiles(serving(log), LOG_KEY.public_key(), base64.b64decode(leaf("x")))


def test_a_tampered_data_tile_is_caught(db) -> None:  # noqa: F811
    log, ders = filled(db, 10)
    data = bytearray(log.tile("data/000.p/10"))
    data[-100] ^= 0x01  # inside the last certificate (extensions and issuers follow it)
    fetch = serving(log, **{"tile/data/000.p/10": bytes(data)})
    with pytest.raises(MonitorError, match="entry 9 does not match its tile hash"):
        monitor.verify_tiles(fetch, LOG_KEY.public_key(), ders[0])


def test_tiles_that_do_not_rebuild_the_signed_root_are_caught(db) -> None:  # noqa: F811
    log, ders = filled(db, 10)
    # The checkpoint is signed by the log, but over another root.
    head = TreeHead(10, 1_700_000_000_001, b"\x02" * 32).sign(LOG_KEY)
    wrong_root = tiles.checkpoint(log.origin, head, log.log_id).encode()
    with pytest.raises(MonitorError, match="do not rebuild the checkpoint's root"):
        monitor.verify_tiles(serving(log, checkpoint=wrong_root), LOG_KEY.public_key(), ders[0])
    # Two entries swapped in the data tile and in the hash tile alike: each entry still
    # matches its hash, but the tree they make is not the one the log signed.
    entries = tiles.parse_data_tile(log.tile("data/000.p/10"))
    raw = [e.leaf_input[2:] + (32 * len(e.issuers)).to_bytes(2, "big") + b"".join(e.issuers)
           for e in entries]
    hashes = log.tile("0/000.p/10")
    rows = [hashes[i:i + 32] for i in range(0, len(hashes), 32)]
    raw[0], raw[1], rows[0], rows[1] = raw[1], raw[0], rows[1], rows[0]
    swapped = serving(log, **{"tile/data/000.p/10": b"".join(raw),
                              "tile/0/000.p/10": b"".join(rows)})
    with pytest.raises(MonitorError, match="do not rebuild the checkpoint's root"):
        monitor.verify_tiles(swapped, LOG_KEY.public_key(), ders[0])
    assert b"".join(raw) != log.tile("data/000.p/10")


def test_a_checkpoint_not_signed_by_the_log_key_is_caught(db) -> None:  # noqa: F811
    log, ders = filled(db, 10)
    with pytest.raises(MonitorError, match="^checkpoint: "):
        monitor.verify_tiles(serving(log), OTHER_KEY.public_key(), ders[0])
    forged = log.checkpoint().replace("\n10\n", "\n9\n").encode()
    with pytest.raises(MonitorError, match="^checkpoint: .*does not verify"):
        monitor.verify_tiles(serving(log, checkpoint=forged), LOG_KEY.public_key(), ders[0])


def test_a_tile_of_the_wrong_width_or_junk_is_caught(db) -> None:  # noqa: F811
    log, ders = filled(db, 10)
    short = serving(log, **{"tile/0/000.p/10": log.tile("0/000.p/10")[:-32]})
    with pytest.raises(MonitorError, match="tile 0 has the wrong width"):
        monitor.verify_tiles(short, LOG_KEY.public_key(), ders[0])
    junk = serving(log, **{"tile/data/000.p/10": b"\x00" * 9})
    with pytest.raises(MonitorError, match="data tile 0: truncated"):
        monitor.verify_tiles(junk, LOG_KEY.public_key(), ders[0])


def test_an_empty_page_below_the_signed_size_is_refused_not_looped_on() -> None:
    for check in (monitor.leaf_hashes, lambda page: monitor.find_certificate(page, 0, b"x")):
        with pytest.raises(monitor.MonitorError, match="no entries"):
            check({"entries": []})
