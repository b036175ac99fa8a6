"""The scheduler under random interleavings of joins, deaths, partitions, hangs, completions, app failures,
lost input, stale, duplicate and foreign reports, cancels and clock ticks.

`SimCluster` checks `check_invariants` after every event and audits every decision: no map committed
twice, no reduce committed twice, no second commit grant while the first grantee may still rename, no
assignment during a backoff, reduces only on their owner and only from committed map output. At the end
failures stop, every worker heals, one worker at least is up, and every job must end, and end as the
injected failures and hangs explain: succeeded, failed because a task failed or stalled max_attempts
times, or cancelled.

Throughout, the journal the scheduler wrote must replay to its durable state (`check_replay`), and at
the end a scheduler recovered from that journal must hold the same durable state.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from zmr.core.scheduler import Scheduler, SchedulerParams
from zmr.core.state import REDUCE, JobState, TaskState
from zmr.protocol import messages as m
from zmr.testing import SimCluster, check_replay, durable_view

PARAMS = SchedulerParams(python="3.11", heartbeat_interval=0.5, heartbeat_liveness=4, task_timeout=3.0,
                         max_attempts=4, retry_base=1.0, retry_cap=4.0, max_worker_losses=10_000)
PICK = st.integers(min_value=0, max_value=63)
REPLAYABLE = (m.Heartbeat, m.TaskRequest, m.MapDone, m.ReduceDone, m.ReduceCommitted, m.TaskFailed)
F = TypeVar("F", bound=Callable[..., None])
T = TypeVar("T")


def step(fn: F) -> F:
    """Mark the machine broken while a rule runs, so teardown does not pile a second failure on the first."""
    @functools.wraps(fn)
    def wrapper(self: ClusterMachine, *args: Any, **kwargs: Any) -> None:
        self.broken = True
        fn(self, *args, **kwargs)
        self.broken = False
    return wrapper  # type: ignore[return-value]  # wraps a rule


def choose(items: list[T], i: int) -> T:
    return items[i % len(items)]


class ClusterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sim = SimCluster(PARAMS)
        self.injected: Counter[tuple[str, str, int]] = Counter()   # app/io failures injected per task
        self.cancelled: set[str] = set()
        self.broken = False

    # ------------------------------------------------------------ views

    def up(self) -> list[str]:
        return [w for w, worker in self.sim.workers.items() if worker.up]

    def holding(self, kind: type | None = None) -> list[str]:
        return [w for w in self.sim.busy() if kind is None or isinstance(self.sim.assignment(w), kind)]

    def cut_off(self, worker: str) -> bool:
        """Nothing it sends arrives (a dead worker's late message still may)."""
        return self.sim.workers[worker].up and not self.sim.workers[worker].connected

    def running_jobs(self) -> list[str]:
        return [j for j, job in self.sim.scheduler.jobs.items() if not job.state.ended]

    # ------------------------------------------------------------ rules

    @initialize(workers=st.integers(1, 4),
                jobs=st.lists(st.tuples(st.integers(1, 3), st.integers(1, 4)), min_size=1, max_size=2))
    @step
    def start(self, workers: int, jobs: list[tuple[int, int]]) -> None:
        for _ in range(workers):
            self.sim.add_worker()
        for n_splits, n_reduce in jobs:
            self.sim.submit(n_splits, n_reduce)

    @precondition(lambda self: len(self.up()) < 5)
    @rule()
    @step
    def join(self) -> None:
        self.sim.add_worker()

    @precondition(lambda self: len(self.sim.scheduler.jobs) < 4)
    @rule(n_splits=st.integers(1, 3), n_reduce=st.integers(1, 3))
    @step
    def submit(self, n_splits: int, n_reduce: int) -> None:
        self.sim.submit(n_splits, n_reduce)

    def _work(self, i: int, n: int, commit: bool) -> None:
        """Up to `n` tasks of healthy workers finish, in turn; with `commit` False a granted reduce holds off
        its rename."""
        for k in range(n):
            holding = [w for w in self.holding() if self.sim.workers[w].healthy]
            if not holding:
                return
            self.sim.finish(choose(holding, i + k), commit=commit)

    # Work is what most of a real run is made of: two rules for it double its share of the steps, so that
    # runs get through the maps into the reduce phase, where most of the interesting faults are.
    work = rule(i=PICK, n=st.integers(1, 10), commit=st.booleans())(step(_work))
    more_work = rule(i=PICK, n=st.integers(1, 10), commit=st.booleans())(step(_work))

    def _fail(self, worker: str, kind: m.FailureKind) -> None:
        task = self.sim.assignment(worker)
        assert task is not None
        self.injected[(task.attempt.job_id, task.attempt.kind, task.attempt.task)] += 1
        self.sim.fail(worker, kind=kind)

    @precondition(lambda self: self.holding())
    @rule(i=PICK, kind=st.sampled_from(["app", "io"]))
    @step
    def fail(self, i: int, kind: m.FailureKind) -> None:
        """A task fails: the app raised, or an I/O error."""
        self._fail(choose(self.holding(), i), kind)

    @precondition(lambda self: self.holding(m.AssignReduce))
    @rule(i=PICK, kind=st.sampled_from(["app", "io"]))
    @step
    def fail_reduce(self, i: int, kind: m.FailureKind) -> None:
        """A reduce fails (a rule of its own, so that reduces fail as often as maps do)."""
        self._fail(choose(self.holding(m.AssignReduce), i), kind)

    @precondition(lambda self: self.holding(m.AssignReduce))
    @rule(i=PICK, missing=st.lists(PICK, max_size=3))
    @step
    def lose_input(self, i: int, missing: list[int]) -> None:
        """A reduce reports map output it could not get (mostly real maps, sometimes nonsense)."""
        worker = choose(self.holding(m.AssignReduce), i)
        task = self.sim.assignment(worker)
        assert task is not None
        job = self.sim.scheduler.jobs.get(task.attempt.job_id)   # None: ended and archived by a restart
        n_maps = len(job.maps) if job is not None else 1
        self.sim.fail(worker, kind="missing_data", missing=[x % (n_maps + 1) - 1 for x in missing])

    @precondition(lambda self: self.up())
    @rule(i=PICK, what=st.sampled_from(["kill", "hang", "unhang", "cut", "reconnect"]))
    @step
    def disturb(self, i: int, what: str) -> None:
        """A worker dies (one stays up), its task stops (or resumes) making progress, or its control
        connection breaks (or heals)."""
        worker = choose(self.up(), i)
        if what == "kill":
            if len(self.up()) > 1:
                self.sim.kill(worker)
        elif what in ("hang", "unhang"):
            self.sim.hang(worker, what == "hang")
        else:
            self.sim.isolate(worker, what == "cut")

    @rule(dt=st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.5]))
    @step
    def wait(self, dt: float) -> None:
        """Time passes with heartbeats and ticks (or just one tick)."""
        if dt:
            self.sim.advance(dt)
        else:
            self.sim.tick()

    @precondition(lambda self: any(w.reports for w in self.sim.workers.values()))
    @rule(i=PICK)
    @step
    def duplicate(self, i: int) -> None:
        """A worker's last report arrives twice (mostly from a worker still at its task: that report is live)."""
        live = [w for w in self.holding() if self.sim.workers[w].reports]
        source = self.sim.workers[choose(live, i)] if live else choose(
            [w for w in self.sim.workers.values() if w.reports], i)
        last = source.reports[-1]
        if isinstance(last, REPLAYABLE) and not self.cut_off(source.id):
            self.sim.send(source.id, last)

    @precondition(lambda self: any(w.reports for w in self.sim.workers.values()))
    @rule(i=PICK, j=PICK, foreign=st.booleans())
    @step
    def replay(self, i: int, j: int, foreign: bool) -> None:
        """One of a worker's recent reports arrives again, late, from itself or from another worker."""
        source = choose([w for w in self.sim.workers.values() if w.reports], i)
        recent = [r for r in list(source.reports)[-8:] if isinstance(r, REPLAYABLE)]
        if not recent:
            return
        sender = choose(list(self.sim.workers), j) if foreign else source.id
        if self.cut_off(sender):
            return
        self.sim.send(sender, msgspec.structs.replace(choose(recent, j), worker_id=sender))

    @precondition(lambda self: self.holding())
    @rule(i=PICK, report=st.sampled_from([m.MapDone, m.ReduceDone, m.ReduceCommitted]))
    @step
    def confused(self, i: int, report: type[m.MapDone | m.ReduceDone | m.ReduceCommitted]) -> None:
        """A worker reports on the attempt it runs with the wrong message (e.g. committed, never granted)."""
        worker = choose(self.holding(), i)
        task = self.sim.assignment(worker)
        assert task is not None
        if self.cut_off(worker):
            return
        granted = (isinstance(task, m.AssignReduce)
                   and self.sim.task(task.attempt.job_id, REDUCE, task.attempt.task).committing == task.attempt.number)
        if report is m.ReduceCommitted and granted:
            return   # that would be the truth, but the rename never happened
        ids = {"worker_id": worker, "attempt": task.attempt}
        extra = {m.MapDone: {"records_out": 1, "bytes_out": 1}, m.ReduceDone: {"records_out": 1}}.get(report, {})
        self.sim.send(worker, report(**ids, **extra))  # type: ignore[arg-type]  # a report of either shape

    @rule()
    @step
    def restart_coordinator(self) -> None:
        """The coordinator is killed and restarted from its journal; the workers come back to it."""
        self.sim.restart_coordinator()

    @precondition(lambda self: not self.cancelled and len(self.running_jobs()) > 1)
    @rule(i=PICK)
    @step
    def cancel(self, i: int) -> None:
        job = choose(self.running_jobs(), i)
        self.cancelled.add(job)
        self.sim.client_send(m.CancelJob(job_id=job))

    @invariant()
    def the_journal_replays_to_the_live_state(self) -> None:
        check_replay(list(self.sim.journal), self.sim.scheduler)

    # ------------------------------------------------------------ the end: failures stop

    def teardown(self) -> None:
        """Failures stop: hung and cut-off workers recover, one worker at least is up, and play goes on until
        every job has ended; then each job's end must be the one its injected failures explain."""
        if self.broken:
            return
        for worker in self.sim.workers.values():
            if worker.up:
                self.sim.hang(worker.id, False)
                self.sim.isolate(worker.id, False)
        if not self.up():
            self.sim.add_worker()
        self.sim.run(max_steps=2_000)
        for info in self.sim.scheduler.archived.values():   # ended before a restart: only the status is kept
            assert self.sim.finished.get(info.job_id) is JobState(info.state), (info.job_id, info.state)
        stalls = Counter((a.job_id, a.kind, a.task) for w in self.sim.workers.values() for a in w.stalled)
        for job in self.sim.scheduler.jobs.values():
            assert self.sim.finished.get(job.id) is job.state, (job.id, job.state)
            hopeless = [t.label for t in job.maps + job.reduces
                        if self.injected[(job.id, t.kind, t.index)] + stalls[(job.id, t.kind, t.index)]
                        >= PARAMS.max_attempts]
            if job.id in self.cancelled and job.state is JobState.CANCELLED:
                continue
            if job.state is JobState.FAILED:
                assert hopeless, f"{job.id} failed without a reason: {job.error}"
                assert any(job.error.startswith(f"{label} failed ") for label in hopeless), job.error
                continue
            assert job.state is JobState.SUCCEEDED, (job.id, job.state, job.error, hopeless)
            for reduce in job.reduces:
                assert reduce.state is TaskState.DONE
                assert reduce.committed in self.sim.renamed[(job.id, reduce.index)]
        recovered = Scheduler(PARAMS)
        recovered.recover(list(self.sim.journal), self.sim.clock.now)
        assert durable_view(recovered.book) == durable_view(self.sim.scheduler.book)


# Derandomized, so every run plays the same examples; these catch five of the six scheduler bugs fixed so
# far when the fix is reverted (the sixth, a backup of a reduce ahead of lost map output, has a unit test).
# To hunt for new bugs, drop `derandomize` and raise `max_examples`.
TestScheduler = ClusterMachine.TestCase
TestScheduler.settings = settings(max_examples=150, stateful_step_count=60, deadline=None, derandomize=True,
                                  database=None, suppress_health_check=[HealthCheck.too_slow])


class CopiesClusterMachine(ClusterMachine):
    """The same faults with `replicate` on: dead owners' partitions pull second copies of old attempts
    while those maps run again, and every job still ends as its failures explain."""

    def __init__(self) -> None:
        super().__init__()
        self.sim = SimCluster(dataclasses.replace(PARAMS, replicate=True))

    def open_owners(self) -> list[str]:
        """Live owners of partitions not reduced yet, in jobs past their map phase (the copies' case)."""
        up = set(self.up())
        return sorted({job.owners[t.index] for job in self.sim.scheduler.jobs.values()
                       if job.state is JobState.RUNNING and job.reduce_phase
                       for t in job.reduces if t.state is not TaskState.DONE and job.owners[t.index] in up})

    @precondition(lambda self: len(self.up()) > 2 and self.open_owners())
    @rule(i=PICK)
    @step
    def kill_open_owner(self, i: int) -> None:
        """An owner dies in the reduce phase: its partitions' new owners may pull second copies."""
        self.sim.kill(choose(self.open_owners(), i))


TestSchedulerWithCopies = CopiesClusterMachine.TestCase
TestSchedulerWithCopies.settings = settings(max_examples=200, stateful_step_count=60, deadline=None,
                                            derandomize=True, database=None,
                                            suppress_health_check=[HealthCheck.too_slow])
