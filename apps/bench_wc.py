"""Benchmark word count: the tokenizer every contender of `scripts/bench` shares.

A word is a maximal run of ASCII letters (`re.findall(r"[A-Za-z]+", text)`), counted with one
`collections.Counter` per map task, so zmr does exactly the work the single-process baseline and the
peers do. (`apps/wc.py` is the general app: it counts runs of Unicode letters.) Output: `word count`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

WORD = re.compile(r"[A-Za-z]+")


def map(filename: str, contents: str) -> Iterable[tuple[str, int]]:
    """One (word, count) per distinct word of this split: counted here, so far less goes to the shuffle."""
    return Counter(WORD.findall(contents)).items()


def combine(key: str, values: Iterable[int]) -> int:
    """Partial counts add up, in any grouping."""
    return sum(values)


def reduce(key: str, values: Iterable[int]) -> int:
    """The word's total count."""
    return sum(values)
