"""Inverted index: for each word, how many input files contain it and which ones.

Words are maximal runs of Unicode letters (`str.isalpha`), case kept, as in `apps.wc`. Output:
`word N file1,file2,...` with the file names (as given to the job) sorted and each listed once. A newline
in a file name is written as a space, so each output record stays on one line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from itertools import groupby

_LETTER_RUNS = re.compile(r"[^\W\d_]+")
# Map and combine values are file names joined by NUL, which no file name can contain.
_SEP = "\0"


def words(text: str) -> list[str]:
    """The maximal runs of `str.isalpha` characters in `text`, in order (the same rule as apps.wc)."""
    runs = _LETTER_RUNS.findall(text)
    if text.isascii() or "".join(runs).isalpha():
        return runs
    return [word for run in runs for word in _alpha_runs(run)]


def _alpha_runs(run: str) -> list[str]:
    return ["".join(chars) for is_alpha, chars in groupby(run, str.isalpha) if is_alpha]


def _files(values: Iterable[str]) -> list[str]:
    return sorted({name for value in values for name in value.split(_SEP)})


def map(filename: str, contents: str) -> Iterator[tuple[str, str]]:
    """(word, filename) once per distinct word of this split."""
    for word in set(words(contents)):
        yield word, filename


def combine(key: str, values: Iterable[str]) -> str:
    """Union of file-name sets: associative and idempotent, so any grouping gives the same result."""
    return _SEP.join(_files(values))


def reduce(key: str, values: Iterable[str]) -> str:
    """`N file1,file2,...` for the files that contain `key`."""
    files = _files(values)
    return f"{len(files)} " + ",".join(name.replace("\n", " ") for name in files)
