"""The worker's state machine under random interleavings of coordinator messages (welcomes, job set-ups and
owner moves, pings, assignments, cancels, commit decisions, job ends), the executor's reports and the
passing of time, connected or not.

The test plays the executor (it starts what the machine hands it and ends it when it likes) and checks,
after every step, what the machine promises: at most one attempt runs, and it is the one the machine
names; a job whose lease ran out holds nothing; a commit decision reaches the executor only for the
attempt awaiting it, once; in each session nothing goes out before the Register, and no heartbeat before
the Welcome; only the running attempt is ever cancelled.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from zmr.core.worker_events import (
    CancelAttempt,
    Connected,
    DeliverDecision,
    DropJob,
    EndSession,
    Heard,
    LoopTurn,
    Reported,
    Say,
    StartTask,
    StopWorker,
    TaskEnded,
    TimePassed,
    WorkerAction,
    WorkerEvent,
    WorkerView,
)
from zmr.core.worker_machine import WorkerMachine, WorkerParams
from zmr.protocol import messages as m

W = "w-1"
INTERVAL = 0.5
VIEW = WorkerView()
JOBS = st.sampled_from(["j1", "j2", "j3"])
SMALL = st.integers(0, 2)


class WorkerProtocol(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.machine = WorkerMachine(WorkerParams(worker_id=W, data_addr="tcp://w:1", python="3.11",
                                                  heartbeat_interval=INTERVAL, heartbeat_liveness=4))
        self.now = 0.0
        self.running: m.AttemptId | None = None          # what the played executor runs
        self.assigned: dict[m.AttemptId, m.AssignMap | m.AssignReduce] = {}
        self.awaiting: m.AttemptId | None = None          # the reduce that reported done, and no decision yet
        self.session = False                               # a session is open (as the machine's actions say)
        self.first_in_session = False                      # the next Say is the session's first
        self.welcomed = False
        self.stopped = False

    # ------------------------------------------------------------ driving

    def feed(self, event: WorkerEvent, dt: float = 0.0) -> list[WorkerAction]:
        self.now += dt
        if self.stopped:   # a stopped worker does nothing more (its process exits, its work dir goes)
            assert self.machine.handle(event, self.now) == []
            return []
        if isinstance(event, Connected):
            self.session, self.first_in_session, self.welcomed = True, True, False
        actions = self.machine.handle(event, self.now)
        for action in actions:
            self.check(event, action)
        return actions

    def check(self, event: WorkerEvent, action: WorkerAction) -> None:
        if isinstance(action, Say):
            assert self.session, f"{action.msg} sent outside a session"
            if self.first_in_session:
                assert isinstance(action.msg, m.Register), f"{action.msg} went out before the Register"
                self.first_in_session = False
            if isinstance(action.msg, m.Heartbeat):
                assert self.welcomed, "a heartbeat before the Welcome"
            if isinstance(action.msg, m.Register):
                self.welcomed = False
        elif isinstance(action, StartTask):
            assert self.running is None, f"{action.assign} started while {self.running} runs"
            self.running = action.assign.attempt
        elif isinstance(action, CancelAttempt):
            assert action.attempt == self.running, f"cancelled {action.attempt}, but {self.running} runs"
        elif isinstance(action, DeliverDecision):
            d = action.decision
            assert self.awaiting == d.attempt, f"{d} delivered while {self.awaiting} awaits"
            self.awaiting = None
        elif isinstance(action, EndSession):
            self.session = False
        elif isinstance(action, StopWorker):
            self.stopped = True
        elif isinstance(action, DropJob):
            assert action.job_id not in self.machine.jobs and action.job_id not in self.machine.leases

    def hear(self, msg: m.CoordToWorker) -> list[WorkerAction]:
        if isinstance(msg, m.Welcome) and not self.machine.registered:
            self.welcomed = True
        return self.feed(Heard(msg, VIEW))

    # ------------------------------------------------------------ rules: connection and time

    @rule()
    def connect(self) -> None:
        self.feed(Connected(VIEW))

    @rule(dt=st.sampled_from([0.0, 0.1, 0.5, 1.0, 3.0, 12.0]), unread=st.booleans())
    def time_passes(self, dt: float, unread: bool) -> None:
        self.feed(TimePassed(VIEW, unread=unread), dt)
        if not self.stopped:
            assert all(expiry > self.now for expiry in self.machine.leases.values()), "a lapsed lease survived"

    @rule(dt=st.sampled_from([0.1, 2.5]))
    def loop_turn(self, dt: float) -> None:
        self.feed(LoopTurn(), dt)

    # ------------------------------------------------------------ rules: the coordinator

    @rule(repeat=st.booleans())
    def welcome(self, repeat: bool) -> None:
        for _ in range(1 + repeat):
            self.hear(m.Welcome(worker_id=W, heartbeat_interval=INTERVAL))

    @rule()
    def register_again(self) -> None:
        self.hear(m.RegisterAgain())

    @rule(reject=st.integers(0, 30))
    def reject(self, reject: int) -> None:
        if reject == 0:   # rare: it ends the run
            self.hear(m.Reject(reason="no"))

    @rule(job=JOBS, epoch=st.integers(1, 4), ttl=st.sampled_from([1.0, 5.0, 30.0]))
    def job_setup(self, job: str, epoch: int, ttl: float) -> None:
        self.hear(m.JobSetup(job_id=job, app_blob=b"x", args=[], n_reduce=2, peers=[f"o{epoch}"], cycle=[0],
                             moved={}, owners_epoch=epoch, push=True, batch_bytes=1, window_bytes=1, lease_ttl=ttl))

    @rule(job=JOBS, epoch=st.integers(1, 4))
    def owners_update(self, job: str, epoch: int) -> None:
        before = self.machine.jobs.get(job)
        self.hear(m.OwnersUpdate(job_id=job, base_epoch=epoch - 1, owners_epoch=epoch, moves={1: f"u{epoch}"}))
        after = self.machine.jobs.get(job)
        assert after is before or (before is not None and after is not None
                                   and after.owners_epoch > before.owners_epoch)

    @rule(jobs=st.lists(JOBS, max_size=3), ttl=st.sampled_from([1.0, 5.0]))
    def ping(self, jobs: list[str], ttl: float) -> None:
        self.hear(m.Ping(jobs=jobs, lease_ttl=ttl))

    @rule(job=JOBS, task=SMALL, number=st.integers(1, 3), reduce=st.booleans())
    def assign(self, job: str, task: int, number: int, reduce: bool) -> None:
        msg: m.AssignMap | m.AssignReduce
        if reduce:
            msg = m.AssignReduce(attempt=m.AttemptId(job_id=job, kind="reduce", task=task, number=number),
                                 output_dir="/o", n_maps=2, commits_base=0, commits=[])
        else:
            msg = m.AssignMap(attempt=m.AttemptId(job_id=job, kind="map", task=task, number=number),
                              split=m.InputSplit("f", "/f", 0, 1))
        self.assigned[msg.attempt] = msg
        self.hear(msg)

    @rule(job=JOBS, task=SMALL, number=st.integers(1, 3), ok=st.booleans(), aimed=st.booleans())
    def commit_decision(self, job: str, task: int, number: int, ok: bool, aimed: bool) -> None:
        if aimed and self.running is not None:
            job, task, number = self.running.job_id, self.running.task, self.running.number
        self.hear(m.CommitDecision(attempt=m.AttemptId(job_id=job, kind="reduce", task=task, number=number), ok=ok))

    @rule(job=JOBS, task=SMALL, number=st.integers(1, 3), kind=st.sampled_from(["map", "reduce"]),
          aimed=st.booleans())
    def cancel(self, job: str, task: int, number: int, kind: str, aimed: bool) -> None:
        if aimed and self.running is not None:
            job, task, number, kind = self.running.job_id, self.running.task, self.running.number, self.running.kind
        self.hear(m.CancelTask(attempt=m.AttemptId(job_id=job, kind=kind, task=task, number=number)))

    @rule(job=JOBS)
    def job_ended(self, job: str) -> None:
        heard = self.session and not self.stopped
        self.hear(m.JobEnded(job_id=job))
        if heard:
            assert job not in self.machine.jobs and job not in self.machine.leases

    # ------------------------------------------------------------ rules: the executor

    @precondition(lambda self: self.running is not None and self.running.kind == "reduce"
                  and self.awaiting is None)
    @rule()
    def reduce_done(self) -> None:
        a = self.running
        assert a is not None
        self.awaiting = a
        self.feed(Reported(m.ReduceDone(worker_id=W, attempt=a, records_out=1)))

    @precondition(lambda self: self.running is not None)
    @rule(outcome=st.sampled_from(["done", "failed", "cancelled"]))
    def task_ends(self, outcome: str) -> None:
        a = self.running
        assert a is not None
        ids = {"worker_id": W, "attempt": a}
        if outcome == "failed":
            self.feed(Reported(m.TaskFailed(**ids, kind="app", error="boom")))
        elif outcome == "done" and a.kind == "map":
            self.feed(Reported(m.MapDone(**ids, records_out=1, bytes_out=1)))
        elif outcome == "done":
            self.feed(Reported(m.ReduceCommitted(**ids)))
        self.running, self.awaiting = None, None
        self.feed(TaskEnded(a))

    # ------------------------------------------------------------ invariants

    @invariant()
    def one_attempt_runs_and_the_machine_names_it(self) -> None:
        assert self.machine.running == self.running or self.stopped

    @invariant()
    def contexts_live_only_under_a_lease(self) -> None:
        assert set(self.machine.jobs) <= set(self.machine.leases)

    @invariant()
    def only_a_reported_reduce_awaits(self) -> None:
        pending = self.machine.awaiting
        if pending is not None and not self.stopped:
            assert pending.attempt == self.running


TestWorkerProtocol = WorkerProtocol.TestCase
TestWorkerProtocol.settings = settings(max_examples=200, stateful_step_count=50, deadline=None, derandomize=True,
                                       database=None)
