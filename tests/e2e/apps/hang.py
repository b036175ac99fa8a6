"""Test app: a word count whose map can hang for ever, or allocate far more memory than it should.

Job arguments are `key=value` strings:
  hang=TEXT      a map of a file whose name contains TEXT spins for ever (pure Python, holding a core)
  alloc_mb=N     every map first allocates and touches N MiB
  markers=DIR    each map writes `map-<pid>-<random>.json` with its task process's pid and its worker's
  spawn=yes      each map first starts a `sleep` process of its own (its pid in the marker, as `child_pid`)

Self-contained apart from the standard library: the module ships by value.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterable, Iterator, Sequence


def _options(args: Sequence[str]) -> dict[str, str]:
    return dict(arg.split("=", 1) for arg in args)


def map(filename: str, contents: str, args: Sequence[str] = ()) -> Iterator[tuple[str, int]]:
    opts = _options(args)
    child = subprocess.Popen(["sleep", "777"]) if opts.get("spawn") else None
    if opts.get("markers"):
        record = {"file": filename, "task_pid": os.getpid(), "child_pid": child.pid if child else None,
                  "pid": int(os.environ.get("ZMR_WORKER_PID", os.getpid()))}
        with open(os.path.join(opts["markers"], f"map-{os.getpid()}-{secrets.token_hex(6)}.json"), "w") as f:
            json.dump(record, f)
    if opts.get("hang") and opts["hang"] in filename:
        n = 0
        while True:   # no progress, ever
            n += 1
    if opts.get("alloc_mb"):
        block = bytearray(int(opts["alloc_mb"]) << 20)
        block[::4096] = b"x" * len(block[::4096])
    for word in contents.split():
        yield word, 1


def reduce(key: str, values: Iterable[int]) -> int:
    return sum(int(v) for v in values)
