"""Test app: each map first holds the GIL for `hold=S` seconds in one C call, as a regex over a big split
does, then counts words like apps/wc.py (letters only; the output equals `zmr seq --app apps/wc.py`).

The hold is libc's usleep called through ctypes.PyDLL, which (unlike CDLL) keeps the GIL during the call:
no other thread of the process runs Python code meanwhile.
"""

from __future__ import annotations

import ctypes
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from itertools import groupby

_LETTER_RUNS = re.compile(r"[^\W\d_]+")


def words(text: str) -> list[str]:
    runs = _LETTER_RUNS.findall(text)
    if text.isascii() or "".join(runs).isalpha():
        return runs
    return ["".join(chars) for run in runs for alpha, chars in groupby(run, str.isalpha) if alpha]


def hold_gil(seconds: float) -> None:
    ctypes.PyDLL(None).usleep(int(seconds * 1_000_000))


def map(filename: str, contents: str, args: Sequence[str] = ()) -> Iterator[tuple[str, str]]:
    opts = dict(arg.split("=", 1) for arg in args)
    hold_gil(float(opts.get("hold", 0)))
    for word, count in Counter(words(contents)).items():
        yield word, str(count)


def combine(key: str, values: Iterable[str]) -> str:
    return str(sum(int(value) for value in values))


def reduce(key: str, values: Iterable[str]) -> str:
    return str(sum(int(value) for value in values))
