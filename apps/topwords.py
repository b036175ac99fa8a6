"""Top words: word count, then the N most frequent words in one final aggregation (a two-step app).

Words are those of `apps/wc.py` (maximal runs of Unicode letters, case kept). N is the job's first
`--arg` (10 without one). The output is N lines `word count`, most frequent first; words with equal
counts are in alphabetical order. Each map task of the second step keeps only its own N best (the
combiner), so the single final reducer reads N candidates per map task, not every word.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence

import zmr

try:   # run as the module apps.topwords, or as the file apps/topwords.py (its folder is then on sys.path)
    from apps.wc import words
except ImportError:
    from wc import words  # type: ignore[no-redef]

TOP = "top"   # the one key of the final step: every candidate meets in one reduce


def count_map(filename: str, contents: str) -> Iterable[tuple[str, int]]:
    return Counter(words(contents)).items()


def add(key: str, values: Iterable[int]) -> int:
    return sum(values)


def candidate(word: str, count: int) -> Iterator[tuple[str, str]]:
    yield TOP, f"{count}\t{word}"


def _best(values: Iterable[str], n: int) -> list[tuple[int, str]]:
    """The n best (count, word) among candidates, each value holding one or more `count<TAB>word` lines."""
    entries = ((int(count), word) for value in values for line in value.split("\n")
               for count, word in [line.split("\t", 1)])
    return heapq.nsmallest(n, entries, key=lambda cw: (-cw[0], cw[1]))


def keep_best(key: str, values: Iterable[str], args: Sequence[str]) -> str:
    return "\n".join(f"{count}\t{word}" for count, word in _best(values, top_n(args)))


def rank(key: str, values: Iterable[str], args: Sequence[str]) -> list[tuple[str, int]]:
    return [(word, count) for count, word in _best(values, top_n(args))]


def top_n(args: Sequence[str]) -> int:
    return int(args[0]) if args else 10


def steps(args: Sequence[str]) -> list[zmr.Step]:
    if top_n(args) < 1:
        raise ValueError(f"the number of words must be at least 1, got {args[0]!r}")
    return [
        zmr.Step(name="count", map=count_map, combine=add, reduce=add),
        zmr.Step(name="top", map=candidate, combine=keep_best, reduce=rank, n_reduce=1),
    ]
