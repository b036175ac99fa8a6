"""Engine overhead benchmark: one (word, 1) pair per word, no combiner, a reduce that adds them up.

The app does next to nothing, so almost all of a job's CPU is zmr's own: `scripts/bench --jobs overhead`
takes the app's own CPU (these functions run alone over the same input) and the CPU of an empty job away
and divides what is left by the pairs. Output: `word count`, as `apps/bench_wc.py`.
"""

from __future__ import annotations

from collections.abc import Iterable


def map(filename: str, contents: str) -> list[tuple[str, int]]:
    """Every whitespace-separated word of the split, each with a 1."""
    return [(word, 1) for word in contents.split()]


def reduce(key: str, values: Iterable[int]) -> int:
    """The word's count."""
    return sum(values)
