"""Word count: how many times each word occurs in all the inputs.

A word is a maximal run of Unicode letters (characters for which `str.isalpha()` is true); case is kept,
so "The" and "the" are different keys. Output: `word count`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from itertools import groupby

# Runs of word characters that are neither digits nor "_": letters, plus a few numeric symbols such as
# "²" or "½" that str.isalpha() rejects. Those are rare, so they are split off only when present.
_LETTER_RUNS = re.compile(r"[^\W\d_]+")


def words(text: str) -> list[str]:
    """The maximal runs of `str.isalpha` characters in `text`, in order."""
    runs = _LETTER_RUNS.findall(text)
    if text.isascii() or "".join(runs).isalpha():
        return runs
    return [word for run in runs for word in _alpha_runs(run)]


def _alpha_runs(run: str) -> list[str]:
    return ["".join(chars) for is_alpha, chars in groupby(run, str.isalpha) if is_alpha]


def map(filename: str, contents: str) -> Iterable[tuple[str, int]]:
    """One (word, count) per distinct word of this split: counted here, so far less goes to the shuffle."""
    return Counter(words(contents)).items()


def combine(key: str, values: Iterable[int]) -> int:
    """Partial counts add up, in any grouping."""
    return sum(values)


def reduce(key: str, values: Iterable[int]) -> int:
    """The word's total count."""
    return sum(values)
