"""Test doubles that ship with zmr: a fake clock, a simulated cluster around the pure scheduler, and the
scheduler's invariants.

- `FakeClock`: time that moves only when a test says so.
- `SimCluster`: drives a `Scheduler` the way the coordinator shell does, playing idealised workers and
  clients by peer id. Messages are delivered at once and in order. Each worker's side of the protocol is
  the real `WorkerMachine` (welcome, job set-up, owner moves, cancels, commit decisions, heartbeats); the
  simulation plays its executor, its data and its timing: a worker beats once per `advance` step, and
  runs its task only when the test says `finish`, `fail` or `kill`. Map output is modelled, not
  computed: a finished map "pushes" to the owners it knows of and keeps its own copy; a reduce needs
  every source it is given, pushed to it or pulled from a live mapper, or it reports `missing_data`,
  as the real executor does. While it runs, the simulation audits what the scheduler says: no second
  commit of a task, no assignment during a backoff, reduces only on their partition's owner (backups
  aside) and only from committed map output.
- `check_invariants(scheduler)`: the consistency rules of the scheduler's state, run after every step.
- `check_replay(records, scheduler)`: the journal a scheduler wrote replays to its durable state.

Nothing here touches a socket, a file or the wall clock, and no step scans every task (only
`check_invariants` walks everything, and `check=False` turns it off), so this driver can grow into the
at-scale simulator of docs/architecture.md section 10 (Scale).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from zmr.core.durable import Ledger
from zmr.core.scheduler import (
    Action,
    Event,
    JobFinished,
    Journal,
    Log,
    Received,
    Scheduler,
    SchedulerParams,
    Send,
    Tick,
)
from zmr.core.state import MAP, REDUCE, Job, JobState, Task, TaskState, WorkerEntry
from zmr.core.worker_events import (
    BeatDue,
    CancelAttempt,
    Connected,
    DeliverDecision,
    DeliverLocations,
    DropJob,
    Heard,
    NoteLostSource,
    Reported,
    Say,
    StartTask,
    StopWorker,
    TaskEnded,
    WorkerAction,
    WorkerEvent,
    WorkerView,
)
from zmr.core.worker_machine import WorkerMachine, WorkerParams
from zmr.protocol import journal as jr
from zmr.protocol import messages as m

__all__ = ["FakeClock", "InvariantViolation", "SimCluster", "SimStuck", "SimWorker", "check_invariants", "check_replay"]

PYTHON = "3.11"
Assignment = m.AssignMap | m.AssignReduce


class InvariantViolation(AssertionError):
    """The scheduler broke one of its rules (see `check_invariants` and `SimCluster`)."""


class SimStuck(AssertionError):
    """`SimCluster.run` did not see every job end within its step budget."""


class FakeClock:
    """A clock for tests: `now` moves only by `advance`."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, dt: float) -> float:
        if dt < 0:
            raise ValueError(f"time cannot go back (advance by {dt})")
        self.now += dt
        return self.now


# ---------------------------------------------------------------- the simulated cluster


@dataclass
class SimWorker:
    """One worker process as the simulation plays it: the real protocol machine, a simulated executor."""

    id: str
    peer: bytes
    addr: str
    machine: WorkerMachine
    up: bool = True               # the process runs (kill is for good: a restart is a new incarnation)
    connected: bool = True        # its control messages get through (False: a network partition)
    stuck: bool = False           # it beats, but its task makes no progress
    slowness: int = 1             # its task moves on at one beat in this many (a straggler)
    hold_commit: bool = False     # after a granted commit, wait for `SimCluster.commit` before renaming
    progress: int = 0             # of the attempt it runs, as the executor counts it
    beats: int = 0                # ... and the beats since it began
    task: Assignment | None = None
    stalled: set[m.AttemptId] = field(default_factory=set)   # attempts it held while stuck: each may time out
    awaiting: bool = False        # the current reduce reported ReduceDone and waits for the decision
    locating: bool = False        # the current reduce asked where the map output it lacks is kept ...
    asked: list[int] = field(default_factory=list)   # ... of these maps
    asked_runs: list[tuple[int, int]] = field(default_factory=list)   # ... in these runs (what LocateMaps said)
    granted: bool | None = None   # the CommitDecision for the current reduce, once it came
    kept: set[tuple[str, int, int]] = field(default_factory=set)   # (job, map, attempt) output kept here
    inbox: deque[m.FromCoordinator] = field(default_factory=lambda: deque(maxlen=1000))
    reports: deque[m.WorkerToCoord] = field(default_factory=lambda: deque(maxlen=1000))

    @property
    def healthy(self) -> bool:
        return self.up and self.connected and not self.stuck

    def runs(self, attempt: m.AttemptId) -> bool:
        return self.task is not None and self.task.attempt == attempt

    def owners(self, job_id: str) -> list[str]:
        """The owner address of each partition of the job, as this worker last heard."""
        context = self.machine.job(job_id)
        return list(context.owners) if context else []

    def view(self) -> WorkerView:
        """What the worker's stores hold (kept map output only: received batches are not modelled)."""
        jobs = sorted({job for job, _, _ in self.kept})
        held = tuple(m.Holding(job_id=job, maps=sorted((t, a) for j, t, a in self.kept if j == job)) for job in jobs)
        return WorkerView(held=held, progress=self.progress)


class SimCluster:
    """A scheduler with simulated workers and clients; every step is checked when `check` is on."""

    def __init__(self, params: SchedulerParams | None = None, *, clock: FakeClock | None = None,
                 check: bool = True) -> None:
        self.params = params or SchedulerParams(python=PYTHON)
        self.clock = clock or FakeClock()
        self.scheduler = Scheduler(self.params)
        self.check = check
        self.workers: dict[str, SimWorker] = {}                  # latest incarnation per worker id
        self.clients: dict[bytes, list[m.FromCoordinator]] = {}
        self.finished: dict[str, JobState] = {}                  # JobFinished actions seen
        self.renamed: dict[tuple[str, int], list[int]] = {}     # (job, partition) -> attempts renamed
        self.fed: dict[tuple[str, int], list[int]] = {}   # ... of a step job's reduces that fed later steps
        self._by_peer: dict[bytes, SimWorker] = {}
        self._by_addr: dict[str, SimWorker] = {}
        self._busy: dict[str, None] = {}                          # ordered set: workers holding a task
        self._incarnations = itertools.count(1)
        self._outputs = itertools.count(1)
        self._pushes: dict[tuple[str, int, int], list[str]] = {}  # map attempt -> owners it pushed to
        self._kept_by: dict[tuple[str, int, int], str] = {}       # map attempt -> address it was kept at
        self._assigned: dict[tuple[str, str, int, int], str] = {}  # attempt -> worker it was sent to
        self._committed_maps: set[tuple[str, int, int]] = set()
        self._committed_reduces: set[tuple[str, int]] = set()
        self._grants: dict[tuple[str, int], int] = {}            # (job, partition) -> last granted attempt
        self._lost: set[tuple[str, str, int]] = set()            # (job, task label, attempt) given up
        self.journal: list[jr.Record] = []                        # what the coordinator made durable
        self.restarts = 0

    # ------------------------------------------------------------ views

    @property
    def liveness_timeout(self) -> float:
        return self.params.heartbeat_interval * self.params.heartbeat_liveness

    def job(self, job_id: str) -> Job:
        return self.scheduler.jobs[job_id]

    def task(self, job_id: str, kind: str, index: int) -> Task:
        return (self.job(job_id).maps if kind == MAP else self.job(job_id).reduces)[index]

    def worker_state(self, worker_id: str) -> WorkerEntry:
        return self.scheduler.workers[worker_id]

    def assignment(self, worker_id: str) -> Assignment | None:
        return self.workers[worker_id].task

    def busy(self) -> list[str]:
        """Workers holding a task, oldest assignment first."""
        return list(self._busy)

    def received(self, worker_id: str) -> list[m.FromCoordinator]:
        return list(self.workers[worker_id].inbox)

    # ------------------------------------------------------------ clients

    def client_send(self, msg: m.ClientToCoord, client: bytes = b"client") -> list[m.FromCoordinator]:
        """Send as a client; returns the replies it got."""
        inbox = self.clients.setdefault(client, [])
        start = len(inbox)
        self._pump(Received(client, msg))
        return inbox[start:]

    def spec(self, n_splits: int = 4, n_reduce: int = 2, output_dir: str | None = None) -> m.JobSpec:
        splits = [m.InputSplit(f"in-{i}", f"/in/{i}", 0, 100) for i in range(n_splits)]
        return m.JobSpec(app_name="sim", app_blob=b"x", splits=splits, n_reduce=n_reduce,
                         output_dir=output_dir or f"/out/{next(self._outputs)}")

    def submit(self, n_splits: int = 4, n_reduce: int = 2, *, client: bytes = b"client",
               steps: Sequence[tuple[str, int, Sequence[str]]] = ()) -> str:
        """Submit a job; returns its id (a refusal raises). `steps`: a multi-step job's steps as (name,
        n_reduce, inputs), in graph order ("<files>" names the input files)."""
        spec = self.spec(n_splits, n_reduce)
        if steps:
            spec = msgspec.structs.replace(spec, steps=[
                m.StepPlan(name=name, n_reduce=width, inputs=list(inputs), has_map=True, has_reduce=True)
                for name, width, inputs in steps])
        replies = self.client_send(m.SubmitJob(spec=spec), client)
        accepted = [r for r in replies if isinstance(r, m.JobAccepted)]
        if not accepted:
            raise AssertionError(f"job refused: {replies}")
        return accepted[0].job_id

    # ------------------------------------------------------------ workers

    def add_worker(self, worker_id: str | None = None, *, python: str | None = None) -> str:
        """Start a worker (a new incarnation if the id was used before) and register it."""
        n = next(self._incarnations)
        wid = worker_id or f"w{n}"
        old = self.workers.get(wid)
        if old is not None and old.up:
            raise ValueError(f"worker {wid} is already up")
        addr = f"tcp://{wid}.sim:{7000 + n}"
        machine = WorkerMachine(WorkerParams(worker_id=wid, data_addr=addr, python=python or self.params.python,
                                             pid=1, host="sim", heartbeat_interval=self.params.heartbeat_interval,
                                             heartbeat_liveness=self.params.heartbeat_liveness, recent_maps=8))
        worker = SimWorker(wid, f"peer-{wid}-{n}".encode(), addr, machine)
        self.workers[wid] = self._by_peer[worker.peer] = self._by_addr[worker.addr] = worker
        self._say(worker, [Connected(worker.view())])
        return wid

    def finish(self, worker_id: str, *, commit: bool = True) -> list[Action]:
        """The worker completes its task. A reduce with `commit=False` stops after the commit is granted."""
        worker = self._holding(worker_id)
        task = worker.task
        if isinstance(task, m.AssignMap):
            return self._say(worker, self._finish_map(worker, task))
        assert task is not None
        if worker.granted:
            return self._say(worker, self._rename(worker, task))
        if worker.awaiting:   # no decision came: the executor's commit wait times out, nothing is renamed
            self._drop_task(worker)
            return self._say(worker, [TaskEnded(task.attempt)])
        if worker.locating:   # no locations came: the executor's wait for them times out
            self._drop_task(worker)
            return self._say(worker, [Reported(m.TaskFailed(
                worker_id=worker.id, attempt=task.attempt, kind="internal",
                error="no answer from the coordinator to LocateMaps")), TaskEnded(task.attempt)])
        worker.hold_commit = not commit
        return self._say(worker, self._finish_reduce(worker, task))

    def commit(self, worker_id: str) -> list[Action]:
        """A reduce that holds a granted commit renames its output and reports it."""
        worker = self._holding(worker_id)
        if not (isinstance(worker.task, m.AssignReduce) and worker.granted):
            raise ValueError(f"worker {worker_id} holds no granted commit")
        return self._say(worker, self._rename(worker, worker.task))

    def fail(self, worker_id: str, *, kind: m.FailureKind = "app", error: str = "ValueError: boom",
             traceback: str = "Traceback (most recent call last):\nValueError: boom",
             missing: list[int] | None = None) -> list[Action]:
        """The worker's task fails (the app raised, or `missing_data` with the maps it could not get)."""
        worker = self._holding(worker_id)
        task = worker.task
        assert task is not None
        self._drop_task(worker)
        failed = m.TaskFailed(worker_id=worker.id, attempt=task.attempt,
                              kind=kind, error=error, traceback=traceback, missing_maps=missing or [])
        return self._say(worker, [Reported(failed), TaskEnded(task.attempt)])

    def kill(self, worker_id: str) -> None:
        """The process dies: it says nothing more and its data is gone. The scheduler notices by liveness."""
        worker = self.workers[worker_id]
        worker.up = False
        worker.task = None
        worker.kept.clear()
        self._busy.pop(worker_id, None)

    def isolate(self, worker_id: str, isolated: bool = True) -> None:
        """Cut the worker's control connection (messages both ways are lost), or restore it.

        A restored connection is a new one, so the coordinator sees a new routing id (as with a DEALER
        that reconnects without a fixed identity). The data plane keeps working throughout.
        """
        worker = self.workers[worker_id]
        if not isolated and not worker.connected:
            worker.peer = f"{worker.peer.decode()}+".encode()
            self._by_peer[worker.peer] = worker
        worker.connected = not isolated

    def slow(self, worker_id: str, slowness: int = 2) -> None:
        """The worker's tasks move on at one heartbeat in `slowness` (1: at full speed again)."""
        self.workers[worker_id].slowness = slowness

    def hang(self, worker_id: str, stuck: bool = True) -> None:
        """The worker keeps beating, but its task makes no progress (or progresses again)."""
        worker = self.workers[worker_id]
        worker.stuck = stuck
        if stuck and worker.task is not None:
            worker.stalled.add(worker.task.attempt)

    def heartbeat(self, worker_id: str) -> list[Action]:
        worker = self.workers[worker_id]
        if worker.task is not None and not worker.stuck:
            worker.beats += 1
            worker.progress += worker.beats % worker.slowness == 0
        return self._say(worker, [BeatDue(worker.view())])

    def send(self, worker_id: str, msg: m.ToCoordinator) -> list[Action]:
        """Inject a raw message from the worker's peer, whatever state the worker is in.

        A TaskRequest that names the attempt the worker runs says the worker gave it up: so it does, and
        its machine hears that the attempt ended (what the machine would say about it is `msg` itself).
        """
        worker = self.workers[worker_id]
        task = worker.task
        if isinstance(msg, m.TaskRequest) and task is not None and msg.finished == task.attempt:
            self._drop_task(worker)
            self._drive(worker, TaskEnded(msg.finished))
        return self._pump(Received(worker.peer, msg))

    def restart_coordinator(self) -> list[Action]:
        """The coordinator is killed and starts again from its journal, as `zmr-coord --state-dir` does.

        Whatever it had not journaled is gone; every live worker's connection breaks, and the worker
        registers again (over a new connection) saying what it holds and runs. A cut-off worker's new
        session starts all the same, but its Register is lost: it registers again at its next beat.
        """
        self.restarts += 1
        self.scheduler = Scheduler(self.params)
        actions = self.scheduler.recover(list(self.journal), self.clock.now)
        self.scheduler.archive_ended()
        self.journal = self.scheduler.snapshot()
        if self.check:
            check_invariants(self.scheduler)
        for worker in self.workers.values():
            if worker.up:
                worker.peer = f"{worker.peer.decode()}/r{self.restarts}".encode()
                self._by_peer[worker.peer] = worker
                actions += self._say(worker, [Connected(worker.view())])   # lost if cut off
        return actions

    # ------------------------------------------------------------ time

    def tick(self) -> list[Action]:
        return self._pump(Tick())

    def advance(self, dt: float) -> list[Action]:
        """Let `dt` seconds pass a heartbeat interval at a time: every reachable worker beats, then a Tick."""
        out: list[Action] = []
        remaining = dt
        while remaining > 1e-9:
            step = min(self.params.heartbeat_interval, remaining)
            self.clock.advance(step)
            remaining -= step
            for worker in list(self.workers.values()):
                if worker.up and worker.connected:
                    out += self.heartbeat(worker.id)
            out += self.tick()
        return out

    def settle(self) -> None:
        """Healthy workers finish (and commit) whatever they hold, until none holds anything."""
        while self._step():
            pass

    def run(self, max_steps: int = 100_000) -> None:
        """Play on, letting time pass when nobody can work, until every job has ended."""
        for _ in range(max_steps):
            if self._step():
                continue
            if all(job.state.ended for job in self.scheduler.jobs.values()):
                return
            self.advance(self.params.heartbeat_interval)
        states = {j.id: j.state.value for j in self.scheduler.jobs.values()}
        raise SimStuck(f"jobs did not end within {max_steps} steps: {states}")

    def _step(self) -> bool:
        for worker_id in self._busy:
            worker = self.workers[worker_id]
            if worker.healthy:
                self.finish(worker_id)
                return True
        return False

    # ------------------------------------------------------------ what a worker does

    def _holding(self, worker_id: str) -> SimWorker:
        worker = self.workers[worker_id]
        if not worker.up or worker.task is None:
            raise ValueError(f"worker {worker_id} holds no task")
        return worker

    def _finish_map(self, worker: SimWorker, task: m.AssignMap) -> list[WorkerEvent]:
        a = task.attempt
        worker.kept.add((a.job_id, a.task, a.number))
        self._kept_by[(a.job_id, a.task, a.number)] = worker.addr
        self._pushes[(a.job_id, a.task, a.number)] = worker.owners(a.job_id)
        self._drop_task(worker)
        return [Reported(m.MapDone(worker_id=worker.id, attempt=task.attempt,
                                   records_out=10, bytes_out=100)),
                TaskEnded(task.attempt)]

    def _finish_reduce(self, worker: SimWorker, task: m.AssignReduce) -> list[WorkerEvent]:
        """Pushed input complete: done. Otherwise ask where the maps it lacks are kept (as the executor does)."""
        lacking = self._lacking(worker, task)
        if lacking:
            worker.locating, worker.asked, worker.asked_runs = True, lacking, m.coarse_runs(lacking)
            return [Reported(m.LocateMaps(worker_id=worker.id, attempt=task.attempt, runs=worker.asked_runs))]
        return self._reduce_done(worker, task)

    def _reduce_done(self, worker: SimWorker, task: m.AssignReduce) -> list[WorkerEvent]:
        a = task.attempt
        for link in self._feeds(worker, a.job_id):   # a step job's reduce: kept here, pushed to the readers
            fed = (link.job_id, link.first + a.task, a.number)
            worker.kept.add(fed)
            self._kept_by[fed] = worker.addr
            self._pushes[fed] = worker.owners(link.job_id)
        worker.awaiting = True
        return [Reported(m.ReduceDone(worker_id=worker.id, attempt=task.attempt, records_out=task.n_maps))]

    def _lacking(self, worker: SimWorker, task: m.AssignReduce) -> list[int]:
        """The maps whose committed output (as the worker's commit table says) was not pushed here."""
        job_id, partition = task.attempt.job_id, task.attempt.task
        context = worker.machine.job(job_id)
        if context is None:
            return list(range(task.n_maps))
        return [i for i in range(task.n_maps)
                if not self._pushed_here(worker, job_id, partition, i, context.committed(i))]

    def _pushed_here(self, worker: SimWorker, job_id: str, partition: int, map_task: int, attempt: int) -> bool:
        """Pushed to this incarnation when that map attempt finished (as the owner, or as the replica)."""
        pushed_to = self._pushes.get((job_id, map_task, attempt), [])
        return partition < len(pushed_to) and (pushed_to[partition] == worker.addr or
                                               self._copied_to(worker.addr, job_id, partition, map_task, attempt))

    def _copied_to(self, addr: str, job_id: str, partition: int, map_task: int, attempt: int) -> bool:
        """Did that map attempt push the second copy of its output for `partition` to `addr` (its mapper
        owned the partition, see `m.replica_owner`), and is that worker the same incarnation and up?"""
        if not self.params.replicate:
            return False
        pushed_to = self._pushes.get((job_id, map_task, attempt), [])
        holder = self._by_addr.get(addr)
        return (holder is not None and holder.up and partition < len(pushed_to)
                and pushed_to[partition] == self._kept_by.get((job_id, map_task, attempt))
                and m.replica_owner(pushed_to, partition) == addr)

    def _pulled(self, job_id: str, partition: int, request: m.PeerRequest, wanted: dict[int, int]) -> set[int]:
        """The maps of `wanted` whose attempt that counts a live mapper at `request.addr` keeps and serves
        (or, for a request for `received` copies, that it was pushed the second copy of)."""
        asked = m.runs_filter(request.runs)
        if request.received:
            return {t for t, a in wanted.items() if asked(t) and self._copied_to(request.addr, job_id, partition, t, a)}
        mapper = self._by_addr.get(request.addr)
        if mapper is None or not mapper.up:
            return set()
        return {t for j, t, a in mapper.kept if j == job_id and asked(t) and wanted.get(t) == a}

    def _on_locations(self, worker: SimWorker, msg: m.MapLocations) -> list[WorkerEvent]:
        """Pull what the answer locates; what cannot be had fails the attempt with missing data."""
        task = worker.task
        if not isinstance(task, m.AssignReduce) or not worker.locating or not worker.runs(msg.attempt):
            return []
        worker.locating = False
        context = worker.machine.job(task.attempt.job_id)
        wanted = {t: msg.commits.get(t, context.committed(t) if context else 1) for t in worker.asked}
        nowhere = {t for t in msg.nowhere if t in wanted} | {t for t, a in wanted.items() if not a}
        got: set[int] = set()
        for request in m.peer_requests(msg, worker.asked_runs):
            got |= self._pulled(task.attempt.job_id, task.attempt.task, request, wanted)
        missing = sorted(nowhere | (set(wanted) - got))
        if missing:
            self._drop_task(worker)
            return [Reported(m.TaskFailed(worker_id=worker.id, attempt=task.attempt, kind="missing_data",
                                          error=f"no output of maps {missing}", missing_maps=missing)),
                    TaskEnded(task.attempt)]
        return [] if worker.stuck else self._reduce_done(worker, task)

    def _rename(self, worker: SimWorker, task: m.AssignReduce) -> list[WorkerEvent]:
        a = task.attempt
        feeds = self._feeds(worker, a.job_id)
        fed = [m.FedMap(job_id=link.job_id, task=link.first + a.task, records_out=10, bytes_out=100) for link in feeds]
        (self.fed if feeds else self.renamed).setdefault((a.job_id, a.task), []).append(a.number)
        self._drop_task(worker)
        return [Reported(m.ReduceCommitted(worker_id=worker.id, attempt=task.attempt, fed=fed)),
                TaskEnded(task.attempt)]

    @staticmethod
    def _feeds(worker: SimWorker, job_id: str) -> list[m.StepLink]:
        context = worker.machine.job(job_id)
        return list(context.setup.feeds) if context is not None else []

    def _drop_task(self, worker: SimWorker) -> None:
        worker.task, worker.awaiting, worker.granted, worker.locating = None, False, None, False
        self._busy.pop(worker.id, None)

    def _carry_out(self, worker: SimWorker, action: WorkerAction) -> list[WorkerEvent]:
        """What the simulated executor and stores do on one of the machine's actions; the events that follow."""
        if isinstance(action, StartTask):
            worker.task, worker.awaiting, worker.granted, worker.locating = action.assign, False, None, False
            worker.progress = worker.beats = 0
            self._busy[worker.id] = None
            if worker.stuck:
                worker.stalled.add(action.assign.attempt)
        elif isinstance(action, CancelAttempt):
            if worker.task is not None and worker.task.attempt == action.attempt:
                self._drop_task(worker)
                return [TaskEnded(action.attempt)]
        elif isinstance(action, DeliverDecision):
            return self._on_decision(worker, action.decision)
        elif isinstance(action, DeliverLocations):
            return self._on_locations(worker, action.locations)
        elif isinstance(action, NoteLostSource):
            return self._on_sources_lost(worker, action.lost)
        elif isinstance(action, DropJob):
            worker.kept = {k for k in worker.kept if k[0] != action.job_id}
        elif isinstance(action, StopWorker):
            self.kill(worker.id)
        return []   # contexts live in the machine; received batches and timing are not modelled

    def _on_sources_lost(self, worker: SimWorker, msg: m.SourcesLost) -> list[WorkerEvent]:
        """As the executor: a reduce still gathering that lacks input kept by the lost peer gives up now."""
        task = worker.task
        if (not isinstance(task, m.AssignReduce) or worker.awaiting or worker.stuck
                or not worker.runs(msg.attempt)):
            return []
        job_id = task.attempt.job_id
        context = worker.machine.job(job_id)
        gone = [i for i in self._lacking(worker, task)
                if context is not None and self._kept_by.get((job_id, i, context.committed(i))) == msg.addr]
        if not gone:
            return []
        self._drop_task(worker)
        return [Reported(m.TaskFailed(worker_id=worker.id, attempt=task.attempt,
                                      kind="missing_data", error=f"no output of maps {gone}", missing_maps=gone)),
                TaskEnded(task.attempt)]

    def _on_decision(self, worker: SimWorker, msg: m.CommitDecision) -> list[WorkerEvent]:
        task = worker.task
        if not isinstance(task, m.AssignReduce) or not worker.runs(msg.attempt):
            return []
        worker.granted = msg.ok
        if not msg.ok:
            self._drop_task(worker)
            return [TaskEnded(task.attempt)]
        return [] if worker.hold_commit else self._rename(worker, task)

    def _drive(self, worker: SimWorker, event: WorkerEvent) -> list[m.WorkerToCoord]:
        """Feed the worker's machine an event; carry out its actions; what it says, in order."""
        said: list[m.WorkerToCoord] = []
        for action in worker.machine.handle(event, self.clock.now):
            if isinstance(action, Say):
                said.append(action.msg)
            else:
                for follow in self._carry_out(worker, action):
                    said += self._drive(worker, follow)
        return said

    # ------------------------------------------------------------ delivery

    def _say(self, worker: SimWorker, events: list[WorkerEvent]) -> list[Action]:
        """Each event in turn: what the worker says about it reaches the coordinator (if it gets through),
        and everything that follows is played out before the next event."""
        out: list[Action] = []
        for event in events:
            for msg in self._drive(worker, event):
                if worker.up and worker.connected:
                    worker.reports.append(msg)
                    out += self._pump(Received(worker.peer, msg))
        return out

    def _pump(self, first: Event) -> list[Action]:
        """Handle an event and, in order, everything the peers say in reply."""
        out: list[Action] = []
        queue: deque[Event] = deque([first])
        while queue:
            actions = self._handle(queue.popleft())
            out += actions
            for action in actions:
                if isinstance(action, Send):
                    queue.extend(self._deliver(action.peer, action.msg))
                elif isinstance(action, JobFinished):   # the shell finishes the output, then journals that
                    self.finished[action.job_id] = action.state
                    self.journal += [a.record for a in self.scheduler.output_finished(action.job_id)
                                     if isinstance(a, Journal)]
        return out

    def _deliver(self, peer: bytes, msg: m.FromCoordinator) -> list[Received]:
        worker = self._by_peer.get(peer)
        if worker is None:
            self.clients.setdefault(peer, []).append(msg)
            return []
        if not (worker.up and worker.connected and worker.peer == peer):
            return []   # dead, cut off, or sent over a connection that is gone
        worker.inbox.append(msg)
        if not isinstance(msg, m.CoordToWorker):
            return []   # a client's reply means nothing to a worker
        view = worker.view() if isinstance(msg, m.RegisterAgain) else None
        replies = self._drive(worker, Heard(msg, view))
        if self.check and isinstance(msg, m.AssignReduce) and worker.runs(msg.attempt):
            problems = self._audit_commit_table(worker, msg)
            if problems:
                raise InvariantViolation("\n  ".join(problems))
        worker.reports.extend(replies)
        return [Received(worker.peer, r) for r in replies if worker.up]

    def _handle(self, event: Event) -> list[Action]:
        before = self._map_state(event)
        actions = self.scheduler.handle(event, self.clock.now)
        self.journal += [a.record for a in actions if isinstance(a, Journal)]
        if self.check:
            self._audit(event, before, actions)
            check_invariants(self.scheduler)
        return actions

    # ------------------------------------------------------------ auditing what the scheduler says

    def _map_state(self, event: Event) -> TaskState | None:
        if not (isinstance(event, Received) and isinstance(event.msg, m.MapDone)):
            return None
        a = event.msg.attempt
        job = self.scheduler.jobs.get(a.job_id)
        task = job.task(MAP, a.task) if job else None
        return task.state if task else None

    def _audit(self, event: Event, map_before: TaskState | None, actions: list[Action]) -> None:
        problems: list[str] = []
        for action in actions:
            if isinstance(action, Log):
                problems += self._audit_log(event, map_before, action)
            elif isinstance(action, Send):
                problems += self._audit_send(action)
        if problems:
            raise InvariantViolation(f"after {event}:\n  " + "\n  ".join(problems))

    def _audit_log(self, event: Event, map_before: TaskState | None, log: Log) -> list[str]:
        f = log.fields
        if log.event in ("attempt_lost", "task_failed"):   # the scheduler gave the attempt up
            self._lost.add((f["job"], f["task"], f["attempt"]))
        elif log.event == "reduce_reopened":   # it may be granted and commit again
            key = (f["job"], int(f["task"].split("-")[1]))
            self._committed_reduces.discard(key)
            self._grants.pop(key, None)
        elif log.event == "map_committed":
            index = int(f["task"].split("-")[1])
            self._committed_maps.add((f["job"], index, f["attempt"]))
            if map_before is TaskState.DONE:
                return [f"{f['job']}/{f['task']} committed again while it was done"]
            job = self.scheduler.jobs.get(f["job"])
            feeder = self.scheduler._feeder(job, index) if job is not None and job.spec.fed_maps else None
            if feeder is not None:   # made by the reduce that feeds it: that attempt ran there
                if self._assigned.get((feeder[0].id, REDUCE, feeder[1].index, f["attempt"])) != f["worker"]:
                    return [f"{f['job']}/{f['task']} attempt {f['attempt']} fed by {f['worker']}, which never "
                            f"ran {feeder[0].id}/{feeder[1].label} attempt {f['attempt']}"]
            elif self._assigned.get((f["job"], MAP, index, f["attempt"])) != f["worker"]:
                return [f"{f['job']}/{f['task']} attempt {f['attempt']} committed for {f['worker']}, "
                        "which was never given it"]
        elif log.event == "reduce_committed":
            key = (f["job"], int(f["task"].split("-")[1]))
            if key in self._committed_reduces:
                return [f"{f['job']}/{f['task']} committed twice"]
            self._committed_reduces.add(key)
            if self._grants.get(key) != f["attempt"]:
                return [f"{f['job']}/{f['task']} attempt {f['attempt']} committed without a granted commit"]
        return []

    def _audit_send(self, send: Send) -> list[str]:
        msg, worker = send.msg, self._by_peer.get(send.peer)
        if worker is None:
            return []
        if isinstance(msg, m.AssignMap | m.AssignReduce):
            return self._audit_assign(worker, msg)
        if isinstance(msg, m.CommitDecision) and msg.ok:
            a = msg.attempt
            key = (a.job_id, a.task)
            previous = self._grants.get(key)
            self._grants[key] = a.number
            if key in self._committed_reduces:
                return [f"{a.job_id}/{a.task_label} granted a commit after it committed"]
            if previous not in (None, a.number) and (a.job_id, a.task_label, previous) not in self._lost:
                return [f"{a.job_id}/{a.task_label}: attempt {a.number} granted a commit while attempt "
                        f"{previous} still holds one"]
        return []

    def _audit_assign(self, worker: SimWorker, msg: Assignment) -> list[str]:
        a = msg.attempt
        key = (a.job_id, a.kind, a.task, a.number)
        problems = []
        if key in self._assigned:
            problems.append(f"attempt {key} assigned twice")
        self._assigned[key] = worker.id
        job = self.scheduler.jobs[a.job_id]
        task = job.task(a.kind, a.task)
        if task is not None and task.not_before > self.clock.now:
            problems.append(f"{key} assigned during its backoff (until {task.not_before}, now {self.clock.now})")
        if isinstance(msg, m.AssignReduce):
            backup = task is not None and len(task.running) > 1   # a backup may run anywhere: it pulls
            if job.owners[a.task] != worker.id and not backup:
                problems.append(f"{key} assigned to {worker.id}, the owner is {job.owners[a.task]}")
            if msg.n_maps != len(job.maps):
                problems.append(f"{key} names {msg.n_maps} maps, the job has {len(job.maps)}")
        return problems

    def _audit_commit_table(self, worker: SimWorker, msg: m.AssignReduce) -> list[str]:
        """Once a reduce assignment is applied, the worker's table names the committed attempt of every
        committed map (of a map being made again, the last one that was: its owner may hold that output)."""
        job = self.scheduler.jobs.get(msg.attempt.job_id)
        context = worker.machine.job(msg.attempt.job_id)
        if job is None or context is None:
            return []
        wrong = [(t.index, context.committed(t.index), t.committed) for t in job.maps
                 if t.committed is not None and context.committed(t.index) != t.committed]
        return [f"{msg.attempt.label}: the worker's commit table is wrong (map, table, committed): {wrong}"] \
            if wrong else []


def _kind(task: Assignment) -> m.TaskKind:
    return MAP if isinstance(task, m.AssignMap) else REDUCE


# ---------------------------------------------------------------- invariants


def sim_with(*workers: str, **params: Any) -> SimCluster:
    """A simulated cluster of these workers; `params` override SchedulerParams (backups off unless given)."""
    params.setdefault("speculation", False)
    sim = SimCluster(SchedulerParams(python=params.pop("python", PYTHON), **params))
    for worker in workers:
        sim.add_worker(worker)
    return sim


def logged(actions: list[Action], event: str) -> list[Log]:
    """The Log actions of `event` among `actions`."""
    return [a for a in actions if isinstance(a, Log) and a.event == event]


def check_invariants(scheduler: Scheduler) -> None:
    """Raise InvariantViolation listing every rule the scheduler's state breaks.

    Tasks (per job):
    - maps_done / reduces_done equal the number of DONE maps / reduces.
    - A DONE task has a committed attempt (1 <= committed <= attempts_made) and nothing running; a DONE
      map names the worker that reported it (and holds its output); a DONE reduce committed the attempt
      that was granted the rename. A task that is not DONE has no committed attempt.
    - In a running job: RUNNING and COMMITTING tasks have a running attempt, READY and WAITING ones none;
      a COMMITTING task's grantee is running; a grant (`committing`) outlives no state but COMMITTING/DONE.
    - Every running attempt is in the hands of a worker marked alive whose `current` names exactly that
      attempt. (A worker that stopped beating stays alive until the liveness check reaps it, and reaping
      takes its attempt back at once, so a running attempt never sits on a dead worker.) The converse is
      looser: a worker's `current` may name an attempt that no longer runs, because it was cancelled (its
      job ended, or another attempt committed first) and the worker has not asked for new work yet.

    Reduces and maps: the reduce phase begins once every map of the job has committed at least once
    (`remaking` holds those whose output was lost since); before it every reduce not started waits. In
    it, lost map output (its worker died, or a reducer reported it missing) sends no reduce back to
    waiting wholesale: an owner holds what was pushed to it, and a moved partition's new owner pulls
    what it can meanwhile. Only a reduce that found some input nowhere WAITS, for exactly those maps,
    each still not committed (`Job.lacking`, indexed by map in `Job.awaited`). So: "READY implies the
    reduce phase", "WAITING in the reduce phase implies lacking some uncommitted map", "every map
    committed implies no reduce WAITING", and `remaking` holds only maps not committed (in the reduce
    phase: all of them).

    Queues (liveness): a READY task is in a ready queue or in the backoff heap; no worker is idle while a
    ready map or one of its own ready reduces could run now; every live worker has a liveness deadline.

    Workers: idle workers are alive and run nothing; dead workers run nothing; the owner of every
    partition exists, and while any worker is alive, every partition not yet reduced has a live owner;
    each job's running lease total is the sum of what its live workers last reported.

    Jobs: a queued job has no owners and nothing started; an ended job runs nothing; a succeeded job has
    every reduce DONE; its indexes (`maps_held`, `grants`, `owned`) match its tasks, and the owner addresses kept
    for its JobSetup and OwnersUpdate messages are the owners' current ones.
    """
    problems = _worker_problems(scheduler)
    for job in scheduler.jobs.values():
        problems += _job_problems(scheduler, job)
    if problems:
        raise InvariantViolation("scheduler invariants broken:\n  " + "\n  ".join(problems))


def _worker_problems(s: Scheduler) -> list[str]:
    problems = []
    beating = {worker_id for _, worker_id in s._liveness}
    for worker_id in s._idle:
        worker = s.workers.get(worker_id)
        if worker is None or not worker.alive or worker.current is not None:
            problems.append(f"idle worker {worker_id} is unknown, dead or busy")
    totals: dict[str, int] = {}
    for worker in s.workers.values():
        for job_id, count in worker.leases.items() if worker.alive else ():
            totals[job_id] = totals.get(job_id, 0) + count
    if s._leases != {job_id: count for job_id, count in totals.items() if count}:
        problems.append(f"lease totals {s._leases} are not what live workers report: {totals}")
    for worker in s.workers.values():
        if not worker.alive and worker.current is not None:
            problems.append(f"dead worker {worker.id} still runs {worker.current}")
        if worker.alive and worker.id not in beating:
            problems.append(f"live worker {worker.id} has no liveness deadline: it could never be reaped")
        if worker.current is not None:
            problems += _current_problems(s, worker, worker.current)
    return problems


def _current_problems(s: Scheduler, worker: WorkerEntry, current: m.AttemptId) -> list[str]:
    job = s.jobs.get(current.job_id)
    if job is None:
        return [f"worker {worker.id} runs an attempt of unknown job {current.job_id}"]
    task = job.task(current.kind, current.task)
    if task is None or not 1 <= current.number <= task.attempts_made:
        return [f"worker {worker.id} runs {current.label}, an attempt that was never made"]
    run = task.running.get(current.number)
    if run is not None and run.worker != worker.id:
        return [f"worker {worker.id} runs {current.label}, which belongs to {run.worker}"]
    return []   # not running any more: cancelled (job ended, or a backup lost); its next TaskRequest says so


def _job_problems(s: Scheduler, job: Job) -> list[str]:
    problems = []
    tasks = job.maps + job.reduces
    if job.maps_done != sum(t.state is TaskState.DONE for t in job.maps):
        problems.append(f"{job.id}: maps_done={job.maps_done} but {_count(job.maps)} maps are done")
    if job.reduces_done != sum(t.state is TaskState.DONE for t in job.reduces):
        problems.append(f"{job.id}: reduces_done={job.reduces_done} but {_count(job.reduces)} reduces are done")
    for task in tasks:
        found = _task_problems(s, job, task)
        if found:
            problems += [f"{job.id}/{task.label}: {p}" for p in found]
    if job.state is JobState.QUEUED and (job.owners or any(t.attempts_made for t in tasks)):
        problems.append(f"{job.id}: queued, yet it has owners or started tasks")
    if job.state.ended and any(t.running for t in tasks):
        problems.append(f"{job.id}: {job.state.value}, yet attempts still run")
    if job.state is JobState.SUCCEEDED and job.reduces_done != len(job.reduces) and (
            not job.spec.is_step or job.spec.head == job.id):   # (a step may be redoing what no one needs now)
        problems.append(f"{job.id}: succeeded with {job.reduces_done}/{len(job.reduces)} reduces done")
    problems += index_problems(job)
    if job.state is JobState.RUNNING:
        problems += _running_job_problems(s, job)
    return problems


def index_problems(job: Job) -> list[str]:
    """The job's indexes of durable state say what its tasks say: who holds each committed map, who was
    granted each reduce's rename that has not committed yet, and how many partitions each owner owns."""
    held: dict[str, set[int]] = {}
    for task in job.maps:
        if task.state is TaskState.DONE:
            held.setdefault(task.committed_worker or "", set()).add(task.index)
    granted: dict[str, set[int]] = {}
    for task in job.reduces:
        if task.granted_worker is not None and task.state is not TaskState.DONE:
            granted.setdefault(task.granted_worker, set()).add(task.index)
    owned: dict[str, int] = {}
    unfinished: dict[str, int] = {}
    for partition, owner in enumerate(job.owners):
        owned[owner] = owned.get(owner, 0) + 1
        if job.reduces[partition].state is not TaskState.DONE:
            unfinished[owner] = unfinished.get(owner, 0) + 1
    problems = []
    uncommitted = {t.index for t in job.maps if t.state is not TaskState.DONE}
    if not job.remaking <= uncommitted or (job.reduce_phase and job.remaking != uncommitted):
        problems.append(f"{job.id}: remaking {sorted(job.remaking)}, but the maps not committed are "
                        f"{sorted(uncommitted)}{' in the reduce phase' if job.reduce_phase else ''}")
    if job.state is JobState.RUNNING and not job.reduce_phase and job.maps_done + len(job.remaking) == len(job.maps):
        problems.append(f"{job.id}: every map committed once, yet the reduce phase has not begun")
    if job.owned != owned:
        problems.append(f"{job.id}: owned {job.owned} does not count the owners' partitions: {owned}")
    if job.unfinished != unfinished:
        problems.append(f"{job.id}: unfinished {job.unfinished} does not count the owners' partitions not "
                        f"committed: {unfinished}")
    if job.maps_held != held:
        problems.append(f"{job.id}: maps_held {job.maps_held} is not where committed maps are: {held}")
    if job.grants != granted:
        problems.append(f"{job.id}: grants {job.grants} are not the pending grants: {granted}")
    return problems


def _count(tasks: list[Task]) -> int:
    return sum(t.state is TaskState.DONE for t in tasks)


def _task_problems(s: Scheduler, job: Job, task: Task) -> list[str]:
    problems: list[str] = []
    if task.kind == MAP and task.state is TaskState.COMMITTING or (
            task.kind == MAP and task.state is TaskState.WAITING and not job.spec.fed_maps):
        problems.append(f"a map cannot be {task.state.value}")   # (but a step job's waits for its feeder)
    if task.kind == MAP and job.spec.fed_maps and task.state in (TaskState.READY, TaskState.RUNNING):
        problems.append(f"a step job's map cannot be {task.state.value}: the reduce that feeds it runs instead")
    if task.state is TaskState.DONE:
        if task.committed is None or not 1 <= task.committed <= task.attempts_made:
            problems.append(f"done, but its committed attempt is {task.committed}")
        if task.running:
            problems.append(f"done, but attempts {sorted(task.running)} still run")
        if task.kind == MAP and task.committed_worker not in s.workers and not job.state.ended:
            problems.append(f"done on unknown worker {task.committed_worker}")
        if task.kind == REDUCE and task.committing != task.committed:
            problems.append(f"committed attempt {task.committed} was not the one granted ({task.committing})")
    elif task.committed is not None or task.committed_worker is not None:
        problems.append(f"{task.state.value}, yet it names committed attempt {task.committed}")
    if task.running and not 1 <= min(task.running) <= max(task.running) <= task.attempts_made:
        problems.append(f"running attempts {sorted(task.running)} beyond the {task.attempts_made} made")
    if job.state is JobState.RUNNING:
        problems += _live_task_problems(s, job, task)
    return problems


def _live_task_problems(s: Scheduler, job: Job, task: Task) -> list[str]:
    problems = []
    granted_to = s.workers.get(task.granted_worker or "")
    awaited = granted_to is not None and granted_to.alive and not granted_to.peer   # back, or lost, in time
    if task.state in (TaskState.RUNNING, TaskState.COMMITTING) and not task.running and not awaited:
        problems.append(f"{task.state.value} with no running attempt: nothing will ever finish it")
    if task.state in (TaskState.READY, TaskState.WAITING) and task.running:
        problems.append(f"{task.state.value}, yet attempts {sorted(task.running)} run")
    if task.state is TaskState.COMMITTING and task.committing not in task.running and not awaited:
        problems.append(f"committing attempt {task.committing} is not running")
    if task.committing is not None and task.state not in (TaskState.COMMITTING, TaskState.DONE):
        problems.append(f"{task.state.value}, yet attempt {task.committing} still holds the commit")
    for number, attempt in task.running.items():
        worker = s.workers.get(attempt.worker)
        if worker is None or not worker.alive:
            problems.append(f"attempt {number} runs on unknown or dead worker {attempt.worker}")
        elif worker.current != task.attempt_id(job.id, number):
            problems.append(f"attempt {number} runs on {worker.id}, whose current task is {worker.current}")
    return problems


def _running_job_problems(s: Scheduler, job: Job) -> list[str]:
    problems = []
    all_maps_done = job.maps_done == len(job.maps)
    for reduce in job.reduces:
        lacking = job.lacking.get(reduce.index)
        if reduce.state is TaskState.READY and not job.reduce_phase:
            problems.append(f"{job.id}/{reduce.label}: ready before the reduce phase "
                            f"({job.maps_done}/{len(job.maps)} maps committed)")
        if reduce.state is TaskState.WAITING and all_maps_done:
            problems.append(f"{job.id}/{reduce.label}: waiting although every map is committed")
        if reduce.state is TaskState.WAITING and job.reduce_phase and not lacking:
            problems.append(f"{job.id}/{reduce.label}: waiting in the reduce phase for no map")
        if lacking and (reduce.state is not TaskState.WAITING
                        or any(job.maps[i].state is TaskState.DONE for i in lacking)):
            problems.append(f"{job.id}/{reduce.label}: {reduce.state.value}, lacking maps {sorted(lacking)}")
    awaited: dict[int, set[int]] = {}
    for partition, maps in job.lacking.items():
        for i in maps:
            awaited.setdefault(i, set()).add(partition)
    if awaited != job.awaited:
        problems.append(f"{job.id}: awaited {job.awaited} does not index what reduces lack: {awaited}")
    problems += _owner_problems(s, job)
    problems += _queue_problems(s, job)
    return problems


def _owner_problems(s: Scheduler, job: Job) -> list[str]:
    if len(job.owners) != len(job.reduces):
        return [f"{job.id}: {len(job.owners)} owners for {len(job.reduces)} partitions"]
    problems = [f"{job.id}: partition {p} owned by unknown worker {owner}"
                for p, owner in enumerate(job.owners) if owner not in s.workers]
    if any(w.alive for w in s.workers.values()):
        problems += [f"{job.id}: partition {p} is owned by dead worker {owner}"
                     for p, owner in enumerate(job.owners)
                     if owner in s.workers and not s.workers[owner].alive
                     and job.reduces[p].state is not TaskState.DONE]
    return problems


def _queue_problems(s: Scheduler, job: Job) -> list[str]:
    problems = []
    now = s._now
    backoff = {(kind, index) for _, job_id, kind, index in s._backoff if job_id == job.id}
    queued_maps = set(job.ready_maps)
    for task in job.maps:
        if task.state is TaskState.READY and task.index not in queued_maps and (MAP, task.index) not in backoff:
            problems.append(f"{job.id}/{task.label}: ready but in no queue")
    for p, task in enumerate(job.reduces):
        queued = (job.id, p) in s._ready_reduces.get(job.owners[p], {})
        if task.state is TaskState.READY and not queued and (REDUCE, p) not in backoff:
            problems.append(f"{job.id}/{task.label}: ready but in no queue")
    if not s._idle:
        return problems
    others_alive = {w.id for w in s.workers.values() if w.alive} - set(s._idle)
    for index in queued_maps:
        task = job.maps[index]
        if task.state is TaskState.READY and not task.running and task.not_before <= now \
                and not (list(s._idle) == [task.failed_on] and others_alive):   # it waits for another worker
            problems.append(f"{job.id}/{task.label}: ready to run now, yet workers {list(s._idle)} idle")
    for worker_id in s._idle:
        for job_id, p in s._ready_reduces.get(worker_id, {}):
            if job_id == job.id and job.reduces[p].state is TaskState.READY:
                problems.append(f"{job.id}/reduce-{p}: ready on its idle owner {worker_id}, yet not running")
    return problems


# ---------------------------------------------------------------- replay


def check_replay(records: list[jr.Record], scheduler: Scheduler) -> None:
    """Raise InvariantViolation unless `records` (a journal) replay to the scheduler's durable state.

    Replayed onto an empty ledger they must give the same jobs, durable task states, committed and granted
    attempts, owners, failure counts, archived statuses and next job number, and the addresses of the
    workers they name that the scheduler knows; the indexes replay builds match its tasks. Which of the
    remaining tasks are ready, waiting or running is not durable: a restart decides it again.
    """
    ledger = Ledger(scheduler.params.first_job_number)
    for record in records:
        ledger.apply(record)
    live, replayed = durable_view(scheduler.book), durable_view(ledger)
    problems = [f"{key}: live {live[key]!r}, replayed {replayed[key]!r}" for key in live if live[key] != replayed[key]]
    problems += [f"replayed: {p}" for job in ledger.jobs.values() for p in index_problems(job)]
    for rec in {r.worker_id: r for r in records if isinstance(r, jr.WorkerJoined)}.values():
        worker = scheduler.workers.get(rec.worker_id)
        if worker is not None and (worker.data_addr, worker.key) != (rec.data_addr, rec.key):
            problems.append(f"worker {worker.id}: live {worker.data_addr!r}, replayed {rec.data_addr!r}")
    if problems:
        raise InvariantViolation("the journal does not replay to the live state:\n  " + "\n  ".join(problems))


def durable_view(ledger: Ledger) -> dict[str, Any]:
    """What a restart must keep of a scheduler's state, keyed by what it is about (a job id, say)."""
    view: dict[str, Any] = {"next_job": ledger.next_job, "archived": dict(ledger.archived)}
    for job in ledger.jobs.values():
        view[job.id] = (job.number, job.spec, job.submitted, job.state, job.started, job.finished, job.error,
                        list(job.owners), job.owners_epoch, job.output_done, job.maps_done, job.reduces_done,
                        job.bytes_committed, [_durable_task(t) for t in job.maps + job.reduces])
    return view


def _durable_task(task: Task) -> tuple[Any, ...]:
    """Who was granted a done reduce's commit is moot once it committed: snapshots leave it out."""
    done, granted = task.state is TaskState.DONE, task.committing is not None
    return (task.kind, task.index, task.attempts_made, task.app_failures, task.worker_losses, done, granted,
            task.committed, task.committed_worker, task.committing, None if done else task.granted_worker,
            task.records_out if done or granted else None, task.bytes_out if done else None,
            task.finished if done else None)
