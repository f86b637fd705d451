"""The incremental tree gives exactly the reference module's roots and proofs."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from trustchain.ct import merkle
from trustchain.ct.tree import MerkleTree


@given(st.integers(1, 300), st.data())
def test_matches_the_reference(size: int, data) -> None:
    leaves = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    tree = MerkleTree()
    for leaf in leaves:
        tree.append(leaf)
    sub = data.draw(st.integers(1, size))
    assert tree.root(sub) == merkle.root(leaves[:sub])
    index = data.draw(st.integers(0, sub - 1))
    assert tree.inclusion_proof(index, sub) == merkle.inclusion_proof(index, leaves[:sub])
    old = data.draw(st.integers(0, sub))
    assert tree.consistency_proof(old, sub) == merkle.consistency_proof(old, leaves[:sub])


def test_empty_and_large() -> None:
    tree = MerkleTree()
    assert tree.root() == merkle.EMPTY_ROOT
    leaves = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(5000)]
    for leaf in leaves:
        tree.append(leaf)
    assert tree.root() == merkle.root(leaves)
    proof = tree.inclusion_proof(4321, 5000)
    merkle.verify_inclusion(leaves[4321], 4321, 5000, proof, tree.root())
    assert len(proof) <= 13  # log2(5000) rounded up
