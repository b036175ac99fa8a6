"""A running median: what backup attempts compare a task's time with, kept in O(log n) per value."""

from __future__ import annotations

import heapq


class RunningMedian:
    """The median of the values added so far, without keeping them sorted.

    A job's finished tasks are timed one by one, up to 100,000 of them, and only the median is ever
    read; a sorted list would cost O(n) per value and O(n^2) per job. Two heaps split the values: `_high`
    holds the larger half (the extra one when the count is odd), `_low` the rest, negated. The median is
    the smallest of `_high`: the value at index n // 2 of the sorted values (the upper one of an even count).
    """

    __slots__ = ("_high", "_low")

    def __init__(self) -> None:
        self._low: list[float] = []    # the smaller half, negated: a max-heap
        self._high: list[float] = []   # the larger half: a min-heap, never shorter than `_low`

    def __len__(self) -> int:
        return len(self._low) + len(self._high)

    def add(self, value: float) -> None:
        if self._low and value < -self._low[0]:
            heapq.heappush(self._low, -value)
        else:
            heapq.heappush(self._high, value)
        if len(self._low) > len(self._high):
            heapq.heappush(self._high, -heapq.heappop(self._low))
        elif len(self._high) > len(self._low) + 1:
            heapq.heappush(self._low, -heapq.heappop(self._high))

    @property
    def median(self) -> float:
        """The value at index n // 2 of the sorted values; ValueError if there are none."""
        if not self._high:
            raise ValueError("no values yet")
        return self._high[0]
