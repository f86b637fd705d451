"""static-ct-api: tile paths, tiles that match the tree, data tiles, checkpoints."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given
from hypothesis import strategies as st

from tests.trustchain.ct.test_log import CA, CA_B64, LOG_KEY, _precert, db, leaf, new_log  # noqa: F401
from trustchain.ct import tiles
from trustchain.ct.merkle import leaf_hash, root
from trustchain.ct.structs import TreeHead, log_id
from trustchain.ct.tiles import TileError, TilePath
from trustchain.ct.tree import MerkleTree


def test_index_encoding_follows_the_spec_example() -> None:
    assert tiles.format_index(1234067) == "x001/x234/067"
    assert tiles.format_index(5) == "005"
    assert tiles.parse_tile_path("0/x001/x234/067") == TilePath(0, 1234067, 256)
    assert tiles.parse_tile_path("data/000.p/17") == TilePath(None, 0, 17)


@given(st.integers(min_value=0, max_value=10**12), st.sampled_from([0, 1, 5, None]),
       st.integers(min_value=1, max_value=256))
def test_paths_round_trip(index: int, level: int | None, width: int) -> None:
    path = ("data" if level is None else str(level)) + "/" + tiles.format_index(index)
    if width < 256:
        path += f".p/{width}"
    assert tiles.parse_tile_path(path) == TilePath(level, index, width)


@given(st.text(max_size=40))
def test_any_path_parses_or_is_refused_cleanly(path: str) -> None:
    try:
        tiles.parse_tile_path(path)
    except TileError:
        pass


@pytest.mark.parametrize("path", ["6/000", "00/000", "0/1", "0/x1/000", "0/000.p/0",
                                  "0/000.p/256", "0/000.p/017", "0/001/002", "x/000"])
def test_bad_paths(path: str) -> None:
    with pytest.raises(TileError):
        tiles.parse_tile_path(path)


def test_tiles_of_a_70000_leaf_tree_match_the_spec_and_the_tree() -> None:
    tree = MerkleTree()
    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(70_000)]
    for hashed in leaves:
        tree.append(hashed)

    def get(level: int, index: int, width: int = 256) -> bytes:
        return tiles.tile_hashes(tree.levels, TilePath(level, index, width), 70_000)

    # The spec: 273 full level-0 tiles, a partial of width 112, one full
    # level-1 tile, a partial level-1 tile of 17, a partial level-2 tile of 1.
    assert len(get(0, 272)) == 8192 and len(get(0, 273, 112)) == 112 * 32
    with pytest.raises(TileError):
        get(0, 273)
    with pytest.raises(TileError):
        get(0, 273, 113)
    assert len(get(1, 0)) == 8192 and len(get(1, 1, 17)) == 17 * 32
    with pytest.raises(TileError):
        get(1, 1, 18)
    assert len(get(2, 0, 1)) == 32
    with pytest.raises(TileError):
        get(3, 0, 1)
    # Each level-1 hash is the Merkle root of the level-0 tile beneath it,
    # computed here by the reference (list-based) RFC 6962 code.
    level0 = get(0, 5)
    hashes = [level0[i:i + 32] for i in range(0, 8192, 32)]
    assert hashes == leaves[5 * 256:6 * 256]
    parent = get(1, 0)
    assert parent[5 * 32:6 * 32] == root_of_hashes(hashes)
    assert get(2, 0, 1) == root_of_hashes(leaves[:65536])


def root_of_hashes(hashes: list[bytes]) -> bytes:
    """RFC 6962 MTH over already-hashed leaves (the reference code hashes raw leaves)."""
    tree = MerkleTree()
    for h in hashes:
        tree.append(h)
    return tree.root()


def test_checkpoint_signature_verifies_and_tampering_fails() -> None:
    head = TreeHead(7, 1_700_000_000_123, root([b"x"] * 7)).sign(LOG_KEY)
    identity = log_id(LOG_KEY.public_key())
    text = tiles.checkpoint("node.example/logs/a", head, identity)
    lines = text.split("\n")
    assert lines[:4] == ["node.example/logs/a", "7", base64.b64encode(head.root).decode(), ""]
    assert lines[4].startswith("\u2014 node.example/logs/a ")
    signature = base64.b64decode(lines[4].split(" ")[2])
    assert signature[:4] == hashlib.sha256(b"node.example/logs/a\n\x05" + identity).digest()[:4]
    assert tiles.verify_checkpoint(text, "node.example/logs/a", identity,
                                   LOG_KEY.public_key()) == head
    with pytest.raises(TileError):
        tiles.verify_checkpoint(text.replace("\n7\n", "\n8\n"), "node.example/logs/a",
                                identity, LOG_KEY.public_key())
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(TileError):
        tiles.verify_checkpoint(text, "node.example/logs/a", identity, other)
    with pytest.raises(TileError):
        tiles.verify_checkpoint(text, "elsewhere/logs/a", identity, LOG_KEY.public_key())


def test_a_log_serves_tiles_data_tiles_and_issuers(db) -> None:  # noqa: F811
    log = new_log(db)
    for i in range(300):
        log.check([leaf(f"t{i}"), CA_B64])
    log.check([_precert(), CA_B64], precert=True)
    log.sequence(9)
    head = tiles.verify_checkpoint(log.checkpoint(), log.origin, log.log_id,
                                   LOG_KEY.public_key())
    assert head.size == 301
    level0 = log.tile("0/000") + log.tile("0/001.p/45")
    hashes = [level0[i:i + 32] for i in range(0, len(level0), 32)]
    assert root_of_hashes(hashes) == head.root
    # Data tiles: parse each TileLeaf and hash it back into the level-0 tile.
    data = log.tile("data/001.p/45")
    offset, ca_fingerprint = 0, hashlib.sha256(CA.public_bytes(Encoding.DER)).digest()
    for i in range(45):
        timestamp = data[offset:offset + 8]
        entry_type = int.from_bytes(data[offset + 8:offset + 10], "big")
        at = offset + 10
        if entry_type == 0:
            at += 3 + int.from_bytes(data[at:at + 3], "big")
        else:
            at += 32
            at += 3 + int.from_bytes(data[at:at + 3], "big")
        at += 2 + int.from_bytes(data[at:at + 2], "big")  # extensions
        timestamped_entry = data[offset:at]
        if entry_type == 1:
            at += 3 + int.from_bytes(data[at:at + 3], "big")  # pre_certificate
        chain_length = int.from_bytes(data[at:at + 2], "big")
        assert data[at + 2:at + 2 + chain_length] == ca_fingerprint
        offset = at + 2 + chain_length
        assert timestamp == (9).to_bytes(8, "big")
        assert leaf_hash(b"\x00\x00" + timestamped_entry) == hashes[256 + i]
    assert offset == len(data)
    assert log.issuer(ca_fingerprint.hex()) == CA.public_bytes(Encoding.DER)
    assert log.issuer("00" * 32) is None and log.issuer("zz") is None
    with pytest.raises(TileError):
        log.tile("0/001")
    with pytest.raises(TileError):
        log.tile("data/001.p/46")


@given(st.binary(max_size=300))
def test_data_tile_parser_refuses_junk_cleanly(data: bytes) -> None:
    try:
        tiles.parse_data_tile(data)
    except TileError:
        pass


def test_data_tile_parser_reads_what_the_log_writes(db) -> None:  # noqa: F811
    log = new_log(db)
    chains = [leaf(f"d{i}") for i in range(3)]
    for chain in chains:
        log.check([chain, CA_B64])
    log.check([_precert(), CA_B64], precert=True)
    log.sequence(11)
    parsed = tiles.parse_data_tile(log.tile("data/000.p/4"))
    assert [e.certificate for e in parsed[:3]] == [base64.b64decode(c) for c in chains]
    level0 = log.tile("0/000.p/4")
    assert [leaf_hash(e.leaf_input) for e in parsed] == [level0[i:i + 32]
                                                         for i in range(0, 128, 32)]
    ca = hashlib.sha256(CA.public_bytes(Encoding.DER)).digest()
    assert all(e.issuers == [ca] for e in parsed)
    with pytest.raises(TileError):
        tiles.parse_data_tile(log.tile("data/000.p/4")[:-1])
