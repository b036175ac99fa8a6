"""Test app: a word count whose map and reduce randomly kill their worker process or stall it.

Like the crash test of MIT 6.5840's MapReduce lab: each map call, and each reduce task (decided at its
first key), draws a number from a generator seeded from the pid and the clock, then either exits the
whole worker process at once (SIGKILL to the worker, then `os._exit(1)` of the task process that runs the
app: no cleanup, no report), or sleeps far longer than the
coordinator's task timeout, or runs normally. Whatever happens, the output must equal
`zmr seq --app apps/wc.py` on the same input: words are maximal runs of `str.isalpha` characters, case
kept, exactly as apps/wc.py counts them.

Job arguments are `key=value` strings:
  crash=P        probability that a map call or reduce task exits its worker (fractions like 1/3 work)
  stall=P        probability that it sleeps `stall_s` seconds first (then it runs normally)
  stall_s=S      how long a stall lasts (default 6)
  phases=LIST    where faults may happen: `map`, `reduce` or `map,reduce` (the default)
  only=TEXT      only map calls whose file name contains TEXT may fault (reduces then never do)
  markers=DIR    write a marker file for every fault and every normal run into DIR: its name starts
                 with the event (`crash`, `stall` or `run`) and the phase (`map`, `reduce`), so a test
                 can count them; the record holds the pid, the file (maps) or first key (reduces)
  force=LIST     `crash`, `stall` or `crash,stall`: the first map call and the first reduce task of
                 the job (among those that may fault) crash, and the next ones stall, whatever the dice
                 say, so each fault listed happens at least once in each phase (needs `markers`)

A reduce task is recognised by its keys: a worker reduces one task at a time, keys ascending, so a key
not above the previous one starts a new task. Self-contained apart from zmr itself: the module ships by
value.
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import signal
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from itertools import groupby

_LETTER_RUNS = re.compile(r"[^\W\d_]+")
_STATE: dict[str, str | None] = {"last_key": None}   # per job and worker life: the module ships per job


def words(text: str) -> list[str]:
    runs = _LETTER_RUNS.findall(text)
    if text.isascii() or "".join(runs).isalpha():
        return runs
    return ["".join(chars) for run in runs for alpha, chars in groupby(run, str.isalpha) if alpha]


def _options(args: Sequence[str]) -> dict[str, str]:
    return dict(arg.split("=", 1) for arg in args)


def _probability(text: str | None) -> float:
    return float(Fraction(text)) if text else 0.0


def _mark(folder: str | None, name: str, record: dict[str, object]) -> None:
    if not folder:
        return
    tmp = os.path.join(folder, f".{name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f)
        f.flush()
        os.fsync(f.fileno())   # the process may be gone a moment later
    os.replace(tmp, os.path.join(folder, name))


def _first(folder: str, name: str) -> bool:
    """True for exactly one caller over the whole job: whoever creates the file first."""
    try:
        os.close(os.open(os.path.join(folder, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def _maybe_fault(phase: str, what: str, opts: dict[str, str]) -> None:
    """Crash, stall or do nothing, and leave a marker saying which."""
    folder = opts.get("markers")
    event = "run"
    if phase in opts.get("phases", "map,reduce").split(","):
        forced = opts.get("force", "").split(",")
        if folder and "crash" in forced and _first(folder, f"forced-crash-{phase}"):
            event = "crash"
        elif folder and "stall" in forced and _first(folder, f"forced-stall-{phase}"):
            event = "stall"
        else:
            roll = random.Random(f"{os.getpid()}-{time.time_ns()}-{secrets.token_hex(4)}").random()
            crash, stall = _probability(opts.get("crash")), _probability(opts.get("stall"))
            event = "crash" if roll < crash else "stall" if roll < crash + stall else "run"
    record = {"event": event, "phase": phase, "what": what, "pid": int(os.environ.get("ZMR_WORKER_PID", os.getpid())),
              "time": time.time()}
    _mark(folder, f"{event}-{phase}-{os.getpid()}-{secrets.token_hex(6)}.json", record)
    if event == "crash":
        worker = int(os.environ.get("ZMR_WORKER_PID", os.getpid()))
        if worker != os.getpid():
            os.kill(worker, signal.SIGKILL)   # the worker, not only the task process that runs this code
        os._exit(1)
    if event == "stall":
        time.sleep(float(opts.get("stall_s", 6)))


def map(filename: str, contents: str, args: Sequence[str] = ()) -> Iterator[tuple[str, str]]:
    opts = _options(args)
    if opts.get("only", "") in filename:
        _maybe_fault("map", filename, opts)
    for word, count in Counter(words(contents)).items():
        yield word, str(count)


def combine(key: str, values: Iterable[str]) -> str:
    return str(sum(int(value) for value in values))


def reduce(key: str, values: Iterable[str], args: Sequence[str] = ()) -> str:
    last, _STATE["last_key"] = _STATE["last_key"], key
    if last is None or key <= last:   # the first key of a reduce task
        opts = _options(args)
        if "only" not in opts:
            _maybe_fault("reduce", key, opts)
    return str(sum(int(value) for value in values))
