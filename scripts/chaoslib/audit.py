"""What a run must leave behind: nothing. Stuck workers are checked while the cluster still runs (every
live worker registered and idle, no task process burning a core) and after it stopped (no zygote or task
process of any worker life still alive); leftover files once every process is gone.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterable
from pathlib import Path

from chaoslib import procs
from chaoslib.cluster import ChaosCluster, Layout, worker_pid
from zmr.errors import ZmrError
from zmr.protocol import messages as m

STATE_FILES = {"journal", "lock"}   # what a coordinator's state dir holds for good


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if not p.is_dir()) if folder.exists() else []


def snapshot(folder: Path) -> set[Path]:
    """Every path under `folder` now (to tell what a run added)."""
    return set(folder.rglob("*")) if folder.exists() else set()


def leftover_files(layout: Layout, tmp_before: set[Path], kept_outputs: Iterable[Path]) -> list[str]:
    """Files zmr should have removed: in worker work dirs, in the state dir (but the journal and its
    lock), new in the cluster's TMPDIR, and in output directories (temporary files anywhere; anything
    in the output of a job that did not succeed). `kept_outputs`: outputs kept on purpose (wrong ones)."""
    found = [str(p) for p in files_under(layout.work)]
    found += [str(p) for p in files_under(layout.state) if p.name not in STATE_FILES]
    found += [str(p) for p in sorted(snapshot(layout.tmp) - tmp_before) if not p.is_dir()]
    kept = {Path(p) for p in kept_outputs}
    for out in sorted(layout.out.glob("*")):
        if out not in kept:
            found += [str(p) for p in files_under(out)]
    return found


def not_idle(cluster: ChaosCluster, settle: float) -> list[str]:
    """Live workers that are not registered and idle within `settle` seconds (re-registering after the
    last fault takes a moment, so wait for it before calling a worker stuck)."""
    deadline = time.monotonic() + settle
    problems = ["no answer from the coordinator"]
    with cluster.client(timeout=5.0) as client:
        while time.monotonic() < deadline:
            try:
                problems = _idle_problems(cluster, client.status().workers)
            except ZmrError as exc:
                problems = [f"no status from the coordinator: {exc}"]
            if not problems:
                return []
            time.sleep(0.5)
    return problems


def _idle_problems(cluster: ChaosCluster, listed: Iterable[m.WorkerInfo]) -> list[str]:
    by_pid = {worker_pid(w.worker_id): w for w in listed if w.state != "dead"}
    problems = []
    for i, proc in enumerate(cluster.workers):
        info = by_pid.get(proc.pid)
        if proc.poll() is not None:
            problems.append(f"worker {i} (pid {proc.pid}) exited")
        elif info is None:
            problems.append(f"worker {i} (pid {proc.pid}) is not registered")
        elif info.state != "idle":
            problems.append(f"worker {i} (pid {proc.pid}) is {info.state} on {info.task or '?'}")
    return problems


def burning_tasks(cluster: ChaosCluster) -> list[str]:
    """Task processes using a core although their worker is idle."""
    tasks = [t for p in cluster.workers if p.poll() is None for t in procs.task_processes(p.pid)]
    return [f"task process {pid} ({procs.title(pid)}) burns CPU" for pid in procs.burning(tasks)]


def survivors(cluster: ChaosCluster, launcher_pid: int) -> list[str]:
    """After the stop: processes of the cluster still alive (each is killed, and reported)."""
    pids = set(procs.descendants_titled(cluster.worker_pids_ever)) | set(procs.launched_by(launcher_pid))
    found = [f"pid {pid} ({procs.title(pid)[:80]}) outlived the cluster" for pid in sorted(pids)]
    for pid in pids:
        procs.signal_quietly(pid, signal.SIGKILL)
    return found
