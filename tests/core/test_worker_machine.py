"""The worker's state machine, one rule at a time: exact messages and actions for each event."""

from __future__ import annotations

from typing import TypeVar

import msgspec
import pytest

from zmr.core.worker_events import (
    BeatDue,
    CancelAttempt,
    Connected,
    DeliverDecision,
    DeliverLocations,
    DropJob,
    DropPartitions,
    EndSession,
    ExecutorDied,
    FenceStalled,
    Garbled,
    Heard,
    JobContext,
    LogLine,
    LoopTurn,
    NoteLostSource,
    OpenJob,
    ParentGone,
    PublishJob,
    Reported,
    Say,
    StartTask,
    StopWorker,
    TaskEnded,
    TimePassed,
    WorkerAction,
    WorkerView,
)
from zmr.core.worker_machine import WorkerMachine, WorkerParams
from zmr.protocol import messages as m

T = TypeVar("T")
W = "w-1"
VIEW = WorkerView(progress=7)
INTERVAL = 0.5
LIVENESS = 6     # so a session times out after 3 s of silence, and a turn gap over 1.5 s is a stall


def said(actions: list[WorkerAction]) -> list[m.WorkerToCoord]:
    return [a.msg for a in actions if isinstance(a, Say)]


def of(actions: list[WorkerAction], kind: type[T]) -> list[T]:
    return [a for a in actions if isinstance(a, kind)]


def setup(job: str = "j1", epoch: int = 1, ttl: float = 30.0,
          released: list[int] | None = None) -> m.JobSetup:
    return m.JobSetup(job_id=job, app_blob=b"x", args=[], n_reduce=2, peers=["a", "b"], cycle=[0, 1], moved={},
                      owners_epoch=epoch, push=True, batch_bytes=1, window_bytes=1, lease_ttl=ttl,
                      released=m.PartitionSet.of(released or []))


def assign_map(job: str = "j1", task: int = 0, attempt: int = 1) -> m.AssignMap:
    return m.AssignMap(attempt=m.AttemptId(job_id=job, kind="map", task=task, number=attempt),
                       split=m.InputSplit("f", "/f", 0, 1))


def assign_reduce(job: str = "j1", task: int = 0, attempt: int = 1, base: int = 0,
                  commits: list[tuple[int, int]] | None = None) -> m.AssignReduce:
    return m.AssignReduce(attempt=m.AttemptId(job_id=job, kind="reduce", task=task, number=attempt),
                          output_dir="/out", n_maps=4, commits_base=base, commits=commits or [])


def reduce_done(job: str = "j1", task: int = 0, attempt: int = 1) -> m.ReduceDone:
    return m.ReduceDone(worker_id=W, attempt=m.AttemptId(job_id=job, kind="reduce", task=task, number=attempt),
                        records_out=1)


def attempt(job: str = "j1", kind: m.TaskKind = "map", task: int = 0, number: int = 1) -> m.AttemptId:
    return m.AttemptId(job_id=job, kind=kind, task=task, number=number)


class Driver:
    """A machine and its clock."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now
        self.machine = WorkerMachine(WorkerParams(worker_id=W, data_addr="tcp://w:1", python="3.11", pid=9,
                                                  host="h", token="t", heartbeat_interval=INTERVAL,
                                                  heartbeat_liveness=LIVENESS))

    def __call__(self, event: object, dt: float = 0.0) -> list[WorkerAction]:
        self.now += dt
        return self.machine.handle(event, self.now)  # type: ignore[arg-type]  # tests pass any event

    def hear(self, msg: m.CoordToWorker, dt: float = 0.0, view: WorkerView | None = None) -> list[WorkerAction]:
        return self(Heard(msg, view), dt)

    def welcomed(self) -> Driver:
        self(Connected(VIEW))
        self.hear(m.Welcome(worker_id=W, heartbeat_interval=INTERVAL))
        return self


# ------------------------------------------------------------ registration


def test_a_connection_registers_with_what_is_held_running_and_recently_finished() -> None:
    d = Driver().welcomed()
    d.hear(setup("j2"))
    d.hear(assign_map("j2", task=3))
    done = m.MapDone(worker_id=W, attempt=m.AttemptId(job_id="j2", kind="map", task=3, number=1),
                     records_out=1, bytes_out=1)
    d(TimePassed(VIEW), dt=3.1)   # silence: the session ends
    d(Reported(done))             # no session: held back
    held = WorkerView(held=(m.Holding(job_id="j1", maps=[(0, 1)], partitions=[1]),))
    actions = d(Connected(held))
    register, report = said(actions)
    assert register == m.Register(worker_id=W, data_addr="tcp://w:1", python="3.11", pid=9, host="h",
                                  holdings=[m.Holding(job_id="j1", maps=[(0, 1)], partitions=[1]),
                                            m.Holding(job_id="j2")],
                                  running=attempt("j2", task=3), finished_maps=[done], token="t")
    assert report == done and of(actions, Say)[1].keep


def test_messages_from_a_connection_that_is_gone_are_not_acted_on() -> None:
    d = Driver()
    assert d.hear(m.Welcome(worker_id=W, heartbeat_interval=INTERVAL)) == []
    assert d.hear(setup()) == [] and d.machine.jobs == {}


def test_nothing_goes_out_before_the_register_of_a_session() -> None:
    d = Driver()
    d(Reported(reduce_done()))
    d(TaskEnded(attempt(kind="reduce")))
    assert not said(d(TimePassed(VIEW), dt=10))
    first, *rest = said(d(Connected(VIEW)))
    assert isinstance(first, m.Register) and [type(r) for r in rest] == [m.ReduceDone, m.TaskRequest]


def test_welcome_asks_for_a_task_when_idle_and_a_duplicate_asks_nothing() -> None:
    d = Driver()
    d(Connected(VIEW))
    actions = d.hear(m.Welcome(worker_id=W, heartbeat_interval=2.0))
    assert said(actions) == [m.TaskRequest(worker_id=W)]
    assert of(actions, LogLine)[0].event == "registered" and d.machine.heartbeat_interval == 2.0
    assert said(d.hear(m.Welcome(worker_id=W, heartbeat_interval=2.0))) == []


def test_welcome_while_busy_asks_nothing() -> None:
    d = Driver().welcomed()
    d.hear(assign_map())
    d(Connected(VIEW))
    assert said(d.hear(m.Welcome(worker_id=W, heartbeat_interval=INTERVAL))) == []


def test_welcome_resends_the_reduce_done_still_awaiting_its_decision() -> None:
    d = Driver().welcomed()
    d.hear(assign_reduce())
    d(Reported(reduce_done()))
    d(Connected(VIEW))   # e.g. the coordinator restarted: the first ReduceDone may be lost
    assert said(d.hear(m.Welcome(worker_id=W, heartbeat_interval=INTERVAL))) == [reduce_done()]


def test_register_again_registers_at_once_but_at_most_once_per_interval() -> None:
    d = Driver().welcomed()
    assert said(d.hear(m.RegisterAgain(), view=VIEW)) == []   # registered just now, on connecting
    assert not d.machine.registered
    assert [type(x) for x in said(d.hear(m.RegisterAgain(), dt=INTERVAL, view=VIEW))] == [m.Register]
    assert said(d.hear(m.RegisterAgain(), dt=INTERVAL / 2, view=VIEW)) == []
    assert [type(x) for x in said(d.hear(m.RegisterAgain(), dt=INTERVAL / 2, view=VIEW))] == [m.Register]


def test_register_again_needs_the_view() -> None:
    d = Driver().welcomed()
    with pytest.raises(ValueError, match="WorkerView"):
        d.hear(m.RegisterAgain(), dt=INTERVAL)


def test_a_reject_stops_the_worker_and_it_says_nothing_more() -> None:
    d = Driver()
    d(Connected(VIEW))
    actions = d.hear(m.Reject(reason="python 3.9 != 3.11"))
    assert of(actions, StopWorker) == [StopWorker("rejected: python 3.9 != 3.11", failed=False)]
    assert of(actions, LogLine)[0].event == "rejected"
    assert d(TimePassed(VIEW), dt=10) == []


def test_an_executor_that_died_fails_the_worker() -> None:
    actions = Driver()(ExecutorDied())
    assert of(actions, StopWorker) == [StopWorker("the executor died", failed=True)]
    assert of(actions, LogLine)[0].event == "worker_cannot_run_tasks"


def test_a_parent_gone_stops_the_worker_without_failing_it() -> None:
    assert of(Driver()(ParentGone()), StopWorker)[0].failed is False


# ------------------------------------------------------------ jobs and leases


def test_job_setup_publishes_a_context_opens_the_stores_and_drops_released_partitions() -> None:
    d = Driver().welcomed()
    actions = d.hear(setup(released=[1]))
    context = JobContext(setup(released=[1]), ("a", "b"), 1)
    assert actions == [PublishJob(context), OpenJob("j1", 2), DropPartitions("j1", (1,))]
    assert d.machine.leases["j1"] == d.now + 30.0


def test_owner_changes_apply_on_top_of_their_base_epoch_only() -> None:
    d = Driver().welcomed()
    d.hear(setup(epoch=2))
    first = d.machine.jobs["j1"]
    assert d.hear(m.OwnersUpdate(job_id="j1", base_epoch=1, owners_epoch=2, moves={0: "c"})) == []   # old
    [published] = of(d.hear(m.OwnersUpdate(job_id="j1", base_epoch=2, owners_epoch=3, moves={0: "c"})), PublishJob)
    assert published.context == JobContext(first.setup, ("c", "b"), 3) and d.machine.jobs["j1"] is published.context
    assert first.owners == ("a", "b")   # the old value is untouched: a reader holding it sees it whole
    assert of(d.hear(setup(epoch=3)), PublishJob) == []
    assert of(d.hear(setup(epoch=4)), PublishJob)[0].context.owners == ("a", "b")   # a newer setup replaces them
    assert d.hear(m.OwnersUpdate(job_id="j9", base_epoch=8, owners_epoch=9, moves={0: "c"})) == []   # unknown job


def test_an_owner_update_made_from_an_older_epoch_applies_to_a_table_set_up_since() -> None:
    """Set up at epoch 3 between two announcements: the update from epoch 2 names every partition moved
    since, with its owner at epoch 4, so it applies (no setup asked again); one from epoch 4 to 5 too."""
    d = Driver().welcomed()
    d.hear(setup(epoch=3))
    actions = d.hear(m.OwnersUpdate(job_id="j1", base_epoch=2, owners_epoch=4, moves={0: "c", 1: "d"}))
    assert said(actions) == [] and d.machine.jobs["j1"].owners == ("c", "d")
    d.hear(m.OwnersUpdate(job_id="j1", base_epoch=4, owners_epoch=5, moves={1: "e"}))
    assert d.machine.jobs["j1"].owners == ("c", "e") and d.machine.jobs["j1"].owners_epoch == 5


def test_a_missed_owner_update_asks_for_the_setup_again_instead_of_applying_a_change() -> None:
    d = Driver().welcomed()
    d.hear(setup(epoch=2))
    actions = d.hear(m.OwnersUpdate(job_id="j1", base_epoch=3, owners_epoch=4, moves={1: "c"}))
    assert said(actions) == [m.SetupRequest(worker_id=W, job_id="j1")]
    assert d.machine.jobs["j1"].owners == ("a", "b") and d.machine.jobs["j1"].owners_epoch == 2


def test_owners_travel_as_a_cycle_over_peers_with_the_moved_partitions_apart() -> None:
    compact = m.JobSetup(job_id="j", app_blob=b"", args=[], n_reduce=7, peers=["a", "b", "c", "d"], cycle=[0, 1, 2],
                         moved={4: 3, 5: 0}, owners_epoch=1, push=True, batch_bytes=1, window_bytes=1)
    assert m.owner_table(compact) == ("a", "b", "c", "a", "d", "a", "a")
    d = Driver().welcomed()
    bad = msgspec.structs.replace(compact, job_id="j1", moved={9: 0})   # a partition the job does not have
    actions = d.hear(bad)
    assert "j1" not in d.machine.jobs and [a.event for a in of(actions, LogLine)] == ["bad_job_setup"]


def test_a_reduce_assignment_brings_the_commit_table_up_to_date_or_is_given_back() -> None:
    d = Driver().welcomed()
    d.hear(setup())
    d.hear(assign_reduce(task=0, base=0, commits=[(2, 3)]))
    assert d.machine.jobs["j1"].commits == {2: 3} and d.machine.jobs["j1"].commits_version == 1
    assert [d.machine.jobs["j1"].committed(i) for i in range(4)] == [1, 1, 3, 1]
    d(TaskEnded(assign_reduce(task=0).attempt))
    d.hear(assign_reduce(task=1, base=1, commits=[(0, 2), (2, 4)]))
    assert d.machine.jobs["j1"].commits == {0: 2, 2: 4} and d.machine.jobs["j1"].commits_version == 3
    d(TaskEnded(assign_reduce(task=1).attempt))
    actions = d.hear(assign_reduce(task=0, attempt=2, base=5, commits=[(1, 2)]))   # it missed two changes
    attempt = assign_reduce(task=0, attempt=2).attempt
    assert of(actions, StartTask) == [] and d.machine.running is None
    [failed, request] = said(actions)
    assert isinstance(failed, m.TaskFailed) and failed.attempt == attempt and failed.kind == "internal"
    assert request == m.TaskRequest(worker_id=W, finished=attempt)
    assert d.machine.jobs["j1"].commits_version == 3   # the table is as it was
    d.hear(assign_reduce(task=0, attempt=3, base=0, commits=[(1, 2)]))   # from 0: a fresh table
    assert d.machine.jobs["j1"].commits == {1: 2} and d.machine.jobs["j1"].commits_version == 1


def test_map_locations_reach_the_running_reduce_only() -> None:
    d = Driver().welcomed()
    d.hear(setup())
    d.hear(assign_reduce(task=0))
    answer = m.MapLocations(attempt=assign_reduce(task=0).attempt, peers=["x", "y"], maps=[[1, 3], [2]],
                            commits={3: 2})
    assert of(d.hear(answer), DeliverLocations) == [DeliverLocations(answer)]
    assert m.peer_requests(answer, [(1, 4)]) == [m.PeerRequest("x", [(1, 2), (3, 4)], 2),
                                                 m.PeerRequest("y", [(2, 3)], 1)]
    counted = m.MapLocations(attempt=answer.attempt, peers=["x", "y"], counts=[2, 1])
    assert of(d.hear(counted), DeliverLocations) == [DeliverLocations(counted)]
    assert m.peer_requests(counted, [(1, 4)]) == [m.PeerRequest("x", [(1, 4)], 2), m.PeerRequest("y", [(1, 4)], 1)]
    other = m.MapLocations(attempt=assign_reduce(task=1).attempt, peers=[], maps=[], commits={})
    assert of(d.hear(other), DeliverLocations) == []
    for bad in (m.MapLocations(attempt=answer.attempt, peers=["x"], maps=[[1], [2]]),
                m.MapLocations(attempt=answer.attempt, peers=["x"], counts=[1, 2]),
                m.MapLocations(attempt=answer.attempt, peers=["x"], maps=[[1]], counts=[1])):
        actions = d.hear(bad)
        assert of(actions, DeliverLocations) == []
        assert [a.event for a in of(actions, LogLine)] == ["bad_coordinator_message"]


def test_a_lease_expires_exactly_at_its_ttl_and_drops_the_job() -> None:
    d = Driver().welcomed()
    d.hear(setup(ttl=5.0))
    assert of(d(TimePassed(VIEW), dt=4.999), DropJob) == []
    actions = d(TimePassed(VIEW), dt=0.001)
    assert of(actions, DropJob) == [DropJob("j1")] and of(actions, LogLine)[-1].event == "lease_expired"
    assert "j1" not in d.machine.jobs and "j1" not in d.machine.leases


def test_a_ping_renews_the_leases_of_the_jobs_it_names_only() -> None:
    d = Driver().welcomed()
    d.hear(setup("j1", ttl=5.0))
    d.hear(setup("j2", ttl=5.0))
    d.hear(m.Ping(jobs=["j1", "j3"], lease_ttl=5.0), dt=4.0)
    assert "j3" not in d.machine.leases
    assert of(d(TimePassed(VIEW), dt=1.0), DropJob) == [DropJob("j2")]
    assert of(d(TimePassed(VIEW), dt=3.999), DropJob) == []
    assert of(d(TimePassed(VIEW), dt=0.001), DropJob) == [DropJob("j1")]


def test_leases_expire_while_disconnected_too() -> None:
    d = Driver().welcomed()
    d.hear(setup(ttl=5.0))
    assert of(d(TimePassed(VIEW), dt=3.1), EndSession)   # silence: the session ends
    assert not d.machine.beat_due(d.now + 10)
    assert of(d(TimePassed()), DropJob) == []
    assert of(d(TimePassed(), dt=1.9), DropJob) == [DropJob("j1")]


def test_release_partitions_drops_them_within_the_job() -> None:
    d = Driver().welcomed()
    d.hear(setup())   # two partitions
    assert d.hear(m.ReleasePartitions(job_id="j1", partitions=m.PartitionSet.of([0]))) == [DropPartitions("j1", (0,))]
    past_the_job = m.PartitionSet(first=0, bits=b"\xff" * 1000)
    assert d.hear(m.ReleasePartitions(job_id="j1", partitions=past_the_job)) == [DropPartitions("j1", (0, 1))]


def test_a_release_of_a_job_not_set_up_here_is_ignored() -> None:
    d = Driver().welcomed()
    assert d.hear(m.ReleasePartitions(job_id="j9", partitions=m.PartitionSet.of([0, 1]))) == []


def test_sources_lost_goes_to_the_executor() -> None:
    lost = m.SourcesLost(attempt=m.AttemptId(job_id="j1", kind="reduce", task=0, number=1), addr="tcp://x:1")
    assert Driver().welcomed().hear(lost) == [NoteLostSource(lost)]


def test_job_ended_drops_the_job_and_cancels_its_running_attempt_only() -> None:
    d = Driver().welcomed()
    d.hear(setup("j1"))
    d.hear(assign_map("j1"))
    assert d.hear(m.JobEnded(job_id="j2")) == [DropJob("j2")]   # whatever the stores may hold of it
    assert d.hear(m.JobEnded(job_id="j1")) == [CancelAttempt(attempt("j1")), DropJob("j1")]
    assert "j1" not in d.machine.jobs and "j1" not in d.machine.leases


# ------------------------------------------------------------ tasks


def test_assignments_run_one_at_a_time_in_order() -> None:
    d = Driver().welcomed()
    assert d.hear(assign_map(task=0)) == [StartTask(assign_map(task=0))]
    assert d.hear(assign_map(task=1)) == []
    assert d.machine.running == attempt(task=0)
    actions = d(TaskEnded(attempt(task=0)))
    assert said(actions) == [m.TaskRequest(worker_id=W, finished=attempt(task=0))]
    assert of(actions, StartTask) == [StartTask(assign_map(task=1))] and d.machine.running == attempt(task=1)
    d(TaskEnded(attempt(task=1)))
    assert d.machine.running is None and d.machine.idle


def test_reports_go_out_in_order_and_kept() -> None:
    d = Driver().welcomed()
    d.hear(assign_map())
    done = m.MapDone(worker_id=W, attempt=m.AttemptId(job_id="j1", kind="map", task=0, number=1),
                     records_out=1, bytes_out=1)
    assert d(Reported(done)) == [Say(done, keep=True)]
    assert d(TaskEnded(attempt())) == [Say(m.TaskRequest(worker_id=W, finished=attempt()), keep=True)]


def test_cancel_stops_only_the_running_attempt() -> None:
    d = Driver().welcomed()
    d.hear(assign_map(task=0))
    d.hear(assign_map(task=1))   # queued
    assert d.hear(m.CancelTask(attempt=m.AttemptId(job_id="j1", kind="map", task=1, number=1))) == []
    assert d.hear(m.CancelTask(attempt=m.AttemptId(job_id="j1", kind="map", task=0, number=2))) == []
    assert d.hear(m.CancelTask(attempt=m.AttemptId(job_id="j1", kind="reduce", task=0, number=1))) == []
    assert d.hear(m.CancelTask(attempt=attempt())) == [CancelAttempt(attempt())]


def test_a_commit_decision_reaches_only_the_attempt_awaiting_it_and_once() -> None:
    d = Driver().welcomed()
    d.hear(assign_reduce())
    early = m.CommitDecision(attempt=m.AttemptId(job_id="j1", kind="reduce", task=0, number=1), ok=True)
    assert d.hear(early) == []   # nothing awaits a decision yet
    d(Reported(reduce_done()))
    assert d.hear(m.CommitDecision(attempt=m.AttemptId(job_id="j1", kind="reduce", task=0, number=2), ok=True)) == []
    assert d.hear(m.CommitDecision(attempt=m.AttemptId(job_id="j1", kind="reduce", task=1, number=1), ok=True)) == []
    assert d.hear(early) == [DeliverDecision(early)]
    assert d.hear(early) == []
    assert d.machine.awaiting is None


def test_the_wait_for_a_decision_ends_with_the_attempt() -> None:
    d = Driver().welcomed()
    d.hear(assign_reduce())
    d(Reported(reduce_done()))
    d(TaskEnded(attempt(kind="reduce")))   # e.g. the commit wait timed out
    assert d.machine.awaiting is None
    assert d.hear(m.CommitDecision(attempt=m.AttemptId(job_id="j1", kind="reduce", task=0, number=1), ok=True)) == []


# ------------------------------------------------------------ time


def test_heartbeats_go_out_every_interval_with_the_running_attempt() -> None:
    d = Driver().welcomed()
    assert not d.machine.beat_due(d.now + INTERVAL - 0.01)
    assert said(d(TimePassed(), dt=INTERVAL - 0.01)) == []
    view = WorkerView(progress=3, partitions=(m.PartitionStat("j1", 0, 10, 1, 1.0, 2.0),),
                      leases=(m.LeaseStat("j1", 2),))
    assert said(d(TimePassed(view), dt=0.01)) == [m.Heartbeat(worker_id=W, task="", progress=3,
                                                              partitions=list(view.partitions),
                                                              leases=list(view.leases))]
    d.hear(assign_map(task=4, attempt=2))
    assert said(d(TimePassed(), dt=INTERVAL / 2)) == []
    [beat] = said(d(TimePassed(view), dt=INTERVAL / 2))
    assert isinstance(beat, m.Heartbeat) and beat.task == "j1/map-4.2"
    assert beat.partitions == [] and beat.leases == list(view.leases)   # the stat did not change: not repeated
    moved = m.PartitionStat("j1", 0, 20, 2, 1.0, 3.0)
    grown = WorkerView(progress=4, partitions=(moved, m.PartitionStat("j1", 1, 5, 1, 3.0, 3.0)))
    [beat] = said(d(TimePassed(grown), dt=INTERVAL))
    assert isinstance(beat, m.Heartbeat) and beat.partitions == list(grown.partitions)
    d.hear(m.RegisterAgain(), view=grown)   # a registration: the next beat carries every stat again
    d.hear(m.Welcome(worker_id=W, heartbeat_interval=INTERVAL))
    [beat] = said(d(TimePassed(grown), dt=INTERVAL))
    assert isinstance(beat, m.Heartbeat) and beat.partitions == list(grown.partitions)


def test_a_due_heartbeat_needs_the_view() -> None:
    d = Driver().welcomed()
    with pytest.raises(ValueError, match="WorkerView"):
        d(TimePassed(), dt=INTERVAL)


def test_an_unwelcomed_worker_registers_again_instead_of_beating() -> None:
    d = Driver()
    d(Connected(VIEW))
    assert [type(x) for x in said(d(TimePassed(VIEW), dt=INTERVAL))] == [m.Register]
    assert [type(x) for x in said(d(BeatDue(VIEW)))] == [m.Register]


def test_silence_ends_the_session_unless_messages_wait_unread() -> None:
    d = Driver()
    d(Connected(VIEW))
    assert of(d(TimePassed(VIEW), dt=INTERVAL * LIVENESS), EndSession) == []
    assert of(d(TimePassed(VIEW, unread=True), dt=1.0), EndSession) == []
    assert of(d(TimePassed(VIEW), dt=0.0), EndSession) == [EndSession(answered=False)]
    assert not d.machine.connected
    d(Connected(VIEW))
    d.hear(m.Ping(), dt=1.0)
    d(Garbled("bad frame"), dt=2.9)   # garbage is a sign of life too
    assert of(d(TimePassed(VIEW), dt=2.9), EndSession) == []
    assert of(d(TimePassed(VIEW), dt=0.2), EndSession) == [EndSession(answered=True)]


def test_a_worker_that_stood_still_fences_the_reduce_awaiting_its_commit() -> None:
    d = Driver().welcomed()
    d(LoopTurn())
    assert d(LoopTurn(), dt=2.0) == []        # nothing awaits a commit
    d.hear(assign_reduce())
    d(Reported(reduce_done()))
    assert d(LoopTurn(), dt=1.5) == []        # not more than half the liveness timeout
    actions = d(LoopTurn(), dt=1.6)
    [fence] = of(actions, FenceStalled)
    assert fence.seconds == pytest.approx(1.6)
    assert of(actions, LogLine)[0].event == "stalled_awaiting_commit"
