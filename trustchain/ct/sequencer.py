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

from trustchain.ct.merkle import inclusion_proof, leaf_hash, root
from trustchain.ct.structs import Entry, leaf_index_extension, merkle_tree_leaf

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
    #: Leaf hashes of the tree so far, in order (the log's state, rebuilt from storage).
    leaves: list[bytes] = field(default_factory=list)
    #: identity -> index of every sequenced entry.
    known: dict[bytes, int] = field(default_factory=dict)
    _pending: dict[bytes, Entry] = field(default_factory=dict)

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
        for key in keys:
            entry = self._pending.pop(key)
            index = len(self.leaves)
            sequenced = Sequenced(index, now_ms, entry, b"")
            hashed = leaf_hash(merkle_tree_leaf(now_ms, entry, sequenced.extensions))
            sequenced = Sequenced(index, now_ms, entry, hashed)
            self.leaves.append(hashed)
            self.known[key] = index
            batch.append(sequenced)
        return Batch(batch, len(self.leaves), root(self.leaves))

    def rollback(self, batch: Batch) -> None:
        """Forget a batch that could not be stored (its entries go back to pending)."""
        first = batch.entries[0].index
        del self.leaves[first:]
        for sequenced in batch.entries:
            key = identity(sequenced.entry)
            self.known.pop(key, None)
            self._pending[key] = sequenced.entry

    def proof(self, index: int, tree_size: int) -> list[bytes]:
        return inclusion_proof(index, self.leaves[:tree_size])
