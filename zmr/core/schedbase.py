"""The scheduler's working state, and the primitives every part of it uses.

The Scheduler is built in layers, each a module with one job and each a class on top of the one before:
schedbase (state; journaling, sending and logging; which attempt a worker runs) -> dispatch (ready
queues, assignment, backups, jobs' start and end, partition placement) -> losses (lost workers,
attempts, commit grants and map output) -> reports (what workers report) -> rejoin (workers that
register, or come back) -> scheduler (the entry point: events in, actions out).
"""

from __future__ import annotations

import heapq
from typing import Any

from zmr.core import views
from zmr.core.durable import Ledger
from zmr.core.events import Action, Journal, Log, Send
from zmr.core.params import SchedulerParams
from zmr.core.state import AttemptRun, Job, JobState, Task, WorkerEntry
from zmr.protocol import journal as j
from zmr.protocol import messages as m


class SchedulerBase:
    """State and primitives shared by every layer of the Scheduler."""

    def __init__(self, params: SchedulerParams) -> None:
        self.params = params
        self.book = Ledger(params.first_job_number)   # durable state: changed only by `_record`
        self._by_peer: dict[bytes, str] = {}
        self._idle: dict[str, None] = {}                     # ordered set of idle worker ids
        self._ready_reduces: dict[str, dict[tuple[str, int], None]] = {}   # owner -> (job, partition)
        self._wake: dict[str, None] = {}   # idle workers, or owners given a ready reduce, since the last dispatch
        self._backoff: list[tuple[float, str, str, int]] = []               # (not_before, job, kind, index)
        self._liveness: list[tuple[float, str]] = []                        # (deadline, worker)
        self._draining: list[Job] = []               # ended jobs whose workers still report leases
        self._waiters: dict[tuple[bytes, str], float] = {}   # WaitJob held: (client, job) -> answer by
        self._leases: dict[str, int] = {}   # job -> leases its live workers last reported (no zero entries)
        self._out: list[Action] = []
        self._now = 0.0
        self._last_tick: float | None = None

    @property
    def jobs(self) -> dict[str, Job]:
        return self.book.jobs

    @property
    def workers(self) -> dict[str, WorkerEntry]:
        return self.book.workers

    @property
    def archived(self) -> dict[str, m.JobInfo]:
        """Ended jobs kept as their final status only (after a compaction, or recovered from one)."""
        return self.book.archived

    def _running_jobs(self) -> list[Job]:
        return [j for j in self.jobs.values() if j.state is JobState.RUNNING]

    def _task_of(self, attempt: m.AttemptId) -> tuple[Job | None, Task | None]:
        job = self.jobs.get(attempt.job_id)
        return job, job.task(attempt.kind, attempt.task) if job else None

    def _current_run(self, worker: WorkerEntry) -> AttemptRun | None:
        if worker.current is None:
            return None
        _, task = self._task_of(worker.current)
        return task.running.get(worker.current.number) if task else None

    def _own_attempt(self, worker: WorkerEntry, attempt: m.AttemptId,
                     kind: m.TaskKind | None = None) -> tuple[Job, Task] | None:
        """The (job, task) if `worker` really runs that attempt (of a `kind` task, if given) now; stale or
        foreign reports, and a report that cannot be about that kind of task, are dropped."""
        if worker.current != attempt or (kind is not None and attempt.kind != kind):
            self._log("stale_report", "info", worker=worker.id, **attempt.log_fields())
            return None
        job, task = self._task_of(attempt)
        if job is None or task is None or attempt.number not in task.running or job.state is not JobState.RUNNING:
            worker.current = None
            return None
        return job, task

    def _alive(self, worker_id: str | None) -> bool:
        worker = self.workers.get(worker_id or "")
        return worker is not None and worker.alive

    def _finish_attempt(self, worker: WorkerEntry, job: Job, task: Task, number: int,
                        outcome: m.AttemptOutcome) -> None:
        task.running.pop(number, None)
        worker.current = None
        job.attempt_log.end(task.kind, task.index, number, self._now, outcome)

    def _push_liveness(self, worker: WorkerEntry) -> None:
        deadline = worker.last_seen + self.params.heartbeat_interval * self.params.heartbeat_liveness
        heapq.heappush(self._liveness, (deadline, worker.id))

    def job_leases(self, job: Job) -> int:
        """Leased resources the job's live workers last reported holding (as `views.job_leases` sums them).

        Read at every map and reduce commit, so it is a running total, not a sum over every worker.
        """
        return self._leases.get(job.id, 0)

    def _set_leases(self, worker: WorkerEntry, leases: dict[str, int]) -> None:
        """What a live worker now reports holding, job by job; the running totals follow."""
        self._count_leases(worker, -1)
        worker.leases = leases
        self._count_leases(worker, +1)

    def _count_leases(self, worker: WorkerEntry, sign: int) -> None:
        """Add (+1) or take off (-1) a live worker's leases from the totals: a dead worker's count for nothing."""
        if not worker.alive:
            return
        for job_id, count in worker.leases.items():
            total = self._leases.get(job_id, 0) + sign * count
            if total:
                self._leases[job_id] = total
            else:
                self._leases.pop(job_id, None)

    def _sample(self, job: Job) -> None:
        """Add a timeline point if anything changed; an ended job is followed until its leases are gone."""
        point = m.TimelinePoint(t=self._now, leases=self.job_leases(job), maps_done=job.maps_done,
                                reduces_done=job.reduces_done, bytes_shuffled=job.bytes_shuffled)
        last = job.timeline[-1] if job.timeline else None
        if last is None or (last.leases, last.maps_done, last.reduces_done, last.bytes_shuffled) != (
                point.leases, point.maps_done, point.reduces_done, point.bytes_shuffled):
            job.timeline.append(point)
            if len(job.timeline) > self.params.timeline_points:   # keep the ends, thin the middle
                job.timeline[1:-1] = job.timeline[1:-1:2]
        if job.state.ended and (point.leases == 0 or self._now > (job.finished or 0) + self.params.lease_ttl):
            if job in self._draining:
                self._draining.remove(job)

    def _job_info(self, job: Job) -> m.JobInfo:
        return views.job_info(job, self.book, detail=True)

    def _send(self, peer: bytes, msg: m.FromCoordinator) -> None:
        self._out.append(Send(peer, msg))

    def _record(self, record: j.Record) -> None:
        """Make a state change: journal it (before any Send of this batch goes out) and apply it."""
        self._out.append(Journal(record))
        self.book.apply(record)

    def _setback(self, job: Job, task: Task, app_failures: int = 0, worker_losses: int = 0) -> None:
        """Count a task's failure. The counts are journaled whole, so a restart keeps them."""
        self._record(j.TaskSetback(job_id=job.id, kind=task.kind, task=task.index,
                                   app_failures=task.app_failures + app_failures,
                                   worker_losses=task.worker_losses + worker_losses))

    def _max_attempts(self, job: Job) -> int:
        """Failed attempts of one of the job's tasks that fail the job: its own limit, else the cluster's."""
        return job.spec.max_attempts or self.params.max_attempts

    def _log(self, event: str, level: str, **fields: Any) -> None:
        self._out.append(Log(event, level, fields))


