"""Task numbers as runs: what LocateMaps carries."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from zmr.protocol import messages as m


def test_task_numbers_become_runs_in_order() -> None:
    assert m.to_runs([5, 0, 1, 2, 7, 6, 2]) == [(0, 3), (5, 8)]
    assert m.to_runs([]) == []
    assert m.to_runs(range(100_000)) == [(0, 100_000)]   # a take-over asks about every map in one run


def test_runs_name_nothing_outside_the_limit() -> None:
    assert m.from_runs([(0, 3), (5, 8)], 100) == {0, 1, 2, 5, 6, 7}
    assert m.from_runs([(-5, 2), (9, 50), (3, 1)], 10) == {0, 1, 9}


@given(st.sets(st.integers(0, 300)))
def test_runs_give_back_the_tasks(tasks: set[int]) -> None:
    runs = m.to_runs(tasks)
    assert m.from_runs(runs, 301) == tasks
    assert all(start < end for start, end in runs)
    assert all(a[1] < b[0] for a, b in zip(runs, runs[1:], strict=False))   # apart, in order
