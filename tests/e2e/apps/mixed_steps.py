"""Test app: a two-step job whose second step's maps change value kind part-way.

Step 1 counts words into one reduce. Its reduce feeds step 2's map in key order, and that map emits four
pairs a word: ints for words before "n", floats after. With more than 2,048 such words the fed map's
first blocks make int columns and its last ones go back to pairs, so step 2's reducers merge runs of
both kinds. Output: `word/i count` (a float from "n" on).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

import zmr


def count_map(filename: str, contents: str) -> Iterable[tuple[str, int]]:
    return Counter(contents.split()).items()


def add(key: str, values: Iterable[int | float]) -> int | float:
    return sum(values)


def spread(word: str, count: int) -> Iterator[tuple[str, int | float]]:
    value = count if word < "n" else count + 0.5
    for i in range(4):
        yield f"{word}/{i}", value


def steps(args: list[str]) -> list[zmr.Step]:
    return [zmr.Step(name="count", map=count_map, combine=add, reduce=add, n_reduce=1),
            zmr.Step(name="spread", map=spread, reduce=add)]
