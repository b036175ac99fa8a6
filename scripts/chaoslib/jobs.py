"""The jobs of a chaos run: what is submitted, how each end is heard, and how each is judged.

Each job in flight has a waiter thread with its own Client calling `Client.wait` (which rides through a
coordinator restart); the main thread only submits and judges. A normal job must succeed with output
equal to `zmr seq`'s; a job meant to hang (its app spins for ever on one input file) must fail with a
"no progress" reason. Anything else is a lost job: it failed unexpectedly or never ended.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaoslib.cluster import ChaosCluster
from zmr.client import Client
from zmr.errors import JobFailed, NoAnswer, ZmrError
from zmr.protocol import messages as m
from zmr.protocol.output_names import output_name
from zmr.protocol.success import SUCCESS_NAME

HUNG_APP = '''"""Word count whose map never returns on input files whose name holds the job's argument: a job meant
to hang, written by scripts/chaos. Only the standard library: the module ships by value."""


def map(filename, contents, args=()):
    if args and args[0] in filename:
        n = 0
        while True:   # no progress, ever
            n += 1
    for word in contents.split():
        yield word, 1


def reduce(key, values):
    return sum(int(v) for v in values)
'''
NO_PROGRESS = "no progress"


def write_hung_app(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "hang.py"
    path.write_text(HUNG_APP, encoding="utf-8")
    return path


@dataclass
class Flight:
    """One submitted job and its waiter."""

    job_id: str
    app: str
    n_reduce: int
    split: int
    out: Path
    hung: bool
    submitted: float = field(default_factory=time.monotonic)
    info: m.JobInfo | None = None
    failure: str = ""          # why the job failed, or why its end was never heard
    thread: threading.Thread | None = None

    @property
    def label(self) -> str:
        return f"{self.job_id} ({self.app}, R={self.n_reduce}, split {self.split})"

    def start_waiting(self, cluster: ChaosCluster, timeout: float, patience: float) -> None:
        self.thread = threading.Thread(target=self._wait, args=(cluster, timeout, patience), daemon=True,
                                       name=f"wait-{self.job_id}")
        self.thread.start()

    def _wait(self, cluster: ChaosCluster, timeout: float, patience: float) -> None:
        with cluster.client(timeout=5.0) as client:
            try:
                self.info = client.wait(self.job_id, poll=1.0, timeout=timeout, patience=patience)
            except JobFailed as exc:
                self.failure = exc.reason
            except ZmrError as exc:   # never ended in time, or the coordinator stayed silent
                self.failure = f"no end heard: {type(exc).__name__}: {exc}"
                _cancel_quietly(client, self.job_id)

    @property
    def ended(self) -> bool:
        return self.thread is not None and not self.thread.is_alive()


def _cancel_quietly(client: Client, job_id: str) -> None:
    try:
        client.cancel(job_id)
    except ZmrError:
        pass


@dataclass
class Tally:
    """Counted outcomes."""

    submitted: Counter[str] = field(default_factory=Counter)    # per app
    succeeded: int = 0
    expected_failures: int = 0
    wrong: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    kept_outputs: list[Path] = field(default_factory=list)      # wrong or cut short, kept to look at


def submit(client: Client, spec: dict[str, Any], out: Path, tries: int = 5) -> str:
    """Submit, riding through a coordinator restart: a submit left unanswered may still have been
    journaled, so the coordinator is asked whether a job with that output exists before trying again."""
    for attempt in range(tries):
        try:
            return client.submit(**spec)
        except NoAnswer:
            found = _job_with_output(client, out, patience=60.0)
            if found:
                return found
            if attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


def _job_with_output(client: Client, out: Path, patience: float) -> str:
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        try:
            jobs = client.status().jobs
        except NoAnswer:
            continue
        return next((j.job_id for j in jobs if Path(j.output_dir).resolve() == out.resolve()), "")
    return ""


# ------------------------------------------------------------------ judging


def check_output(out: Path, n_reduce: int, expected: list[str]) -> str:
    """'' if the output directory is exactly right, else what is wrong."""
    names = sorted(p.name for p in out.iterdir())
    want = sorted([output_name(r) for r in range(n_reduce)] + [SUCCESS_NAME])
    if names != want:
        return f"files {names}, expected {want}"
    lines = sorted(line for r in range(n_reduce)
                   for line in (out / output_name(r)).read_text(encoding="utf-8").splitlines())
    if lines != expected:
        extra, missing = Counter(lines) - Counter(expected), Counter(expected) - Counter(lines)
        return (f"{len(lines)} lines vs {len(expected)}; unexpected {list(extra)[:3]}, "
                f"missing {list(missing)[:3]}")
    return ""


def judge(flight: Flight, oracle: dict[str, list[str]], tally: Tally, log: Callable[[str], None]) -> None:
    """Count one ended job. A correct output's files are removed but its directory stays, so that a
    temporary file some late attempt writes there afterwards is still seen as a leftover."""
    if flight.hung:
        if flight.info is None and NO_PROGRESS in flight.failure:
            tally.expected_failures += 1
            return
        _lost(tally, log, f"{flight.label}: meant to hang, but "
              + (f"failed with: {_first_line(flight.failure)}" if flight.info is None else "it succeeded"))
        return
    if flight.info is None:
        _lost(tally, log, f"{flight.label}: {_first_line(flight.failure)}")
        return
    # the job's output partitions: a multi-step job's are its last step's
    problem = check_output(flight.out, flight.info.reduces_total, oracle[flight.app])
    if problem:
        tally.wrong.append(f"{flight.label}: {problem}")
        tally.kept_outputs.append(flight.out)
        log("WRONG " + tally.wrong[-1])
        return
    tally.succeeded += 1
    for path in flight.out.iterdir():
        path.unlink()


def _lost(tally: Tally, log: Callable[[str], None], what: str) -> None:
    tally.lost.append(what)
    log("LOST " + what)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "(no reason given)"
