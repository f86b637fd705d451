"""Persistent (immutable, structure-sharing) maps, sets and sorted sequences.

Why: a zone version is immutable (the query engine reads it without locks), and a
change to one record makes a new version.  With plain dicts every version copies
every RRset, signature and NSEC record of the zone: about a millisecond per
100,000 entries and per structure, so a change would cost time that grows with
the zone.  These structures make a new version share everything with the old one
but the few small pieces a change touches:

* :class:`PMap`: a hash array mapped trie (:mod:`immutables`, in C).  A new version
  copies the few small nodes on the paths to the keys it changes, O(log32 n), so each
  change leaves the garbage collector a few hundred young references to scan whatever
  the zone's size (a sqrt(n) bucket map left ~1,000 per map, and 4-9 ms gen-0 pauses at
  100,000 RRsets).
* :class:`PSet`: a set over a :class:`PMap`.
* :class:`SortedSeq`: a sorted sequence in a three-level tree: groups of leaves of
  items.  Insertion and removal copy one leaf, its group and the list of groups:
  ~300 references at 100,000 items (two levels copied ~1,200, which the garbage
  collector scanned: 28,000 young references every 50 changes, 2.4 ms).  It
  answers the NSEC questions in O(log n): the last item at or below a name (the
  NSEC record that covers it), the next and the previous item.

Nothing here mutates a structure once it is made; "changing" returns a new one.
"""

from __future__ import annotations

import bisect
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence, Set
from typing import Any, Generic, Protocol, TypeVar, overload

import immutables

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Ordered(Protocol):
    def __lt__(self, other: Any, /) -> bool: ...


T = TypeVar("T", bound=_Ordered)

#: The most items in a leaf of a :class:`SortedSeq`, and the most leaves in one of its
#: groups; a leaf or group that grows past it is split in two.
BLOCK = 64
GROUP = 64


class PMap(Mapping[K, V]):
    """An immutable hash map whose new versions share all nodes they do not change.

    Values are never None: :meth:`evolve` takes None to mean "delete".
    """

    __slots__ = ("_map",)

    _map: immutables.Map[K, V]

    def __init__(self, items: Mapping[K, V] | Iterable[tuple[K, V]] = ()) -> None:
        self._map = immutables.Map(items)

    def __getitem__(self, key: K) -> V:
        return self._map[key]

    def get(self, key: K, default: Any = None) -> Any:
        return self._map.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._map

    def __iter__(self) -> Iterator[K]:
        return iter(self._map)

    def __len__(self) -> int:
        return len(self._map)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PMap):
            return self._map == other._map  # in C, not two dicts built in Python
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PMap({len(self)} entries)"

    def evolve(self, changes: Iterable[tuple[K, V | None]]) -> PMap[K, V]:
        """A new version with ``changes`` applied in order (a None value deletes the key)."""
        mutation = self._map.mutate()  # copies each touched node once, however many changes
        for key, value in changes:
            if value is None:
                mutation.pop(key, None)
            else:
                mutation[key] = value
        new: PMap[K, V] = PMap.__new__(PMap)
        new._map = mutation.finish()
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
    """An immutable sorted sequence without duplicates, in leaves shared between versions."""

    __slots__ = ("_groups", "_firsts", "_len")

    #: Each group: the first item of each of its leaves, and its leaves.
    _groups: tuple[tuple[tuple[T, ...], tuple[tuple[T, ...], ...]], ...]
    #: The first item of each group.
    _firsts: tuple[T, ...]
    _len: int

    def __init__(self, items: Iterable[T] = (), *, presorted: bool = False) -> None:
        ordered = list(items) if presorted else sorted(set(items))
        leaf, group = BLOCK // 2, GROUP // 2
        leaves = [tuple(ordered[i:i + leaf]) for i in range(0, len(ordered), leaf)]
        self._groups = tuple((tuple(x[0] for x in leaves[i:i + group]), tuple(leaves[i:i + group]))
                             for i in range(0, len(leaves), group))
        self._firsts = tuple(firsts[0] for firsts, _ in self._groups)
        self._len = len(ordered)

    def _find(self, item: T, left: bool = False) -> tuple[int, tuple[T, ...]]:
        """The group and leaf where ``item`` is or belongs: the last leaf whose first item
        is <= ``item`` (< it if ``left``); group -1 (and no leaf) if there is none."""
        cut = bisect.bisect_left if left else bisect.bisect_right
        g = cut(self._firsts, item) - 1
        if g < 0:
            return -1, ()
        firsts, leaves = self._groups[g]
        return g, leaves[cut(firsts, item) - 1]

    def _last(self) -> T:
        return self._groups[-1][1][-1][-1]

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[T]:
        for _, leaves in self._groups:
            for leaf in leaves:
                yield from leaf

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
        for _, leaves in self._groups:
            for leaf in leaves:
                if index < len(leaf):
                    return leaf[index]
                index -= len(leaf)
        raise IndexError(index)  # pragma: no cover (the length was checked)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __contains__(self, item: object) -> bool:
        found: Any = item  # compared with the items: of their type, or not found
        g, leaf = self._find(found)
        if g < 0:
            return False
        j = bisect.bisect_left(leaf, found)
        return j < len(leaf) and leaf[j] == item

    def floor(self, item: T) -> T:
        """The last item <= ``item``, or the last of all when every one is greater (the
        chain wraps).  The sequence must not be empty."""
        g, leaf = self._find(item)
        return leaf[bisect.bisect_right(leaf, item) - 1] if g >= 0 else self._last()

    def after(self, item: T) -> T:
        """The first item > ``item``, wrapping to the first of all."""
        g, leaf = self._find(item)
        if g < 0:
            return self._firsts[0]
        j = bisect.bisect_right(leaf, item)
        if j < len(leaf):
            return leaf[j]
        firsts = self._groups[g][0]
        k = bisect.bisect_right(firsts, item)  # the next leaf in the group
        if k < len(firsts):
            return firsts[k]
        return self._firsts[g + 1] if g + 1 < len(self._firsts) else self._firsts[0]

    def before(self, item: T) -> T:
        """The last item < ``item``, wrapping to the last of all."""
        g, leaf = self._find(item, left=True)
        return leaf[bisect.bisect_left(leaf, item) - 1] if g >= 0 else self._last()

    def iter_after(self, item: T) -> Iterator[T]:
        """The items > ``item`` in order (no wrapping)."""
        g = max(bisect.bisect_right(self._firsts, item) - 1, 0)
        for firsts, leaves in self._groups[g:]:
            k = max(bisect.bisect_right(firsts, item) - 1, 0)
            for leaf in leaves[k:]:
                yield from leaf[bisect.bisect_right(leaf, item):]

    def insert(self, item: T) -> SortedSeq[T]:
        """A new version holding ``item`` too (the same one if it is there)."""
        if not self._groups:
            return SortedSeq((item,), presorted=True)
        g = max(bisect.bisect_right(self._firsts, item) - 1, 0)
        firsts = self._groups[g][0]
        k = max(bisect.bisect_right(firsts, item) - 1, 0)
        leaf = self._groups[g][1][k]
        j = bisect.bisect_left(leaf, item)
        if j < len(leaf) and leaf[j] == item:
            return self
        grown = (*leaf[:j], item, *leaf[j:])
        half = len(grown) // 2
        return self._replace(g, k, (grown[:half], grown[half:]) if len(grown) > BLOCK
                             else (grown,), self._len + 1)

    def remove(self, item: T) -> SortedSeq[T]:
        """A new version without ``item`` (the same one if it is not there)."""
        g = bisect.bisect_right(self._firsts, item) - 1
        if g < 0:
            return self
        firsts = self._groups[g][0]
        k = bisect.bisect_right(firsts, item) - 1
        leaf = self._groups[g][1][k]
        j = bisect.bisect_left(leaf, item)
        if j >= len(leaf) or leaf[j] != item:
            return self
        shrunk = leaf[:j] + leaf[j + 1:]
        return self._replace(g, k, (shrunk,) if shrunk else (), self._len - 1)

    def _replace(self, g: int, k: int, new: tuple[tuple[T, ...], ...],
                 length: int) -> SortedSeq[T]:
        """A new version with leaf ``k`` of group ``g`` replaced by the leaves ``new``
        (none, one or two); copies only that group and the list of groups."""
        firsts, leaves = self._groups[g]
        leaves = leaves[:k] + new + leaves[k + 1:]
        firsts = firsts[:k] + tuple(leaf[0] for leaf in new) + firsts[k + 1:]
        half = len(leaves) // 2
        made = (((firsts[:half], leaves[:half]), (firsts[half:], leaves[half:]))
                if len(leaves) > GROUP else ((firsts, leaves),) if leaves else ())
        seq: SortedSeq[T] = SortedSeq.__new__(SortedSeq)
        seq._groups = self._groups[:g] + made + self._groups[g + 1:]
        seq._firsts = self._firsts[:g] + tuple(f[0] for f, _ in made) + self._firsts[g + 1:]
        seq._len = length
        return seq
