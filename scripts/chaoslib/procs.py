"""Processes found by walking /proc, without psutil: a worker's zygote and task processes, CPU use.

A worker forks a zygote (`zmr-task-zygote (worker PID)`), which forks the task process
(`zmr-task (worker PID)`) that runs app code. Both are found as children of their parent through
`/proc/<pid>/task/*/children`, and, for processes whose parent is gone, by their title.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """Direct children of `pid` (every thread's list: a child belongs to the thread that forked it)."""
    found: set[int] = set()
    for task in (PROC / str(pid) / "task").glob("*"):
        try:
            found.update(int(p) for p in (task / "children").read_text().split())
        except OSError:
            continue
    return sorted(found)


def title(pid: int) -> str:
    """The command line as `ps` shows it (a retitled process has it in one string)."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def alive(pid: int) -> bool:
    """Running or stopped, but not a zombie nor gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far (0 if it is gone)."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS   # utime, stime: fields 14 and 15 of stat


def task_processes(worker_pid: int) -> list[int]:
    """The task processes of a worker: children of its zygote child."""
    zygotes = [c for c in children(worker_pid) if title(c).startswith("zmr-task-zygote")]
    return [t for z in zygotes for t in children(z) if title(t).startswith("zmr-task")]


def descendants_titled(worker_pids: set[int]) -> list[int]:
    """Every live zygote or task process that names one of `worker_pids` as its worker, whatever its
    parent is now (one whose worker died should have died with it)."""
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        text = title(int(entry.name))
        if text.startswith("zmr-task") and "(worker " in text:
            owner = text.rsplit("(worker ", 1)[-1].rstrip(")")
            if owner.isdigit() and int(owner) in worker_pids and alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def launched_by(parent_pid: int) -> list[int]:
    """Live zmr processes started with `--exit-with-parent <parent_pid>`."""
    needle = f"--exit-with-parent {parent_pid}"
    return [int(e.name) for e in PROC.iterdir()
            if e.name.isdigit() and needle in title(int(e.name)) and alive(int(e.name))]


def burning(pids: list[int], window: float = 1.0, share: float = 0.5) -> list[int]:
    """Those of `pids` that used more than `share` of a core over `window` seconds."""
    before = {pid: cpu_seconds(pid) for pid in pids}
    time.sleep(window)
    return [pid for pid in pids if alive(pid) and cpu_seconds(pid) - before[pid] > share * window]


def signal_quietly(pid: int, sig: signal.Signals) -> bool:
    """Send `sig`; False if the process is already gone."""
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False
