"""Test app: a map whose values change kind part-way.

Every word counts 1 (an int); then every other word counts 0.5 more (a float). In a file of more than
8,192 words the map's first blocks are all ints and make int columns, its last ones floats, so the task
goes back to pairs part-way; in a smaller file ints and floats share a block from the start. A reducer
then gets runs of columns and runs of pairs for one partition.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def map(filename: str, contents: str) -> Iterator[tuple[str, int | float]]:
    words = contents.split()
    for word in words:
        yield word, 1
    for word in words[::2]:
        yield word, 0.5


def combine(key: str, values: Iterable[int | float]) -> int | float:
    return sum(values)


reduce = combine
