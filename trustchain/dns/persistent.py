"""Persistent (immutable, structure-sharing) maps, sets and sorted sequences.

Why: a zone version is immutable (the query engine reads it without locks), and a
change to one record makes a new version.  With plain dicts every version copies
every RRset, signature and NSEC record of the zone: about a millisecond per
100,000 entries and per structure, so a change would cost time that grows with
the zone.  These structures make a new version share everything with the old one
but the few small pieces a change touches:

* :class:`PMap`: a hash map cut into about sqrt(n) buckets (plain dicts) by the
  key's hash.  A new version copies the list of buckets and the buckets it
  changes: O(sqrt(n)) pointer copies, a few microseconds at 100,000 entries.  A
  lookup costs one extra hash of the key.
* :class:`PSet`: a set over a :class:`PMap`.
* :class:`SortedSeq`: a sorted sequence cut into blocks of at most
  :data:`BLOCK` items; insertion and removal copy one block and the list of
  blocks.  It answers the NSEC questions in O(log n): the last item at or below
  a name (the NSEC record that covers it), the next and the previous item.

Nothing here mutates a structure once it is made; "changing" returns a new one.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence, Set
from typing import Any, Generic, Protocol, TypeVar, overload

from dns.name import Name

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Ordered(Protocol):
    def __lt__(self, other: Any, /) -> bool: ...


T = TypeVar("T", bound=_Ordered)

_MISSING: Any = object()
#: The largest block of a :class:`SortedSeq`; a block that grows past it is split in two.
BLOCK = 512


def _bucket_count(n: int) -> int:
    """A power of two near sqrt(n): bucket copies and the bucket list cost about the same."""
    return 1 << max(3, math.ceil(math.log2(max(n, 1)) / 2))


def _spread(key: Any) -> int:
    """The bucket of ``key``, as a number: equal keys give equal numbers.

    Not ``hash(key)`` for the keys zones use, DNS names and (name, type) pairs: a name's
    hash is computed in Python over every character (dnspython), and the bucket's dict
    hashes the key again.  A name's labels, joined and lower-cased, are the same for
    equal (case-insensitively) names and are hashed in C.
    """
    first = key[0] if isinstance(key, tuple) and key else key
    if isinstance(first, Name):
        return hash(b".".join(first.labels).lower())
    return hash(first)


class PMap(Mapping[K, V]):
    """An immutable hash map whose new versions share all buckets they do not change.

    Values are never None: :meth:`evolve` takes None to mean "delete".
    """

    __slots__ = ("_buckets", "_mask", "_len")

    _buckets: tuple[dict[K, V], ...]
    _mask: int
    _len: int

    def __init__(self, items: Mapping[K, V] | Iterable[tuple[K, V]] = ()) -> None:
        pairs = list(items.items() if isinstance(items, Mapping) else items)
        count = _bucket_count(len(pairs))
        buckets: list[dict[K, V]] = [{} for _ in range(count)]
        mask = count - 1
        for key, value in pairs:
            buckets[_spread(key) & mask][key] = value
        self._buckets = tuple(buckets)
        self._mask = mask
        self._len = sum(len(b) for b in buckets)

    def __getitem__(self, key: K) -> V:
        return self._buckets[_spread(key) & self._mask][key]

    def get(self, key: K, default: Any = None) -> Any:
        return self._buckets[_spread(key) & self._mask].get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._buckets[_spread(key) & self._mask]

    def __iter__(self) -> Iterator[K]:
        for bucket in self._buckets:
            yield from bucket

    def __len__(self) -> int:
        return self._len

    def __repr__(self) -> str:
        return f"PMap({len(self)} entries)"

    def evolve(self, changes: Iterable[tuple[K, V | None]]) -> PMap[K, V]:
        """A new version with ``changes`` applied in order (a None value deletes the key)."""
        buckets = list(self._buckets)
        copied: set[int] = set()
        length = self._len
        for key, value in changes:
            index = _spread(key) & self._mask
            if index not in copied:
                buckets[index] = dict(buckets[index])
                copied.add(index)
            bucket = buckets[index]
            if value is None:
                if bucket.pop(key, _MISSING) is not _MISSING:
                    length -= 1
            else:
                size = len(bucket)  # grown or not: one hash of the key, not two
                bucket[key] = value
                length += len(bucket) - size
        if length > 4 * len(buckets) ** 2:  # grown well past its bucket count: rebuild once
            return PMap((k, v) for b in buckets for k, v in b.items())
        new: PMap[K, V] = PMap.__new__(PMap)
        new._buckets, new._mask, new._len = tuple(buckets), self._mask, length
        return new

    def set(self, key: K, value: V) -> PMap[K, V]:
        return self.evolve([(key, value)])


class PSet(Set[K]):
    """An immutable set (a :class:`PMap` to 1), equal to any set with the same items."""

    __slots__ = ("_map",)

    def __init__(self, items: Iterable[K] = (), *, _map: PMap[K, int] | None = None) -> None:
        self._map: PMap[K, int] = _map if _map is not None else PMap((k, 1) for k in items)

    def __contains__(self, key: object) -> bool:
        return key in self._map

    def __iter__(self) -> Iterator[K]:
        return iter(self._map)

    def __len__(self) -> int:
        return len(self._map)

    def __repr__(self) -> str:
        return f"PSet({len(self)} items)"

    def evolve(self, add: Iterable[K] = (), remove: Iterable[K] = ()) -> PSet[K]:
        changes: list[tuple[K, int | None]] = [(k, None) for k in remove]
        changes += [(k, 1) for k in add]
        return PSet(_map=self._map.evolve(changes)) if changes else self


class SortedSeq(Sequence[T], Generic[T]):
    """An immutable sorted sequence without duplicates, in blocks shared between versions."""

    __slots__ = ("_blocks", "_firsts", "_len")

    _blocks: tuple[tuple[T, ...], ...]
    _firsts: tuple[T, ...]
    _len: int

    def __init__(self, items: Iterable[T] = (), *, presorted: bool = False) -> None:
        ordered = list(items) if presorted else sorted(set(items))
        half = BLOCK // 2
        self._set(tuple(tuple(ordered[i:i + half]) for i in range(0, len(ordered), half)))

    def _set(self, blocks: tuple[tuple[T, ...], ...]) -> None:
        self._blocks = blocks
        self._firsts = tuple(b[0] for b in blocks)
        self._len = sum(len(b) for b in blocks)

    @classmethod
    def _of(cls, blocks: tuple[tuple[T, ...], ...]) -> SortedSeq[T]:
        new: SortedSeq[T] = cls.__new__(cls)
        new._set(blocks)
        return new

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[T]:
        for block in self._blocks:
            yield from block

    def __repr__(self) -> str:
        return f"SortedSeq({len(self)} items)"

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[T]: ...

    def __getitem__(self, index: int | slice) -> T | Sequence[T]:
        if isinstance(index, slice):
            return list(self)[index]
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError(index)
        for block in self._blocks:
            if index < len(block):
                return block[index]
            index -= len(block)
        raise IndexError(index)  # pragma: no cover (the length was checked)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __contains__(self, item: object) -> bool:
        found: Any = item  # compared with the items: of their type, or not found
        i = bisect.bisect_right(self._firsts, found) - 1
        if i < 0:
            return False
        block = self._blocks[i]
        j = bisect.bisect_left(block, found)
        return j < len(block) and block[j] == item

    def floor(self, item: T) -> T:
        """The last item <= ``item``, or the last of all when every one is greater (the
        chain wraps).  The sequence must not be empty."""
        i = bisect.bisect_right(self._firsts, item) - 1
        if i < 0:
            return self._blocks[-1][-1]
        block = self._blocks[i]
        return block[bisect.bisect_right(block, item) - 1]

    def after(self, item: T) -> T:
        """The first item > ``item``, wrapping to the first of all."""
        i = bisect.bisect_right(self._firsts, item) - 1
        if i >= 0:
            block = self._blocks[i]
            j = bisect.bisect_right(block, item)
            if j < len(block):
                return block[j]
            i += 1
        return self._firsts[i] if 0 <= i < len(self._firsts) else self._firsts[0]

    def before(self, item: T) -> T:
        """The last item < ``item``, wrapping to the last of all."""
        i = bisect.bisect_left(self._firsts, item) - 1
        if i < 0:
            return self._blocks[-1][-1]
        block = self._blocks[i]
        return block[bisect.bisect_left(block, item) - 1]

    def iter_after(self, item: T) -> Iterator[T]:
        """The items > ``item`` in order (no wrapping)."""
        i = max(bisect.bisect_right(self._firsts, item) - 1, 0)
        for n, block in enumerate(self._blocks[i:]):
            yield from block[bisect.bisect_right(block, item):] if n == 0 else block

    def insert(self, item: T) -> SortedSeq[T]:
        """A new version holding ``item`` too (the same one if it is there)."""
        blocks = list(self._blocks)
        if not blocks:
            return self._of(((item,),))
        i = max(bisect.bisect_right(self._firsts, item) - 1, 0)
        block = blocks[i]
        j = bisect.bisect_left(block, item)
        if j < len(block) and block[j] == item:
            return self
        grown = (*block[:j], item, *block[j:])
        if len(grown) > BLOCK:
            half = len(grown) // 2
            blocks[i:i + 1] = [grown[:half], grown[half:]]
        else:
            blocks[i] = grown
        return self._of(tuple(blocks))

    def remove(self, item: T) -> SortedSeq[T]:
        """A new version without ``item`` (the same one if it is not there)."""
        i = bisect.bisect_right(self._firsts, item) - 1
        if i < 0:
            return self
        block = self._blocks[i]
        j = bisect.bisect_left(block, item)
        if j >= len(block) or block[j] != item:
            return self
        blocks = list(self._blocks)
        shrunk = block[:j] + block[j + 1:]
        if shrunk:
            blocks[i] = shrunk
        else:
            del blocks[i]
        return self._of(tuple(blocks))
