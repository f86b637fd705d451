"""The Merkle tree against transparency-dev/merkle's probes (tests/vectors/merkle), and
against itself with hypothesis."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustchain.ct.merkle import (
    EMPTY_ROOT,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    prefix_from_inclusion,
    prefix_root,
    root,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "merkle" / "testdata"
LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243",
                                      "5051525354555657", "606162636465666768696a6b6c6d6e6f")]
ROOTS = {  # tests/vectors/merkle/README.md
    0: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value) if value else b""


def _proof(probe: dict) -> list[bytes]:
    return [_b64(p) for p in probe.get("proof") or []]


@pytest.mark.parametrize("size", range(9))
def test_roots_of_the_reference_tree(size: int) -> None:
    assert root([leaf_hash(x) for x in LEAVES[:size]]).hex() == ROOTS[size]


INCLUSION = sorted((VECTORS / "inclusion").rglob("*.json"))
CONSISTENCY = sorted((VECTORS / "consistency").rglob("*.json"))


@pytest.mark.parametrize("path", INCLUSION, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_inclusion_probes(path: Path) -> None:
    probe = json.loads(path.read_text())
    call = lambda: verify_inclusion(  # noqa: E731
        _b64(probe["leafHash"]), probe["leafIdx"], probe["treeSize"], _proof(probe),
        _b64(probe["root"]))
    if probe["wantErr"]:
        with pytest.raises(ProofError):
            call()
    else:
        call()


#: Probes where transparency-dev/merkle rejects an old size of 0 and a CT witness must
#: accept it: an empty proof from the empty tree is valid (see trustchain/ct/merkle.py).
WITNESS_ACCEPTS = {"size1-is-zero-and-does-not-equal-size2",
                   "size1-is-zero-and-size2-is-not-zero", "sizes-are-equal-zero-and-proof-is-empty"}


@pytest.mark.parametrize("path", CONSISTENCY, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_consistency_probes(path: Path) -> None:
    probe = json.loads(path.read_text())
    old_root = _b64(probe["root1"]) if probe["size1"] or probe["root1"] else EMPTY_ROOT
    call = lambda: verify_consistency(  # noqa: E731
        probe["size1"], probe["size2"], _proof(probe), old_root, _b64(probe["root2"]))
    want_error = probe["wantErr"] and path.stem not in WITNESS_ACCEPTS
    if path.stem in WITNESS_ACCEPTS and old_root != EMPTY_ROOT:
        want_error = True  # still wrong: the empty tree has one root
    if want_error:
        with pytest.raises(ProofError):
            call()
    else:
        call()


def test_probe_counts() -> None:
    assert len(INCLUSION) > 50 and len(CONSISTENCY) > 50


trees = st.lists(st.binary(max_size=8), min_size=1, max_size=70, unique=True)


@given(trees, st.data())
def test_every_inclusion_proof_verifies_and_others_do_not(leaves: list[bytes], data) -> None:
    hashes = [leaf_hash(x) for x in leaves]
    tree_root = root(hashes)
    index = data.draw(st.integers(0, len(hashes) - 1))
    proof = inclusion_proof(index, hashes)
    verify_inclusion(hashes[index], index, len(hashes), proof, tree_root)
    if len(hashes) > 1:
        wrong = data.draw(st.integers(0, len(hashes) - 1).filter(lambda i: i != index))
        with pytest.raises(ProofError):
            verify_inclusion(hashes[index], wrong, len(hashes), proof, tree_root)


@given(trees, st.data())
def test_every_consistency_proof_verifies(leaves: list[bytes], data) -> None:
    hashes = [leaf_hash(x) for x in leaves]
    old = data.draw(st.integers(0, len(hashes)))
    proof = consistency_proof(old, hashes)
    verify_consistency(old, len(hashes), proof, root(hashes[:old]), root(hashes))
    if proof:
        flipped = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
        with pytest.raises(ProofError):
            verify_consistency(old, len(hashes), flipped, root(hashes[:old]), root(hashes))


@given(st.integers(0, 100), st.integers(0, 100),
       st.lists(st.binary(min_size=0, max_size=40), max_size=10), st.binary(max_size=40),
       st.binary(max_size=40))
def test_garbage_proofs_raise_only_proof_errors(a: int, b: int, proof: list[bytes], r1: bytes,
                                                r2: bytes) -> None:
    for call in (lambda: verify_consistency(a, b, proof, r1, r2),
                 lambda: verify_inclusion(r1, a, b, proof, r2)):
        try:
            call()
        except ProofError:
            pass


def test_the_prefix_of_every_tree_from_its_inclusion_and_consistency_proofs() -> None:
    """Every size to 70, every prefix: the root of the first m leaves comes back from the
    inclusion proof of leaf m (any m) and from the consistency proof m -> n (m not a power
    of two: that proof leaves the old root out); a proof of another tree gives none."""
    hashes = [leaf_hash(bytes([i])) for i in range(70)]
    for n in range(2, 71):
        whole = root(hashes[:n])
        for m in range(1, n):
            assert prefix_from_inclusion(hashes[m], m, n, inclusion_proof(m, hashes[:n]),
                                         whole) == root(hashes[:m])
            proof = consistency_proof(m, hashes[:n])
            expected = None if m & (m - 1) == 0 else root(hashes[:m])
            assert prefix_root(m, n, proof, whole) == expected
            assert prefix_root(m, n, proof, hashes[0]) is None  # not this tree's proof


@given(trees, trees, st.data())
def test_a_forked_tree_shows_its_other_prefix(leaves: list[bytes], other: list[bytes],
                                              data) -> None:
    """A log that signed (m, A) and then a tree of n whose first m leaves differ: the new
    tree's own proof leads to its root from a prefix that is not A, and that prefix passes
    verify_consistency: what split-view evidence across sizes carries."""
    honest = [leaf_hash(x) for x in leaves]
    forked = [leaf_hash(b"f" + x) for x in other]
    if len(forked) < 2 or len(honest) < 1:
        return
    m = data.draw(st.integers(1, min(len(honest), len(forked) - 1)))
    n = len(forked)
    proof = consistency_proof(m, forked)
    with pytest.raises(ProofError):
        verify_consistency(m, n, proof, root(honest[:m]), root(forked))
    prefix = prefix_from_inclusion(forked[m], m, n, inclusion_proof(m, forked), root(forked))
    assert prefix != root(honest[:m])
    verify_consistency(m, n, proof, prefix, root(forked))
    if m & (m - 1):
        assert prefix_root(m, n, proof, root(forked)) == prefix


@given(st.integers(0, 100), st.integers(0, 100),
       st.lists(st.binary(min_size=0, max_size=40), max_size=10), st.binary(max_size=40),
       st.binary(max_size=40))
def test_prefix_helpers_take_garbage_without_other_errors(
        a: int, b: int, proof: list[bytes], r1: bytes, r2: bytes) -> None:
    found = prefix_root(a, b, proof, r1)
    assert found is None or len(found) == 32
    try:
        prefix_from_inclusion(r1, a, b, proof, r2)
    except ProofError:
        pass
