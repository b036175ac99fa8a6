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


def test_coarse_runs_fill_the_smallest_gaps_first() -> None:
    tasks = [0, 1, 3, 4, 10, 11, 12, 14]                  # runs (0,2) (3,5) (10,13) (14,15): gaps 1, 5, 1
    assert m.coarse_runs(tasks, 4) == m.to_runs(tasks)
    assert m.coarse_runs(tasks, 2) == [(0, 5), (10, 15)]  # the largest gap stays
    assert m.coarse_runs(tasks, 1) == [(0, 15)]


@given(st.sets(st.integers(0, 300)), st.integers(1, 10))
def test_coarse_runs_cover_the_tasks_in_at_most_so_many_runs(tasks: set[int], most: int) -> None:
    runs = m.coarse_runs(tasks, most)
    assert len(runs) <= most and m.from_runs(runs, 301) >= tasks
    assert all(a[1] < b[0] for a, b in zip(runs, runs[1:], strict=False))
    assert not tasks or (runs[0][0], runs[-1][1]) == (min(tasks), max(tasks) + 1)


@given(st.lists(st.tuples(st.integers(-5, 60), st.integers(-5, 60)), max_size=8), st.integers(-5, 60))
def test_a_runs_filter_says_what_from_runs_says(runs: list[tuple[int, int]], task: int) -> None:
    """Runs in any order, overlapping or empty (a peer's PullMaps may carry anything)."""
    assert m.runs_filter(runs)(task) is (task in {t for s, e in runs for t in range(s, e)})
