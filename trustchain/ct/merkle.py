"""RFC 6962 / RFC 9162 Merkle trees: hashes, roots, proofs and their verification. Pure.

Hashing (RFC 6962 section 2.1): a leaf is ``SHA-256(0x00 || data)``, an
interior node ``SHA-256(0x01 || left || right)``, the empty tree
``SHA-256("")``; a tree of n > 1 leaves splits at the largest power of two
smaller than n.

The verifiers follow RFC 9162 sections 2.1.3.2 and 2.1.4.2 and reject every
malformed proof with :class:`ProofError` (wrong length, a flipped bit, a
wrong index or size); nothing else escapes them.  One deliberate difference
from transparency-dev/merkle: a consistency proof from the empty tree (old
size 0) is valid when it is empty, because every tree extends the empty tree
and a CT witness must accept that first step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

from trustchain.errors import RemoteError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(RemoteError):
    """A Merkle proof does not verify."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """The Merkle tree hash of ``leaves`` (already leaf-hashed)."""
    if not leaves:
        return EMPTY_ROOT
    # Fold complete subtrees left to right, as a binary counter does (O(n), no recursion).
    stack: list[tuple[int, bytes]] = []  # (size, hash) of complete subtrees
    for leaf in leaves:
        size, value = 1, leaf
        while stack and stack[-1][0] == size:
            left_size, left = stack.pop()
            size, value = left_size + size, node_hash(left, value)
        stack.append((size, value))
    size, value = stack.pop()
    while stack:
        _, left = stack.pop()
        value = node_hash(left, value)
    return value


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """The audit path for leaf ``index`` in the tree of ``leaves`` (RFC 6962 PATH)."""
    if not 0 <= index < len(leaves):
        raise ValueError(f"leaf {index} is not in a tree of {len(leaves)}")
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*inclusion_proof(index, leaves[:k]), root(leaves[k:])]
    return [*inclusion_proof(index - k, leaves[k:]), root(leaves[:k])]


def consistency_proof(old_size: int, leaves: Sequence[bytes]) -> list[bytes]:
    """The proof that the tree of ``old_size`` leaves is a prefix of ``leaves`` (RFC 6962)."""
    if not 0 <= old_size <= len(leaves):
        raise ValueError(f"no consistency proof from {old_size} to {len(leaves)}")
    if old_size in (0, len(leaves)):
        return []
    return _subproof(old_size, leaves, True)


def _subproof(m: int, leaves: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [root(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete), root(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), root(leaves[:k])]


def _check(proof: Sequence[bytes], *hashes: bytes) -> None:
    for item in (*proof, *hashes):
        if len(item) != HASH_SIZE:
            raise ProofError("a proof element, leaf or root is not a SHA-256 hash")


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes],
                     expected_root: bytes) -> None:
    """Check that ``leaf`` (a leaf hash) is at ``index`` of the tree with ``expected_root``.

    :raises ProofError: if it is not.
    """
    _check(proof, leaf, expected_root)
    if not 0 <= index < size:
        raise ProofError(f"index {index} is outside a tree of {size}")
    value = leaf
    for item, left in _climb(index, size - 1, proof, "the tree is deep"):
        value = node_hash(item, value) if left else node_hash(value, item)
    if value != expected_root:
        raise ProofError("the proof leads to another root")


def _climb(fn: int, sn: int, path: Sequence[bytes], depth: str) -> Iterator[tuple[bytes, bool]]:
    """RFC 9162's walk from a node up to the root (2.1.3.2 step 5, 2.1.4.2 step 6): each
    proof item with whether it is the left sibling (``item || value``) or the right.

    ``fn`` is the node's index and ``sn`` the last index, at the level the path starts.

    :raises ProofError: the path is longer or shorter than ``depth`` (a phrase).
    """
    for item in path:
        if sn == 0:
            raise ProofError(f"the proof is longer than {depth}")
        left = bool(fn & 1 or fn == sn)
        yield item, left
        if left and not fn & 1:
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"the proof is shorter than {depth}")


def verify_consistency(old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes,
                       new_root: bytes) -> None:
    """Check that the tree ``old_root`` of ``old_size`` is a prefix of ``new_root``.

    :raises ProofError: if it is not.
    """
    _check(proof)  # (roots are only compared for equality, so their length needs no check)
    if not 0 <= old_size <= new_size:
        raise ProofError(f"no consistency from size {old_size} to size {new_size}")
    if old_size == new_size:
        if proof:
            raise ProofError("equal sizes need an empty proof")
        if old_root != new_root:
            raise ProofError("equal sizes but different roots")
        if old_size == 0 and old_root != EMPTY_ROOT:
            raise ProofError("the root of the empty tree is SHA-256 of nothing")
        return
    if old_size == 0:
        if proof:
            raise ProofError("a proof from the empty tree must be empty")
        if old_root != EMPTY_ROOT:
            raise ProofError("the root of the empty tree is SHA-256 of nothing")
        return
    if not proof:
        raise ProofError("an empty proof between different sizes")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root starts the path
        path.insert(0, old_root)
    fr, sr = _consistency_roots(old_size, new_size, path)
    if fr != old_root:
        raise ProofError("the proof does not lead to the old root")
    if sr != new_root:
        raise ProofError("the proof does not lead to the new root")


def _consistency_roots(old_size: int, new_size: int, path: Sequence[bytes]
                       ) -> tuple[bytes, bytes]:
    """RFC 9162 2.1.4.2 steps 4 to 7: the old and new roots a consistency path leads to
    (``path`` starts with the old root when the old size is a power of two).

    :raises ProofError: a path of the wrong length.
    """
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for item, left in _climb(fn, sn, path[1:], "the trees need"):
        if left:
            fr = node_hash(item, fr)
            sr = node_hash(item, sr)
        else:
            sr = node_hash(sr, item)
    return fr, sr


def prefix_root(old_size: int, new_size: int, proof: Sequence[bytes],
                new_root: bytes) -> bytes | None:
    """The root of the first ``old_size`` leaves of the tree ``new_root``, as a consistency
    proof shows it, or None: a proof that does not lead to ``new_root``, or an old size
    that is a power of two (the proof leaves that root out, as its verifier holds it).

    What a witness holds when a log's proof fails against the root it cosigned: if the
    proof leads to the log's new root from another old root, the log signed two trees
    that cannot both be true (:func:`verify_consistency` with this root then passes).
    """
    if not 0 < old_size < new_size or old_size & (old_size - 1) == 0 or not proof:
        return None
    try:
        _check(proof)
        old, new = _consistency_roots(old_size, new_size, list(proof))
    except ProofError:
        return None
    return old if new == new_root else None


def prefix_from_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes],
                          expected_root: bytes) -> bytes:
    """The root of the first ``index`` leaves of the tree ``expected_root``, from the
    inclusion proof of the leaf at ``index``: its left siblings are the complete subtrees
    that make up the leaves before it (any index, powers of two included).

    :raises ProofError: the inclusion proof does not verify.
    """
    verify_inclusion(leaf, index, size, proof, expected_root)
    lefts = [item for item, left in _climb(index, size - 1, proof, "the tree is deep") if left]
    if not lefts:
        return EMPTY_ROOT
    value = lefts[0]  # the smallest subtree, rightmost; the larger ones join from the left
    for item in lefts[1:]:
        value = node_hash(item, value)
    return value
