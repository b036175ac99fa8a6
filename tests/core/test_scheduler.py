"""The scheduler state machine, one fault case at a time: exact messages and states, invariants every step.

Most cases drive the scheduler through `zmr.testing.SimCluster`, which checks `check_invariants` and its
commit audit after every event it hands the scheduler; a few talk to a bare `Scheduler` to pin down the
exact actions of a single event.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec
import pytest

from zmr.core.durable import Ledger
from zmr.core.scheduler import (
    Action,
    AddressChecked,
    CheckAddress,
    JobFinished,
    Journal,
    Received,
    Scheduler,
    SchedulerParams,
    Send,
    Tick,
)
from zmr.core.state import MAP, REDUCE, JobState, TaskState
from zmr.protocol import messages as m
from zmr.testing import SimCluster, check_invariants, logged, sim_with

T = TypeVar("T")


def sent(actions: list[Action], kind: type[T], peer: bytes | None = None) -> list[T]:
    """The messages of type `kind` among `actions` (to `peer`, if given)."""
    return [a.msg for a in actions
            if isinstance(a, Send) and isinstance(a.msg, kind) and (peer is None or a.peer == peer)]


def peer(sim: SimCluster, worker: str) -> bytes:
    return sim.workers[worker].peer


def addr(sim: SimCluster, worker: str) -> str:
    return sim.workers[worker].addr


def register(peer: bytes, worker_id: str, python: str = "3.11") -> Received:
    return Received(peer, m.Register(worker_id=worker_id, data_addr=f"tcp://{worker_id}:9", python=python,
                                     pid=7, host="h"))


# ---------------------------------------------------------------- registration


def test_a_worker_registers_and_is_welcomed() -> None:
    s = Scheduler(SchedulerParams(python="3.11", heartbeat_interval=0.25))
    actions = s.handle(register(b"p1", "w1"), 5.0)
    check_invariants(s)
    assert [a for a in actions if isinstance(a, Send)] == [
        Send(b"p1", m.Welcome(worker_id="w1", heartbeat_interval=0.25))]
    worker = s.workers["w1"]
    assert (worker.alive, worker.peer, worker.data_addr, worker.last_seen, worker.current) == (
        True, b"p1", "tcp://w1:9", 5.0, None)
    assert s.status(None).workers == [m.WorkerInfo(worker_id="w1", data_addr="tcp://w1:9", state="idle",
                                                   last_heartbeat=5.0, task="")]


def test_a_worker_on_another_python_is_rejected() -> None:
    s = Scheduler(SchedulerParams(python="3.11"))
    actions = s.handle(register(b"p1", "w1", python="3.12"), 5.0)
    check_invariants(s)
    assert [a for a in actions if isinstance(a, Send)] == [
        Send(b"p1", m.Reject(reason="worker runs Python 3.12, the cluster needs 3.11"))]
    assert s.workers == {}


def test_a_new_workers_data_address_is_checked_and_an_unreachable_one_is_refused() -> None:
    s = Scheduler(SchedulerParams(python="3.11", check_addresses=True))
    joined = s.handle(register(b"p1", "w1"), 1.0) + s.handle(register(b"p2", "w2"), 1.0)
    assert [a for a in joined if isinstance(a, CheckAddress)] == [CheckAddress("w1", "tcp://w1:9"),
                                                                   CheckAddress("w2", "tcp://w2:9")]
    s.handle(Received(b"c", m.SubmitJob(spec=SimCluster().spec(n_splits=2, n_reduce=2))), 1.1)
    assert sorted(s.jobs["job-0001"].owned) == ["w1", "w2"]   # checks run off the loop: work is not held up
    assert s.handle(AddressChecked("w1", "tcp://w1:9", ""), 1.2) == []   # reachable: nothing to do
    assert s.handle(AddressChecked("w2", "tcp://elsewhere:9", "refused"), 1.2) == []   # not its address
    refused = s.handle(AddressChecked("w2", "tcp://w2:9", "Connection refused"), 1.3)
    check_invariants(s)
    [reject] = sent(refused, m.Reject, b"p2")
    assert "tcp://w2:9 cannot be reached from the coordinator (Connection refused)" in reject.reason
    assert "worker.advertise" in reject.reason
    assert not s.workers["w2"].alive and sorted(s.jobs["job-0001"].owned) == ["w1"]   # its partitions moved
    [info] = [w for w in s.status(None).workers if w.worker_id == "w2"]
    assert info.state == "unreachable"
    assert s.handle(AddressChecked("w2", "tcp://w2:9", "Connection refused"), 1.4) == []   # once is enough


def test_without_address_checks_nothing_is_asked_of_the_shell() -> None:
    s = Scheduler(SchedulerParams(python="3.11"))
    assert not [a for a in s.handle(register(b"p1", "w1"), 1.0) if isinstance(a, CheckAddress)]


@pytest.mark.parametrize("msg", [
    m.Heartbeat(worker_id="ghost"),
    m.TaskRequest(worker_id="ghost"),
    m.MapDone(worker_id="ghost", attempt=m.AttemptId(job_id="job-0001", kind="map", task=0, number=1),
              records_out=1, bytes_out=1),
    m.TaskFailed(worker_id="ghost", attempt=m.AttemptId(job_id="job-0001", kind="map", task=0, number=1),
                 kind="app", error="x"),
])
def test_an_unknown_worker_is_told_to_register_again(msg: m.WorkerToCoord) -> None:
    s = Scheduler(SchedulerParams(python="3.11"))
    actions = s.handle(Received(b"p9", msg), 1.0)
    check_invariants(s)
    assert [a for a in actions if isinstance(a, Send)] == [Send(b"p9", m.RegisterAgain())]
    assert s.workers == {}


def test_a_worker_speaking_from_another_peer_is_told_to_register_again() -> None:
    s = Scheduler(SchedulerParams(python="3.11"))
    s.handle(register(b"p1", "w1"), 1.0)
    actions = s.handle(Received(b"p2", m.Heartbeat(worker_id="w1")), 1.0)
    check_invariants(s)
    assert [a for a in actions if isinstance(a, Send)] == [Send(b"p2", m.RegisterAgain())]
    assert s.workers["w1"].alive


def test_a_reaped_worker_that_comes_back_registers_again_and_gets_work() -> None:
    sim = sim_with("w1", "w2")
    job = sim.submit(n_splits=3, n_reduce=1)
    sim.isolate("w1")
    sim.advance(sim.liveness_timeout)
    assert not sim.worker_state("w1").alive
    sim.isolate("w1", False)
    actions = sim.heartbeat("w1")
    assert sent(actions, m.RegisterAgain) == [m.RegisterAgain()]
    assert sent(actions, m.Welcome, peer(sim, "w1")) == [m.Welcome(worker_id="w1", heartbeat_interval=0.5)]
    assert sim.worker_state("w1").alive
    sim.finish("w1")                                    # the old attempt's report is stale by now
    sim.run()
    assert sim.finished == {job: JobState.SUCCEEDED}


# ---------------------------------------------------------------- whose worker id is it


def claim(peer: bytes, worker_id: str, *, token: str, key: str = "", data_addr: str = "") -> Received:
    """A Register of `worker_id` by a process holding `token`, authenticated (under CURVE) as `key`."""
    return Received(peer, m.Register(worker_id=worker_id, data_addr=data_addr or f"tcp://{worker_id}:9",
                                     python="3.11", pid=7, host="h", token=token), key)


@pytest.mark.parametrize(("key", "token", "why"), [
    ("KEY-1", "stolen?", "registered by another process"),         # same (shared) worker key, other process
    ("KEY-2", "secret-1", "registered by another key"),            # another host's key, even with the token
    ("", "", "registered by another key"),                         # no key at all
])
def test_a_live_worker_id_claimed_by_someone_else_is_refused_and_the_worker_keeps_it(
        key: str, token: str, why: str) -> None:
    s = Scheduler(SchedulerParams(python="3.11"))
    s.handle(claim(b"p1", "w1", token="secret-1", key="KEY-1"), 1.0)
    actions = s.handle(claim(b"p2", "w1", token=token, key=key), 1.5)   # same address too: no readoption
    check_invariants(s)
    assert sent(actions, m.Reject, b"p2") == [m.Reject(reason=f"worker id w1 is {why}: refused")]
    assert [a for a in actions if isinstance(a, Send) and a.peer != b"p2"] == []
    assert logged(actions, "worker_lost") == []
    assert [log.fields["why"] for log in logged(actions, "worker_id_refused")] == [why]
    worker = s.workers["w1"]
    assert (worker.alive, worker.peer, worker.key, worker.token) == (True, b"p1", "KEY-1", "secret-1")
    beat = s.handle(Received(b"p1", m.Heartbeat(worker_id="w1")), 2.0)
    assert sent(beat, m.RegisterAgain) == []


def test_without_curve_only_the_process_holding_the_token_may_register_its_id_again() -> None:
    s = Scheduler(SchedulerParams(python="3.11"))
    s.handle(claim(b"p1", "w1", token="secret-1"), 1.0)
    refused = s.handle(claim(b"p2", "w1", token="guess"), 1.1)
    assert sent(refused, m.Reject, b"p2") and s.workers["w1"].peer == b"p1"
    back = s.handle(claim(b"p3", "w1", token="secret-1"), 1.2)   # the same process over a new connection
    check_invariants(s)
    assert sent(back, m.Welcome, b"p3") == [m.Welcome(worker_id="w1", heartbeat_interval=0.5)]
    assert logged(back, "worker_back") and s.workers["w1"].peer == b"p3"


def test_a_dead_worker_id_comes_back_only_to_its_own_process() -> None:
    s = Scheduler(SchedulerParams(python="3.11", heartbeat_interval=0.5, heartbeat_liveness=2))
    s.handle(claim(b"p1", "w1", token="secret-1", key="K"), 1.0)
    s.handle(Tick(), 5.0)
    assert not s.workers["w1"].alive
    assert sent(s.handle(claim(b"p2", "w1", token="other", key="K"), 5.1), m.Reject, b"p2")
    assert not s.workers["w1"].alive
    welcome = s.handle(claim(b"p3", "w1", token="secret-1", key="K"), 5.2)
    check_invariants(s)
    assert sent(welcome, m.Welcome, b"p3") and s.workers["w1"].alive


def test_a_restarted_coordinator_holds_an_awaited_worker_id_for_the_key_it_registered_with() -> None:
    s = Scheduler(SchedulerParams(python="3.11"))
    journal = [a.record for a in s.handle(claim(b"p1", "w1", token="secret-1", key="KEY-1"), 1.0)
               if isinstance(a, Journal)]
    spec = SimCluster().spec(n_splits=2, n_reduce=1)
    journal += [a.record for a in s.handle(Received(b"c", m.SubmitJob(spec=spec)), 1.1) if isinstance(a, Journal)]
    for snapshot in (journal, s.snapshot()):
        again = Scheduler(SchedulerParams(python="3.11"))
        again.recover(snapshot, 2.0)
        assert again.workers["w1"].key == "KEY-1" and not again.workers["w1"].peer
        assert sent(again.handle(claim(b"p2", "w1", token="secret-1", key="KEY-2"), 2.1), m.Reject, b"p2")
        back = again.handle(claim(b"p3", "w1", token="secret-1", key="KEY-1"), 2.2)
        check_invariants(again)
        assert sent(back, m.Welcome, b"p3") and again.workers["w1"].token == "secret-1"


# ---------------------------------------------------------------- submitting


@pytest.mark.parametrize(("change", "message"), [
    ({"n_reduce": 0}, "n_reduce must be at least 1, got 0"),
    ({"splits": []}, "the job has no input"),
    ({"output_dir": ""}, "the job has no output directory"),
    ({"app_blob": b""}, "the job has no app"),
    ({"max_attempts": 101}, "max_attempts must be from 1 to 100, got 101"),
    ({"max_attempts": -1}, "max_attempts must be from 1 to 100, got -1"),
])
def test_an_invalid_job_is_refused_and_the_queue_untouched(change: dict[str, object], message: str) -> None:
    sim = sim_with("w1")
    good = sim.spec(n_splits=2, n_reduce=1)
    fields = {f: getattr(good, f) for f in good.__struct_fields__} | change
    replies = sim.client_send(m.SubmitJob(spec=m.JobSpec(**fields)))  # type: ignore[arg-type]  # on purpose
    assert replies == [m.ErrorReply(message=message)]
    assert sim.scheduler.jobs == {}
    assert sim.assignment("w1") is None


def test_a_job_writing_where_a_running_job_writes_is_refused() -> None:
    sim = sim_with("w1")
    spec = sim.spec(output_dir="/out/shared")
    assert sim.client_send(m.SubmitJob(spec=spec)) == [m.JobAccepted(job_id="job-0001")]
    replies = sim.client_send(m.SubmitJob(spec=spec))
    assert replies == [m.ErrorReply(message="output directory /out/shared is in use by a running job")]
    assert list(sim.scheduler.jobs) == ["job-0001"]
    sim.run()
    assert sim.client_send(m.SubmitJob(spec=spec)) == [m.JobAccepted(job_id="job-0002")]


def test_a_job_is_queued_until_a_worker_joins() -> None:
    sim = SimCluster()
    job = sim.submit(n_splits=2, n_reduce=3)
    assert sim.job(job).state is JobState.QUEUED
    assert sim.job(job).owners == []
    sim.advance(5.0)
    assert sim.job(job).state is JobState.QUEUED
    sim.add_worker("w1")
    assert sim.job(job).state is JobState.RUNNING
    assert sim.job(job).started == sim.clock.now
    assert sim.job(job).owners == ["w1", "w1", "w1"]
    setup, assign = sim.received("w1")[-2:]
    assert setup == m.JobSetup(job_id=job, app_blob=b"x", args=[], n_reduce=3, peers=[addr(sim, "w1")], cycle=[0],
                               moved={}, owners_epoch=0, push=True, batch_bytes=1 << 20, window_bytes=8 << 20)
    assert assign == m.AssignMap(attempt=m.AttemptId(job_id=job, kind="map", task=0, number=1),
                                 split=m.InputSplit("in-0", "/in/0", 0, 100))


# ---------------------------------------------------------------- a healthy run


def test_map_tasks_spread_over_two_workers_at_once() -> None:
    sim = sim_with("w1", "w2")
    job = sim.submit(n_splits=4, n_reduce=2)
    assigned = [a.attempt for a in [sim.assignment("w1"), sim.assignment("w2")] if a]
    assert [(a.task, a.number) for a in assigned] == [(0, 1), (1, 1)]
    assert [t.state for t in sim.job(job).maps] == [TaskState.RUNNING] * 2 + [TaskState.READY] * 2
    assert sim.job(job).owners == ["w1", "w2"]


def test_reduces_go_to_their_owners_only_after_every_map_commits() -> None:
    sim = sim_with("w1", "w2")
    job = sim.submit(n_splits=3, n_reduce=2)
    sim.finish("w1")                                       # map 0; w1 takes map 2
    sim.finish("w2")                                       # map 1; nothing left for w2
    assert sim.assignment("w2") is None
    assert [t.state for t in sim.job(job).reduces] == [TaskState.WAITING] * 2
    actions = sim.finish("w1")                             # map 2, the last one
    r0, r1 = sent(actions, m.AssignReduce, peer(sim, "w1")), sent(actions, m.AssignReduce, peer(sim, "w2"))
    assert r0 == [m.AssignReduce(attempt=m.AttemptId(job_id=job, kind="reduce", task=0, number=1),
                                 output_dir=sim.job(job).spec.output_dir, n_maps=3, commits_base=0, commits=[])]
    assert r1 == [m.AssignReduce(attempt=m.AttemptId(job_id=job, kind="reduce", task=1, number=1),
                                 output_dir=sim.job(job).spec.output_dir, n_maps=3, commits_base=0, commits=[])]


def test_a_reduce_hears_where_the_map_output_it_lacks_is_kept_when_it_asks() -> None:
    sim = sim_with("w1", "w2")
    job = sim.submit(n_splits=3, n_reduce=2)
    for _ in range(3):
        sim.finish(sim.busy()[0])
    reduce = next(a.attempt for w in ("w1", "w2") if isinstance(a := sim.assignment(w), m.AssignReduce)
                  and a.attempt.task == 0)
    owner = sim.job(job).owners[0]
    answer = sim.send(owner, m.LocateMaps(worker_id=owner, attempt=reduce, runs=[(2, 3), (0, 1), (2, 3), (7, 9)]))
    committed = [sim.task(job, MAP, i).committed_worker for i in (2, 0)]
    [located] = sent(answer, m.MapLocations, peer(sim, owner))
    held: dict[str, list[int]] = {}
    for index, worker in zip((2, 0), committed, strict=True):
        held.setdefault(addr(sim, worker or ""), []).append(index)
    assert located.attempt == reduce and dict(zip(located.peers, located.maps, strict=True)) == {
        a: sorted(maps) for a, maps in held.items()}   # each map once, each address once; no map 7
    assert (located.counts, located.nowhere, located.commits) == ([], [], {})
    other = next(w for w in ("w1", "w2") if w != owner)
    stale = sim.send(other, m.LocateMaps(worker_id=other, attempt=reduce, runs=[(0, 1)]))   # not its attempt
    assert sent(stale, m.MapLocations) == []


def test_a_reduce_that_asks_about_every_map_hears_how_many_each_holder_keeps_not_which() -> None:
    """A take-over asks about every map, as one run: the answer counts the maps per holder, O(workers)
    however many maps, and each holder is then asked for all of them. Maps that no live worker keeps
    are named, with no committed attempt while they are made again."""
    sim = sim_with("w1", "w2", "w3")
    job = sim.submit(n_splits=9, n_reduce=3)
    for _ in range(9):
        sim.finish(sim.busy()[0])
    reduce = sim.assignment("w1")
    assert isinstance(reduce, m.AssignReduce)
    every = [(0, 9)]
    [located] = sent(sim.send("w1", m.LocateMaps(worker_id="w1", attempt=reduce.attempt, runs=every)), m.MapLocations)
    held = {w: sorted(sim.job(job).maps_held[w]) for w in ("w1", "w2", "w3")}
    assert dict(zip(located.peers, located.counts, strict=True)) == {addr(sim, w): len(held[w]) for w in held}
    assert (located.maps, located.nowhere, located.commits) == ([], [], {})
    assert m.peer_requests(located, every) == [m.PeerRequest(a, every, n)
                                               for a, n in zip(located.peers, located.counts, strict=True)]
    sim.kill("w3")
    sim.advance(sim.liveness_timeout)                    # w3's maps are made again
    assert sim.assignment("w1") == reduce                # its input was pushed: it runs on
    [after] = sent(sim.send("w1", m.LocateMaps(worker_id="w1", attempt=reduce.attempt, runs=every)), m.MapLocations)
    assert addr(sim, "w3") not in after.peers and after.nowhere == held["w3"]
    assert after.commits == {i: 0 for i in held["w3"]}


def test_an_answer_about_every_map_agrees_with_the_one_built_map_by_map() -> None:
    """Asking about every map takes a path that never steps over the maps; after a death in the reduce
    phase (its maps being made again) and with a map committed by a second attempt, it names the same
    holders with the same counts, the same maps nowhere and the same commits as the general one."""
    sim = sim_with("w1", "w2", "w3", "w4")
    job = sim.submit(n_splits=12, n_reduce=4)
    for _ in range(3):
        for worker in ("w1", "w2", "w3", "w4"):
            sim.finish(worker)                          # the maps; then reduce i on worker i+1
    sim.kill("w4")                                      # it holds maps 3, 7 and 11: they are made again
    sim.advance(sim.liveness_timeout)
    sim.finish("w1")                                    # reduce 0 commits; w1 makes one of them again ...
    assert isinstance(sim.assignment("w1"), m.AssignMap)
    sim.finish("w1")                                    # ... and commits it: attempt 2
    state = sim.job(job)
    assert state.reduce_phase and state.remaking and state.commit_log
    reduce = sim.assignment("w2")
    assert isinstance(reduce, m.AssignReduce)
    scheduler = sim.scheduler
    fast = scheduler._every_location(reduce.attempt, state, 0)
    slow = scheduler._locations(reduce.attempt, state, set(range(12)), 1, 0)
    every = [(0, 12)]
    assert sorted(m.peer_requests(fast, every)) == sorted(m.peer_requests(slow, every))
    assert (fast.nowhere, fast.commits) == (slow.nowhere, slow.commits)
    assert fast.nowhere == sorted(state.remaking) and set(fast.commits) >= {i for i, _ in state.commit_log}


def test_map_locations_name_only_the_commits_the_asking_attempts_table_lacks() -> None:
    """Reduce 0 began on w1 before map 1 was made again (attempt 2): its answer names that commit. Reduce 1,
    assigned since, got it in its AssignReduce, so its answer names nothing."""
    sim = sim_with("w1", "w2", "w3")
    sim.submit(n_splits=3, n_reduce=2)                  # owners w1, w2; map i on worker i+1
    for worker in ("w1", "w2", "w3"):
        sim.finish(worker)                              # reduces 0, 1 on w1, w2; w3 is idle
    first = sim.assignment("w1")
    assert isinstance(first, m.AssignReduce)
    sim.kill("w2")
    sim.advance(sim.liveness_timeout)                   # map 1 is made again on w3 ...
    sim.finish("w3")                                    # ... and committed; w3 takes over partition 1
    later = sim.assignment("w3")
    assert isinstance(later, m.AssignReduce) and later.commits == [(1, 2)]
    every = [(0, 3)]
    for worker, assign, commits in (("w1", first, {1: 2}), ("w3", later, {})):
        [located] = sent(sim.send(worker, m.LocateMaps(worker_id=worker, attempt=assign.attempt, runs=every)),
                         m.MapLocations)
        assert (located.commits, located.nowhere) == (commits, [])


def _first_reduce_after_map_1_ran_twice(n_reduce: int) -> tuple[SimCluster, str, m.AssignReduce]:
    """One worker, three maps; map 1's first attempt stalls, so its second commits: the commit log holds
    one change, and the first reduce's assignment carries it."""
    sim = sim_with("w1", task_timeout=4.0)
    job = sim.submit(n_splits=3, n_reduce=n_reduce)
    sim.finish("w1")                                    # map 0, attempt 1
    sim.hang("w1")
    sim.advance(4.0)                                    # map 1's attempt 1 made no progress: given up
    sim.hang("w1", False)
    sim.finish("w1")                                    # map 2
    sim.finish("w1")                                    # map 1, attempt 2
    first = sim.assignment("w1")
    assert isinstance(first, m.AssignReduce) and (first.commits_base, first.commits) == (0, [(1, 2)])
    return sim, job, first


def test_a_map_found_committed_as_attempt_1_after_attempt_2_reaches_the_commit_tables() -> None:
    """Map 0 commits as attempt 2 (its first output was reported lost), but attempt 2's output is gone when the
    coordinator restarts, and the worker that comes back holds attempt 1's: map 0 is committed as attempt 1
    again. A worker's table takes attempt 1 for a map it has no entry for, so the log must say 1 once it said
    2, or the reduce would look for attempt 2 (found by the scheduler property test)."""
    sim = sim_with("w1")
    job = sim.submit(n_splits=1, n_reduce=1)
    sim.finish("w1", commit=False)                      # map 0.1 commits; reduce 0.1 starts
    sim.fail("w1", kind="missing_data", missing=[0])    # ... and cannot get map 0's output: map 0.2 runs
    running = sim.assignment("w1")
    assert isinstance(running, m.AssignMap) and running.attempt.number == 2
    sim.send("w1", m.MapDone(worker_id="w1", attempt=running.attempt, records_out=1, bytes_out=1))
    assert sim.task(job, MAP, 0).committed == 2        # reported done, though w1 holds only 0.1's output
    sim.restart_coordinator()                            # the SimCluster audits the table sent on the way
    assert sim.task(job, MAP, 0).committed == 1
    reduce = sim.assignment("w1")
    assert isinstance(reduce, m.AssignReduce) and reduce.commits == [(0, 2), (0, 1)]


def test_each_worker_gets_each_change_of_the_commit_table_once() -> None:
    sim, job, first = _first_reduce_after_map_1_ran_twice(n_reduce=2)
    answer = sim.send("w1", m.LocateMaps(worker_id="w1", attempt=first.attempt, runs=[(1, 3)]))
    [located] = sent(answer, m.MapLocations)
    assert (located.peers, located.counts, located.commits) == ([addr(sim, "w1")], [2], {})   # its table has it
    sim.finish("w1")
    second = sim.assignment("w1")
    assert isinstance(second, m.AssignReduce) and (second.commits_base, second.commits) == (1, [])
    sim.run()
    assert sim.finished == {job: JobState.SUCCEEDED}


@pytest.mark.parametrize(("kind", "base"), [("missing_data", 1), ("internal", 0)])
def test_after_a_failed_reduce_the_commit_table_is_sent_whole_only_if_it_may_be_out_of_step(
        kind: m.FailureKind, base: int) -> None:
    """w1's table holds map 1's attempt 2 (one change). Missing data says nothing of the table: the next
    assignment carries only the changes since (map 0's attempt 2). Any other failure, such as the
    worker's report that its table is out of step, gets the whole table again."""
    sim, job, _ = _first_reduce_after_map_1_ran_twice(n_reduce=1)
    if kind == "missing_data":
        sim.fail("w1", kind=kind, error="no output of map 0", missing=[0])
        sim.finish("w1")                                # map 0, attempt 2
    else:
        sim.fail("w1", kind=kind, error="the commit table here is at 0, the assignment builds on 1")
        sim.advance(5.0)                                # past the retry backoff
    second = sim.assignment("w1")
    expected = [(0, 2)] if kind == "missing_data" else [(1, 2)]
    assert isinstance(second, m.AssignReduce) and (second.commits_base, second.commits) == (base, expected)
    sim.run()
    assert sim.finished == {job: JobState.SUCCEEDED}


def test_a_healthy_run_does_each_task_exactly_once() -> None:
    sim = sim_with("w1", "w2", "w3")
    job = sim.submit(n_splits=7, n_reduce=4)
    sim.run()
    state = sim.job(job)
    assert state.state is JobState.SUCCEEDED
    assert [t.attempts_made for t in state.maps + state.reduces] == [1] * 11
    assert (state.maps_done, state.reduces_done) == (7, 4)
    assert sim.renamed == {(job, r): [1] for r in range(4)}
    assert sim.finished == {job: JobState.SUCCEEDED}
    for worker in sim.workers.values():
        assert not [msg for msg in worker.inbox if isinstance(msg, m.CancelTask)]
        assert [msg for msg in worker.inbox if isinstance(msg, m.JobEnded)] == [m.JobEnded(job_id=job)]
    assert state.bytes_shuffled == 7 * 100
    assert state.records_out == 4 * 7


def test_the_last_commit_ends_the_job_with_job_finished() -> None:
    sim = sim_with("w1")
    job = sim.submit(n_splits=1, n_reduce=1)
    sim.finish("w1")
    sim.finish("w1", commit=False)
    actions = sim.commit("w1")
    spec = sim.job(job).spec
    assert [a for a in actions if isinstance(a, JobFinished)] == [
        JobFinished(job, JobState.SUCCEEDED, spec.output_dir, 1)]
    assert sent(actions, m.JobEnded) == [m.JobEnded(job_id=job)]
    assert sim.job(job).finished == sim.clock.now


# ---------------------------------------------------------------- stale and foreign reports


def test_a_task_request_that_crossed_an_assignment_does_not_abandon_it() -> None:
    sim = sim_with("w1")
    job = sim.submit(n_splits=2, n_reduce=1)
    for stale in (None, m.AttemptId(job_id=job, kind=MAP, task=1, number=1)):   # idle, or an older one
        actions = sim.send("w1", m.TaskRequest(worker_id="w1", finished=stale))
        assert logged(actions, "attempt_lost") == [] and len(logged(actions, "stale_task_request")) == 1
        assert sim.task(job, MAP, 0).running.keys() == {1}
    sim.run()
    assert sim.finished == {job: JobState.SUCCEEDED}


def test_a_stale_map_done_from_an_old_attempt_is_ignored() -> None:
    sim = sim_with("w1")
    job = sim.submit(n_splits=1, n_reduce=1)
    gave_up = m.AttemptId(job_id=job, kind=MAP, task=0, number=1)
    sim.send("w1", m.TaskRequest(worker_id="w1", finished=gave_up))   # the worker gave attempt 1 up; 2 follows
    assert sim.assignment("w1") == m.AssignMap(attempt=m.AttemptId(job_id=job, kind="map", task=0, number=2),
                                               split=sim.job(job).spec.splits[0])
    actions = sim.send("w1", m.MapDone(worker_id="w1", attempt=m.AttemptId(job_id=job, kind="map", task=0, number=1),
                                       records_out=5,
                                       bytes_out=5))
    assert [a for a in actions if isinstance(a, Send)] == []
    assert [log.fields["attempt"] for log in logged(actions, "stale_report")] == [1]
    task = sim.task(job, MAP, 0)
    assert (task.state, list(task.running), task.committed) == (TaskState.RUNNING, [2], None)
    sim.finish("w1")
    assert (task.state, task.committed) == (TaskState.DONE, 2)


def test_a_report_from_a_worker_that_does_not_run_the_attempt_is_ignored() -> None:
    sim = sim_with("w1", "w2")
    job = sim.submit(n_splits=2, n_reduce=1)
    for msg in [m.MapDone(worker_id="w2", attempt=m.AttemptId(job_id=job, kind="map", task=0, number=1),
                          records_out=1, bytes_out=1),
                m.TaskFailed(worker_id="w2", attempt=m.AttemptId(job_id=job, kind="map", task=0, number=1),
                             kind="app", error="x")]:
        actions = sim.send("w2", msg)
        assert [a for a in actions if isinstance(a, Send)] == []
        assert logged(actions, "stale_report")
    assert sim.task(job, MAP, 0).running.keys() == {1}
    assert sim.task(job, MAP, 0).running[1].worker == "w1"
    assert sim.worker_state("w2").current == m.AttemptId(job_id=job, kind=MAP, task=1, number=1)


def test_duplicate_reports_change_nothing() -> None:
    sim = sim_with("w1")
    job = sim.submit(n_splits=1, n_reduce=1)
    sim.finish("w1")
    done = sim.workers["w1"].reports[-2]
    assert isinstance(done, m.MapDone)
    actions = sim.send("w1", done)
    assert [a for a in actions if isinstance(a, Send)] == []
    assert sim.job(job).maps_done == 1
    sim.run()
    assert sim.finished == {job: JobState.SUCCEEDED}


# ---------------------------------------------------------------- losing workers


def test_worker_death_mid_map_reruns_the_task_elsewhere() -> None:
    sim = sim_with("w1", "w2", "w3")
    job = sim.submit(n_splits=3, n_reduce=1)           # partition 0 is w1's
    sim.kill("w2")                                      # dies running map 1
    sim.finish("w1")
    sim.finish("w3")
    assert sim.task(job, MAP, 1).state is TaskState.RUNNING
    actions = sim.advance(sim.liveness_timeout)
    assert [log.fields["worker"] for log in logged(actions, "worker_lost")] == ["w2"]
    assert [(log.fields["task"], log.fields["attempt"]) for log in logged(actions, "attempt_lost")] == [
        ("map-1", 1)]
    assert sent(actions, m.OwnersUpdate) == []          # w2 owned no partition
    map1 = sim.task(job, MAP, 1)
    assert (map1.state, map1.worker_losses, map1.app_failures) == (TaskState.RUNNING, 1, 0)
    assert [(w, a.attempt.task, a.attempt.number) for w in ("w1", "w3") if (a := sim.assignment(w))] == [("w1", 1, 2)]
    sim.run()
    assert sim.finished == {job: JobState.SUCCEEDED}
    assert sim.task(job, MAP, 1).committed == 2


def test_owner_death_moves_partitions_and_reruns_maps_committed_on_it() -> None:
    sim = sim_with("w1", "w2", "w3")
    job = sim.submit(n_splits=3, n_reduce=3)           # owners w1, w2, w3; maps 0, 1, 2 on w1, w2, w3
    sim.finish("w1")
    sim.finish("w2")
    sim.kill("w1")
    actions = sim.advance(sim.liveness_timeout)
    state = sim.job(job)
    assert state.owners == ["w2", "w2", "w3"]
    update = m.OwnersUpdate(job_id=job, base_epoch=0, owners_epoch=1, moves={0: addr(sim, "w2")})
    assert sent(actions, m.OwnersUpdate, peer(sim, "w2")) == [update]
    assert sent(actions, m.OwnersUpdate, peer(sim, "w3")) == [update]
    assert sent(actions, m.OwnersUpdate, peer(sim, "w1")) == []
    map0 = sim.task(job, MAP, 0)
    assert (map0.state, map0.committed, state.maps_done) == (TaskState.RUNNING, None, 1)
    assert sim.assignment("w2") == m.AssignMap(attempt=m.AttemptId(job_id=job, kind="map", task=0, number=2),
                                               split=state.spec.splits[0])
    assert sim.task(job, MAP, 1).committed_worker == "w2"
    sim.run()
    assert sim.finished == {job: JobState.SUCCEEDED}
    assert [t.attempts_made for t in state.maps] == [2, 1, 1]
    assert [t.attempts_made for t in state.reduces] == [1, 1, 1]


def test_owner_death_during_reduce_keeps_running_reduces_and_moves_the_rest_to_pull_while_maps_run_again() -> None:
    """The dead owner's partition is ready at once on its new owner, while map 0 (whose output died with
    w1) runs again: it pulls what the live mappers kept, fails for map 0 alone, blamed on nobody, and
    runs again once map 0 has."""
    sim = sim_with("w1", "w2", "w3")
    job = sim.submit(n_splits=3, n_reduce=3)
    for worker in ("w1", "w2", "w3"):
        sim.finish(worker)                              # map i on worker i+1, then reduce i there
    assert [sim.task(job, REDUCE, r).state for r in range(3)] == [TaskState.RUNNING] * 3
    sim.kill("w1")
    sim.advance(sim.liveness_timeout)
    state = sim.job(job)
    assert state.maps_done == 2 and state.remaking == {0}   # map 0's output lived on w1
    assert [t.state for t in state.reduces] == [TaskState.READY, TaskState.RUNNING, TaskState.RUNNING]
    heir = state.owners[0]
    other = ({"w2", "w3"} - {heir}).pop()
    sim.finish(other)                                   # its own reduce; then map 0 again (maps made again first)
    assert sim.assignment(other) == m.AssignMap(attempt=m.AttemptId(job, "map", 0, 2), split=state.spec.splits[0])
    sim.finish(heir)                                    # its own reduce; then partition 0's, while map 0 runs
    reduce = sim.assignment(heir)
    assert isinstance(reduce, m.AssignReduce) and reduce.attempt == m.AttemptId(job, "reduce", 0, 2)
    [located] = sent(sim.send(heir, m.LocateMaps(worker_id=heir, attempt=reduce.attempt, runs=[(0, 3)])),
                     m.MapLocations)
    assert located.nowhere == [0]                       # being made again; maps 1 and 2 are pulled
    sim.send(heir, m.TaskFailed(worker_id=heir, attempt=reduce.attempt, kind="missing_data",
                                error="no output of 1 map", missing_maps=[0]))
    assert state.reduces[0].state is TaskState.WAITING and state.lacking == {0: {0}}
    assert state.reduces[0].worker_losses == 1         # its attempt on w1; map 0 lost with w1 is not counted
    sim.run()
    assert sim.finished == {job: JobState.SUCCEEDED}
    assert [t.attempts_made for t in state.maps] == [2, 1, 1]
    assert [t.attempts_made for t in state.reduces] == [3, 1, 1]   # lost with w1, missing map 0, done
    assert sim.renamed == {(job, 0): [3], (job, 1): [1], (job, 2): [1]}


def _heir_of_a_dead_owner_with_copies() -> tuple[SimCluster, str, str, m.AssignReduce]:
    """Three workers with `replicate`; w1 dies in the reduce phase; its partition 0's new owner, done with
    its own reduce, is given partition 0's at once, ahead of map 0, which runs again."""
    sim = sim_with("w1", "w2", "w3", replicate=True)
    job = sim.submit(n_splits=3, n_reduce=3)           # owners w1, w2, w3; maps 0, 1, 2 on w1, w2, w3
    for worker in ("w1", "w2", "w3"):
        sim.finish(worker)                              # map i on worker i+1, then reduce i there
    sim.kill("w1")
    sim.advance(sim.liveness_timeout)
    state = sim.job(job)
    assert state.remaking == {0} and state.copied == {0: ("w2", {0: 1})}
    assert state.reduces[0].state is TaskState.READY   # not waiting for map 0
    heir = state.owners[0]
    sim.finish(heir)                                    # its own reduce; then partition 0's
    reduce = sim.assignment(heir)
    assert isinstance(reduce, m.AssignReduce) and reduce.attempt.task == 0
    return sim, job, heir, reduce


def test_with_second_copies_a_dead_owners_partition_runs_at_once_on_the_copies_while_its_maps_run_again() -> None:
    """With `replicate`, w1's map pushed its output for partition 0, which w1 owns, to the next
    partition's owner (w2) as well. When w1 dies in the reduce phase, map 0 runs again (later deaths may
    need it), but partition 0's new owner does not wait for it: it is sent to w2 for map 0's second copy,
    as the attempt that copy is of, and the reduce commits with it."""
    sim, job, heir, reduce = _heir_of_a_dead_owner_with_copies()
    state = sim.job(job)
    [located] = sent(sim.send(heir, m.LocateMaps(worker_id=heir, attempt=reduce.attempt, runs=[(0, 3)])),
                     m.MapLocations)
    assert (located.replicas, located.replica_runs, located.nowhere) == ([addr(sim, "w2")], [[(0, 1)]], [])
    assert located.commits == {0: 1}                    # the attempt the copy is of, not "none committed"
    assert m.peer_requests(located, [(0, 3)])[0] == m.PeerRequest(addr(sim, "w2"), [(0, 1)], 1, received=True)
    while sim.task(job, REDUCE, 0).state is not TaskState.DONE:
        sim.finish(heir)                                # it pulls the copy, is granted the commit, renames
    assert sim.task(job, REDUCE, 0).attempts_made == 2
    assert sim.task(job, MAP, 0).state is not TaskState.DONE   # made again, but nobody waited for it
    sim.run()
    assert sim.finished == {job: JobState.SUCCEEDED}
    assert [t.attempts_made for t in state.reduces] == [2, 1, 1]


def test_with_second_copies_that_are_not_there_the_partition_waits_for_the_maps_made_again() -> None:
    """The replica lacked the copy (a push lost, an owner table that moved): the reduce fails for that map,
    the note is dropped so no later attempt is sent there again, and the partition waits for the map."""
    sim, job, heir, _ = _heir_of_a_dead_owner_with_copies()
    sim.fail(heir, kind="missing_data", missing=[0])
    state = sim.job(job)
    assert 0 not in state.copied
    assert state.reduces[0].state is TaskState.WAITING and state.lacking[0] == {0}
    sim.run()
    assert sim.finished == {job: JobState.SUCCEEDED}
    assert sim.task(job, MAP, 0).attempts_made == 2 and sim.task(job, REDUCE, 0).attempts_made == 3


def test_with_second_copies_whose_holder_died_too_the_partition_is_not_sent_to_them() -> None:
    """Copies on a dead worker are no copies: the partition's reduce is told its maps are nowhere, as
    without them, and waits for them to run again."""
    sim = sim_with("w1", "w2", "w3", "w4", replicate=True)
    job = sim.submit(n_splits=4, n_reduce=4)
    for worker in ("w1", "w2", "w3", "w4"):
        sim.finish(worker)                              # map i on worker i+1, then reduce i there
    sim.kill("w1")
    sim.kill("w2")                                      # the replica of w1's partition 0
    sim.advance(sim.liveness_timeout)
    state = sim.job(job)
    assert state.remaking == {0, 1}
    assert state.copied[0][0] == "w2" and state.copied[1][0] == "w3"   # w2 died after w1 was found dead
    assert state.reduces[0].state is state.reduces[1].state is TaskState.READY
    heir = state.owners[0]
    for _ in range(4):                                  # its own reduce and the maps made again go first
        current = sim.assignment(heir)
        if isinstance(current, m.AssignReduce) and current.attempt.task == 0:
            break
        sim.finish(heir)
    else:
        raise AssertionError(f"{heir} was never given partition 0")
    [located] = sent(sim.send(heir, m.LocateMaps(worker_id=heir, attempt=current.attempt, runs=[(0, 4)])),
                     m.MapLocations)
    assert located.replicas == [] and addr(sim, "w2") not in located.peers
    assert set(located.nowhere) == state.remaking and state.remaking
    sim.run()
    assert sim.finished == {job: JobState.SUCCEEDED}
    assert sorted(sim.renamed) == [(job, r) for r in range(4)]


def test_with_every_worker_gone_the_job_waits_for_a_new_one() -> None:
    sim = sim_with("w1")
    job = sim.submit(n_splits=2, n_reduce=2)
    sim.finish("w1")
    sim.kill("w1")
    sim.advance(sim.liveness_timeout)
    assert sim.job(job).state is JobState.RUNNING
    assert sim.job(job).owners == ["w1", "w1"]           # nobody to move them to
    sim.add_worker("w2")
    assert sim.job(job).owners == ["w2", "w2"]
    map0 = sim.task(job, MAP, 0)
    assert (map0.state, map0.committed, sim.job(job).maps_done) == (TaskState.READY, None, 0)  # died with w1
    sim.run()
    assert sim.finished == {job: JobState.SUCCEEDED}


def test_a_live_worker_registering_again_without_its_task_loses_only_the_task() -> None:
    sim = sim_with("w1", "w2")
    job = sim.submit(n_splits=2, n_reduce=1)
    actions = sim.send("w2", m.Register(worker_id="w2", data_addr=addr(sim, "w2"), python="3.11", pid=2,
                                        host="h"))
    assert logged(actions, "worker_lost") == []
    assert [log.fields["why"] for log in logged(actions, "attempt_lost")] == ["the worker no longer runs it"]
    assert sim.task(job, MAP, 1).worker_losses == 1
    assert sim.worker_state("w2").alive


def test_a_live_worker_registering_again_with_its_task_keeps_it() -> None:
    sim = sim_with("w1", "w2")
    job = sim.submit(n_splits=2, n_reduce=1)
    running = m.AttemptId(job_id=job, kind=MAP, task=1, number=1)
    actions = sim.send("w2", m.Register(worker_id="w2", data_addr=addr(sim, "w2"), python="3.11", pid=2,
                                        host="h", running=running))
    assert logged(actions, "attempt_lost") == [] and logged(actions, "worker_lost") == []
    assert sim.task(job, MAP, 1).running.keys() == {1}
    sim.run()
    assert sim.finished == {job: JobState.SUCCEEDED}


def test_a_new_life_of_a_worker_drops_what_its_old_life_held() -> None:
    sim = sim_with("w1", "w2")
    job = sim.submit(n_splits=2, n_reduce=1)
    holding = m.Holding(job_id=job, maps=[(1, 1)], partitions=[0])
    actions = sim.send("w2", m.Register(worker_id="w2", data_addr="tcp://127.0.0.1:1", python="3.11", pid=9,
                                        host="h", holdings=[holding]))
    assert [log.fields["why"] for log in logged(actions, "worker_lost")] == ["registered again"]
    assert m.JobEnded(job_id=job) in [a.msg for a in actions if isinstance(a, Send)]



def test_partition_moves_are_announced_once_per_tick_on_top_of_the_epoch_the_workers_last_heard() -> None:
    """w2 comes back as a new life (another address): its partition moves at once, in the journal, but the
    job's other workers hear of it on the next tick, in one OwnersUpdate made from the epoch they know."""
    sim = sim_with("w1", "w2", "w3")
    job = sim.submit(n_splits=3, n_reduce=3)           # owners w1, w2, w3
    actions = sim.send("w2", m.Register(worker_id="w2", data_addr="tcp://127.0.0.1:1", python="3.11", pid=9,
                                        host="h"))
    assert sim.job(job).owners_epoch == 1 and sim.job(job).owners[1] != "w2"
    assert sent(actions, m.OwnersUpdate) == []
    new = sim.job(job).owners[1]
    update = m.OwnersUpdate(job_id=job, base_epoch=0, owners_epoch=1, moves={1: addr(sim, new)})
    actions = sim.tick()
    assert sent(actions, m.OwnersUpdate, peer(sim, "w1")) == [update]
    assert sent(actions, m.OwnersUpdate, peer(sim, "w3")) == [update]
    assert sent(sim.tick(), m.OwnersUpdate) == []    # nothing moved since
    sim.run()
    assert sim.finished == {job: JobState.SUCCEEDED}


def test_a_lost_worker_is_announced_to_every_running_reduce_and_those_holding_its_pushed_output_carry_on(
        ) -> None:
    sim = sim_with("w1", "w2", "w3")
    job = sim.submit(n_splits=3, n_reduce=3)
    for worker in ("w1", "w2", "w3"):
        sim.finish(worker)                              # map i on worker i+1, then reduce i there
    sim.kill("w1")
    actions = sim.advance(sim.liveness_timeout)
    assert [(a.peer, a.msg) for a in actions if isinstance(a, Send) and isinstance(a.msg, m.SourcesLost)] == [
        (peer(sim, "w2"), m.SourcesLost(attempt=m.AttemptId(job_id=job, kind="reduce", task=1, number=1),
                                        addr=addr(sim, "w1"))),
        (peer(sim, "w3"), m.SourcesLost(attempt=m.AttemptId(job_id=job, kind="reduce", task=2, number=1),
                                        addr=addr(sim, "w1")))]
    assert logged(actions, "task_failed") == []         # map 0 pushed its output to them: nothing is missing
    assert [sim.task(job, REDUCE, r).running.keys() for r in (1, 2)] == [{1}, {1}]
    sim.run()
    assert sim.finished == {job: JobState.SUCCEEDED}
    assert [t.attempts_made for t in sim.job(job).reduces] == [2, 1, 1]


def test_a_lost_worker_is_not_announced_to_workers_running_maps_or_to_nobody() -> None:
    sim = sim_with("w1", "w2", "w3")
    sim.submit(n_splits=3, n_reduce=1)                  # every worker runs a map
    sim.kill("w2")
    actions = sim.advance(sim.liveness_timeout)
    assert logged(actions, "worker_lost") and sent(actions, m.SourcesLost) == []


def test_a_reduce_pulling_from_a_worker_declared_dead_fails_at_once_and_runs_again_after_its_maps() -> None:
    """Partition 3 moved off its busy owner w1 to idle w3, which pulls every map's kept copy; w2 dies.

    Without word from the coordinator, w3 would wait for pulls from a dead peer until the task timeout
    took its attempt for a stalled app. Told, it gives up on map 1 at once: a lost input, not a failure,
    and not a loss held against reduce 3 either (w2's death explains it); it waits for map 1 alone.
    """
    sim = sim_with("w1", "w2", "w3", min_elapsed=1.0, task_timeout=30.0)
    job = sim.submit(n_splits=3, n_reduce=4)           # owners w1, w2, w3, w1; map i on worker i+1
    for worker in ("w1", "w2", "w3"):
        sim.finish(worker)                              # then reduce i on worker i+1
    sim.hang("w1")                                      # reduce 0 runs long; partition 3 waits behind it
    sim.finish("w3")
    sim.kill("w2")                                      # mid reduce 1
    actions = sim.advance(1.0)
    assert [(log.fields["partition"], log.fields["worker"]) for log in logged(actions, "partition_moved")] == [
        (3, "w3")]
    assert sim.assignment("w3") == m.AssignReduce(attempt=m.AttemptId(job_id=job, kind="reduce", task=3, number=1),
                                                  output_dir="/out/1", n_maps=3, commits_base=0, commits=[])
    actions = sim.advance(sim.liveness_timeout)
    assert [log.fields["worker"] for log in logged(actions, "worker_lost")] == ["w2"]
    assert sent(actions, m.SourcesLost, peer(sim, "w3")) == [
        m.SourcesLost(attempt=m.AttemptId(job_id=job, kind="reduce", task=3, number=1), addr=addr(sim, "w2"))]
    assert [(log.fields["task"], log.fields["kind"]) for log in logged(actions, "task_failed")] == [
        ("reduce-3", "missing_data")]
    reduce3 = sim.task(job, REDUCE, 3)
    assert (reduce3.state, reduce3.worker_losses, reduce3.app_failures) == (TaskState.WAITING, 0, 0)
    assert sim.job(job).lacking == {3: {1}}
    assert sim.task(job, REDUCE, 1).state is TaskState.READY   # moved off w2: its new owner pulls meanwhile
    assert sim.task(job, MAP, 1).state is TaskState.RUNNING   # made again: its kept copy died with w2
    sim.hang("w1", False)
    sim.run()
    assert sim.finished == {job: JobState.SUCCEEDED}
    assert [t.attempts_made for t in sim.job(job).maps] == [1, 2, 1]
    assert [t.app_failures for t in sim.job(job).reduces] == [0, 0, 0, 0]


def test_missing_data_reported_late_does_not_undo_map_output_committed_after_the_attempt_began() -> None:
    """Map 1 died with w2 and was made again while w3's stalled pull went on; w3's report that it could
    not get map 1 is about the old output, so the new one stands and nothing runs a third time. A
    worker's death explains the report, so it is not held against reduce 3 either."""
    sim = sim_with("w1", "w2", "w3", min_elapsed=1.0, task_timeout=30.0)
    job = sim.submit(n_splits=3, n_reduce=4)
    for worker in ("w1", "w2", "w3"):
        sim.finish(worker)
    sim.hang("w1")
    sim.finish("w3")
    sim.kill("w2")
    sim.advance(1.0)                                    # w3 takes over partition 3 and pulls
    assert isinstance(sim.assignment("w3"), m.AssignReduce)
    sim.hang("w3")                                      # its pull is stuck: it hears nothing for now
    sim.advance(sim.liveness_timeout)
    sim.hang("w1", False)
    sim.finish("w1")                                    # reduce 0 commits; w1 makes map 1 again
    assert sim.assignment("w1") == m.AssignMap(attempt=m.AttemptId(job_id=job, kind="map", task=1, number=2),
                                               split=sim.job(job).spec.splits[1])
    sim.finish("w1")
    map1 = sim.task(job, MAP, 1)
    assert (map1.state, map1.committed) == (TaskState.DONE, 2)
    sim.hang("w3", False)
    sim.fail("w3", kind="missing_data", error="no output of maps [1]", missing=[1])
    assert (map1.state, map1.committed) == (TaskState.DONE, 2)
    assert sim.task(job, REDUCE, 3).worker_losses == 0
    assert sim.task(job, REDUCE, 3).state in (TaskState.READY, TaskState.RUNNING)   # map 1 is there: no wait
    sim.run()
    assert sim.finished == {job: JobState.SUCCEEDED}
    assert [t.attempts_made for t in sim.job(job).maps] == [1, 2, 1]


def test_time_the_coordinator_stood_still_is_not_held_against_its_workers() -> None:
    """Ticks 10 s apart (liveness is 3 s): the coordinator did not listen, so no worker is lost for it and
    no attempt is taken for stalled; a worker that stays silent after the coordinator is back is lost."""
    sim = sim_with("w1", "w2", task_timeout=4.0)
    sim.submit(n_splits=2, n_reduce=1)
    sim.tick()
    sim.clock.advance(10.0)
    actions = sim.tick()
    assert logged(actions, "worker_lost") == [] and logged(actions, "attempt_lost") == []
    assert [log.fields["seconds"] for log in logged(actions, "coordinator_stalled")] == [10.0]
    assert sorted(sim.busy()) == ["w1", "w2"]
    sim.kill("w2")
    actions = sim.advance(sim.liveness_timeout)          # ticks at the usual pace: w2's silence counts again
    assert [log.fields["worker"] for log in logged(actions, "worker_lost")] == ["w2"]


def test_a_worker_back_after_a_restart_that_dies_is_found_dead_on_time_not_at_the_grace_end() -> None:
    """After a coordinator restart a returning worker's liveness is checked at its usual pace: found
    dead within the liveness timeout (a lost worker), not after `recovery_grace`, by which time the task
    timeout would have counted its silent attempt as the app's failure."""
    sim = sim_with("w1", "w2", task_timeout=3.0, recovery_grace=10.0)
    job = sim.submit(n_splits=1, n_reduce=1)
    sim.restart_coordinator()
    holder = sim.busy()[0]
    sim.kill(holder)
    actions = sim.advance(sim.liveness_timeout)
    assert [log.fields["worker"] for log in logged(actions, "worker_lost")] == [holder]
    assert logged(actions, "attempt_lost")[0].fields["why"].startswith("worker lost")
    assert sim.task(job, MAP, 0).app_failures == 0
    sim.run()
    assert sim.finished == {job: JobState.SUCCEEDED}


# ---------------------------------------------------------------- failing tasks


def test_an_app_failure_is_retried_with_backoff_then_fails_the_job_while_another_job_succeeds() -> None:
    sim = sim_with("w1", "w2", "w3", max_attempts=3, retry_base=1.0)
    bad = sim.submit(n_splits=1, n_reduce=1)
    good = sim.submit(n_splits=1, n_reduce=1)
    assert [sim.assignment(w) for w in ("w1", "w2", "w3")] == [
        m.AssignMap(attempt=m.AttemptId(job_id=bad, kind="map", task=0, number=1), split=sim.job(bad).spec.splits[0]),
        m.AssignMap(attempt=m.AttemptId(job_id=good, kind="map", task=0, number=1), split=sim.job(good).spec.splits[0]),
        None]
    task = sim.task(bad, MAP, 0)
    holder = "w1"
    for attempt, backoff in [(1, 1.0), (2, 2.0)]:
        sim.fail(holder, error=f"ValueError: boom {attempt}")
        assert (task.state, task.app_failures, task.not_before) == (TaskState.READY, attempt,
                                                                      sim.clock.now + backoff)
        sim.advance(backoff - 0.5)
        assert task.attempts_made == attempt            # two workers idle, yet it waits out its backoff
        sim.advance(0.5)
        assert task.attempts_made == attempt + 1
        holder = next(w for w in ("w1", "w3") if sim.assignment(w))
    actions = sim.fail(holder, error="ValueError: boom 3", traceback="Traceback (most recent call last):\n"
                       "  File \"app.py\", line 3, in map\nValueError: boom 3")
    state = sim.job(bad)
    assert state.state is JobState.FAILED
    assert state.error == ("map-0 failed 3 times; last error: ValueError: boom 3\n"
                           "Traceback (most recent call last):\n  File \"app.py\", line 3, in map\n"
                           "ValueError: boom 3")
    assert [a for a in actions if isinstance(a, JobFinished)] == [
        JobFinished(bad, JobState.FAILED, state.spec.output_dir, 1)]
    assert sent(actions, m.JobEnded) == [m.JobEnded(job_id=bad)] * 2     # to the two workers set up for it
    assert sim.job(good).state is JobState.RUNNING
    sim.run()
    assert sim.finished == {bad: JobState.FAILED, good: JobState.SUCCEEDED}


def test_a_job_failed_at_its_first_attempt_says_one_time() -> None:
    sim = sim_with("w1", max_attempts=1)
    job = sim.submit(n_splits=1, n_reduce=1)
    sim.fail("w1", error="ValueError: boom")
    assert sim.job(job).error.split("\n")[0] == "map-0 failed 1 time; last error: ValueError: boom"


def test_a_failed_map_goes_to_another_worker_and_waits_for_one_rather_than_go_back() -> None:
    """A worker's own fault (its disk full) would fail every attempt there: the retry avoids it."""
    sim = sim_with("w1", "w2", retry_base=0.1)
    job = sim.submit(n_splits=2, n_reduce=1)
    task = sim.task(job, MAP, 0)
    assert sim.assignment("w1") == m.AssignMap(attempt=task.attempt_id(job, 1), split=sim.job(job).spec.splits[0])
    sim.fail("w1", error="OSError: [Errno 28] No space left on device")
    sim.advance(0.5)   # past its backoff: ready, and only w1 is idle
    assert task.state is TaskState.READY and sim.assignment("w1") is None
    sim.finish("w2")   # map-1 done: w2 is idle too, and takes it
    assert sim.assignment("w2") == m.AssignMap(attempt=task.attempt_id(job, 2), split=sim.job(job).spec.splits[0])
    assert sim.assignment("w1") is None or sim.assignment("w1").attempt.task != 0   # type: ignore[union-attr]
    sim.run()
    assert sim.finished == {job: JobState.SUCCEEDED}


def test_a_job_may_choose_its_own_shuffle_compression() -> None:
    sim = sim_with("w1")
    spec = sim.spec(n_splits=1, n_reduce=1)
    for chosen, expected in [("zstd", "zstd"), ("", "none")]:   # "": the cluster's shuffle.compression
        [accepted] = sim.client_send(m.SubmitJob(spec=msgspec.structs.replace(
            spec, compression=chosen, output_dir=f"/out/{chosen or 'default'}")))
        assert isinstance(accepted, m.JobAccepted)
        sim.run()
        [setup] = [msg for msg in sim.received("w1") if isinstance(msg, m.JobSetup) and msg.job_id == accepted.job_id]
        assert setup.compression == expected


def test_a_job_may_set_its_own_attempt_limit() -> None:
    sim = sim_with("w1", max_attempts=4, retry_base=0.1)
    spec = msgspec.structs.replace(sim.spec(n_splits=1, n_reduce=1), max_attempts=2)
    [accepted] = sim.client_send(m.SubmitJob(spec=spec))
    assert isinstance(accepted, m.JobAccepted)
    sim.fail("w1", error="ValueError: boom 1")
    sim.advance(0.2)
    sim.fail("w1", error="ValueError: boom 2")
    state = sim.job(accepted.job_id)
    assert state.state is JobState.FAILED
    assert state.error.startswith("map-0 failed 2 times; last error: ValueError: boom 2")


def test_an_invalid_failure_ends_the_job_at_once_and_survives_replay() -> None:
    sim = sim_with("w1", "w2", max_attempts=3, retry_base=1.0)
    bad = sim.submit(n_splits=2, n_reduce=1)
    actions = sim.fail("w1", kind="invalid", error="app 'x.py': map yielded (3, 'a'), expected a str key",
                       traceback="")
    state = sim.job(bad)
    assert (state.state, state.error) == (JobState.FAILED,
                                          "map-0 failed: app 'x.py': map yielded (3, 'a'), expected a str key")
    assert [a for a in actions if isinstance(a, JobFinished)] == [
        JobFinished(bad, JobState.FAILED, state.spec.output_dir, 1)]
    assert sim.task(bad, MAP, 0).attempts_made == 1
    sim.restart_coordinator()
    [reply] = sim.client_send(m.StatusRequest(job_id=bad))
    assert isinstance(reply, m.StatusReply)
    assert [(job.state, job.error) for job in reply.jobs] == [("failed", state.error)]


def test_a_failed_job_cancels_its_other_running_tasks() -> None:
    sim = sim_with("w1", "w2", max_attempts=1)
    job = sim.submit(n_splits=2, n_reduce=1)
    actions = sim.fail("w1")
    cancel = m.CancelTask(attempt=m.AttemptId(job_id=job, kind=MAP, task=1, number=1))
    assert sent(actions, m.CancelTask, peer(sim, "w2")) == [cancel]
    assert sim.job(job).state is JobState.FAILED
    assert sim.busy() == []


def test_missing_data_reruns_the_listed_maps_then_the_reduce() -> None:
    sim = sim_with("w1", "w2")
    job = sim.submit(n_splits=3, n_reduce=1)
    sim.finish("w1")
    sim.finish("w2")
    sim.finish("w1")                                    # map 2: every map is in, reduce 0 goes to w1
    assert isinstance(sim.assignment("w1"), m.AssignReduce)
    sim.fail("w1", kind="missing_data", error="no output of maps [0, 2]", missing=[0, 2])
    state = sim.job(job)
    reduce = state.reduces[0]
    assert (reduce.state, reduce.worker_losses, reduce.app_failures) == (TaskState.WAITING, 1, 0)
    assert state.maps_done == 1
    assert [(t.state, t.committed) for t in state.maps] == [
        (TaskState.RUNNING, None), (TaskState.DONE, 1), (TaskState.RUNNING, None)]
    sim.settle()
    assert state.state is JobState.SUCCEEDED
    assign = [msg for msg in sim.received("w1") if isinstance(msg, m.AssignReduce)][-1]
    assert (assign.commits_base, assign.commits) == (0, [(0, 2), (2, 2)])   # the changes since its last one


def test_a_reduce_that_loses_its_input_too_often_fails_the_job() -> None:
    sim = sim_with("w1", max_worker_losses=1)
    job = sim.submit(n_splits=1, n_reduce=1)
    sim.finish("w1")
    sim.fail("w1", kind="missing_data", missing=[0])
    sim.finish("w1")
    sim.fail("w1", kind="missing_data", missing=[0])
    assert sim.job(job).state is JobState.FAILED
    assert sim.job(job).error == "reduce-0 lost its input too many times"


# ---------------------------------------------------------------- committing reduce output


def test_only_the_current_reduce_attempt_is_granted_the_commit() -> None:
    sim = sim_with("w1", task_timeout=4.0)
    job = sim.submit(n_splits=1, n_reduce=1)
    sim.finish("w1")
    sim.hang("w1")
    sim.advance(4.0)                                    # attempt 1 made no progress: given up
    sim.hang("w1", False)
    assert sim.assignment("w1") == m.AssignReduce(attempt=m.AttemptId(job_id=job, kind="reduce", task=0, number=2),
                                                  output_dir=sim.job(job).spec.output_dir, n_maps=1,
                                                  commits_base=0, commits=[])
    late = sim.send("w1", m.ReduceDone(worker_id="w1", attempt=m.AttemptId(job_id=job, kind="reduce", task=0, number=1),
                                       records_out=1))
    assert sent(late, m.CommitDecision) == []
    sim.finish("w1")
    decisions = [msg for msg in sim.received("w1") if isinstance(msg, m.CommitDecision)]
    assert decisions == [m.CommitDecision(attempt=m.AttemptId(job_id=job, kind="reduce", task=0, number=2), ok=True)]
    assert sim.renamed == {(job, 0): [2]}


def test_a_duplicate_reduce_done_keeps_the_commit_granted() -> None:
    sim = sim_with("w1")
    job = sim.submit(n_splits=1, n_reduce=1)
    sim.finish("w1")
    first = sim.finish("w1", commit=False)
    grant = m.CommitDecision(attempt=m.AttemptId(job_id=job, kind=REDUCE, task=0, number=1), ok=True)
    assert sent(first, m.CommitDecision) == [grant]
    again = sim.send("w1", m.ReduceDone(worker_id="w1",
                                        attempt=m.AttemptId(job_id=job, kind="reduce", task=0, number=1),
                                        records_out=1))
    assert sent(again, m.CommitDecision) == [grant]
    assert sim.task(job, REDUCE, 0).state is TaskState.COMMITTING
    sim.commit("w1")
    assert sim.finished == {job: JobState.SUCCEEDED}


def test_a_reduce_that_fails_after_its_commit_was_granted_can_commit_on_retry() -> None:
    sim = sim_with("w1")
    job = sim.submit(n_splits=1, n_reduce=1)
    sim.finish("w1")
    sim.finish("w1", commit=False)
    sim.fail("w1", kind="io", error="OSError: disk full")     # the rename failed
    reduce = sim.task(job, REDUCE, 0)
    assert (reduce.state, reduce.committing, reduce.app_failures) == (TaskState.READY, None, 1)
    sim.run()
    assert sim.finished == {job: JobState.SUCCEEDED}
    assert sim.renamed == {(job, 0): [2]}


def test_a_reduce_committed_without_a_grant_does_not_count() -> None:
    sim = sim_with("w1")
    job = sim.submit(n_splits=1, n_reduce=1)
    sim.finish("w1")
    actions = sim.send("w1", m.ReduceCommitted(worker_id="w1",
                                               attempt=m.AttemptId(job_id=job, kind="reduce", task=0, number=1)))
    assert not logged(actions, "reduce_committed")
    reduce = sim.task(job, REDUCE, 0)
    assert (reduce.state, reduce.committed) != (TaskState.DONE, 1)
    sim.send("w1", m.TaskRequest(worker_id="w1", finished=m.AttemptId(job_id=job, kind=REDUCE, task=0,
                                                                          number=1)))
    sim.run()
    assert sim.finished == {job: JobState.SUCCEEDED}
    assert reduce.committed == reduce.committing != 1


def test_the_grantee_dying_before_it_reports_lets_another_attempt_commit() -> None:
    """The scheduler cannot know whether a dead grantee renamed; a new attempt renames the same output."""
    sim = sim_with("w1", "w2")
    job = sim.submit(n_splits=2, n_reduce=1)
    sim.finish("w1")
    sim.finish("w2")
    sim.finish("w1", commit=False)
    sim.kill("w1")
    sim.advance(sim.liveness_timeout)
    sim.run()
    assert sim.finished == {job: JobState.SUCCEEDED}
    assert sim.task(job, REDUCE, 0).committed == 2
    assert sim.renamed == {(job, 0): [2]}


def test_a_reduce_retried_after_an_app_failure_goes_on_with_the_input_pushed_to_it() -> None:
    """Map 1's kept copy died with w2, but its output for partition 0 was pushed to w1: reduce 0, retried
    after an app failure, need not wait for map 1 to run again (the reduce phase keeps going)."""
    sim = sim_with("w1", "w2", "w3")
    job = sim.submit(n_splits=3, n_reduce=2)           # owners w1, w2
    for worker in ("w1", "w2", "w3"):
        sim.finish(worker)                              # map i on worker i+1; reduces on w1, w2
    sim.kill("w2")
    sim.advance(sim.liveness_timeout)                   # map 1's kept output is gone with w2
    assert sim.job(job).maps_done == 2
    sim.fail("w1")                                      # reduce 0 raised
    assert sim.task(job, REDUCE, 0).state is TaskState.READY   # backing off, not waiting for map 1
    assert sim.task(job, REDUCE, 1).state is TaskState.READY   # moved: it pulls what it can while map 1 runs
    assert sim.job(job).lacking == {}
    sim.run()
    assert sim.finished == {job: JobState.SUCCEEDED}
    assert sim.task(job, REDUCE, 0).worker_losses == 0 and sim.renamed[(job, 0)] == [2]


def test_a_death_in_the_reduce_phase_moves_only_its_partitions_and_makes_its_map_again_first() -> None:
    """w2 dies mid reduce: its kept map 1 is made again, before any reduce, and its partitions (1, 5) move
    to new owners, ready to pull what the live mappers kept while map 1 runs; every other reduce goes on
    as it was."""
    sim = sim_with("w1", "w2", "w3", "w4")
    job = sim.submit(n_splits=4, n_reduce=8)           # owners w1..w4, w1..w4; map i on worker i+1
    for worker in ("w1", "w2", "w3", "w4"):
        sim.finish(worker)                              # then reduce i on worker i+1
    assert [t.state for t in sim.job(job).reduces] == [TaskState.RUNNING] * 4 + [TaskState.READY] * 4
    sim.kill("w2")
    sim.advance(sim.liveness_timeout)
    state = sim.job(job)
    assert [(p, state.owners[p]) for p in (1, 5)] == [(1, "w1"), (5, "w3")]
    assert [t.state for t in state.reduces] == [TaskState.RUNNING, TaskState.READY, TaskState.RUNNING,
                                                TaskState.RUNNING, TaskState.READY, TaskState.READY,
                                                TaskState.READY, TaskState.READY]
    assert (state.lacking, state.awaited, state.remaking) == ({}, {}, {1})
    sim.finish("w1")                                    # reduce 0 commits; w1 has reduce 4 ready, but ...
    assert sim.assignment("w1") == m.AssignMap(attempt=m.AttemptId(job_id=job, kind=MAP, task=1, number=2),
                                               split=state.spec.splits[1])   # ... map 1 goes first
    sim.finish("w1")
    assert (state.lacking, state.awaited, state.remaking) == ({}, {}, set())
    assert all(t.state is not TaskState.WAITING for t in state.reduces)
    sim.run()
    assert sim.finished == {job: JobState.SUCCEEDED}
    assert [t.worker_losses for t in state.reduces] == [0, 1, 0, 0, 0, 0, 0, 0]   # reduce 1 lost its worker
    assert [t.attempts_made for t in state.maps] == [1, 2, 1, 1]


def test_a_dead_owners_partitions_are_dealt_one_each_to_the_workers_with_the_fewest_unfinished() -> None:
    """w5 joined after the start and owns nothing. w1 dies owning partitions 0 and 4: a newcomer would
    have to pull both in turn, so it gets one and the next least loaded worker (w2, by id) the other."""
    sim = sim_with("w1", "w2", "w3", "w4")
    job = sim.submit(n_splits=4, n_reduce=8)           # owners w1..w4, w1..w4
    sim.add_worker("w5")
    sim.kill("w1")
    sim.advance(sim.liveness_timeout)
    state = sim.job(job)
    assert [(p, state.owners[p]) for p in (0, 4)] == [(0, "w5"), (4, "w2")]
    assert state.unfinished == {"w2": 3, "w3": 2, "w4": 2, "w5": 1}
    sim.run()
    assert sim.finished == {job: JobState.SUCCEEDED}
    assert state.unfinished == {}


def test_the_reduce_phase_begins_once_every_map_committed_once_not_after_lost_output_is_remade() -> None:
    """w2 dies holding map 1's output: map 1 runs again, but reduces 0 and 2, whose owners hold what map 1
    pushed to them, start as soon as every map has committed once; so does moved partition 1, whose new
    owner pulls what it can while map 1 runs."""
    sim = sim_with("w1", "w2", "w3")
    job = sim.submit(n_splits=6, n_reduce=3)           # owners w1, w2, w3; maps 0-2 on w1-w3, then 3-5
    for worker in ("w1", "w2", "w3"):
        sim.finish(worker)
    sim.kill("w2")                                      # mid map 4, holding map 1
    sim.advance(sim.liveness_timeout)
    state = sim.job(job)
    assert (state.owners[1], state.remaking, state.reduce_phase) == ("w1", {1}, False)
    sim.finish("w3")                                    # map 5; w3 runs map 4 again
    sim.finish("w1")                                    # map 3; w1 makes map 1 again
    assert sim.assignment("w1") == m.AssignMap(attempt=m.AttemptId(job_id=job, kind=MAP, task=1, number=2),
                                               split=state.spec.splits[1])
    sim.finish("w3")                                    # map 4: every map has committed once
    assert (state.reduce_phase, state.maps_done, state.lacking) == (True, 5, {})
    assert [t.state for t in state.reduces] == [TaskState.READY, TaskState.READY, TaskState.RUNNING]
    sim.finish("w1")                                    # map 1 is in
    assert state.remaking == set() and state.maps_done == 6
    sim.run()
    assert sim.finished == {job: JobState.SUCCEEDED}
    assert [t.worker_losses for t in state.reduces] == [0, 0, 0]


def test_a_snapshot_taken_in_the_reduce_phase_replays_to_it() -> None:
    """A snapshot has no record of the phase's start: its reduces' assignments say it, and the maps not
    committed then are the ones being made again."""
    sim = sim_with("w1", "w2", "w3")
    job = sim.submit(n_splits=3, n_reduce=2)
    for worker in ("w1", "w2", "w3"):
        sim.finish(worker)
    sim.kill("w2")
    sim.advance(sim.liveness_timeout)
    assert (sim.job(job).reduce_phase, sim.job(job).remaking) == (True, {1})
    ledger = Ledger(1)
    for record in sim.scheduler.snapshot():
        ledger.apply(record)
    assert (ledger.jobs[job].reduce_phase, ledger.jobs[job].remaking) == (True, {1})


def test_a_reduce_backing_off_is_not_started_early_when_its_maps_come_back() -> None:
    sim = sim_with("w1", "w2", "w3", retry_base=10.0)
    job = sim.submit(n_splits=3, n_reduce=2)
    for worker in ("w1", "w2", "w3"):
        sim.finish(worker)
    sim.fail("w1")                                      # reduce 0 backs off for 10 s
    retry_at = sim.clock.now + 10.0
    sim.kill("w2")
    sim.advance(sim.liveness_timeout)                   # map 1 is lost; it runs again on an idle worker
    sim.settle()
    assert sim.job(job).maps_done == 3
    reduce = sim.task(job, REDUCE, 0)
    assert (reduce.state, reduce.attempts_made) == (TaskState.READY, 1)
    assert reduce.not_before == retry_at
    sim.advance(retry_at - sim.clock.now - 0.5)
    assert reduce.attempts_made == 1
    sim.advance(0.5)
    assert reduce.attempts_made == 2
    sim.run()
    assert sim.finished == {job: JobState.SUCCEEDED}


# ---------------------------------------------------------------- timeouts, cancelling, status


def test_a_task_without_progress_is_cancelled_and_run_again() -> None:
    sim = sim_with("w1", "w2", task_timeout=5.0)
    job = sim.submit(n_splits=2, n_reduce=1)
    sim.hang("w1")                                      # map 0: beats, no progress
    sim.finish("w2")                                    # map 1; w2 is idle now
    actions = sim.advance(4.5)
    assert sent(actions, m.CancelTask) == []
    actions = sim.advance(0.5)
    cancel = m.CancelTask(attempt=m.AttemptId(job_id=job, kind=MAP, task=0, number=1))
    assert sent(actions, m.CancelTask, peer(sim, "w1")) == [cancel]
    assert [log.fields["why"] for log in logged(actions, "attempt_lost")] == [
        "no progress within the task timeout"]
    map0 = sim.task(job, MAP, 0)
    assert (map0.app_failures, map0.worker_losses, list(map0.running)) == (1, 0, [2])   # the app's failure
    assert sim.assignment("w2") == m.AssignMap(attempt=m.AttemptId(job_id=job, kind="map", task=0, number=2),
                                               split=sim.job(job).spec.splits[0])


def test_a_timed_out_worker_stays_busy_until_it_says_the_attempt_is_gone() -> None:
    sim = sim_with("w1", task_timeout=2.0)
    job = sim.submit(n_splits=1, n_reduce=1)
    sim.hang("w1")
    sim.isolate("w1")                                   # the CancelTask is not heard yet
    sim.advance(2.0)
    status = {w.worker_id: (w.state, w.task) for w in sim.scheduler.status(None).workers}
    assert status["w1"] == ("busy", f"{job}/map-0")
    assert sim.task(job, MAP, 0).running == {}


def test_a_map_that_never_progresses_fails_the_job_after_its_attempts() -> None:
    sim = sim_with("w1", "w2", task_timeout=3.0, max_attempts=4)
    job = sim.submit(n_splits=2, n_reduce=1)
    sim.hang("w1")
    sim.hang("w2")
    for _ in range(8):
        sim.advance(3.0)
        if job in sim.finished:
            break
    assert sim.finished == {job: JobState.FAILED}
    error = sim.job(job).error
    assert error.startswith("map-") and error.endswith(" failed 4 times; last error: no progress within 3 s"), error
    assert sim.busy() == []
    assert [w.state for w in sim.scheduler.status(None).workers] == ["idle", "idle"]


def test_a_slow_task_that_progresses_is_left_alone() -> None:
    sim = sim_with("w1", task_timeout=2.0)
    job = sim.submit(n_splits=1, n_reduce=1)
    actions = sim.advance(10.0)                         # beats with progress all along
    assert sent(actions, m.CancelTask) == []
    assert sim.task(job, MAP, 0).attempts_made == 1
    assert len(sent(actions, m.Ping, peer(sim, "w1"))) == 20


def test_cancelling_a_running_job() -> None:
    sim = sim_with("w1", "w2")
    job = sim.submit(n_splits=3, n_reduce=2)
    sim.finish("w1")
    replies = sim.client_send(m.CancelJob(job_id=job))
    assert len(replies) == 1 and isinstance(replies[0], m.StatusReply)
    assert [(j.job_id, j.state, j.error) for j in replies[0].jobs] == [(job, "cancelled", "cancelled by a client")]
    assert sim.finished == {job: JobState.CANCELLED}
    cancels = [msg for w in ("w1", "w2") for msg in sim.received(w) if isinstance(msg, m.CancelTask)]
    assert cancels == [m.CancelTask(attempt=m.AttemptId(job_id=job, kind=MAP, task=2, number=1)),
                       m.CancelTask(attempt=m.AttemptId(job_id=job, kind=MAP, task=1, number=1))]
    assert sim.busy() == []
    reply = sim.client_send(m.CancelJob(job_id=job))[0]
    assert isinstance(reply, m.StatusReply) and reply.jobs[0].state == "cancelled"
    assert sim.finished == {job: JobState.CANCELLED}


def test_cancelling_a_queued_job_and_an_unknown_one() -> None:
    sim = SimCluster()
    job = sim.submit()
    sim.client_send(m.CancelJob(job_id=job))
    assert sim.job(job).state is JobState.CANCELLED
    assert sim.client_send(m.CancelJob(job_id="job-9999")) == [m.ErrorReply(message="no job job-9999")]
    sim.add_worker("w1")
    assert sim.assignment("w1") is None


def test_status_reports_jobs_tasks_and_workers() -> None:
    sim = sim_with("w1", "w2")
    job = sim.submit(n_splits=2, n_reduce=1)
    start = sim.clock.now
    sim.advance(1.0)
    sim.finish("w1")
    sim.kill("w2")
    sim.advance(sim.liveness_timeout)
    [reply] = sim.client_send(m.StatusRequest(job_id=job, tasks=True))
    assert isinstance(reply, m.StatusReply)
    assert reply.now == sim.clock.now
    [info] = reply.jobs
    assert (info.job_id, info.app_name, info.state, info.submitted, info.started, info.finished) == (
        job, "sim", "running", start, start, None)
    assert (info.maps_done, info.maps_total, info.reduces_done, info.reduces_total) == (1, 2, 0, 1)
    assert (info.bytes_shuffled, info.records_out, info.error) == (100, 0, "")
    assert info.output_dir == sim.job(job).spec.output_dir
    assert info.tasks == [
        m.TaskInfo(kind=MAP, index=0, state="done", attempts=1, worker="w1", started=start, finished=start + 1.0),
        m.TaskInfo(kind=MAP, index=1, state="running", attempts=2, worker="w1", started=start, finished=None),
        m.TaskInfo(kind=REDUCE, index=0, state="waiting", attempts=0, worker="", started=None, finished=None)]
    [summary] = sim.client_send(m.StatusRequest())
    assert isinstance(summary, m.StatusReply)
    assert [(j.job_id, j.tasks, j.partitions) for j in summary.jobs] == [(job, [], [])]
    assert [(w.worker_id, w.state, w.task) for w in summary.workers] == [
        ("w1", "busy", f"{job}/map-1"), ("w2", "dead", "")]
    [alone] = sim.client_send(m.StatusRequest(job_id=job))   # a job without its tables: O(1) whatever its size
    assert isinstance(alone, m.StatusReply) and alone.workers == []
    assert [(j.job_id, j.maps_done, j.tasks, j.partitions, j.timeline) for j in alone.jobs] == [(job, 1, [], [], [])]
    assert sim.client_send(m.StatusRequest(job_id="job-9999")) == [m.ErrorReply(message="no job job-9999")]


def test_a_wait_is_held_until_the_job_ends_then_answered_with_its_summary() -> None:
    sim = sim_with("w1")
    job = sim.submit(n_splits=1, n_reduce=1)
    assert sim.client_send(m.WaitJob(job_id=job, timeout=30.0), client=b"waiter") == []
    sim.finish("w1")
    sim.finish("w1", commit=False)
    assert sim.clients[b"waiter"] == []
    sim.commit("w1")
    [reply] = sim.clients[b"waiter"]
    assert isinstance(reply, m.StatusReply)
    assert [(j.job_id, j.state, j.maps_done, j.reduces_done, j.tasks) for j in reply.jobs] == [
        (job, "succeeded", 1, 1, [])]
    [again] = sim.client_send(m.WaitJob(job_id=job, timeout=30.0), client=b"late")
    assert isinstance(again, m.StatusReply) and again.jobs[0].state == "succeeded", "an ended job: at once"


def test_a_wait_on_a_running_job_is_answered_with_progress_when_its_time_is_up() -> None:
    sim = sim_with("w1")
    job = sim.submit(n_splits=2, n_reduce=1)
    assert sim.client_send(m.WaitJob(job_id=job, timeout=1.0), client=b"waiter") == []
    sim.advance(0.5)
    assert sim.clients[b"waiter"] == []
    sim.advance(0.5)
    [reply] = sim.clients[b"waiter"]
    assert isinstance(reply, m.StatusReply)
    assert [(j.job_id, j.state) for j in reply.jobs] == [(job, "running")]
    sim.advance(2.0)
    assert len(sim.clients[b"waiter"]) == 1, "one answer per wait"
    assert sim.client_send(m.WaitJob(job_id="job-9999", timeout=1.0)) == [m.ErrorReply(message="no job job-9999")]


def test_a_client_holds_one_wait_per_job_however_many_it_sends() -> None:
    sim = sim_with("w1")
    job = sim.submit(n_splits=1, n_reduce=1)
    for timeout in (30.0, 20.0, 10.0):
        assert sim.client_send(m.WaitJob(job_id=job, timeout=timeout), client=b"eager") == []
    sim.advance(10.0)
    [reply] = sim.clients[b"eager"]
    assert isinstance(reply, m.StatusReply) and reply.jobs[0].state == "running", "the latest wait, answered once"
    sim.advance(30.0)
    assert len(sim.clients[b"eager"]) == 1


def test_heartbeat_partition_stats_show_in_status() -> None:
    sim = sim_with("w1")
    job = sim.submit(n_splits=1, n_reduce=2)
    stat = m.PartitionStat(job_id=job, partition=1, bytes_in=300, batches_in=3, first_batch=1.0, last_batch=2.0)
    junk = m.PartitionStat(job_id=job, partition=7, bytes_in=1, batches_in=1, first_batch=1.0, last_batch=1.0)
    sim.send("w1", m.Heartbeat(worker_id="w1", partitions=[stat, junk]))
    [reply] = sim.client_send(m.StatusRequest(job_id=job, tasks=True))
    assert isinstance(reply, m.StatusReply)
    assert reply.jobs[0].partitions == [m.PartitionInfo(partition=1, owner="w1", bytes_in=300, batches_in=3,
                                                        first_batch=1.0, last_batch=2.0)]


def test_a_tick_pings_live_workers_only() -> None:
    s = Scheduler(SchedulerParams(python="3.11"))
    s.handle(register(b"p1", "w1"), 0.0)
    s.handle(register(b"p2", "w2"), 0.0)
    s.handle(Received(b"p2", m.Heartbeat(worker_id="w2")), 2.9)
    actions = s.handle(Tick(), 3.0)
    check_invariants(s)
    assert [a for a in actions if isinstance(a, Send)] == [Send(b"p2", m.Ping(jobs=[], lease_ttl=30.0))]
    assert [w.alive for w in s.workers.values()] == [False, True]


def test_a_grantee_that_fails_while_its_backup_runs_leaves_the_backup_to_commit() -> None:
    sim = sim_with("w1", "w2", speculation=True)
    job = sim.submit(n_splits=1, n_reduce=2)           # owners w1, w2
    sim.finish("w1")                                    # the map; reduce 0 on w1, reduce 1 on w2
    sim.finish("w1")                                    # reduce 0 commits at once: the median is 0 s
    sim.advance(2.0)                                    # reduce 1 is a straggler: a backup on idle w1
    reduce = sim.task(job, REDUCE, 1)
    assert sorted(reduce.running) == [1, 2]
    sim.finish("w2", commit=False)                      # attempt 1 is granted the commit ...
    sim.fail("w2", kind="io", error="OSError: disk full")   # ... and its rename fails
    assert (reduce.state, reduce.committing, sorted(reduce.running)) == (TaskState.RUNNING, None, [2])
    sim.finish("w1")                                    # the backup commits
    assert sim.finished == {job: JobState.SUCCEEDED}
    assert sim.renamed[(job, 1)] == [2]


def test_a_reduce_running_ahead_of_lost_map_output_gets_no_backup() -> None:
    sim = sim_with("w1", "w2", "w3", speculation=True)
    job = sim.submit(n_splits=3, n_reduce=3)           # owners w1, w2, w3
    for worker in ("w1", "w2", "w3"):
        sim.finish(worker)                              # map i on worker i+1; then reduce i there
    sim.finish("w1")                                    # reduce 0 commits at once: the median is 0 s
    sim.advance(1.0)
    sim.fail("w3", kind="missing_data", missing=[0])    # map 0 runs again on w1; w3 is idle
    assert sim.job(job).maps_done == 2
    sim.advance(1.0)                                    # reduce 1 is slow, but a backup could not read map 0
    assert sorted(sim.task(job, REDUCE, 1).running) == [1]
    sim.run()
    assert sim.finished == {job: JobState.SUCCEEDED}


def test_a_map_far_slower_than_its_jobs_finished_maps_is_restarted_once_while_no_worker_is_idle() -> None:
    """Six maps move on at a beat each (2 per s) and take 1 s. Then w1's map moves at a quarter of that
    pace: with both workers busy no backup can start, so at 2 s it is cancelled and put first in line,
    not left to hold w1 for its whole slow run. A map is restarted once: its next attempt runs on."""
    sim = sim_with("w1", "w2", speculation=True, min_elapsed=2.0)
    job = sim.submit(n_splits=20, n_reduce=1)
    for _ in range(3):
        sim.advance(1.0)
        sim.finish("w1")
        sim.finish("w2")
    slow = sim.assignment("w1")
    assert isinstance(slow, m.AssignMap)
    sim.slow("w1", 4)
    actions = sim.advance(2.0)
    assert sent(actions, m.CancelTask, peer(sim, "w1")) == [m.CancelTask(attempt=slow.attempt)]
    assert sent(actions, m.JobSetup, peer(sim, "w1")) == []   # it was told to stop: it still has the job
    assert [log.fields["why"] for log in logged(actions, "attempt_lost")] == [
        "moving at 0.25 of the median pace of its job's maps"]
    task = sim.task(job, MAP, slow.attempt.task)
    assert task.restarted and sim.assignment("w1") == m.AssignMap(   # first in line, so w1 got it back
        attempt=m.AttemptId(job_id=job, kind=MAP, task=task.index, number=2), split=slow.split)
    actions = sim.advance(4.0)
    assert logged(actions, "attempt_lost") == [] and sorted(task.running) == [2]
    sim.slow("w1", 1)
    sim.run()
    assert sim.finished == {job: JobState.SUCCEEDED}
    assert (task.committed, task.app_failures, task.worker_losses) == (2, 0, 0)


def test_an_idle_worker_takes_over_a_busy_owners_ready_partition_even_while_map_output_is_remade() -> None:
    """w1 hangs in reduce 0 with reduce 4 ready behind it; w4 dies, so map 3 is being made again. An idle
    worker still takes partition 4 over: it pulls the rest meanwhile and waits only for map 3."""
    sim = sim_with("w1", "w2", "w3", "w4", min_elapsed=5.0)
    job = sim.submit(n_splits=4, n_reduce=8)           # owners w1..w4, w1..w4; map i on worker i+1
    for worker in ("w1", "w2", "w3", "w4"):
        sim.finish(worker)                              # then reduce i on worker i+1
    sim.hang("w1")
    for worker in ("w2", "w3", "w4"):
        sim.finish(worker)                              # reduces 1-3 commit; 5-7 start
    sim.finish("w2")
    sim.finish("w3")                                    # reduces 5, 6 commit: w2 and w3 are idle
    sim.kill("w4")                                      # mid reduce 7, holding map 3's output
    actions = sim.advance(sim.liveness_timeout)
    state = sim.job(job)
    assert state.remaking == {3} and state.owners[4] == "w1"
    actions = sim.advance(2.5)                          # w1 has been busy for 5 s
    moved = [(log.fields["partition"], log.fields["old"]) for log in logged(actions, "partition_moved")]
    assert moved == [(4, "w1")] and state.remaking == {3}
    thief = state.owners[4]
    assigned = sim.assignment(thief)
    assert isinstance(assigned, m.AssignReduce) and assigned.attempt.task == 4
    sim.hang("w1", False)
    sim.run()
    assert sim.finished == {job: JobState.SUCCEEDED}
    assert [t.app_failures for t in state.reduces] == [0] * 8


def test_an_idle_worker_takes_over_a_ready_partition_whose_owner_is_busy_for_long() -> None:
    sim = sim_with("w1", "w2", min_elapsed=2.0)
    a = sim.submit(n_splits=2, n_reduce=2)
    b = sim.submit(n_splits=1, n_reduce=1)
    assert sim.job(a).owners == ["w1", "w2"]
    sim.finish("w2")                                   # a/map-1; then it takes b/map-0 and gets stuck in it
    assert sim.assignment("w2") == m.AssignMap(attempt=m.AttemptId(job_id=b, kind="map", task=0, number=1),
                                               split=sim.job(b).spec.splits[0])
    sim.hang("w2")
    sim.finish("w1")                                   # a/map-0: a's reduces are ready; w1 runs its own
    sim.finish("w1")
    assert sim.assignment("w1") is None
    actions = sim.advance(1.0)
    assert logged(actions, "partition_moved") == []    # a short wait is cheaper than pulling everything
    actions = sim.advance(1.5)
    assert [(log.fields["partition"], log.fields["worker"]) for log in logged(actions, "partition_moved")] == [
        (1, "w1")]
    assert sim.job(a).owners == ["w1", "w1"]
    assigned = sim.assignment("w1")
    assert isinstance(assigned, m.AssignReduce) and (assigned.attempt.job_id, assigned.attempt.task) == (a, 1)
    # every map of a is committed: no mapper reads the move, so it is not broadcast
    assert [u for u in sim.received("w2") if isinstance(u, m.OwnersUpdate)] == []
    sim.finish("w1")
    assert sim.finished.get(a) is JobState.SUCCEEDED


def test_moves_held_back_after_the_maps_are_announced_before_a_map_runs_again() -> None:
    sim = sim_with("w1", "w2", "w3", min_elapsed=2.0)
    a = sim.submit(n_splits=3, n_reduce=3)
    b = sim.submit(n_splits=1, n_reduce=1)
    for worker in ("w1", "w2", "w3"):
        sim.finish(worker)                               # a's three maps
    hung = next(w for w in ("w1", "w2", "w3") if isinstance(sim.assignment(w), m.AssignMap))
    assert sim.assignment(hung).attempt.job_id == b
    sim.hang(hung)                                       # b/map-0 never ends: its owner's partition of a waits
    for worker in sorted({"w1", "w2", "w3"} - {hung}):
        sim.finish(worker)                               # their own reduces of a
    stolen = sim.job(a).owners.index(hung)
    sim.advance(2.5)
    thief = sim.job(a).owners[stolen]
    assert thief != hung
    assert [u for w in ("w1", "w2", "w3") for u in sim.received(w) if isinstance(u, m.OwnersUpdate)] == []
    victim = next(w for w in ("w1", "w2", "w3") if w not in (hung, thief))
    before = len(sim.received(thief))
    sim.kill(victim)                                     # its map of a must run again, on the thief
    sim.advance(sim.liveness_timeout + 0.5)
    heard = [u for u in sim.received(thief)[before:] if isinstance(u, m.OwnersUpdate | m.AssignMap)]
    assert isinstance(heard[0], m.OwnersUpdate) and isinstance(heard[1], m.AssignMap), heard
    assert heard[0].job_id == heard[1].attempt.job_id == a
    assert heard[0].moves[stolen] == sim.worker_state(thief).data_addr
