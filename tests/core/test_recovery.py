"""Coordinator restarts and leases, on the pure scheduler: journal, recover, re-adopt, release."""

from __future__ import annotations

import pytest

from zmr.core.scheduler import RELEASE_EVERY, Action, JobFinished, Received, Scheduler, SchedulerParams, Send, Tick
from zmr.core.state import MAP, REDUCE, JobState, TaskState
from zmr.protocol import journal as jr
from zmr.protocol import messages as m
from zmr.protocol import success
from zmr.protocol.success import SuccessMarker
from zmr.testing import SimCluster, check_invariants, logged, sim_with


def finish_maps(sim: SimCluster, n: int) -> list[tuple[int, int, str]]:
    """Let `n` busy workers finish their map; returns (map, attempt, worker) of each."""
    done = []
    for worker in sim.busy()[:n]:
        task = sim.assignment(worker)
        assert isinstance(task, m.AssignMap)
        sim.finish(worker)
        done.append((task.attempt.task, task.attempt.number, worker))
    return done


def test_committed_maps_survive_a_restart_and_are_not_run_again() -> None:
    sim = sim_with("w1", "w2", "w3")
    job = sim.submit(n_splits=6, n_reduce=2)
    done = finish_maps(sim, 2)
    sim.restart_coordinator()
    recovered = sim.job(job)
    assert recovered.state is JobState.RUNNING
    for index, attempt, worker in done:
        task = recovered.maps[index]
        assert (task.state, task.committed, task.committed_worker) == (TaskState.DONE, attempt, worker)
    sim.run()
    assert sim.finished[job] is JobState.SUCCEEDED
    for index, attempt, _ in done:
        assert sim.task(job, MAP, index).committed == attempt
        assert not any(k[:3] == (job, MAP, index) and k[3] != attempt for k in sim._assigned), "re-run"


def test_a_running_attempt_is_readopted_and_its_report_counts() -> None:
    sim = sim_with("w1", "w2")
    job = sim.submit(n_splits=2, n_reduce=1)
    running = sim.assignment("w1")
    assert isinstance(running, m.AssignMap)
    sim.restart_coordinator()
    assert sim.task(job, MAP, running.attempt.task).running.keys() == {running.attempt.number}
    sim.finish("w1")
    assert sim.task(job, MAP, running.attempt.task).committed == running.attempt.number


def test_attempt_numbers_are_never_reused_across_restarts() -> None:
    sim = sim_with("w1")
    job = sim.submit(n_splits=1, n_reduce=1)
    sim.kill("w1")          # attempt 1 dies with its worker, unreported
    sim.restart_coordinator()
    sim.add_worker("w2")
    sim.advance(sim.params.recovery_grace + sim.liveness_timeout)
    sim.run()
    assert sim.finished[job] is JobState.SUCCEEDED
    assert sim.task(job, MAP, 0).committed == 2


def test_a_worker_that_does_not_come_back_has_its_maps_redone_after_the_grace() -> None:
    sim = sim_with("w1", "w2", recovery_grace=4.0)
    job = sim.submit(n_splits=2, n_reduce=2)
    done = finish_maps(sim, 2)
    sim.kill("w1")
    sim.restart_coordinator()
    assert sim.worker_state("w1").alive and sim.worker_state("w1").peer == b""   # awaited
    sim.advance(3.0)
    assert sim.worker_state("w1").alive
    sim.advance(1.5)
    assert not sim.worker_state("w1").alive
    sim.run()
    assert sim.finished[job] is JobState.SUCCEEDED
    lost = [index for index, _, worker in done if worker == "w1"]
    assert lost and all(sim.task(job, MAP, i).committed_worker == "w2" for i in lost)


def test_a_worker_back_without_a_committed_output_has_that_map_run_again() -> None:
    sim = sim_with("w1", "w2")
    job = sim.submit(n_splits=2, n_reduce=1)
    done = finish_maps(sim, 2)
    for worker in ("w1", "w2"):
        sim.workers[worker].kept.clear()    # e.g. its disk was wiped
    sim.restart_coordinator()
    assert sim.job(job).maps_done == 0
    sim.run()
    assert sim.finished[job] is JobState.SUCCEEDED
    assert all(sim.task(job, MAP, i).committed != a for i, a, _ in done)


def test_queued_and_ended_jobs_survive_and_job_ids_are_not_reused() -> None:
    sim = sim_with("w1")
    first = sim.submit(n_splits=1, n_reduce=1)
    sim.run()
    sim.kill("w1")
    sim.advance(sim.liveness_timeout + 1)
    queued = sim.submit(n_splits=1, n_reduce=1)
    assert sim.job(queued).state is JobState.QUEUED       # no worker alive
    sim.restart_coordinator()
    sim.restart_coordinator()   # twice: the second one reads the snapshot the first wrote
    status = sim.scheduler.status(first)
    assert isinstance(status, m.StatusReply) and status.jobs[0].state == "succeeded"
    newer = sim.submit(n_splits=1, n_reduce=1)
    assert newer not in (first, queued) and newer > queued
    sim.add_worker("w2")
    sim.run()
    assert sim.finished[queued] is JobState.SUCCEEDED and sim.finished[newer] is JobState.SUCCEEDED


def test_a_granted_commit_is_confirmed_again_to_its_worker_after_a_restart() -> None:
    sim = sim_with("w1")
    job = sim.submit(n_splits=1, n_reduce=1)
    sim.finish("w1")                      # the map
    sim.finish("w1", commit=False)        # the reduce: granted, not renamed yet
    assert sim.task(job, REDUCE, 0).state is TaskState.COMMITTING
    actions = sim.restart_coordinator()
    decisions = [a.msg for a in actions if isinstance(a, Send) and isinstance(a.msg, m.CommitDecision)]
    assert [d.ok for d in decisions] == [True]
    sim.commit("w1")
    assert sim.finished[job] is JobState.SUCCEEDED
    assert sim.renamed[(job, 0)] == [1]


def test_the_journal_snapshot_recovers_the_same_status() -> None:
    sim = sim_with("w1", "w2")
    job = sim.submit(n_splits=4, n_reduce=2)
    finish_maps(sim, 2)
    before = sim.scheduler.status(job)
    again = Scheduler(sim.params)
    again.recover(sim.scheduler.snapshot(), sim.clock.now)
    check_invariants(again)
    after = again.status(job)
    assert isinstance(before, m.StatusReply) and isinstance(after, m.StatusReply)
    fields = ("state", "maps_done", "maps_total", "reduces_total", "bytes_shuffled")
    assert [getattr(before.jobs[0], f) for f in fields] == [getattr(after.jobs[0], f) for f in fields]


def test_records_for_unknown_jobs_or_tasks_are_ignored() -> None:
    s = Scheduler(SchedulerParams(python="3.11"))
    s.recover([jr.MapCommitted(job_id="job-0009", task=0, attempt=1, worker_id="w", records_out=0, bytes_out=0,
                               finished=0.0),
               jr.Header(version=jr.JOURNAL_VERSION, next_job=12)], 0.0)
    check_invariants(s)
    assert s.jobs == {}
    assert s.book.next_job == 12


# ---------------------------------------------------------------- leases


def test_committed_partitions_are_released_on_every_worker_of_the_job_at_most_every_few_seconds() -> None:
    """One ReleasePartitions per worker at the first tick after a commit, then at most every
    RELEASE_EVERY s, naming (as runs) every partition committed since the last one."""
    sim = sim_with("w1", "w2")
    job = sim.submit(n_splits=2, n_reduce=4)
    while sim.job(job).maps_done < 2:
        sim.finish(sim.busy()[0])

    def releases() -> dict[str, list[set[int]]]:
        return {w: [set(msg.partitions.members(4)) for msg in sim.received(w) if isinstance(msg, m.ReleasePartitions)]
                for w in ("w1", "w2")}

    def commit_a_reduce() -> None:
        sim.finish(next(w for w in sim.busy() if isinstance(sim.assignment(w), m.AssignReduce)))

    def done() -> set[int]:
        return {t.index for t in sim.job(job).reduces if t.state is TaskState.DONE}

    for _ in range(2):   # two reduces commit between ticks
        commit_a_reduce()
    assert releases() == {"w1": [], "w2": []}
    sim.tick()
    first = done()
    assert releases() == {"w1": [first], "w2": [first]} and len(first) == 2
    commit_a_reduce()
    sim.tick()   # a commit, but the last release was just now: it waits
    assert releases() == {"w1": [first], "w2": [first]}
    sim.advance(RELEASE_EVERY)
    third = done() - first
    assert len(third) == 1 and releases() == {"w1": [first, third], "w2": [first, third]}
    sim.tick()   # nothing new committed: nothing more is said
    assert releases() == {"w1": [first, third], "w2": [first, third]}
    sim.settle()   # the last reduce ends the job: JobEnded drops everything, no release needed
    assert sim.finished[job] is JobState.SUCCEEDED


def test_a_setup_sent_after_commits_names_the_committed_partitions_as_released() -> None:
    """A worker that asks for the job's setup again (it missed an owner update) must not keep, or accept,
    data of partitions committed meanwhile: the setup names them."""
    sim = sim_with("w1", "w2")
    job = sim.submit(n_splits=2, n_reduce=4)
    while sim.job(job).maps_done < 2:
        sim.finish(sim.busy()[0])
    for _ in range(2):
        sim.finish(next(w for w in sim.busy() if isinstance(sim.assignment(w), m.AssignReduce)))
    done = {t.index for t in sim.job(job).reduces if t.state is TaskState.DONE}
    assert len(done) == 2
    actions = sim.send("w1", m.SetupRequest(worker_id="w1", job_id=job))
    setups = [a.msg for a in actions if isinstance(a, Send) and isinstance(a.msg, m.JobSetup)]
    assert len(setups) == 1 and set(setups[0].released.members(4)) == done


def test_pings_renew_leases_of_the_running_jobs_set_up_on_each_worker_only() -> None:
    sim = sim_with("w1", "w2", lease_ttl=7.0)
    job = sim.submit(n_splits=1, n_reduce=1)
    actions = sim.tick()
    pings = {a.peer: a.msg for a in actions if isinstance(a, Send) and isinstance(a.msg, m.Ping)}
    owner = sim.job(job).owners[0]
    for worker in ("w1", "w2"):
        ping = pings[sim.workers[worker].peer]
        assert ping.lease_ttl == 7.0
        assert (job in ping.jobs) == (worker in sim.job(job).set_up_on)
    assert job in pings[sim.workers[owner].peer].jobs    # owners are set up at the job's start
    sim.run()
    actions = sim.tick()
    assert all(not a.msg.jobs for a in actions if isinstance(a, Send) and isinstance(a.msg, m.Ping))


def test_the_timeline_follows_reported_leases_until_they_are_gone() -> None:
    sim = sim_with("w1")
    job = sim.submit(n_splits=2, n_reduce=1)
    beat = m.Heartbeat(worker_id="w1", leases=[m.LeaseStat(job_id=job, leases=3)])
    sim.send("w1", beat)
    sim.tick()
    assert sim.job(job).timeline[-1].leases == 3
    sim.run()
    assert sim.job(job).state is JobState.SUCCEEDED
    sim.send("w1", beat)      # the worker has not dropped the job yet
    sim.tick()
    assert sim.job(job).timeline[-1].leases == 3
    sim.send("w1", m.Heartbeat(worker_id="w1"))
    sim.tick()
    timeline = sim.job(job).timeline
    assert timeline[-1].leases == 0 and timeline[-1].reduces_done == 1
    assert max(p.leases for p in timeline) == 3
    status = sim.scheduler.status(job, tasks=True)
    assert isinstance(status, m.StatusReply) and status.jobs[0].timeline == timeline


def test_a_map_finished_while_the_coordinator_was_down_counts_when_its_worker_comes_back() -> None:
    sim = sim_with("w1", "w2")
    job = sim.submit(n_splits=2, n_reduce=1)
    task = sim.assignment("w1")
    assert isinstance(task, m.AssignMap)
    sim.isolate("w1")
    sim.finish("w1")                      # its MapDone goes nowhere: the coordinator is down
    sim.restart_coordinator()
    sim.isolate("w1", False)
    done = m.MapDone(worker_id="w1", attempt=task.attempt, records_out=10,
                     bytes_out=100)
    register = m.Register(worker_id="w1", data_addr=sim.workers["w1"].addr, python="3.11", pid=1, host="sim",
                          holdings=[m.Holding(job_id=job, maps=[(task.attempt.task, task.attempt.number)])],
                          finished_maps=[done])
    actions = sim.send("w1", register)
    assert [log.fields["task"] for log in logged(actions, "map_readopted")] == [f"map-{task.attempt.task}"]
    assert sim.task(job, MAP, task.attempt.task).committed == task.attempt.number
    sim.run()
    assert sim.finished[job] is JobState.SUCCEEDED
    assert sim.task(job, MAP, task.attempt.task).committed == task.attempt.number


def test_a_finished_map_whose_output_is_gone_is_not_readopted() -> None:
    sim = sim_with("w1", "w2")
    job = sim.submit(n_splits=2, n_reduce=1)
    task = sim.assignment("w1")
    assert isinstance(task, m.AssignMap)
    sim.isolate("w1")
    sim.finish("w1")
    sim.restart_coordinator()
    sim.isolate("w1", False)
    done = m.MapDone(worker_id="w1", attempt=task.attempt, records_out=1, bytes_out=1)
    actions = sim.send("w1", m.Register(worker_id="w1", data_addr=sim.workers["w1"].addr, python="3.11", pid=1,
                                        host="sim", finished_maps=[done]))
    assert logged(actions, "map_readopted") == []
    assert sim.task(job, MAP, task.attempt.task).state is not TaskState.DONE


def test_an_ended_job_whose_output_step_was_cut_short_finishes_it_after_a_restart() -> None:
    from zmr.core.scheduler import JobFinished
    sim = sim_with("w1")
    job = sim.submit(n_splits=1, n_reduce=1)
    sim.run()
    done = [r for r in sim.journal if isinstance(r, jr.OutputFinished)]
    assert [r.job_id for r in done] == [job]
    cut_short = [r for r in sim.journal if not isinstance(r, jr.OutputFinished)]   # killed before it
    again = Scheduler(sim.params)
    finished = [a for a in again.recover(cut_short, sim.clock.now) if isinstance(a, JobFinished)]
    assert [(f.job_id, f.state) for f in finished] == [(job, JobState.SUCCEEDED)]
    again = Scheduler(sim.params)
    assert not [a for a in again.recover(list(sim.journal), sim.clock.now) if isinstance(a, JobFinished)]


def test_a_grant_journaled_before_a_restart_keeps_the_records_count() -> None:
    sim = sim_with("w1")
    job = sim.submit(n_splits=1, n_reduce=1)
    sim.finish("w1")
    sim.finish("w1", commit=False)
    sim.restart_coordinator()
    sim.commit("w1")
    assert sim.finished[job] is JobState.SUCCEEDED
    assert sim.task(job, REDUCE, 0).records_out == 1


def test_workers_idle_at_a_compaction_are_still_known_after_a_later_restart() -> None:
    sim = sim_with("w1", "w2")
    first = sim.submit(n_splits=1, n_reduce=1)
    sim.run()
    assert sim.finished[first] is JobState.SUCCEEDED
    sim.scheduler.archive_ended()
    sim.journal = sim.scheduler.snapshot()          # compacted while no job ran
    job = sim.submit(n_splits=3, n_reduce=1)
    done = finish_maps(sim, 2)
    actions = sim.restart_coordinator()
    assert not logged(actions, "worker_lost")
    for index, attempt, worker in done:
        assert (sim.task(job, MAP, index).committed, sim.task(job, MAP, index).committed_worker) == (attempt, worker)


# ------------------------------------------------------------------ committed output found on disk


def _lost_its_end(sim: SimCluster) -> list[jr.Record]:
    """The journal of a finished job cut before its first reduce commit: replay alone would run it again."""
    cut = next(i for i, r in enumerate(sim.journal) if isinstance(r, jr.CommitConfirmed))
    return sim.journal[:cut]


def _recover_with(sim: SimCluster, records: list[jr.Record], found: dict[str, SuccessMarker | None]
                  ) -> tuple[Scheduler, list[Action]]:
    again = Scheduler(sim.params)
    actions = again.recover(records, sim.clock.now, found)
    check_invariants(again)
    return again, actions


def _assigned_after_a_worker_joins(scheduler: Scheduler) -> list[m.FromCoordinator]:
    register = m.Register(worker_id="w9", data_addr="tcp://w9.sim:1", python=scheduler.params.python, pid=9,
                          host="sim")
    actions = scheduler.handle(Received(b"w9", register), 2000.0) + scheduler.handle(Tick(), 2001.0)
    return [a.msg for a in actions if isinstance(a, Send) and isinstance(a.msg, m.AssignMap | m.AssignReduce)]


def test_a_job_whose_success_marker_is_found_is_not_run_again_when_the_journal_lost_its_end() -> None:
    sim = sim_with("w1")
    job = sim.submit(n_splits=2, n_reduce=2)
    sim.run()
    marker = sim.scheduler.success_marker(job)
    assert marker is not None
    output_dir = sim.job(job).spec.output_dir
    again, actions = _recover_with(sim, _lost_its_end(sim), {output_dir: marker})
    assert not [a for a in actions if isinstance(a, JobFinished)], "its output would be written again"
    assert job not in again.jobs and again.archived[job].state == "succeeded"
    assert again.archived[job].finished == marker.finished
    assert [f.fields["job"] for f in logged(actions, "job_found_committed")] == [job]
    assert _assigned_after_a_worker_joins(again) == []
    assert [r for r in again.snapshot() if isinstance(r, jr.EndedJob)][0].info.state == "succeeded"


def test_without_a_success_marker_the_same_journal_runs_the_job_again() -> None:
    sim = sim_with("w1")
    job = sim.submit(n_splits=2, n_reduce=2)
    sim.run()
    again, _ = _recover_with(sim, _lost_its_end(sim), {})
    assert again.jobs[job].state is JobState.RUNNING and again.jobs[job].reduces_done == 0   # to be run again


@pytest.mark.parametrize("author", ["none", "same_id_other_job", "other_id"])
def test_a_success_file_this_job_did_not_write_fails_it_and_leaves_the_output_alone(author: str) -> None:
    sim = sim_with("w1")
    job = sim.submit(n_splits=2, n_reduce=2)
    sim.run()
    ours = sim.scheduler.success_marker(job)
    assert ours is not None
    found = {"none": None, "same_id_other_job": SuccessMarker(job_id=job, submitted=ours.submitted - 60,
                                                              finished=ours.finished - 50),
             "other_id": SuccessMarker(job_id="job-0042", submitted=1.0, finished=2.0)}[author]
    output_dir = sim.job(job).spec.output_dir
    again, actions = _recover_with(sim, _lost_its_end(sim), {output_dir: found})
    assert not [a for a in actions if isinstance(a, JobFinished)], "its output would be removed"
    info = again.archived[job]
    assert info.state == "failed" and "not run again" in info.error and output_dir in info.error, info.error
    assert logged(actions, "job_not_run_again")
    assert _assigned_after_a_worker_joins(again) == []


def test_a_queued_job_whose_directory_gained_a_success_file_is_not_run() -> None:
    sim = sim_with()
    job = sim.submit(n_splits=1, n_reduce=1)
    again, actions = _recover_with(sim, list(sim.journal), {sim.job(job).spec.output_dir: None})
    assert again.archived[job].state == "failed"
    assert _assigned_after_a_worker_joins(again) == []


@pytest.mark.parametrize("ours", [True, False])
def test_an_output_step_cut_short_is_not_redone_over_a_success_file(ours: bool) -> None:
    sim = sim_with("w1")
    job = sim.submit(n_splits=1, n_reduce=1)
    sim.run()
    marker = sim.scheduler.success_marker(job) if ours else None
    cut_short = [r for r in sim.journal if not isinstance(r, jr.OutputFinished)]
    again, actions = _recover_with(sim, cut_short, {sim.job(job).spec.output_dir: marker})
    assert not [a for a in actions if isinstance(a, JobFinished)]
    assert again.archived[job].state == "succeeded"
    assert logged(actions, "job_output_found_done" if ours else "job_output_left_alone")


def test_a_success_marker_names_one_job_and_survives_its_file() -> None:
    sim = sim_with("w1")
    job = sim.submit(n_splits=1, n_reduce=1)
    sim.run()
    marker = sim.scheduler.success_marker(job)
    assert marker is not None and marker.job_id == job and marker.submitted == sim.job(job).submitted
    assert success.decode(success.encode(marker).encode()) == marker
    assert success.decode(b"") is None and success.decode(b"garbage") is None and success.decode(b"x" * 9000) is None
    assert sim.scheduler.success_marker("job-9999") is None


def test_a_task_failures_count_across_restarts_so_a_task_that_always_fails_still_fails_its_job() -> None:
    """Restarts must not forgive failures: a map that always fails (or never returns) would otherwise run
    for ever under a coordinator restarted more often than it takes to use up its attempts."""
    sim = sim_with("w1", max_attempts=3)
    job = sim.submit(n_splits=1, n_reduce=1)
    for failures in (1, 2):
        sim.fail("w1")
        sim.restart_coordinator()
        assert sim.task(job, MAP, 0).app_failures == failures
        for _ in range(200):   # until the retry is handed out again, after its backoff
            if sim.busy():
                break
            sim.advance(sim.params.heartbeat_interval)
        assert sim.busy() == ["w1"]
    sim.fail("w1")
    assert sim.finished[job] is JobState.FAILED
    assert "map-0 failed 3 times" in sim.job(job).error


def test_a_task_worker_losses_survive_a_restart_and_a_compaction() -> None:
    sim = sim_with("w1", "w2")
    job = sim.submit(n_splits=1, n_reduce=1)
    [victim] = sim.busy()
    sim.kill(victim)
    sim.advance(sim.liveness_timeout + sim.params.heartbeat_interval)
    assert sim.task(job, MAP, 0).worker_losses == 1
    sim.restart_coordinator()   # replays the journal, then compacts it into a snapshot
    sim.restart_coordinator()   # replays the snapshot
    assert sim.task(job, MAP, 0).worker_losses == 1


def test_a_lost_workers_leases_leave_the_timeline_with_it() -> None:
    """The job's lease count is a running total: a worker that dies takes its share off, one that
    registers again under a new life starts from nothing, and status sums the same."""
    sim = sim_with("w1", "w2")
    job = sim.submit(n_splits=2, n_reduce=2)
    beat = m.Heartbeat(worker_id="w1", leases=[m.LeaseStat(job_id=job, leases=3)])
    sim.send("w1", beat)
    sim.send("w2", m.Heartbeat(worker_id="w2", leases=[m.LeaseStat(job_id=job, leases=2)]))
    sim.tick()
    assert sim.job(job).timeline[-1].leases == 5
    sim.kill("w2")
    for _ in range(round(sim.liveness_timeout / sim.params.heartbeat_interval)):   # ticks at the usual pace
        sim.clock.advance(sim.params.heartbeat_interval)
        sim.send("w1", beat)    # w1 beats on; w2 does not
        sim.tick()
    assert sim.worker_state("w2").alive is False
    assert sim.job(job).timeline[-1].leases == 3
    status = sim.scheduler.status(job)
    assert isinstance(status, m.StatusReply) and status.jobs[0].leases == 3
    sim.add_worker("w2")
    sim.send("w2", m.Heartbeat(worker_id="w2", leases=[m.LeaseStat(job_id=job, leases=1)]))
    sim.tick()
    assert sim.job(job).timeline[-1].leases == 4
