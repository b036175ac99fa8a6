"""A map task's last runs outlive it until the next map has made its own, within bounds."""

from __future__ import annotations

import time

import pytest

from zmr.protocol import messages as m
from zmr.runtime import executor as executor_module
from zmr.runtime.executor import Executor


def test_the_last_runs_are_held_then_given_up_once_the_executor_idles(executor: Executor,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor_module, "_WARM_IDLE", 0.05)
    runs = [[("a", 1), ("b", 2)], [("c", 3)]]
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
