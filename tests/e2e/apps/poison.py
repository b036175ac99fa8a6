"""Test app: a word count whose reduce always raises on one key, so the job must fail with this traceback.

Job arguments are `key=value` strings:
  key=WORD       the reduce of WORD raises `PoisonError: zmr-e2e-poison on key 'WORD'` (default: Holmes)
  markers=DIR    every reduce call of that key first writes a marker file `poison-<pid>-<hex>.json`, so a
                 test can count the attempts that reached it

Every other key is reduced as a word count would (words: runs of letters, case kept). Self-contained
apart from the standard library: the module ships by value.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence

_LETTER_RUNS = re.compile(r"[^\W\d_]+")


class PoisonError(Exception):
    pass


def _options(args: Sequence[str]) -> dict[str, str]:
    return dict(arg.split("=", 1) for arg in args)


def map(filename: str, contents: str) -> Iterator[tuple[str, str]]:
    for word, count in Counter(_LETTER_RUNS.findall(contents)).items():
        if word.isalpha():
            yield word, str(count)


def combine(key: str, values: Iterable[str]) -> str:
    return str(sum(int(value) for value in values))


def _swallow_poison(key: str) -> str:
    raise PoisonError(f"zmr-e2e-poison on key {key!r}")


def reduce(key: str, values: Iterable[str], args: Sequence[str] = ()) -> str:
    opts = _options(args)
    if key == opts.get("key", "Holmes"):
        folder = opts.get("markers")
        if folder:
            with open(os.path.join(folder, f"poison-{os.getpid()}-{secrets.token_hex(6)}.json"), "w") as f:
                json.dump({"key": key, "pid": os.getpid(), "time": time.time()}, f)
        return _swallow_poison(key)
    return str(sum(int(value) for value in values))
