"""App code runs in a task process the worker can kill: a hung, cancelled, killed or runaway task costs
one attempt, never a worker.

Inputs are generated here; the cluster is real (coordinator and worker processes on loopback).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from zmr.errors import JobFailed

from .conftest import (
    APPS,
    PROBE_APP,
    TEST_APPS,
    Cluster,
    probe_args,
    read_markers,
    read_output,
    wait_until,
)

HANG_APP = TEST_APPS / "hang.py"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _corpus(folder: Path, files: int = 4) -> list[str]:
    folder.mkdir()
    paths = []
    for i in range(files):
        path = folder / f"part-{i}.txt"
        tag = "abcdefghij"[i]
        path.write_text("".join(f"alpha beta gamma{tag} delta line{'klmnopqrst'[j % 10]}\n" for j in range(2000)))
        paths.append(str(path))
    return paths


def _expected(paths: list[str]) -> list[str]:
    counts: dict[str, int] = {}
    for path in paths:
        for word in Path(path).read_text().split():
            counts[word] = counts.get(word, 0) + 1
    return sorted(f"{word} {n}" for word, n in counts.items())


def _children(pid: int) -> list[int]:
    """Every live descendant of `pid` (the worker's zygote and task processes)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        kids = [p for p, ppid in parents.items() if ppid in frontier]
        found += kids
        frontier = kids
    return found


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes and all their descendants alive now."""
    total = 0
    for pid in {*pids, *(c for p in pids for c in _children(p))}:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def _worker_pids(c: Cluster) -> list[int]:
    return [p.pid for p in c.local.workers if p.poll() is None]


def test_a_map_that_never_returns_fails_the_job_and_frees_every_worker(cluster, tmp_path: Path) -> None:
    c: Cluster = cluster(2, coordinator__task_timeout="2", retry__max_attempts="3", speculation__enabled="false")
    assert c.client is not None
    inputs = _corpus(tmp_path / "in")
    job = c.client.submit(str(HANG_APP), inputs, str(tmp_path / "out"), n_reduce=2, args=["hang=part-1"])
    with pytest.raises(JobFailed) as failed:
        c.client.wait(job, timeout=60)
    assert "map-1 failed 3 times; last error: no progress within 2 s" in str(failed.value)
    time.sleep(1.0)   # the last attempt's process is killed on its CancelTask
    before = _cpu_seconds(_worker_pids(c))
    time.sleep(2.0)
    spent = _cpu_seconds(_worker_pids(c)) - before
    assert spent < 0.6, f"the workers and their task processes spent {spent:.2f} s of CPU in 2 s while idle"
    assert [w.state for w in c.client.status().workers] == ["idle", "idle"]
    out = tmp_path / "out-wc"
    done = c.client.wait(c.client.submit(str(APPS / "wc.py"), inputs[:1], str(out), n_reduce=1), timeout=30)
    assert done.state == "succeeded"
    assert read_output(out, 1, check_partitioning=False) == _expected(inputs[:1])


def _gone_or_zombie(pid: int) -> bool:
    try:
        return "Z" in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:   # reaped, possibly between two looks
        return True


def _hung_map(cluster, tmp_path: Path, *args: str) -> tuple[Cluster, str, list[str], dict[str, Any]]:
    """One worker running a job whose one map hangs (with `args` for the app): the cluster, the job, its
    inputs, and the map's marker record once it has started."""
    c: Cluster = cluster(1, coordinator__task_timeout="600", speculation__enabled="false")
    assert c.client is not None
    markers = tmp_path / "markers"
    markers.mkdir()
    inputs = _corpus(tmp_path / "in", files=1)
    job = c.client.submit(str(HANG_APP), inputs, str(tmp_path / "out"), n_reduce=1,
                          args=["hang=part-0", *args, f"markers={markers}"])
    record = wait_until(lambda: next(iter(read_markers(markers)), None), 30, what="the map to start")
    return c, job, inputs, record


def test_cancelling_a_job_with_a_hung_map_frees_its_worker_at_once(cluster, tmp_path: Path) -> None:
    c, job, inputs, record = _hung_map(cluster, tmp_path)
    assert c.client is not None
    task_pid = record["task_pid"]
    time.sleep(0.3)
    c.client.cancel(job)
    cancelled = time.monotonic()
    wait_until(lambda: _gone_or_zombie(task_pid), 2.0, what="the hung task process to be killed")
    wait_until(lambda: [w.state for w in c.client.status().workers] == ["idle"], 2.0, what="the worker to be idle")
    assert time.monotonic() - cancelled < 2.5
    out = tmp_path / "out-wc"
    done = c.client.wait(c.client.submit(str(APPS / "wc.py"), inputs, str(out), n_reduce=1), timeout=30)
    assert done.state == "succeeded"


def test_a_cancelled_task_takes_the_processes_its_app_started_with_it(cluster, tmp_path: Path) -> None:
    c, job, _, record = _hung_map(cluster, tmp_path, "spawn=yes")
    assert c.client is not None
    child = record["child_pid"]
    assert not _gone_or_zombie(child)
    c.client.cancel(job)
    wait_until(lambda: _gone_or_zombie(record["task_pid"]) and _gone_or_zombie(child), 5.0,
               what="the task process and the process its app started to be killed")


def test_a_task_over_its_memory_cap_fails_with_a_clear_error_and_the_worker_lives(cluster, tmp_path: Path) -> None:
    c: Cluster = cluster(1, worker__task_memory_mb="600", retry__max_attempts="2", speculation__enabled="false")
    assert c.client is not None
    workers = _worker_pids(c)
    inputs = _corpus(tmp_path / "in", files=1)
    job = c.client.submit(str(HANG_APP), inputs, str(tmp_path / "out"), n_reduce=1, args=["alloc_mb=2000"])
    with pytest.raises(JobFailed) as failed:
        c.client.wait(job, timeout=60)
    assert "MemoryError" in str(failed.value) and "worker.task_memory_mb=600" in str(failed.value)
    assert _worker_pids(c) == workers
    out = tmp_path / "out-ok"
    done = c.client.wait(c.client.submit(str(HANG_APP), inputs, str(out), n_reduce=1, args=["alloc_mb=50"]),
                         timeout=30)
    assert done.state == "succeeded"
    assert read_output(out, 1, check_partitioning=False) == _expected(inputs)


def test_a_task_process_killed_mid_map_fails_only_that_attempt(cluster, tmp_path: Path) -> None:
    c: Cluster = cluster(2, speculation__enabled="false")
    assert c.client is not None
    workers = _worker_pids(c)
    markers = tmp_path / "markers"
    markers.mkdir()
    inputs = _corpus(tmp_path / "in")
    out = tmp_path / "out"
    job = c.client.submit(str(PROBE_APP), inputs, str(out), n_reduce=2,
                          args=probe_args(markers, slow_once="part-2:30"))
    record = wait_until(lambda: next((r for r in read_markers(markers) if "part-2" in r["file"]), None), 30,
                        what="the slow map to start")
    assert record["task_pid"] != record["pid"] and record["pid"] in workers
    assert record["task_pid"] in _children(record["pid"])   # found from the worker's descendants
    os.kill(record["task_pid"], signal.SIGKILL)
    info = c.client.wait(job, timeout=60)
    assert info.state == "succeeded"
    assert read_output(out, 2) == _expected(inputs)
    assert _worker_pids(c) == workers
    task = next(t for t in info.tasks if t.kind == "map" and t.index == 2)
    assert task.attempts == 2
    runs = [r for r in read_markers(markers) if "part-2" in r["file"]]
    assert len(runs) == 2 and all(r["end"] is not None for r in runs if r["task_pid"] != record["task_pid"])
    assert json.dumps(record)   # the killed attempt's marker names the killed process


def _task_processes(worker: int) -> list[int]:
    """The worker's task processes: the children of its zygote child (`zmr-task (worker PID)`)."""
    return [p for p in _children(worker)
            if Path(f"/proc/{p}/cmdline").read_bytes().startswith(b"zmr-task (")]


def test_a_task_process_killed_while_idle_costs_nothing_and_the_next_task_runs(cluster, tmp_path: Path) -> None:
    """The warm task process dies between tasks (killed from outside, say): the next task must find a fresh
    one, not wedge its worker by writing to a channel nobody reads any more."""
    c: Cluster = cluster(1, speculation__enabled="false", coordinator__task_timeout="5")
    assert c.client is not None
    inputs = _corpus(tmp_path / "in", files=1)
    first = c.client.wait(c.client.submit(str(APPS / "wc.py"), inputs, str(tmp_path / "out1"), n_reduce=1),
                          timeout=30)
    assert first.state == "succeeded"
    [worker] = _worker_pids(c)
    idle = wait_until(lambda: _task_processes(worker), 10, what="the warm task process")
    for pid in idle:
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.3)   # the worker's zygote reaps it
    out = tmp_path / "out2"
    done = c.client.wait(c.client.submit(str(APPS / "wc.py"), inputs, str(out), n_reduce=1), timeout=30)
    assert done.state == "succeeded"
    assert read_output(out, 1, check_partitioning=False) == _expected(inputs)
    assert all(t.attempts == 1 for t in done.tasks), "a task process that died while idle failed an attempt"
    assert [w.state for w in c.client.status().workers] == ["idle"]
