"""A growing Merkle tree that keeps every complete subtree hash, so proofs cost O(log n).

Level 0 holds the leaf hashes; level k holds the hashes of the complete
subtrees of 2**k leaves, in order (exactly the hashes that tlog tiles
publish).  Appending updates each level at most once; the root and every
RFC 6962 proof are assembled from stored hashes plus at most O(log n)
hashes for the incomplete right edge.  Pure.
"""

from __future__ import annotations

from trustchain.ct.merkle import EMPTY_ROOT, node_hash


class MerkleTree:
    def __init__(self) -> None:
        self.levels: list[list[bytes]] = [[]]

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def append(self, leaf: bytes) -> None:
        self.levels[0].append(leaf)
        level, index = 0, len(self.levels[0]) - 1
        while index & 1:  # a right child completes its parent
            if level + 1 == len(self.levels):
                self.levels.append([])
            parent = node_hash(self.levels[level][index - 1], self.levels[level][index])
            self.levels[level + 1].append(parent)
            level, index = level + 1, index >> 1

    def _range(self, start: int, end: int) -> bytes:
        """The hash of leaves [start, end) for an RFC 6962 subtree (a power-of-two aligned
        range, or the ragged right edge of a tree of ``end`` leaves)."""
        size = end - start
        if size & (size - 1) == 0 and start % size == 0:
            level = size.bit_length() - 1
            return self.levels[level][start >> level]
        split = 1 << ((size - 1).bit_length() - 1)
        return node_hash(self._range(start, start + split), self._range(start + split, end))

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        if not 0 <= size <= self.size:
            raise ValueError(f"no tree of size {size}")
        return EMPTY_ROOT if size == 0 else self._range(0, size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        if not 0 <= index < size <= self.size:
            raise ValueError(f"leaf {index} is not in a tree of {size}")
        return self._path(index, 0, size)

    def _path(self, index: int, start: int, end: int) -> list[bytes]:
        if end - start == 1:
            return []
        split = 1 << ((end - start - 1).bit_length() - 1)
        if index < start + split:
            return [*self._path(index, start, start + split), self._range(start + split, end)]
        return [*self._path(index, start + split, end), self._range(start, start + split)]

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        if not 0 <= old <= new <= self.size:
            raise ValueError(f"no consistency proof from {old} to {new}")
        if old in (0, new):
            return []
        return self._subproof(old, 0, new, True)

    def _subproof(self, m: int, start: int, end: int, complete: bool) -> list[bytes]:
        if m == end - start:
            return [] if complete else [self._range(start, end)]
        split = 1 << ((end - start - 1).bit_length() - 1)
        if m <= split:
            return [*self._subproof(m, start, start + split, complete),
                    self._range(start + split, end)]
        return [*self._subproof(m - split, start + split, end, False),
                self._range(start, start + split)]
