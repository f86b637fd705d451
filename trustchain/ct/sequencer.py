"""The sequencer of one log, pure: submissions in, numbered batches out, time passed in.

``submit`` queues an entry (or returns the index it already has: duplicates
get the existing SCT), ``step(now)`` takes everything pending as one batch,
gives each entry its index and timestamp, and returns it with the new tree
size and root.  The caller stores the batch durably, then signs the tree
head, then hands out SCTs, in that order, so no SCT ever names an entry that
a crash could lose.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from trustchain.ct.merkle import leaf_hash
from trustchain.ct.structs import Entry, leaf_index_extension, merkle_tree_leaf
from trustchain.ct.tree import MerkleTree

MAX_BATCH = 4096


def identity(entry: Entry) -> bytes:
    """What makes two submissions the same entry (for duplicate detection)."""
    return hashlib.sha256(bytes([entry.entry_type]) + entry.issuer_key_hash + entry.body).digest()


@dataclass(frozen=True)
class Sequenced:
    index: int
    timestamp: int  # milliseconds since the epoch
    entry: Entry
    leaf_hash: bytes

    @property
    def extensions(self) -> bytes:
        return leaf_index_extension(self.index)


@dataclass(frozen=True)
class Batch:
    entries: list[Sequenced]
    tree_size: int
    root: bytes


@dataclass
class Sequencer:
    #: The tree so far (the log's state, rebuilt from storage at start).
    tree: MerkleTree = field(default_factory=MerkleTree)
    #: identity -> index of every sequenced entry, and leaf hash -> index.
    known: dict[bytes, int] = field(default_factory=dict)
    by_hash: dict[bytes, int] = field(default_factory=dict)
    _pending: dict[bytes, Entry] = field(default_factory=dict)

    def restore(self, index: int, entry: Entry, hashed: bytes) -> None:
        """Re-add an entry read back from storage (at start)."""
        if index != self.tree.size:
            raise ValueError(f"entries out of order at {index}")
        self.tree.append(hashed)
        self.known[identity(entry)] = index
        self.by_hash.setdefault(hashed, index)

    def submit(self, entry: Entry) -> int | None:
        """Queue ``entry``; return its index if it is already in the log."""
        key = identity(entry)
        if key in self.known:
            return self.known[key]
        self._pending.setdefault(key, entry)
        return None

    @property
    def pending(self) -> int:
        return len(self._pending)

    def step(self, now_ms: int) -> Batch | None:
        """Sequence up to MAX_BATCH pending entries at ``now_ms``."""
        if not self._pending:
            return None
        keys = list(self._pending)[:MAX_BATCH]
        batch = []
        start = self.tree.size
        for offset, key in enumerate(keys):
            entry = self._pending[key]
            index = start + offset
            extensions = leaf_index_extension(index)
            hashed = leaf_hash(merkle_tree_leaf(now_ms, entry, extensions))
            batch.append(Sequenced(index, now_ms, entry, hashed))
        # Only now that every leaf is computed does the tree grow (nothing half-done).
        for key, sequenced in zip(keys, batch, strict=True):
            del self._pending[key]
            self.tree.append(sequenced.leaf_hash)
            self.known[key] = sequenced.index
            self.by_hash.setdefault(sequenced.leaf_hash, sequenced.index)
        return Batch(batch, self.tree.size, self.tree.root())

    def rollback(self, batch: Batch) -> None:
        """Forget a batch that could not be stored (its entries go back to pending).

        The tree is rebuilt from the entries before the batch (rare: storage failed).
        """
        first = batch.entries[0].index
        kept = self.tree.levels[0][:first]
        self.tree = MerkleTree()
        for hashed in kept:
            self.tree.append(hashed)
        for sequenced in batch.entries:
            key = identity(sequenced.entry)
            self.known.pop(key, None)
            if self.by_hash.get(sequenced.leaf_hash) == sequenced.index:
                del self.by_hash[sequenced.leaf_hash]
            self._pending[key] = sequenced.entry
