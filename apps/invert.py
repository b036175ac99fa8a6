"""Top files per word: for each word, the three input files in which it occurs most often.

Words are maximal runs of Unicode letters (`str.isalpha`), case kept, as in `apps.wc`. Output:
`word file1:count,file2:count,file3:count`, by count descending, then by file name; fewer than three when
fewer files contain the word. A newline in a file name is written as a space.

The combiner sums counts per file but must keep every file: a file's count may be spread over several
map tasks, so cutting to three before the reduce could drop a file whose total is in the top three.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from itertools import groupby

TOP = 3
_LETTER_RUNS = re.compile(r"[^\W\d_]+")
# Map and combine values are `file NUL count NUL file NUL count ...`; no file name can contain a NUL.
_SEP = "\0"


def words(text: str) -> list[str]:
    """The maximal runs of `str.isalpha` characters in `text`, in order (the same rule as apps.wc)."""
    runs = _LETTER_RUNS.findall(text)
    if text.isascii() or "".join(runs).isalpha():
        return runs
    return [word for run in runs for word in _alpha_runs(run)]


def _alpha_runs(run: str) -> list[str]:
    return ["".join(chars) for is_alpha, chars in groupby(run, str.isalpha) if is_alpha]


def _totals(values: Iterable[str]) -> Counter[str]:
    """Per-file counts summed over every value."""
    totals: Counter[str] = Counter()
    for value in values:
        fields = value.split(_SEP)
        for name, count in zip(fields[::2], fields[1::2], strict=True):
            totals[name] += int(count)
    return totals


def map(filename: str, contents: str) -> Iterator[tuple[str, str]]:
    """(word, `filename NUL count`) once per distinct word of this split."""
    for word, count in Counter(words(contents)).items():
        yield word, f"{filename}{_SEP}{count}"


def combine(key: str, values: Iterable[str]) -> str:
    """Sum counts per file, keeping every file (see the module docstring for why not only the top)."""
    return _SEP.join(f"{name}{_SEP}{count}" for name, count in sorted(_totals(values).items()))


def reduce(key: str, values: Iterable[str]) -> str:
    """The top files for `key` as `file:count,...`."""
    ranked = sorted(_totals(values).items(), key=lambda item: (-item[1], item[0]))[:TOP]
    return ",".join(f"{name.replace(chr(10), ' ')}:{count}" for name, count in ranked)
