"""Test app: word count whose maps wait for a gate file, so a job is surely running while a test acts.

Job arguments are `key=value` strings:
  gate=PATH          every map waits (polling) until PATH exists ...
  gate_timeout=S     ... or until S seconds have passed (default 20), then counts as usual
  free=N             ... except the first N map attempts to start, which pass at once: each takes one of
                     N tickets (PATH.free<i>, made with O_EXCL), so a job can stand part way through its maps

The word count is the same as apps/wc.py (maximal runs of `str.isalpha` characters, case kept), so the
output equals `zmr seq --app apps/wc.py`. Self-contained: the module ships by value.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from itertools import groupby

_LETTER_RUNS = re.compile(r"[^\W\d_]+")


def words(text: str) -> list[str]:
    runs = _LETTER_RUNS.findall(text)
    if text.isascii() or "".join(runs).isalpha():
        return runs
    return ["".join(chars) for run in runs for alpha, chars in groupby(run, str.isalpha) if alpha]


def map(filename: str, contents: str, args: Sequence[str] = ()) -> Iterator[tuple[str, str]]:
    opts = dict(arg.split("=", 1) for arg in args)
    gate = opts.get("gate")
    deadline = time.monotonic() + float(opts.get("gate_timeout", 20))
    if gate and any(_took_ticket(f"{gate}.free{i}") for i in range(int(opts.get("free", 0)))):
        gate = None
    while gate and not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.02)
    for word, count in Counter(words(contents)).items():
        yield word, str(count)


def _took_ticket(path: str) -> bool:
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def combine(key: str, values: Iterable[str]) -> str:
    return str(sum(int(value) for value in values))


def reduce(key: str, values: Iterable[str]) -> str:
    return str(sum(int(value) for value in values))
