"""Benchmark word count: the tokenizer every contender of `scripts/bench` shares.

A word is a maximal run of ASCII letters (`re.findall(r"[A-Za-z]+", text)`), counted with one
`collections.Counter` per map task, so zmr does exactly the work the single-process baseline and the
peers do. (`apps/wc.py` is the general app: it counts runs of Unicode letters.) Output: `word count`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator

WORD = re.compile(r"[A-Za-z]+")


def map(filename: str, contents: str) -> Iterator[tuple[str, str]]:
    """One (word, count) per distinct word of this split."""
    for word, count in Counter(WORD.findall(contents)).items():
        yield word, str(count)


def combine(key: str, values: Iterable[str]) -> str:
    """Partial counts add up, in any grouping."""
    return str(sum(int(value) for value in values))


def reduce(key: str, values: Iterable[str]) -> str:
    """The word's total count."""
    return str(sum(int(value) for value in values))
