"""Test app: word count that leaves evidence of when, where and how often each map and reduce ran.

Job arguments are `key=value` strings:
  markers=DIR      write one JSON marker file per map attempt and per probed reduce into DIR
  map_sleep=S      sleep S seconds at the start of every map
  slow_once=T:S    the first map attempt of a file whose name contains T sleeps S seconds (instead of
                   map_sleep); later attempts of that file do not (needs `markers`)
  slow_pid=P:S     the first map attempt that runs in process P sleeps S seconds (instead of map_sleep);
                   no other does (needs `markers`)
  slow_again=S     a map attempt of a split that an earlier attempt mapped to the end sleeps S seconds
                   (instead of map_sleep): a map made again is slow (needs `markers`)
  reduce_sleep=S   sleep S seconds in the reduce of every probe key
  probe_r=R        every map also emits the key `~probe:<r>` with value "1" for r in range(R); the
                   partition function sends `~probe:<r>` to partition r, so with R == n_reduce each reduce
                   task sees exactly one probe key, and its output value is the number of committed maps
  hold=R[,R...]    the first reduce of `~probe:<R>`, for each R listed, blocks after writing the marker
                   file `held-<R>` (no .json) with its pid, until a file `release-<R>` appears in the
                   markers folder (at most 120 s); later attempts do not block. '~' sorts after ASCII
                   letters, so the probe key is the last key of its partition but for non-ASCII words:
                   the reduce has written (nearly) every other line of its temporary output file by then
                   (needs `markers`)
  tag=1            a probe key's output value is `<count>@<pid>`: which worker wrote that mr-out file

Every `pid` here is the WORKER's process id (app code runs in the worker's task process, which names its
worker in ZMR_WORKER_PID): killing or freezing that pid hits the worker that ran the task. Markers also
record `task_pid`, the process the app code itself ran in.

The word count part is the same as apps/wc.py (maximal runs of `str.isalpha` characters, case kept), so
without probe keys the output equals `zmr seq --app apps/wc.py`. Self-contained apart from zmr itself, which
every worker has: the module ships by value.
"""

from __future__ import annotations

import hashlib
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


def worker_pid() -> int:
    """The worker that runs this task (this process, when app code runs in the worker itself)."""
    return int(os.environ.get("ZMR_WORKER_PID", os.getpid()))


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


def _first(folder: str | None, name: str) -> bool:
    """True for exactly one caller over the whole job: whoever creates the file first."""
    if not folder:
        return False
    try:
        os.close(os.open(os.path.join(folder, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def _mapped(filename: str, first_line: int) -> str:
    """The name of the file that says a map attempt of this split ran to its end."""
    return "mapped-" + hashlib.sha1(f"{filename}:{first_line}".encode()).hexdigest()[:16]


def _map_sleep(filename: str, first_line: int, opts: dict[str, str]) -> float:
    if "slow_again" in opts and os.path.exists(os.path.join(opts.get("markers", ""), _mapped(filename, first_line))):
        return float(opts["slow_again"])
    if "slow_once" in opts:
        text, seconds = opts["slow_once"].rsplit(":", 1)
        if text in filename and _first(opts.get("markers"), "slowed"):
            return float(seconds)
    if "slow_pid" in opts:
        pid, seconds = opts["slow_pid"].split(":", 1)
        if int(pid) == worker_pid() and _first(opts.get("markers"), "slowed"):
            return float(seconds)
    return float(opts.get("map_sleep", 0))


def _hold(folder: str, partition: int) -> None:
    tmp = os.path.join(folder, f".held-{partition}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"partition": partition, "pid": worker_pid(), "task_pid": os.getpid(), "time": time.time()}, f)
    os.replace(tmp, os.path.join(folder, f"held-{partition}"))
    deadline = time.monotonic() + 120
    while not os.path.exists(os.path.join(folder, f"release-{partition}")) and time.monotonic() < deadline:
        time.sleep(0.02)


def map(filename: str, contents: str, args: Sequence[str] = (), first_line: int = 1) -> Iterator[tuple[str, str]]:
    opts = _options(args)
    name = f"map-{os.getpid()}-{secrets.token_hex(6)}.json"
    record: dict[str, object] = {"kind": "map", "file": filename, "first_line": first_line, "pid": worker_pid(),
                                 "task_pid": os.getpid(), "start": time.time(), "end": None}
    _mark(opts.get("markers"), name, record)
    time.sleep(_map_sleep(filename, first_line, opts))
    for word, count in Counter(words(contents)).items():
        yield word, str(count)
    for r in range(int(opts.get("probe_r", 0))):
        yield f"{PROBE}{r}", "1"
    record["end"] = time.time()
    _mark(opts.get("markers"), name, record)
    if "slow_again" in opts:
        _first(opts.get("markers"), _mapped(filename, first_line))


def combine(key: str, values: Iterable[str]) -> str:
    return str(sum(int(value) for value in values))


def reduce(key: str, values: Iterable[str], args: Sequence[str] = ()) -> str:
    total = str(sum(int(value) for value in values))
    if key.startswith(PROBE):
        opts = _options(args)
        name = f"reduce-{os.getpid()}-{secrets.token_hex(6)}.json"
        record: dict[str, object] = {"kind": "reduce", "partition": int(key[len(PROBE):]), "pid": worker_pid(),
                                     "task_pid": os.getpid(), "start": time.time(), "end": None}
        _mark(opts.get("markers"), name, record)
        time.sleep(float(opts.get("reduce_sleep", 0)))
        folder, partition = opts.get("markers"), key[len(PROBE):]
        if folder and partition in opts.get("hold", "").split(",") and _first(folder, f"holding-{partition}"):
            _hold(folder, int(partition))
        if opts.get("tag") == "1":
            total = f"{total}@{worker_pid()}"
        record["end"] = time.time()
        _mark(opts.get("markers"), name, record)
    return total


def partition(key: str, n_reduce: int) -> int:
    if key.startswith(PROBE):
        return int(key[len(PROBE):]) % n_reduce
    return partition_of(key, n_reduce)
