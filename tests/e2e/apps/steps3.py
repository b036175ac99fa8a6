"""Test app: a three-step job (word count, words per length, one final table), whose second step's
reduces can be held so a test can kill a worker while step 2 runs.

Job arguments are `key=value` strings:
  hold=DIR    each reduce task of step 2 writes DIR/held-<pid>.json (its pid) and waits until DIR/release
              exists; once it exists no reduce waits (so attempts run again after a kill go straight on)

Output: one line per word length, `<length> <words of that length> <occurrences>`. Self-contained: the
module ships by value.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from itertools import groupby

import zmr

_LETTER_RUNS = re.compile(r"[^\W\d_]+")


def words(text: str) -> list[str]:
    runs = _LETTER_RUNS.findall(text)
    if text.isascii() or "".join(runs).isalpha():
        return runs
    return ["".join(chars) for run in runs for alpha, chars in groupby(run, str.isalpha) if alpha]


def count_map(filename: str, contents: str) -> Iterable[tuple[str, int]]:
    return Counter(words(contents)).items()


def add(key: str, values: Iterable[int]) -> int:
    return sum(values)


def by_length(word: str, count: int) -> Iterator[tuple[str, str]]:
    yield f"{len(word):04d}", f"1 {count}"


def _hold(args: Sequence[str]) -> None:
    opts = dict(arg.split("=", 1) for arg in args)
    folder = opts.get("hold")
    if not folder or os.path.exists(os.path.join(folder, "release")):
        return
    marker = os.path.join(folder, f"held-{os.getpid()}.json")
    if not os.path.exists(marker):
        with open(marker + ".tmp", "w") as f:
            json.dump({"pid": os.getpid()}, f)
        os.replace(marker + ".tmp", marker)
    deadline = time.monotonic() + 60
    while not os.path.exists(os.path.join(folder, "release")) and time.monotonic() < deadline:
        time.sleep(0.02)


def tally(length: str, values: Iterable[str], args: Sequence[str] = ()) -> str:
    _hold(args)
    n_words = n_times = 0
    for value in values:
        w, t = value.split()
        n_words, n_times = n_words + int(w), n_times + int(t)
    return f"{n_words} {n_times}"


def table(length: str, tallied: str) -> Iterator[tuple[str, str]]:
    yield "all", f"{int(length)} {tallied}"


def rows(key: str, values: Iterable[str]) -> list[tuple[str, str]]:
    lines = sorted(values, key=lambda v: int(v.split()[0]))
    return [(line.split(" ", 1)[0], line.split(" ", 1)[1]) for line in lines]


def steps() -> list[zmr.Step]:
    return [zmr.Step(name="count", map=count_map, combine=add, reduce=add),
            zmr.Step(name="lengths", map=by_length, reduce=tally, n_reduce=3),
            zmr.Step(name="table", map=table, reduce=rows, n_reduce=1)]
