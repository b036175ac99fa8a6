"""Multi-step jobs in the scheduler: one job per step, fed by the reduces of the step it reads, ended
together; a lost step output makes only its reduce run again. Driven through SimCluster, which checks
the invariants and its commit audit after every event."""

from __future__ import annotations

from zmr.core.scheduler import JobFinished
from zmr.core.state import MAP, REDUCE, JobState, TaskState
from zmr.protocol import messages as m
from zmr.testing import SimCluster, check_replay, logged, sim_with

THREE = [("count", 3, ["<files>"]), ("mid", 2, ["count"]), ("top", 1, ["mid"])]


def steps_of(sim: SimCluster, head: str) -> list[str]:
    return [s.job_id for s in sim.scheduler.status(head).jobs[0].steps]   # type: ignore[union-attr]


def test_a_three_step_job_runs_each_task_once_and_each_step_feeds_the_next() -> None:
    sim = sim_with("w1", "w2", "w3")
    head = sim.submit(n_splits=4, steps=THREE)
    count, mid, top = steps_of(sim, head)
    assert top == head and (count, mid) == ("job-0002", "job-0003")
    assert [sim.job(j).spec.feeds for j in (count, mid, top)] == [
        [m.StepLink(job_id=mid, first=0)], [m.StepLink(job_id=top, first=0)], []]
    assert (len(sim.job(mid).maps), len(sim.job(top).maps)) == (3, 2)
    sim.run()
    assert {j: sim.job(j).state for j in (count, mid, top)} == dict.fromkeys((count, mid, top), JobState.SUCCEEDED)
    assert sim.finished == {head: JobState.SUCCEEDED}    # the steps before the last have no output to finish
    assert sim.fed == {(count, r): [1] for r in range(3)} | {(mid, r): [1] for r in range(2)}
    assert sim.renamed == {(head, 0): [1]}
    for job_id in (count, mid, top):
        state = sim.job(job_id)
        assert [t.attempts_made for t in state.maps + state.reduces] == [1] * (len(state.maps) + len(state.reduces))
    # a step job's map is kept where the reduce that made it ran
    for r, fed in enumerate(sim.job(mid).maps):
        assert fed.committed_worker == sim.job(count).reduces[r].committed_worker
    check_replay(sim.journal, sim.scheduler)


def test_the_job_list_shows_the_head_only_with_its_steps_and_waves() -> None:
    sim = sim_with("w1", "w2")
    head = sim.submit(n_splits=2, steps=THREE)
    listed = sim.scheduler.status(None)
    assert isinstance(listed, m.StatusReply) and [j.job_id for j in listed.jobs] == [head]
    assert [(s.name, s.wave, s.reduces_total) for s in listed.jobs[0].steps] == [
        ("count", 0, 3), ("mid", 1, 2), ("top", 2, 1)]
    sim.run()
    sim.scheduler.archive_ended()
    listed = sim.scheduler.status(None)
    assert isinstance(listed, m.StatusReply) and [j.job_id for j in listed.jobs] == [head]


def test_a_worker_lost_in_step_two_makes_only_the_lost_step_output_again() -> None:
    sim = sim_with("w1", "w2", "w3")
    head = sim.submit(n_splits=3, steps=THREE)
    count, mid, _ = steps_of(sim, head)
    while sim.job(count).reduces_done < 3:              # step 1 done: its reduces fed step 2's maps
        sim.finish(sim.busy()[0])
    victim = sim.job(mid).maps[0].committed_worker
    assert victim is not None
    mappers = [t.committed_worker for t in sim.job(count).maps]
    sim.kill(victim)
    actions = sim.advance(sim.liveness_timeout)
    reopened = [(log.fields["job"], log.fields["task"]) for log in logged(actions, "reduce_reopened")]
    assert (count, "reduce-0") in reopened
    assert all(job == count for job, _ in reopened)
    sim.run()
    assert sim.finished == {head: JobState.SUCCEEDED}
    # step 1's maps run again only where their kept output died with the worker
    assert [t.attempts_made for t in sim.job(count).maps] == [2 if w == victim else 1 for w in mappers]
    assert sim.renamed == {(head, 0): [sim.task(head, REDUCE, 0).committed]}
    assert len(sim.fed[(count, 0)]) == 2                # committed twice: before and after the loss
    check_replay(sim.journal, sim.scheduler)


def test_a_failing_step_fails_the_job_naming_the_step_and_ends_every_step() -> None:
    sim = sim_with("w1")
    head = sim.submit(n_splits=1, steps=THREE)
    count, mid, top = steps_of(sim, head)
    sim.finish("w1")                                     # count's map
    for _ in range(3):
        sim.finish("w1")                                 # count's reduces, feeding mid
    assert sim.task(mid, REDUCE, 0).state is TaskState.RUNNING
    sim.fail("w1", kind="invalid", error="AppError: reduce returned None")
    assert {j: sim.job(j).state for j in (count, mid, top)} == dict.fromkeys((count, mid, top), JobState.FAILED)
    assert sim.job(head).error.startswith("step 'mid': reduce-0 failed: AppError: reduce returned None")
    assert sim.finished == {head: JobState.FAILED}
    assert [msg.job_id for msg in sim.workers["w1"].inbox if isinstance(msg, m.JobEnded)] == [count, mid, top]


def test_cancelling_the_job_cancels_every_step() -> None:
    sim = sim_with("w1", "w2")
    head = sim.submit(n_splits=2, steps=THREE)
    replies = sim.client_send(m.CancelJob(job_id=head))
    assert isinstance(replies[0], m.StatusReply) and replies[0].jobs[0].state == "cancelled"
    assert {sim.job(j).state for j in steps_of(sim, head)} == {JobState.CANCELLED}
    assert sim.job(head).error == "cancelled by a client"   # the whole job's, not blamed on one step


def test_cancelling_a_step_job_cancels_the_job_without_blaming_that_step() -> None:
    sim = sim_with("w1", "w2")
    head = sim.submit(n_splits=2, steps=THREE)
    first = steps_of(sim, head)[0]
    sim.client_send(m.CancelJob(job_id=first))
    assert {sim.job(j).state for j in steps_of(sim, head)} == {JobState.CANCELLED}
    assert sim.job(head).error == "cancelled by a client"


def test_a_restarted_coordinator_finishes_a_multi_step_job_from_its_journal() -> None:
    sim = sim_with("w1", "w2", "w3")
    head = sim.submit(n_splits=3, steps=THREE)
    count, mid, _ = steps_of(sim, head)
    while sim.job(count).reduces_done < 2:
        sim.finish(sim.busy()[0])
    actions = sim.restart_coordinator()
    assert not [a for a in actions if isinstance(a, JobFinished)]
    assert sim.job(count).reduces_done == 2 and sim.job(mid).maps_done == 2
    assert all(t.state is not TaskState.READY for t in sim.job(mid).maps)
    sim.run()
    assert sim.finished == {head: JobState.SUCCEEDED}
    assert sim.renamed == {(head, 0): [sim.task(head, REDUCE, 0).committed]}


def test_a_join_reads_two_steps_and_its_maps_are_their_partitions_in_input_order() -> None:
    sim = sim_with("w1", "w2")
    head = sim.submit(n_splits=2, steps=[("users", 2, ["<files>"]), ("orders", 3, ["<files>"]),
                                         ("join", 2, ["users", "orders"])])
    users, orders, join = steps_of(sim, head)
    assert join == head and len(sim.job(join).maps) == 5
    assert sim.job(users).spec.feeds == [m.StepLink(job_id=join, first=0)]
    assert sim.job(orders).spec.feeds == [m.StepLink(job_id=join, first=2)]
    sim.run()
    assert sim.finished == {head: JobState.SUCCEEDED}
    assert sorted(sim.fed) == sorted([(orders, r) for r in range(3)] + [(users, r) for r in range(2)])
    assert sim.task(join, MAP, 4).committed_worker == sim.task(orders, REDUCE, 2).committed_worker


def test_a_straggling_feeding_reduce_gets_a_backup_and_the_attempt_that_commits_feeds_the_next_step() -> None:
    sim = sim_with("w1", "w2", "w3", speculation=True)
    head = sim.submit(n_splits=3, steps=[("count", 3, ["<files>"]), ("top", 1, ["count"])])
    count, top = steps_of(sim, head)
    for worker in ("w1", "w2", "w3"):
        sim.finish(worker)                               # the maps
    sim.hang("w3")                                       # its reduce of step 1 makes no progress
    sim.advance(0.5)
    sim.finish("w1")
    sim.finish("w2")                                     # two of step 1's reduces done in 0.5 s
    slow = next(t for t in sim.job(count).reduces if t.running)
    sim.advance(3.0)
    assert slow.attempts_made == 2 and len(slow.running) == 2
    backup = next(w for w in ("w1", "w2") if sim.assignment(w) is not None)
    while slow.state is not TaskState.DONE:
        sim.finish(backup)                               # the backup commits first: it is attempt 2
    assert slow.committed == 2
    fed = sim.job(top).maps[slow.index]
    assert (fed.committed, fed.committed_worker) == (2, backup)
    sim.hang("w3", False)
    sim.run()
    assert sim.finished == {head: JobState.SUCCEEDED}
    assert sim.fed[(count, slow.index)] == [2]
