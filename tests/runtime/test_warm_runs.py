"""A map task's last runs outlive it until the next map has made its own, within bounds."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from zmr.apps import ship_app
from zmr.core.batches import Pairs
from zmr.protocol import messages as m
from zmr.runtime import executor as executor_module
from zmr.runtime.executor import Executor, JobContext

APPS = Path(__file__).resolve().parents[2] / "apps"


def _map(executor: Executor, path: Path, task: int) -> None:
    split = m.InputSplit(name=path.name, path=str(path), start=0, end=path.stat().st_size)
    executor._run_task(m.AssignMap(job_id="job-0001", task=task, attempt=1, split=split))


def test_a_map_task_leaves_its_runs_held_and_the_next_one_replaces_them(executor: Executor, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[Any] = []
    monkeypatch.setattr(executor, "_send", sent.append)
    setup = m.JobSetup(job_id="job-0001", app_blob=ship_app(str(APPS / "bench_wc.py")), args=[], n_reduce=3,
                       owners=["a", "b", "c"], owners_epoch=1, push=False, batch_bytes=1 << 20,
                       window_bytes=1 << 20)
    executor._jobs["job-0001"] = JobContext(setup, list(setup.owners), 1)
    executor._kept.open_job("job-0001")
    first, second = tmp_path / "one.txt", tmp_path / "two.txt"
    first.write_text("the cat and the dog\nthe end\n")
    second.write_text("zebra yak\n")
    _map(executor, first, 0)
    assert [d for d in sent if isinstance(d, m.MapDone)], sent   # it ran to the end
    assert sorted(pair for run in executor._warm for pair in run) == [
        ("and", 1), ("cat", 1), ("dog", 1), ("end", 1), ("the", 3)]
    _map(executor, second, 1)
    assert sorted(pair for run in executor._warm for pair in run) == [("yak", 1), ("zebra", 1)]


def test_the_last_runs_are_held_then_given_up_once_the_executor_idles(executor: Executor,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor_module, "_WARM_IDLE", 0.05)
    runs: list[Pairs] = [[("a", 1), ("b", 2)], [("c", 3)]]
    executor._keep_warm(runs)
    assert executor._warm is runs
    executor._keep_warm([[("d", 4)]])   # the next task's replace them
    assert executor._warm == [[("d", 4)]]
    executor.start()
    deadline = time.monotonic() + 5
    while executor._warm and time.monotonic() < deadline:
        time.sleep(0.01)
    assert executor._warm == []
    assert executor.is_alive()   # idling gave them up; the thread still waits for work


def test_runs_beyond_the_bound_are_not_held(executor: Executor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor_module, "_WARM_MAX_PAIRS", 3)
    executor._keep_warm([[("a", 1), ("b", 2)], [("c", 3)]])
    assert executor._warm == [[("a", 1), ("b", 2)], [("c", 3)]]
    executor._keep_warm([[("a", 1), ("b", 2)], [("c", 3), ("d", 4)]])
    assert executor._warm == []


def test_a_reduce_gives_up_the_runs_before_it_runs(executor: Executor) -> None:
    executor._keep_warm([[("a", 1)]])
    executor._run_task(m.AssignReduce(job_id="job-0001", task=0, attempt=1, output_dir="/unused", sources=[]))
    assert executor._warm == []   # its job is unknown here, so it ends at once: after giving them up
