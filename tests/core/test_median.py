"""The running median backup attempts compare with: the same value a sorted list would give."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zmr.core.median import RunningMedian


@given(st.lists(st.floats(min_value=0.0, max_value=1e6) | st.integers(0, 5).map(float), min_size=1, max_size=60))
def test_the_median_is_the_middle_of_the_sorted_values_after_every_add(values: list[float]) -> None:
    median = RunningMedian()
    for n, value in enumerate(values, 1):
        median.add(value)
        assert len(median) == n
        assert median.median == sorted(values[:n])[n // 2]


def test_no_median_before_the_first_value() -> None:
    with pytest.raises(ValueError):
        _ = RunningMedian().median
