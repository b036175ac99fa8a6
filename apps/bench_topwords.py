"""Benchmark top words: word count, then the N most frequent words (`scripts/bench --jobs topwords`).

Words are those of `apps/bench_wc.py` (`re.findall(r"[A-Za-z]+", text)`), so every contender does the
same work. The output is N lines `word count`, most frequent first, ties in word order.

Job arguments: N (100 without one), then optionally a mode that runs one of the two steps alone, so
the same work can be chained as two jobs: `count` (the word count, `word count` lines) or `top` (the
top N of `word count` lines read from files).
"""

from __future__ import annotations

import heapq
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence

import zmr

WORD = re.compile(r"[A-Za-z]+")
TOP = "top"


def count_map(filename: str, contents: str) -> Iterable[tuple[str, int]]:
    return Counter(WORD.findall(contents)).items()


def add(key: str, values: Iterable[int]) -> int:
    return sum(values)


def candidate(word: str, count: int) -> Iterator[tuple[str, str]]:
    yield TOP, f"{count}\t{word}"


def candidates_of_lines(filename: str, contents: str) -> Iterator[tuple[str, str]]:
    """`word count` lines (the count step's output, run as a job of its own) as candidates."""
    for line in contents.splitlines():
        word, _, count = line.partition(" ")
        yield TOP, f"{count}\t{word}"


def _best(values: Iterable[str], n: int) -> list[tuple[int, str]]:
    entries = ((int(count), word) for value in values for line in value.split("\n")
               for count, word in [line.split("\t", 1)])
    return heapq.nsmallest(n, entries, key=lambda cw: (-cw[0], cw[1]))


def keep_best(key: str, values: Iterable[str], args: Sequence[str]) -> str:
    return "\n".join(f"{count}\t{word}" for count, word in _best(values, top_n(args)))


def rank(key: str, values: Iterable[str], args: Sequence[str]) -> list[tuple[str, int]]:
    return [(word, count) for count, word in _best(values, top_n(args))]


def top_n(args: Sequence[str]) -> int:
    return int(args[0]) if args else 100


def steps(args: Sequence[str]) -> list[zmr.Step]:
    count = zmr.Step(name="count", map=count_map, combine=add, reduce=add)
    mode = args[1] if len(args) > 1 else ""
    if mode == "count":
        return [count]
    if mode == "top":
        return [zmr.Step(name="top", map=candidates_of_lines, combine=keep_best, reduce=rank, n_reduce=1)]
    return [count, zmr.Step(name="top", map=candidate, combine=keep_best, reduce=rank, n_reduce=1)]
