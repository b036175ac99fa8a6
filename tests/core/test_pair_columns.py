"""A plain app's pairs as columns on the map side: sorted runs by key alone, partitioned as pairs are, combined,
within bounds, and back to pairs when a block makes no columns."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zmr.core import columns as c
from zmr.core import pair_columns
from zmr.core.batches import PartitionBuffers
from zmr.core.pair_columns import ColumnBuffers, Run
from zmr.core.partition import partition_of

SETTINGS = settings(max_examples=100, deadline=None, derandomize=True, database=None)
WORDS = st.sampled_from(["a", "b", "é", "abcdefghij", "abcdefghik", "zz", ""])
# The compiled kernel and the numpy passes it stands in for: both must file a block the same way.
FILERS = [pytest.param(pair_columns.filed_columns, id="kernel"),
          pytest.param(pair_columns._numpy_filed_columns, id="numpy")]


def _bad_partition(key: str, n: int, p: Any) -> int:
    raise AssertionError(f"no partition to check: {key!r} -> {p!r}")


def _buffers(n: int, batch_bytes: int, max_bytes: int, combine: Any = None, hold: int = 0) -> ColumnBuffers:
    buffers = ColumnBuffers(n, batch_bytes, max_bytes, None, combine, _bad_partition, hold_keys=hold)
    buffers.BLOCK = 7   # several blocks per call, and runs due in the middle of one
    return buffers


def _pairs_of(run: Run) -> list[tuple[Any, Any]]:
    return run.pairs() if isinstance(run, c.Columns) else list(run)


def _collect(buffers: ColumnBuffers, calls: list[list[Any]]) -> list[tuple[int, Run]]:
    runs = [due for call in calls for due in buffers.add_all(call) if due is not None]
    return runs + buffers.drain()


@SETTINGS
@given(pairs=st.lists(st.tuples(WORDS, st.integers(-5, 5)), max_size=120), n=st.integers(1, 5),
       batch_bytes=st.integers(1, 400), calls=st.integers(1, 3))
def test_runs_are_sorted_by_key_keep_emission_order_and_lose_nothing(pairs: list[tuple[str, int]], n: int,
                                                                      batch_bytes: int, calls: int) -> None:
    buffers = _buffers(n, batch_bytes, 4 * batch_bytes)
    cut = len(pairs) // calls or 1
    runs = _collect(buffers, [pairs[i:i + cut] for i in range(0, len(pairs), cut)])
    assert buffers.records == len(pairs)
    seen: list[tuple[int, tuple[str, int]]] = []
    for p, run in runs:
        assert isinstance(run, c.Columns) or len(pairs) < buffers.BLOCK   # fewer than a block: as pairs
        got = _pairs_of(run)
        assert [k for k, _ in got] == sorted(k for k, _ in got)
        assert all(partition_of(k, n) == p for k, _ in got)
        seen += [(p, pair) for pair in got]
    assert Counter(pair for _, pair in seen) == Counter(pairs)
    for key in {k for k, _ in pairs}:   # a key's values, run after run, in the order map emitted them
        assert [v for _, (k, v) in seen if k == key] == [v for k, v in pairs if k == key]


@SETTINGS
@given(pairs=st.lists(st.tuples(st.text(max_size=10), st.integers(-5, 5)), max_size=120), n=st.integers(1, 5),
       batch_bytes=st.integers(1, 400))
def test_without_the_kernels_the_runs_and_their_groups_are_the_same(pairs: list[tuple[str, int]], n: int,
                                                                    batch_bytes: int) -> None:
    """An install without a C compiler: every kernel's caller takes its numpy passes, to the same runs and
    the same groups."""
    def runs_and_groups() -> tuple[list[tuple[int, list[Any]]], list[tuple[Any, list[Any]]]]:
        runs = _collect(_buffers(n, batch_bytes, 4 * batch_bytes), [pairs])
        batches = [run for _, run in runs if isinstance(run, c.Columns)]
        merged = list(c.merge_sorted([[b] for b in batches], by_value=False))
        return ([(p, _pairs_of(run)) for p, run in runs],
                [(key, list(values)) for key, values in c.groups(merged)])

    with_kernels = runs_and_groups()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(c, "kernels", None)
        patch.setattr(pair_columns, "kernels", None)
        assert runs_and_groups() == with_kernels


@SETTINGS
@given(pairs=st.lists(st.tuples(WORDS, st.integers(0, 9)), max_size=120), n=st.integers(1, 4))
def test_a_combiner_leaves_one_pair_per_key_in_each_run_and_totals_stay_exact(pairs: list[tuple[str, int]],
                                                                            n: int) -> None:
    calls: list[tuple[str, list[Any]]] = []

    def combine(key: str, values: list[Any]) -> Any:
        calls.append((key, values))
        return sum(values)

    runs = _collect(_buffers(n, 1 << 20, 1 << 22, combine), [pairs])
    totals: Counter[str] = Counter()
    for _, run in runs:
        keys = [k for k, _ in _pairs_of(run)]
        assert len(keys) == len(set(keys))
        totals.update(dict(_pairs_of(run)))
    assert totals == Counter({k: sum(v for kk, v in pairs if kk == k) for k, _ in pairs})
    assert all(len(values) > 1 for _, values in calls)   # a single value is not combined


def test_a_combined_value_of_another_kind_makes_the_run_pairs() -> None:
    runs = _collect(_buffers(1, 1 << 20, 1 << 22, lambda key, values: sum(values) / 2), [[("a", 1), ("a", 3)]])
    assert runs == [(0, [("a", 2.0)])]


def test_a_block_that_makes_no_columns_sends_the_rest_back_to_pairs() -> None:
    """Ints, then a block of ints and floats: the int runs held so far go out as columns first, and the
    rest (whatever kind) as pairs; nothing is lost, and the check sees what is not a pair."""
    buffers = _buffers(2, 1 << 20, 1 << 22)
    ints = [(f"k{i}", i) for i in range(7)]
    mixed = [("x", 1), ("y", 0.5)] * 3 + [("z", 2)]
    first = [due for due in buffers.add_all(ints) if due is not None]
    assert first == []   # held
    second = [due for due in buffers.add_all(mixed) if due is not None]
    assert second and all(isinstance(run, c.Columns) for _, run in second)
    rest = buffers.drain()
    assert rest and all(isinstance(run, list) for _, run in rest)
    assert Counter(pair for _, run in second + rest for pair in _pairs_of(run)) == Counter(ints + mixed)
    assert buffers.records == 14
    checked: list[object] = []

    def check(pair: object) -> tuple[str, int]:
        checked.append(pair)
        return ("fixed", 0)

    assert [due for due in buffers.add_all([("ok", 1), ["not", "a tuple"]], check) if due is not None] == []
    assert checked == [["not", "a tuple"]]


@pytest.mark.parametrize("block", [
    [("a", 1), ("b", 1.5)],        # ints and floats: a float column would turn 1 into 1.0
    [("a", 1 << 63)],              # past int64
    [("a", True)],                 # a bool is not an int here
    [(b"a", 1)],                   # bytes key
    [("a", 1, 2)],                 # not a pair
    [["a", 1]],                    # a list
])
@pytest.mark.parametrize("filed", FILERS)
def test_what_a_column_cannot_hold_exactly_makes_no_columns(filed: Any, block: list[Any]) -> None:
    assert filed(block, 2) is None
    assert filed([("first", 1), *block], 2) is None


@pytest.mark.parametrize("filed", FILERS)
def test_one_kind_of_value_makes_columns_that_read_back_exactly(filed: Any) -> None:
    for values in ([1, -2, (1 << 63) - 1, -(1 << 63)], [0.5, -1.25, float("inf")], ["x", "é", "", "\ud800"]):
        made = filed([(f"k{i}", v) for i, v in enumerate(values)], 0)
        assert made is not None
        assert made[0].pairs() == [(f"k{i}", v) for i, v in enumerate(values)]
        assert [type(v) for _, v in made[0].pairs()] == [type(v) for v in values]
        assert made[1] == [len(values)]


def test_the_kernel_was_built() -> None:
    """zmr's setup builds the kernel wherever a C compiler is at hand, as on every machine the tests run."""
    assert pair_columns.kernels is not None


@SETTINGS
@given(st.lists(st.tuples(st.text(max_size=12), st.integers(-(1 << 63), (1 << 63) - 1)), max_size=60),
       st.integers(0, 9))
def test_the_kernel_files_a_block_as_the_numpy_passes_and_partition_of_do(block: list[Any], n: int) -> None:
    made, expected = pair_columns.filed_columns(block, n), pair_columns._numpy_filed_columns(block, n)
    if not block:
        assert made is None
        return
    assert made is not None and expected is not None
    assert made[0].pairs() == expected[0].pairs()
    assert made[1] == expected[1]
    bounds = [0]
    for count in made[1]:
        bounds.append(bounds[-1] + count)
    for p, (start, end) in enumerate(zip(bounds, bounds[1:], strict=False)):
        for key, _ in made[0].slice(start, end).pairs():
            assert n <= 1 or partition_of(key, n) == p
    assert sorted(made[0].pairs(), key=repr) == sorted(block, key=repr)


@pytest.mark.parametrize("values", [["a", "b"], [0.5, 1.5]])
def test_the_kernel_files_text_and_float_values(values: list[Any]) -> None:
    block = [(f"key{i}", values[i % 2]) for i in range(50)] + [("\udc80 lone", values[0]), ("é", values[1])]
    made, expected = pair_columns.filed_columns(block, 3), pair_columns._numpy_filed_columns(block, 3)
    assert made is not None and expected is not None
    assert made[0].pairs() == expected[0].pairs() and made[1] == expected[1]


def test_bounds_flush_the_full_partition_and_the_largest_over_the_cap() -> None:
    buffers = _buffers(2, 10_000, 200)
    runs = [due for due in buffers.add_all([(f"key{i}", i) for i in range(40)]) if due is not None]
    assert runs, "past the cap, the largest partition comes out"
    assert buffers._total <= 200


def test_keys_are_held_up_to_the_bound_and_no_further() -> None:
    held = _buffers(2, 1 << 20, 1 << 22, hold=10)
    _collect(held, [[(f"k{i}", 1) for i in range(9)]])
    assert sorted(k for keys in held.held_keys() for k in keys) == sorted(f"k{i}" for i in range(9))
    over = _buffers(2, 1 << 20, 1 << 22, hold=10)
    _collect(over, [[(f"k{i}", 1) for i in range(11)]])
    assert over.held_keys() == []


def test_the_same_pairs_make_the_same_runs_as_pair_buffers_do() -> None:
    pairs = [(w, i) for i, w in enumerate("the cat and the dog and the end".split())]
    columns = {p: run.pairs() for p, run in _collect(_buffers(3, 1 << 20, 1 << 22), [pairs])}
    plain = PartitionBuffers(3, 1 << 20, 1 << 22, None, None)
    reference = {p: run for p, run in [*(d for d in plain.add_all(pairs) if d is not None), *plain.drain()]}
    assert columns == reference


def test_a_map_of_fewer_pairs_than_a_block_goes_as_pairs_and_one_of_more_as_columns() -> None:
    """The first pairs wait for a block's worth: calls of 3 then 10 pairs make columns of all 13; a map
    that never reaches a block makes runs of pairs (a small job never imports numpy)."""
    few = _buffers(2, 1 << 20, 1 << 22)
    assert [due for due in few.add_all([("a", 1), ("b", 2)]) if due is not None] == []
    runs = few.drain()
    assert runs and all(isinstance(run, list) for _, run in runs)
    assert sorted(pair for _, run in runs for pair in run) == [("a", 1), ("b", 2)]
    assert few.records == 2
    more = _buffers(2, 1 << 20, 1 << 22)
    calls = [[(f"k{i}", i) for i in range(3)], [(f"k{i}", i) for i in range(3, 13)]]
    runs = _collect(more, calls)
    assert all(isinstance(run, c.Columns) for _, run in runs)
    assert sorted(pair for _, run in runs for pair in _pairs_of(run)) == sorted(calls[0] + calls[1])
    assert more.records == 13
