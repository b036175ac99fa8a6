"""Backup attempts for stragglers: conservative, first commit wins, healthy jobs never get one."""

from __future__ import annotations

from zmr import testing
from zmr.core.state import MAP, REDUCE, JobState
from zmr.protocol import messages as m
from zmr.testing import SimCluster


def sim_with(*workers: str, **params: float) -> SimCluster:
    """Backup attempts on, as they are what this file tests."""
    return testing.sim_with(*workers, **{"speculation": True, **params})


def held_map(sim: SimCluster, worker: str) -> int:
    task = sim.assignment(worker)
    assert isinstance(task, m.AssignMap)
    return task.attempt.task


def test_a_straggler_gets_a_backup_and_the_first_commit_wins() -> None:
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


def test_a_backup_that_straggles_too_gets_one_of_its_own_and_no_task_runs_more_than_three_at_once() -> None:
    sim = sim_with("w1", "w2", "w3", "w4", "w5")
    job = sim.submit(n_splits=5, n_reduce=1)
    slow = held_map(sim, "w5")
    sim.hang("w5")
    sim.advance(0.5)
    for worker in ("w1", "w2", "w3", "w4"):
        sim.finish(worker)                # median 0.5 s; the backup rule waits min_elapsed (2 s)
    task = sim.task(job, MAP, slow)
    runners: list[str] = []
    for _ in range(2):                    # each backup hangs as well: 2 s later it gets a backup
        sim.advance(2.0)
        assert len(task.running) == len(runners) + 2
        runner = next(w for w in ("w1", "w2", "w3", "w4") if w not in runners and sim.assignment(w))
        assert held_map(sim, runner) == slow
        sim.hang(runner)
        runners.append(runner)
    sim.advance(4.0)                      # three attempts of it run: none more, however slow
    assert task.attempts_made == 3 and sorted(task.running) == [1, 2, 3]
    sim.hang(runners[-1], False)
    sim.finish(runners[-1])
    assert task.committed == 3 and not task.running
    sim.hang("w5", False)
    sim.hang(runners[0], False)
    sim.run()
    assert sim.job(job).state is JobState.SUCCEEDED


def test_a_map_moving_at_a_quarter_of_the_usual_pace_gets_a_backup_before_it_has_run_3x_the_median() -> None:
    """Six maps move on at a beat each (2 per s) and take 1 s; the last one moves at a quarter of that
    pace. A worker is idle, so it is not restarted but backed up, at 2 s (min_elapsed), not 3 s."""
    sim = sim_with("w1", "w2", "w3", min_elapsed=2.0)
    job = sim.submit(n_splits=7, n_reduce=1)
    for _ in range(2):
        sim.advance(1.0)
        for worker in ("w1", "w2", "w3"):
            sim.finish(worker)
    slow = held_map(sim, "w1")            # the seventh map; w2 and w3 are idle
    sim.slow("w1", 4)
    sim.advance(1.5)
    assert sim.task(job, MAP, slow).attempts_made == 1
    sim.advance(1.0)                      # 2.5 s: under 3x the median of 1 s, but at a quarter of the pace
    task = sim.task(job, MAP, slow)
    assert sorted(task.running) == [1, 2] and not task.restarted
    backup = next(w for w in ("w2", "w3") if sim.assignment(w) is not None)
    sim.finish(backup)
    sim.run()
    assert sim.job(job).state is JobState.SUCCEEDED and task.committed == 2


def test_a_slow_reduce_is_restarted_once_on_its_owner_which_holds_its_pushed_input() -> None:
    """Reduces move on at a beat each and take 1 s; w1's fourth moves at a quarter of that pace. A backup
    elsewhere would pull the whole partition: it is cancelled and run again on w1, even with w2 idle."""
    sim = sim_with("w1", "w2", min_elapsed=2.0)
    job = sim.submit(n_splits=2, n_reduce=8)   # owners w1, w2, w1, w2, ...
    sim.finish("w1")
    sim.finish("w2")                            # both maps: every reduce is ready on its owner
    for _ in range(3):
        sim.advance(1.0)
        sim.finish("w1")
        sim.finish("w2")                        # reduces 0-5 took 1 s each
    slow = sim.assignment("w1")
    assert isinstance(slow, m.AssignReduce) and slow.attempt.task == 6
    sim.slow("w1", 4)
    sim.advance(1.0)
    sim.finish("w2")                            # reduce 7; w2 is idle from now on
    sim.advance(1.5)
    task = sim.task(job, REDUCE, 6)
    assert task.restarted and sim.job(job).owners[6] == "w1"
    again = sim.assignment("w1")
    assert isinstance(again, m.AssignReduce) and again.attempt == m.AttemptId(job_id=job, kind=REDUCE, task=6,
                                                                                number=2)
    sim.advance(4.0)                            # still slow: once per task, it runs on (a backup may join)
    assert 2 in task.running and task.attempts_made <= 3
    sim.slow("w1", 1)
    sim.run()
    assert sim.job(job).state is JobState.SUCCEEDED and task.committed in (2, 3)
