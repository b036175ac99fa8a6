"""Test app: values of every kind a pair may carry, through combine and reduce.

Per first letter of each word: `n:<c>` counts words (int), `half:<c>` sums half their lengths (float;
halves add up exactly, in any grouping), `first:<c>` keeps the alphabetically first word (str).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def map(filename: str, contents: str) -> Iterator[tuple[str, int | float | str]]:
    for word in contents.split():
        c = word[0]
        yield f"n:{c}", 1
        yield f"half:{c}", len(word) / 2
        yield f"first:{c}", word


def combine(key: str, values: Iterable[int | float | str]) -> int | float | str:
    return min(values) if key.startswith("first:") else sum(values)  # type: ignore[type-var, arg-type]  # ints


reduce = combine
