"""Backup attempts for stragglers: conservative, first commit wins, healthy jobs never get one."""

from __future__ import annotations

from zmr import testing
from zmr.core.state import MAP, JobState
from zmr.protocol import messages as m
from zmr.testing import SimCluster


def sim_with(*workers: str, **params: float) -> SimCluster:
    """Backup attempts on, as they are what this file tests."""
    return testing.sim_with(*workers, **{"speculation": True, **params})


def held_map(sim: SimCluster, worker: str) -> int:
    task = sim.assignment(worker)
    assert isinstance(task, m.AssignMap)
    return task.attempt.task


def test_a_straggler_gets_one_backup_and_the_first_commit_wins() -> None:
    sim = sim_with("w1", "w2", "w3")
    job = sim.submit(n_splits=3, n_reduce=1)
    slow = held_map(sim, "w3")
    sim.hang("w3")                        # beats, but its map makes no progress
    sim.advance(0.5)
    sim.finish("w1")
    sim.finish("w2")                      # two maps done in 0.5 s: the median
    sim.advance(1.0)                      # 1.5 s: slower than 3x the median, but under min_elapsed
    assert sim.task(job, MAP, slow).attempts_made == 1
    sim.advance(1.0)                      # 2.5 s: a backup on an idle worker
    task = sim.task(job, MAP, slow)
    assert task.attempts_made == 2 and len(task.running) == 2
    backup = next(w for w in ("w1", "w2") if sim.assignment(w) is not None)
    assert held_map(sim, backup) == slow
    sim.finish(backup)                    # the backup commits first ...
    assert task.committed == 2
    cancels = [msg for msg in sim.received("w3") if isinstance(msg, m.CancelTask)]
    assert [c.attempt for c in cancels] == [m.AttemptId(job_id=job, kind=MAP, task=slow, number=1)]   # the straggler's
    sim.hang("w3", False)
    sim.run()
    assert sim.job(job).state is JobState.SUCCEEDED
    assert sim.task(job, MAP, slow).committed == 2


def test_tasks_within_3x_of_each_other_never_get_a_backup() -> None:
    sim = sim_with("w1", "w2", "w3")
    job = sim.submit(n_splits=3, n_reduce=1)
    slow = held_map(sim, "w3")
    sim.hang("w3")
    sim.advance(1.0)
    sim.finish("w1")
    sim.finish("w2")                      # median 1.0 s
    sim.advance(1.9)                      # 2.9 s < 3 x 1.0 s
    sim.hang("w3", False)
    sim.run()
    assert sim.job(job).state is JobState.SUCCEEDED
    assert all(t.attempts_made == 1 for t in sim.job(job).maps + sim.job(job).reduces)
    assert sim.task(job, MAP, slow).committed == 1


def test_speculation_can_be_turned_off() -> None:
    sim = sim_with("w1", "w2", "w3", speculation=False)
    job = sim.submit(n_splits=3, n_reduce=1)
    slow = held_map(sim, "w3")
    sim.hang("w3")
    sim.advance(0.5)
    sim.finish("w1")
    sim.finish("w2")
    sim.advance(5.0)                      # far slower than its peers, yet below the task timeout
    assert sim.task(job, MAP, slow).attempts_made == 1


def test_a_healthy_job_runs_every_task_exactly_once() -> None:
    sim = sim_with("w1", "w2")
    job = sim.submit(n_splits=12, n_reduce=4)
    sim.run()
    assert sim.job(job).state is JobState.SUCCEEDED
    assert all(t.attempts_made == 1 for t in sim.job(job).maps + sim.job(job).reduces)
