"""Test app: word count that leaves evidence of when, where and how often each map and reduce ran.

Job arguments are `key=value` strings:
  markers=DIR      write one JSON marker file per map attempt and per probed reduce into DIR
  map_sleep=S      sleep S seconds at the start of every map
  reduce_sleep=S   sleep S seconds in the reduce of every probe key
  probe_r=R        every map also emits the key `~probe:<r>` with value "1" for r in range(R); the
                   partition function sends `~probe:<r>` to partition r, so with R == n_reduce each reduce
                   task sees exactly one probe key, and its output value is the number of committed maps

The word count part is the same as apps/wc.py (maximal runs of `str.isalpha` characters, case kept), so
without probe keys the output equals `zmr seq --app apps/wc.py`. Self-contained apart from zmr itself, which
every worker has: the module ships by value.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from itertools import groupby

from zmr.core.partition import partition_of

PROBE = "~probe:"
_LETTER_RUNS = re.compile(r"[^\W\d_]+")


def _options(args: Sequence[str]) -> dict[str, str]:
    return dict(arg.split("=", 1) for arg in args)


def words(text: str) -> list[str]:
    runs = _LETTER_RUNS.findall(text)
    if text.isascii() or "".join(runs).isalpha():
        return runs
    return ["".join(chars) for run in runs for alpha, chars in groupby(run, str.isalpha) if alpha]


def _mark(folder: str | None, name: str, record: dict[str, object]) -> None:
    if not folder:
        return
    tmp = os.path.join(folder, f".{name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f)
    os.replace(tmp, os.path.join(folder, name))


def map(filename: str, contents: str, args: Sequence[str] = (), first_line: int = 1) -> Iterator[tuple[str, str]]:
    opts = _options(args)
    name = f"map-{os.getpid()}-{secrets.token_hex(6)}.json"
    record: dict[str, object] = {"kind": "map", "file": filename, "first_line": first_line, "pid": os.getpid(),
                                 "start": time.time(), "end": None}
    _mark(opts.get("markers"), name, record)
    time.sleep(float(opts.get("map_sleep", 0)))
    for word, count in Counter(words(contents)).items():
        yield word, str(count)
    for r in range(int(opts.get("probe_r", 0))):
        yield f"{PROBE}{r}", "1"
    record["end"] = time.time()
    _mark(opts.get("markers"), name, record)


def combine(key: str, values: Iterable[str]) -> str:
    return str(sum(int(value) for value in values))


def reduce(key: str, values: Iterable[str], args: Sequence[str] = ()) -> str:
    total = str(sum(int(value) for value in values))
    if key.startswith(PROBE):
        opts = _options(args)
        name = f"reduce-{os.getpid()}-{secrets.token_hex(6)}.json"
        record: dict[str, object] = {"kind": "reduce", "partition": int(key[len(PROBE):]), "pid": os.getpid(),
                                     "start": time.time(), "end": None}
        _mark(opts.get("markers"), name, record)
        time.sleep(float(opts.get("reduce_sleep", 0)))
        record["end"] = time.time()
        _mark(opts.get("markers"), name, record)
    return total


def partition(key: str, n_reduce: int) -> int:
    if key.startswith(PROBE):
        return int(key[len(PROBE):]) % n_reduce
    return partition_of(key, n_reduce)
