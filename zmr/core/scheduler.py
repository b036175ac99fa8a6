"""The coordinator's brain: a pure state machine. Events in, actions out, the clock passed in.

`Scheduler.handle(event, now)` never touches a socket, a file or the wall clock, so every fault case is
a fast deterministic unit test and a simulator can drive it at scale. The shell around it
(`zmr.runtime.coordinator`) turns socket traffic into events and carries out the actions.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zmr.core.state import MAP, REDUCE, Attempt, Job, JobState, Task, TaskState, Worker
from zmr.protocol import messages as m

# ---------------------------------------------------------------- events and actions


@dataclass(frozen=True)
class Received:
    """A decoded message from the peer with ZeroMQ routing id `peer`."""

    peer: bytes
    msg: m.ToCoordinator


@dataclass(frozen=True)
class Tick:
    """Time passed: check liveness, timeouts and backoffs, ping workers."""


@dataclass(frozen=True)
class ConnectionsAlive:
    """These peers' connections still pass libzmq's own heartbeats.

    libzmq answers ZMTP pings from its I/O thread, so a worker whose app holds the GIL in one long C
    call (a regex over a whole split) still proves its process alive this way, while it cannot send a
    heartbeat of its own. A dead or stopped process fails these pings and its connection is dropped.
    Whether its task makes progress is judged separately (`task_timeout`).
    """

    peers: frozenset[bytes]


Event = Received | Tick | ConnectionsAlive


@dataclass(frozen=True)
class Send:
    peer: bytes
    msg: m.FromCoordinator


@dataclass(frozen=True)
class JobFinished:
    """Write `_SUCCESS` (succeeded) or remove partial output (failed, cancelled)."""

    job_id: str
    state: JobState
    output_dir: str
    n_reduce: int


@dataclass(frozen=True)
class Log:
    event: str
    level: str
    fields: dict[str, Any]


Action = Send | JobFinished | Log


@dataclass(frozen=True)
class SchedulerParams:
    python: str                    # major.minor every worker must run (cloudpickle needs it)
    heartbeat_interval: float = 0.5
    heartbeat_liveness: int = 6
    task_timeout: float = 10.0
    max_attempts: int = 4
    retry_base: float = 0.5
    retry_cap: float = 10.0
    max_worker_losses: int = 8
    push: bool = True
    batch_bytes: int = 1 << 20
    window_bytes: int = 8 << 20
    first_job_number: int = 1
    speculation: bool = True       # backup attempts for stragglers near the end of a phase
    slow_factor: float = 3.0       # ... running this many times longer than the phase's median task
    min_elapsed: float = 2.0       # ... and at least this many seconds

    def retry_delay(self, failures: int) -> float:
        return float(min(self.retry_cap, self.retry_base * 2 ** max(0, failures - 1)))


class Scheduler:
    """Owns jobs, tasks and workers; decides who runs what and what counts."""

    def __init__(self, params: SchedulerParams) -> None:
        self.params = params
        self.jobs: dict[str, Job] = {}
        self.workers: dict[str, Worker] = {}
        self._by_peer: dict[bytes, str] = {}
        self._idle: dict[str, None] = {}                     # ordered set of idle worker ids
        self._ready_reduces: dict[str, dict[tuple[str, int], None]] = {}   # owner -> (job, partition)
        self._backoff: list[tuple[float, str, str, int]] = []               # (not_before, job, kind, index)
        self._liveness: list[tuple[float, str]] = []                        # (deadline, worker)
        self._job_numbers = itertools.count(params.first_job_number)
        self._out: list[Action] = []
        self._now = 0.0

    # ------------------------------------------------------------ entry point

    def handle(self, event: Event, now: float) -> list[Action]:
        self._now = now
        self._out = []
        if isinstance(event, Tick):
            self._on_tick()
        elif isinstance(event, ConnectionsAlive):
            for peer in event.peers:
                worker = self.workers.get(self._by_peer.get(peer, ""))
                if worker is not None and worker.alive and worker.peer == peer:
                    worker.last_seen = now
        else:
            self._on_message(event.peer, event.msg)
        self._dispatch()
        return self._out

    def _on_message(self, peer: bytes, msg: m.ToCoordinator) -> None:
        if isinstance(msg, m.SubmitJob):
            self._on_submit(peer, msg.spec)
        elif isinstance(msg, m.StatusRequest):
            self._send(peer, self.status(msg.job_id))
        elif isinstance(msg, m.CancelJob):
            self._on_cancel(peer, msg.job_id)
        elif isinstance(msg, m.Register):
            self._on_register(peer, msg)
        else:
            worker = self._known_worker(peer, msg.worker_id)
            if worker is not None:
                worker.last_seen = self._now
                self._WORKER_HANDLERS[type(msg)](self, worker, msg)

    def _known_worker(self, peer: bytes, worker_id: str) -> Worker | None:
        """The live worker behind `peer`, or None after telling the peer to register again."""
        worker = self.workers.get(worker_id)
        if worker is None or not worker.alive or worker.peer != peer:
            self._log("unknown_worker", "warning", worker=worker_id)
            self._send(peer, m.RegisterAgain())
            return None
        return worker

    # ------------------------------------------------------------ clients

    def _on_submit(self, peer: bytes, spec: m.JobSpec) -> None:
        problem = spec_problem(spec) or (
            f"output directory {spec.output_dir} is in use by a running job"
            if self.output_dir_busy(spec.output_dir) else "")
        if problem:
            self._send(peer, m.ErrorReply(message=problem))
            return
        job = Job(id=f"job-{next(self._job_numbers):04d}", spec=spec, submitted=self._now)
        job.maps = [Task(MAP, i, TaskState.READY) for i in range(len(spec.splits))]
        job.reduces = [Task(REDUCE, r, TaskState.WAITING) for r in range(spec.n_reduce)]
        self.jobs[job.id] = job
        self._send(peer, m.JobAccepted(job_id=job.id))
        self._log("job_submitted", "info", job=job.id, maps=len(job.maps), reduces=spec.n_reduce)
        self._start_queued_jobs()

    def _on_cancel(self, peer: bytes, job_id: str) -> None:
        job = self.jobs.get(job_id)
        if job is None:
            self._send(peer, m.ErrorReply(message=f"no job {job_id}"))
            return
        if not job.state.ended:
            self._end_job(job, JobState.CANCELLED, "cancelled by a client")
        self._send(peer, self.status(job_id))

    # ------------------------------------------------------------ workers

    def _on_register(self, peer: bytes, msg: m.Register) -> None:
        if msg.python != self.params.python:
            self._send(peer, m.Reject(reason=f"worker runs Python {msg.python}, "
                                      f"the cluster needs {self.params.python}"))
            return
        old = self.workers.get(msg.worker_id)
        if old is not None and old.alive:
            self._lose_worker(old, "registered again")
        for job in self.jobs.values():   # a new life: it gets every job's setup afresh
            job.set_up_on.discard(msg.worker_id)
        worker = Worker(msg.worker_id, peer, msg.data_addr, self._now)
        self.workers[worker.id] = worker
        self._by_peer[peer] = worker.id
        self._push_liveness(worker)
        self._send(peer, m.Welcome(worker_id=worker.id, heartbeat_interval=self.params.heartbeat_interval))
        self._log("worker_joined", "info", worker=worker.id, addr=msg.data_addr, pid=msg.pid, host=msg.host)
        self._start_queued_jobs()
        for job in self._running_jobs():
            self._replan(job)

    def _on_heartbeat(self, worker: Worker, msg: m.Heartbeat) -> None:
        for stat in msg.partitions:
            job = self.jobs.get(stat.job_id)
            if (job is not None and 0 <= stat.partition < len(job.reduces) and job.owners
                    and job.owners[stat.partition] == worker.id
                    and job.reduces[stat.partition].state not in (TaskState.COMMITTING, TaskState.DONE)):
                job.partition_stats[stat.partition] = stat
        attempt = self._current_attempt(worker)
        if attempt is not None and msg.progress != attempt.progress:
            attempt.progress = msg.progress
            attempt.last_progress = self._now

    def _on_task_request(self, worker: Worker, msg: m.TaskRequest) -> None:
        if worker.current is not None:
            self._abandon_current(worker, "worker asked for a new task")
        self._idle[worker.id] = None

    def _on_map_done(self, worker: Worker, msg: m.MapDone) -> None:
        found = self._own_attempt(worker, msg.job_id, MAP, msg.task, msg.attempt)
        if found is None:
            return
        job, task = found
        self._record_duration(job, task, msg.attempt)
        self._finish_attempt(worker, task, msg.attempt)
        if task.state is TaskState.DONE:
            return  # another attempt committed first; this one's output never counts
        task.state, task.committed, task.committed_worker = TaskState.DONE, msg.attempt, worker.id
        task.finished, task.records_out, task.bytes_out = self._now, msg.records_out, msg.bytes_out
        job.maps_done += 1
        self._cancel_other_attempts(job, task)
        self._log("map_committed", "debug", job=job.id, task=task.label, attempt=msg.attempt,
                  worker=worker.id)
        if job.maps_done == len(job.maps):
            for reduce in job.reduces:
                if reduce.state is TaskState.WAITING:
                    self._make_ready(job, reduce)

    def _on_reduce_done(self, worker: Worker, msg: m.ReduceDone) -> None:
        found = self._own_attempt(worker, msg.job_id, REDUCE, msg.task, msg.attempt)
        if found is None:
            return
        job, task = found
        ok = task.state is TaskState.RUNNING and task.committing is None
        if task.committing == msg.attempt:   # a duplicate report: the grant stands (refusing it would wedge it)
            ok = True
        elif ok:
            self._record_duration(job, task, msg.attempt)
            task.state, task.committing, task.records_out = TaskState.COMMITTING, msg.attempt, msg.records_out
            if msg.received is not None and msg.received.partition == task.index:
                job.partition_stats[task.index] = msg.received   # final: heartbeats may lag behind
        self._send(worker.peer, m.CommitDecision(job_id=job.id, task=task.index, attempt=msg.attempt, ok=ok))
        if not ok:
            self._finish_attempt(worker, task, msg.attempt)

    def _on_reduce_committed(self, worker: Worker, msg: m.ReduceCommitted) -> None:
        found = self._own_attempt(worker, msg.job_id, REDUCE, msg.task, msg.attempt)
        if found is None:
            return
        job, task = found
        self._finish_attempt(worker, task, msg.attempt)
        if task.committing != msg.attempt:   # never granted: it does not count, and the task must run again
            self._requeue(job, task)
            return
        task.state, task.committed, task.finished = TaskState.DONE, msg.attempt, self._now
        task.committed_worker = worker.id
        job.reduces_done += 1
        self._cancel_other_attempts(job, task)
        self._log("reduce_committed", "debug", job=job.id, task=task.label, attempt=msg.attempt,
                  worker=worker.id)
        if job.reduces_done == len(job.reduces):
            self._end_job(job, JobState.SUCCEEDED, "")

    def _on_task_failed(self, worker: Worker, msg: m.TaskFailed) -> None:
        kind = worker.current[1] if worker.current else MAP   # a worker runs one task at a time
        found = self._own_attempt(worker, msg.job_id, kind, msg.task, msg.attempt)
        if found is None:
            return
        job, task = found
        self._finish_attempt(worker, task, msg.attempt)
        if task.committing == msg.attempt:   # it failed after its commit was granted (e.g. the rename)
            task.committing, task.state = None, TaskState.RUNNING   # a backup, if any, may commit now
        self._log("task_failed", "warning", job=job.id, task=task.label, attempt=msg.attempt,
                  worker=worker.id, kind=msg.kind, error=msg.error)
        if msg.kind == "missing_data":
            self._on_missing_data(job, task, msg.missing_maps)
            return
        task.app_failures += 1
        if task.app_failures >= self.params.max_attempts:
            detail = f"{task.label} failed {task.app_failures} times; last error: {msg.error}"
            self._end_job(job, JobState.FAILED, detail + ("\n" + msg.traceback if msg.traceback else ""))
            return
        self._retry_later(job, task, self.params.retry_delay(task.app_failures))

    def _on_missing_data(self, job: Job, reduce: Task, missing: list[int]) -> None:
        """A reducer could not get some committed map output: run those maps again."""
        reduce.worker_losses += 1
        if reduce.worker_losses > self.params.max_worker_losses:
            self._end_job(job, JobState.FAILED, f"{reduce.label} lost its input too many times")
            return
        for index in missing:
            task = job.task(MAP, index)
            if task is not None and task.state is TaskState.DONE:
                self._uncommit_map(job, task)
        self._requeue(job, reduce)

    _WORKER_HANDLERS: dict[type, Callable[[Scheduler, Worker, Any], None]] = {
        m.Heartbeat: _on_heartbeat,
        m.TaskRequest: _on_task_request,
        m.MapDone: _on_map_done,
        m.ReduceDone: _on_reduce_done,
        m.ReduceCommitted: _on_reduce_committed,
        m.TaskFailed: _on_task_failed,
    }

    # ------------------------------------------------------------ time

    def _on_tick(self) -> None:
        self._expire_workers()
        self._expire_stalled_tasks()
        while self._backoff and self._backoff[0][0] <= self._now:
            _, job_id, kind, index = heapq.heappop(self._backoff)
            job = self.jobs.get(job_id)
            task = job.task(kind, index) if job else None
            if job and task and job.state is JobState.RUNNING and task.state is TaskState.READY:
                self._enqueue(job, task)
        for worker in self.workers.values():
            if worker.alive:
                self._send(worker.peer, m.Ping())
        self._dispatch()
        self._speculate()

    def _expire_workers(self) -> None:
        timeout = self.params.heartbeat_interval * self.params.heartbeat_liveness
        while self._liveness and self._liveness[0][0] <= self._now:
            _, worker_id = heapq.heappop(self._liveness)
            worker = self.workers.get(worker_id)
            if worker is None or not worker.alive:
                continue
            if worker.last_seen + timeout <= self._now:
                self._lose_worker(worker, "missed heartbeats")
            else:
                self._push_liveness(worker)

    def _expire_stalled_tasks(self) -> None:
        """A task with no progress for `task_timeout` is given up, even if its worker still beats."""
        for worker in self.workers.values():
            attempt = self._current_attempt(worker) if worker.alive else None
            if attempt is not None and attempt.last_progress + self.params.task_timeout <= self._now:
                job_id, kind, index, number = worker.current  # type: ignore[misc]
                self._send(worker.peer, m.CancelTask(job_id=job_id, task=index, attempt=number, kind=kind))
                self._abandon_current(worker, "no progress within the task timeout")

    def _push_liveness(self, worker: Worker) -> None:
        deadline = worker.last_seen + self.params.heartbeat_interval * self.params.heartbeat_liveness
        heapq.heappush(self._liveness, (deadline, worker.id))

    # ------------------------------------------------------------ losing work

    def _lose_worker(self, worker: Worker, why: str) -> None:
        worker.alive = False
        self._idle.pop(worker.id, None)
        self._log("worker_lost", "warning", worker=worker.id, why=why)
        if worker.current is not None:
            self._abandon_current(worker, f"worker lost: {why}")
        for job in self._running_jobs():
            self._replan(job)

    def _abandon_current(self, worker: Worker, why: str) -> None:
        """The worker's attempt will never report: put its task back (a machine failure, not the app's)."""
        job_id, kind, index, number = worker.current  # type: ignore[misc]
        worker.current = None
        job = self.jobs.get(job_id)
        task = job.task(kind, index) if job else None
        if job is None or task is None or number not in task.running:
            return
        del task.running[number]
        if task.committing == number:
            task.committing = None
            task.state = TaskState.RUNNING
        self._log("attempt_lost", "warning", job=job_id, task=task.label, attempt=number, worker=worker.id,
                  why=why)
        if job.state is not JobState.RUNNING or task.state is TaskState.DONE or task.running:
            return
        task.worker_losses += 1
        if task.worker_losses > self.params.max_worker_losses:
            self._end_job(job, JobState.FAILED, f"{task.label} lost its worker {task.worker_losses} times")
            return
        self._requeue(job, task)

    def _replan(self, job: Job) -> None:
        """Move partitions off dead owners; map output the new owners cannot pull is made again."""
        alive = [w for w in self.workers.values() if w.alive]
        if not alive:
            return
        load = {w.id: 0 for w in alive}
        for owner in job.owners:
            if owner in load:
                load[owner] += 1
        moved = False
        for p, owner in enumerate(job.owners):
            if owner not in load and job.reduces[p].state is not TaskState.DONE:
                new = min(load, key=lambda w: (load[w], w))
                load[new] += 1
                job.owners[p] = new
                moved = True
                self._move_ready_reduce(job, p, owner, new)
        if not moved:
            return
        job.owners_epoch += 1
        update = m.OwnersUpdate(job_id=job.id, owners=self._owner_addrs(job), owners_epoch=job.owners_epoch)
        for worker_id in job.set_up_on:
            worker = self.workers[worker_id]
            if worker.alive:
                self._send(worker.peer, update)
        for task in job.maps:
            if task.state is TaskState.DONE and task.committed_worker not in load:
                self._uncommit_map(job, task)

    def _uncommit_map(self, job: Job, task: Task) -> None:
        task.state, task.committed, task.committed_worker, task.finished = TaskState.READY, None, None, None
        job.maps_done -= 1
        for reduce in job.reduces:
            if reduce.state is TaskState.READY:
                self._unready_reduce(job, reduce)
        self._enqueue(job, task)

    # ------------------------------------------------------------ queues

    def _make_ready(self, job: Job, task: Task) -> None:
        task.state = TaskState.READY
        if task.not_before > self._now:   # still backing off after a failure: the tick enqueues it
            heapq.heappush(self._backoff, (task.not_before, job.id, task.kind, task.index))
        else:
            self._enqueue(job, task)

    def _enqueue(self, job: Job, task: Task) -> None:
        if task.kind == MAP:
            job.ready_maps.append(task.index)
        else:
            self._ready_reduces.setdefault(job.owners[task.index], {})[(job.id, task.index)] = None

    def _requeue(self, job: Job, task: Task) -> None:
        """Back to ready now (a reduce waits again if its maps are not all committed)."""
        if task.running:
            return
        if task.kind == REDUCE and job.maps_done < len(job.maps):
            task.state = TaskState.WAITING
        else:
            self._make_ready(job, task)

    def _retry_later(self, job: Job, task: Task, delay: float) -> None:
        if task.running:
            return
        task.not_before = self._now + delay
        if task.kind == REDUCE and job.maps_done < len(job.maps):
            task.state = TaskState.WAITING   # some map output was lost meanwhile: wait for it again
            return
        task.state = TaskState.READY
        heapq.heappush(self._backoff, (task.not_before, job.id, task.kind, task.index))

    def _unready_reduce(self, job: Job, task: Task) -> None:
        task.state = TaskState.WAITING
        self._ready_reduces.get(job.owners[task.index], {}).pop((job.id, task.index), None)

    def _move_ready_reduce(self, job: Job, partition: int, old: str, new: str) -> None:
        queue = self._ready_reduces.get(old, {})
        if (job.id, partition) in queue:
            del queue[(job.id, partition)]
            self._ready_reduces.setdefault(new, {})[(job.id, partition)] = None

    def _dispatch(self) -> None:
        """Give every idle worker work: its own partitions' reduces first, then maps, oldest job first."""
        for worker_id in [w for w in self._idle if self._ready_reduces.get(w)]:
            self._assign_reduce(self.workers[worker_id])
        while self._idle:
            found = self._next_map()
            if found is None:
                return
            worker_id = next(iter(self._idle))
            self._assign(self.workers[worker_id], found[0], found[1])

    def _next_map(self) -> tuple[Job, Task] | None:
        for job in self._running_jobs():
            while job.ready_maps:
                task = job.maps[job.ready_maps.popleft()]
                if task.state is TaskState.READY and not task.running and task.not_before <= self._now:
                    return job, task
        return None

    def _assign_reduce(self, worker: Worker) -> None:
        queue = self._ready_reduces[worker.id]
        while queue:
            job_id, partition = next(iter(queue))
            del queue[(job_id, partition)]
            job = self.jobs[job_id]
            task = job.reduces[partition]
            if job.state is JobState.RUNNING and task.state is TaskState.READY and not task.running:
                self._assign(worker, job, task)
                return

    def _assign(self, worker: Worker, job: Job, task: Task) -> None:
        self._idle.pop(worker.id, None)
        task.attempts_made += 1
        number = task.attempts_made
        task.running[number] = Attempt(worker.id, self._now, self._now)
        task.state = TaskState.RUNNING
        task.started = task.started or self._now
        worker.current = (job.id, task.kind, task.index, number)
        if worker.id not in job.set_up_on:
            job.set_up_on.add(worker.id)
            self._send(worker.peer, self._job_setup(job))
        if task.kind == MAP:
            msg: m.FromCoordinator = m.AssignMap(job_id=job.id, task=task.index, attempt=number,
                                                 split=job.spec.splits[task.index])
        else:
            msg = m.AssignReduce(job_id=job.id, task=task.index, attempt=number,
                                 output_dir=job.spec.output_dir, sources=self._sources(job))
        self._send(worker.peer, msg)
        self._log("task_assigned", "debug", job=job.id, task=task.label, attempt=number, worker=worker.id)

    # ------------------------------------------------------------ stragglers

    def _record_duration(self, job: Job, task: Task, number: int) -> None:
        attempt = task.running.get(number)
        if attempt is not None:
            bisect.insort(job.durations.setdefault(task.kind, []), self._now - attempt.started)

    def _speculate(self) -> None:
        """Near the end of a phase, a task far slower than its finished peers gets a backup attempt.

        Runs on ticks only. Conservative on purpose: a backup needs an idle worker (so no task is waiting
        for one), at least one finished task to compare with, and `slow_factor` times its median.
        """
        if not self.params.speculation or not self._idle:
            return
        for worker in list(self.workers.values()):
            if not self._idle:
                return
            found = self._straggler(worker)
            if found is None:
                continue
            backup = next((w for w in self._idle if w != worker.id), None)
            if backup is not None:
                job, task = found
                self._log("backup_attempt", "info", job=job.id, task=task.label, slow_worker=worker.id,
                          worker=backup)
                self._assign(self.workers[backup], job, task)

    def _straggler(self, worker: Worker) -> tuple[Job, Task] | None:
        if not worker.alive or worker.current is None:
            return None
        job_id, kind, index, number = worker.current
        job = self.jobs.get(job_id)
        task = job.task(kind, index) if job else None
        attempt = task.running.get(number) if task else None
        if job is None or task is None or attempt is None or len(task.running) != 1:
            return None
        durations = job.durations.get(kind)
        if task.state is not TaskState.RUNNING or not durations:
            return None
        if kind == REDUCE and job.maps_done < len(job.maps):
            return None   # some map output was lost since it started: a backup could not read it
        median = durations[len(durations) // 2]
        slow = self._now - attempt.started >= max(self.params.min_elapsed, self.params.slow_factor * median)
        return (job, task) if slow else None

    # ------------------------------------------------------------ jobs

    def _running_jobs(self) -> list[Job]:
        return [j for j in self.jobs.values() if j.state is JobState.RUNNING]

    def _start_queued_jobs(self) -> None:
        alive = sorted(w.id for w in self.workers.values() if w.alive)
        if not alive:
            return
        for job in self.jobs.values():
            if job.state is JobState.QUEUED:
                job.state, job.started = JobState.RUNNING, self._now
                job.owners = [alive[p % len(alive)] for p in range(job.spec.n_reduce)]
                job.ready_maps.extend(range(len(job.maps)))
                self._log("job_started", "info", job=job.id, owners=len(set(job.owners)))
                if not job.maps:
                    for reduce in job.reduces:
                        self._make_ready(job, reduce)

    def _end_job(self, job: Job, state: JobState, error: str) -> None:
        job.state, job.error, job.finished = state, error, self._now
        for task in itertools.chain(job.maps, job.reduces):
            for number, attempt in list(task.running.items()):
                worker = self.workers.get(attempt.worker)
                if worker is not None and worker.alive and worker.current is not None:
                    self._send(worker.peer, m.CancelTask(job_id=job.id, task=task.index, attempt=number,
                                                         kind=task.kind))
            task.running.clear()
        job.ready_maps.clear()
        for worker_id in job.set_up_on:
            worker = self.workers[worker_id]
            if worker.alive:
                self._send(worker.peer, m.JobEnded(job_id=job.id))
        self._out.append(JobFinished(job.id, state, job.spec.output_dir, job.spec.n_reduce))
        level = "info" if state is JobState.SUCCEEDED else "error"
        self._log("job_" + state.value, level, job=job.id, error=error.splitlines()[0] if error else "")

    def _cancel_other_attempts(self, job: Job, task: Task) -> None:
        for number, attempt in list(task.running.items()):
            worker = self.workers.get(attempt.worker)
            if worker is not None and worker.alive:
                self._send(worker.peer, m.CancelTask(job_id=job.id, task=task.index, attempt=number,
                                                     kind=task.kind))
        task.running.clear()

    def _job_setup(self, job: Job) -> m.JobSetup:
        p = self.params
        return m.JobSetup(job_id=job.id, app_blob=job.spec.app_blob, args=job.spec.args,
                          n_reduce=job.spec.n_reduce, owners=self._owner_addrs(job),
                          owners_epoch=job.owners_epoch, push=p.push, batch_bytes=p.batch_bytes,
                          window_bytes=p.window_bytes)

    def _owner_addrs(self, job: Job) -> list[str]:
        return [self.workers[w].data_addr if self.workers[w].alive else "" for w in job.owners]

    def _sources(self, job: Job) -> list[m.MapSource]:
        sources = []
        for task in job.maps:
            worker = self.workers.get(task.committed_worker or "")
            addr = worker.data_addr if worker is not None and worker.alive else ""
            sources.append(m.MapSource(task=task.index, attempt=task.committed or 0, addr=addr))
        return sources

    # ------------------------------------------------------------ attempts

    def _current_attempt(self, worker: Worker) -> Attempt | None:
        if worker.current is None:
            return None
        job_id, kind, index, number = worker.current
        job = self.jobs.get(job_id)
        task = job.task(kind, index) if job else None
        return task.running.get(number) if task else None

    def _own_attempt(self, worker: Worker, job_id: str, kind: str, index: int,
                     number: int) -> tuple[Job, Task] | None:
        """The (job, task) if `worker` really runs that attempt now; stale or foreign reports are dropped."""
        if worker.current != (job_id, kind, index, number):
            self._log("stale_report", "info", worker=worker.id, job=job_id, task=f"{kind}-{index}",
                      attempt=number)
            return None
        job = self.jobs[job_id]
        task = job.task(kind, index)
        if task is None or number not in task.running or job.state is not JobState.RUNNING:
            worker.current = None
            return None
        return job, task

    def _finish_attempt(self, worker: Worker, task: Task, number: int) -> None:
        task.running.pop(number, None)
        worker.current = None

    # ------------------------------------------------------------ views

    def output_dir_busy(self, output_dir: str) -> bool:
        """Does a job that has not ended write to `output_dir`?"""
        return any(j.spec.output_dir == output_dir and not j.state.ended for j in self.jobs.values())

    def status(self, job_id: str | None) -> m.StatusReply | m.ErrorReply:
        if job_id is not None and job_id not in self.jobs:
            return m.ErrorReply(message=f"no job {job_id}")
        jobs = [self._job_info(j, detail=job_id is not None) for j in self.jobs.values()
                if job_id is None or j.id == job_id]
        workers = [m.WorkerInfo(worker_id=w.id, data_addr=w.data_addr, state=self._worker_state(w),
                                last_heartbeat=w.last_seen,
                                task=f"{w.current[0]}/{w.current[1]}-{w.current[2]}" if w.current else "")
                   for w in self.workers.values()]
        return m.StatusReply(now=self._now, jobs=jobs, workers=workers)

    def _worker_state(self, worker: Worker) -> str:
        if not worker.alive:
            return "dead"
        return "busy" if worker.current else "idle"

    def _job_info(self, job: Job, detail: bool) -> m.JobInfo:
        tasks = [m.TaskInfo(kind=t.kind, index=t.index, state=t.state.value, attempts=t.attempts_made,
                            worker=t.committed_worker or next((a.worker for a in t.running.values()), ""),
                            started=t.started, finished=t.finished)
                 for t in itertools.chain(job.maps, job.reduces)] if detail else []
        parts = [m.PartitionInfo(partition=p, owner=job.owners[p] if job.owners else "",
                                 bytes_in=s.bytes_in, batches_in=s.batches_in, first_batch=s.first_batch,
                                 last_batch=s.last_batch)
                 for p, s in sorted(job.partition_stats.items())] if detail else []
        return m.JobInfo(job_id=job.id, app_name=job.spec.app_name, state=job.state.value,
                         submitted=job.submitted, started=job.started, finished=job.finished,
                         maps_done=job.maps_done, maps_total=len(job.maps), reduces_done=job.reduces_done,
                         reduces_total=len(job.reduces), bytes_shuffled=job.bytes_shuffled,
                         records_out=job.records_out, output_dir=job.spec.output_dir, error=job.error,
                         tasks=tasks, partitions=parts)

    # ------------------------------------------------------------ output helpers

    def _send(self, peer: bytes, msg: m.FromCoordinator) -> None:
        self._out.append(Send(peer, msg))

    def _log(self, event: str, level: str, **fields: Any) -> None:
        self._out.append(Log(event, level, fields))


def spec_problem(spec: m.JobSpec) -> str:
    """Why a job spec cannot be queued, or '' if it can."""
    if spec.n_reduce < 1:
        return f"n_reduce must be at least 1, got {spec.n_reduce}"
    if not spec.splits:
        return "the job has no input"
    if not spec.output_dir:
        return "the job has no output directory"
    if not spec.app_blob:
        return "the job has no app"
    return ""
