"""The persistent structures behind zone versions behave as a dict, a set and a sorted list
(whatever the history of versions), and never change a version already made."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from trustchain.dns import persistent
from trustchain.dns.persistent import PMap, SortedSeq

operations = st.lists(st.tuples(st.booleans(), st.integers(0, 400)), max_size=300)


@given(operations)
def test_pmap_is_a_dict_and_old_versions_stay(ops) -> None:
    versions: list[tuple[PMap[int, int], dict[int, int]]] = [(PMap(), {})]
    for put, key in ops:
        current, reference = versions[-1]
        reference = dict(reference)
        if put:
            reference[key] = key * 3
        else:
            reference.pop(key, None)
        versions.append((current.evolve([(key, key * 3 if put else None)]), reference))
    for made, reference in versions:
        assert dict(made) == reference and len(made) == len(reference)
        assert all((k in made) == (k in reference) for k in range(0, 401, 7))


@given(st.lists(st.integers(0, 400), max_size=200), operations, st.integers(-5, 405))
def test_sorted_seq_answers_as_a_sorted_list(start, ops, probe) -> None:
    block, group = persistent.BLOCK, persistent.GROUP
    persistent.BLOCK, persistent.GROUP = 8, 4  # small: splits and emptied leaves and groups happen often
    try:
        seq: SortedSeq[int] = SortedSeq(start)
        reference: set[int] = set(start)
        for put, item in ops:
            before, snapshot = seq, sorted(reference)
            seq = seq.insert(item) if put else seq.remove(item)
            (reference.add if put else reference.discard)(item)
            assert list(before) == snapshot
        ordered = sorted(reference)
        assert list(seq) == ordered and len(seq) == len(ordered)
        assert (probe in seq) == (probe in reference)
        assert list(seq.iter_after(probe)) == [x for x in ordered if x > probe]
        if ordered:
            below = [x for x in ordered if x <= probe]
            assert seq.floor(probe) == (below[-1] if below else ordered[-1])
            above = [x for x in ordered if x > probe]
            assert seq.after(probe) == (above[0] if above else ordered[0])
            lower = [x for x in ordered if x < probe]
            assert seq.before(probe) == (lower[-1] if lower else ordered[-1])
            assert seq[len(ordered) // 2] == ordered[len(ordered) // 2]
    finally:
        persistent.BLOCK, persistent.GROUP = block, group
