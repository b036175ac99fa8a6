"""The scheduler's durable state, and the one path that changes it: `Ledger.apply(record)`.

Every change a restart must not lose is a journal record (zmr.protocol.journal). Live, the scheduler
builds the record, journals it and hands it to `apply`; after a restart, replay hands the journal's
records to the same `apply`. So the state a restart rebuilds is the state the live coordinator had by
construction, not because two pieces of code were kept in step. What is not durable state (messages,
logs, ready queues, running attempts, liveness) stays with the live code around each change.

`apply` ignores a record that names an unknown job or task, or that a task's state has made moot (a
second commit, say): a well-formed journal never holds one, and replay must not trip over one either.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from zmr.core.state import MAP, REDUCE, Job, JobState, Task, TaskState, WorkerEntry
from zmr.protocol import journal as j
from zmr.protocol import messages as m

JobInfoOf = Callable[[Job], m.JobInfo]


class Ledger:
    """Jobs, workers' addresses, archived job statuses and the next job number: what the journal keeps."""

    def __init__(self, first_job: int) -> None:
        self.jobs: dict[str, Job] = {}
        self.workers: dict[str, WorkerEntry] = {}  # entries also carry live-only fields (peer, liveness)
        self.archived: dict[str, m.JobInfo] = {}  # ended jobs kept as their final status only
        self.next_job = first_job

    def apply(self, rec: j.Record) -> None:
        """Make the change `rec` records. The only code that changes durable state, live and in replay."""
        if isinstance(rec, j.Header):
            self.next_job = max(self.next_job, rec.next_job)
        elif isinstance(rec, j.WorkerJoined):
            worker = self.workers.get(rec.worker_id)
            if worker is not None:   # in replay there is no entry yet: recovery reads the address itself
                worker.data_addr, worker.key = rec.data_addr, rec.key
        elif isinstance(rec, j.JobSubmitted):
            self._new_job(rec)
        elif isinstance(rec, j.EndedJob):
            self.archived[rec.info.job_id] = rec.info
            self.next_job = max(self.next_job, rec.number + 1)
        else:
            job = self.jobs.get(rec.job_id)
            if job is not None:
                _JOB_CHANGES[type(rec)](job, rec)

    def _new_job(self, rec: j.JobSubmitted) -> None:
        self.next_job = max(self.next_job, rec.number + 1)
        job = Job(id=rec.job_id, spec=rec.spec, submitted=rec.submitted, number=rec.number)
        if rec.spec.fed_maps:   # a step job's maps run as the reduces of the steps it reads: they wait
            job.maps = [Task(MAP, i, TaskState.WAITING) for i in range(rec.spec.fed_maps)]
        else:
            job.maps = [Task(MAP, i, TaskState.READY) for i in range(len(rec.spec.splits))]
        job.reduces = [Task(REDUCE, r, TaskState.WAITING) for r in range(rec.spec.n_reduce)]
        job.compressed_inputs = sum(1 for split in rec.spec.splits if split.codec)   # once: status reads it
        self.jobs[job.id] = job

    def snapshot(self, info: JobInfoOf) -> list[j.Record]:
        """The records that rebuild this state, as few as possible; ended jobs keep only `info` of them."""
        out: list[j.Record] = [j.Header(version=j.JOURNAL_VERSION, next_job=self.next_job)]
        live = [job for job in self.jobs.values() if not job.state.ended]
        named = {w for job in live for w in job.owners} | {
            w for job in live for t in itertools.chain(job.maps, job.reduces)
            for w in (t.committed_worker, t.granted_worker) if w}
        out += [j.WorkerJoined(worker_id=w.id, data_addr=w.data_addr, key=w.key) for w in self.workers.values()
                if (w.id in named or w.alive) and w.data_addr]
        out += [j.EndedJob(number=job_number(i.job_id), info=i) for i in self.archived.values()]
        for job in self.jobs.values():
            if job.state.ended and job.output_done:
                out.append(j.EndedJob(number=job.number, info=info(job)))
            elif job.state.ended:
                out += [*job_records(job), concluded(job)]
            else:
                out += job_records(job)
        return out


# ---------------------------------------------------------------- records of the current state


def job_records(job: Job) -> list[j.Record]:
    """A job that has not ended (or whose end is recorded apart) as records: its start and its tasks."""
    out: list[j.Record] = [j.JobSubmitted(job_id=job.id, number=job.number, spec=job.spec, submitted=job.submitted)]
    if job.state is JobState.QUEUED:
        return out
    out.append(j.JobStarted(job_id=job.id, started=job.started or job.submitted, owners=list(job.owners)))
    out.append(j.OwnersMoved(job_id=job.id, moves={}, epoch=job.owners_epoch))
    for task in itertools.chain(job.maps, job.reduces):
        out += _task_records(job, task)
    return out


def _task_records(job: Job, task: Task) -> list[j.Record]:
    out: list[j.Record] = []
    if task.attempts_made:
        out.append(j.TaskAssigned(job_id=job.id, kind=task.kind, task=task.index, attempt=task.attempts_made,
                                  worker_id=task.committed_worker or ""))
    if task.app_failures or task.worker_losses:
        out.append(setback(job, task))
    if task.state is TaskState.DONE and task.kind == MAP:
        out.append(j.MapCommitted(job_id=job.id, task=task.index, attempt=task.committed or 0,
                                  worker_id=task.committed_worker or "", records_out=task.records_out,
                                  bytes_out=task.bytes_out, finished=task.finished or 0.0))
    elif task.state is TaskState.DONE:
        out.append(j.CommitConfirmed(job_id=job.id, task=task.index, attempt=task.committed or 0,
                                     worker_id=task.committed_worker or "", records_out=task.records_out,
                                     finished=task.finished or 0.0))
    elif task.committing is not None:
        out.append(j.CommitGranted(job_id=job.id, task=task.index, attempt=task.committing,
                                   worker_id=task.granted_worker or "", records_out=task.records_out))
    return out


def setback(job: Job, task: Task) -> j.TaskSetback:
    """The task's failure counts as a record: journaled at each change, so a restart keeps them."""
    return j.TaskSetback(job_id=job.id, kind=task.kind, task=task.index, app_failures=task.app_failures,
                         worker_losses=task.worker_losses)


def concluded(job: Job) -> j.JobConcluded:
    return j.JobConcluded(job_id=job.id, state=job.state.value, error=job.error, finished=job.finished or 0.0)


def job_number(job_id: str) -> int:
    digits = job_id.rpartition("-")[2]
    return int(digits) if digits.isdigit() else 0


# ---------------------------------------------------------------- the changes, one per record type


def _started(job: Job, rec: j.JobStarted) -> None:
    job.state, job.started, job.owners = JobState.RUNNING, rec.started, list(rec.owners)
    job.owner_cycle = list(dict.fromkeys(job.owners))   # owners are dealt round-robin at the start
    job.owner_moves = {p: w for p, w in enumerate(job.owners) if w != job.owner_cycle[p % len(job.owner_cycle)]}
    job.owned = {}
    for owner in job.owners:
        job.owned[owner] = job.owned.get(owner, 0) + 1
    job.unfinished = dict(job.owned)   # (a job's records, in a snapshot too, commit nothing before its start)
    job.reduce_phase = not job.maps


def _owners_moved(job: Job, rec: j.OwnersMoved) -> None:
    """Only the moved partitions change: their owners, the cycle's exceptions and the per-owner counts."""
    for partition, owner in rec.moves.items():
        if not 0 <= partition < len(job.owners):
            continue
        old = job.owners[partition]
        _count(job.owned, old, -1)
        _count(job.owned, owner, 1)
        if job.reduces[partition].state is not TaskState.DONE:
            _count(job.unfinished, old, -1)
            _count(job.unfinished, owner, 1)
        job.owners[partition] = owner
        if owner == job.owner_cycle[partition % len(job.owner_cycle)]:
            job.owner_moves.pop(partition, None)
        else:
            job.owner_moves[partition] = owner
    job.owners_epoch = rec.epoch


def _ended(job: Job, rec: j.JobConcluded) -> None:
    job.state, job.error, job.finished = JobState(rec.state), rec.error, rec.finished


def _output_finished(job: Job, rec: j.OutputFinished) -> None:
    job.output_done = True


def _assigned(job: Job, rec: j.TaskAssigned) -> None:
    """Attempt numbers only grow, so a restart never hands out a number a worker may still hold."""
    task = job.task(rec.kind, rec.task)
    if task is not None:
        task.attempts_made = max(task.attempts_made, rec.attempt)
    if rec.kind == REDUCE and not job.reduce_phase:   # only in replay of a snapshot: see _map_committed
        job.reduce_phase = True
        job.remaking = {t.index for t in job.maps if t.state is not TaskState.DONE}   # all committed once


def _setback(job: Job, rec: j.TaskSetback) -> None:
    task = job.task(rec.kind, rec.task)
    if task is not None:
        task.app_failures = max(task.app_failures, rec.app_failures)
        task.worker_losses = max(task.worker_losses, rec.worker_losses)


def _map_committed(job: Job, rec: j.MapCommitted) -> None:
    task = job.task(MAP, rec.task)
    if task is None or task.state is TaskState.DONE:
        return
    task.state, task.committed, task.committed_worker = TaskState.DONE, rec.attempt, rec.worker_id
    task.records_out, task.bytes_out, task.finished = rec.records_out, rec.bytes_out, rec.finished
    task.attempts_made = max(task.attempts_made, rec.attempt)   # a step job's map: its feeder's attempt
    job.maps_done += 1
    _index(job.maps_held, rec.worker_id, task.index)
    job.bytes_committed += rec.bytes_out
    job.remaking.discard(task.index)
    if job.maps_done + len(job.remaking) == len(job.maps):   # every map has committed once: see Job.reduce_phase
        job.reduce_phase = True   # (a snapshot keeps no record of this: its reduces' assignments say it)


def _map_uncommitted(job: Job, rec: j.MapUncommitted) -> None:
    """Its output is lost: the map is ready to run again."""
    task = job.task(MAP, rec.task)
    if task is None or task.state is not TaskState.DONE:
        return
    _unindex(job.maps_held, task.committed_worker, task.index)
    waits = bool(job.spec.fed_maps)   # a step job's map is made again by the reduce that feeds it
    task.state = TaskState.WAITING if waits else TaskState.READY
    task.committed, task.committed_worker, task.finished = None, None, None
    job.maps_done -= 1
    job.bytes_committed -= task.bytes_out
    job.remaking.add(task.index)


def _commit_granted(job: Job, rec: j.CommitGranted) -> None:
    task = job.task(REDUCE, rec.task)
    if task is None or task.state is TaskState.DONE:
        return
    _unindex(job.grants, task.granted_worker, task.index)
    task.state, task.committing, task.granted_worker = TaskState.COMMITTING, rec.attempt, rec.worker_id
    task.records_out = rec.records_out
    _index(job.grants, rec.worker_id, task.index)


def _commit_revoked(job: Job, rec: j.CommitRevoked) -> None:
    """The grantee is gone: no attempt holds the rename, and the task must be granted again."""
    task = job.task(REDUCE, rec.task)
    if task is None or task.state is not TaskState.COMMITTING:
        return
    _unindex(job.grants, task.granted_worker, task.index)
    task.state, task.committing, task.granted_worker = TaskState.WAITING, None, None


def _commit_confirmed(job: Job, rec: j.CommitConfirmed) -> None:
    task = job.task(REDUCE, rec.task)
    if task is None or task.state is TaskState.DONE:
        return
    _unindex(job.grants, task.granted_worker, task.index)   # committed: no grant is pending any more
    task.state, task.committed, task.committed_worker = TaskState.DONE, rec.attempt, rec.worker_id
    task.committing, task.records_out, task.finished = rec.attempt, rec.records_out, rec.finished
    job.reduces_done += 1
    if 0 <= task.index < len(job.owners):
        _count(job.unfinished, job.owners[task.index], -1)


def _reduce_reopened(job: Job, rec: j.ReduceReopened) -> None:
    """A committed reduce that fed a later step runs again (see j.ReduceReopened)."""
    task = job.task(REDUCE, rec.task)
    if task is None or task.state is not TaskState.DONE:
        return
    task.state, task.committed, task.committed_worker, task.committing = TaskState.WAITING, None, None, None
    task.granted_worker, task.finished = None, None
    job.reduces_done -= 1
    if 0 <= task.index < len(job.owners):
        _count(job.unfinished, job.owners[task.index], 1)


def _count(counts: dict[str, int], worker: str, change: int) -> None:
    """A per-worker count that holds only positive counts."""
    count = counts.get(worker, 0) + change
    if count > 0:
        counts[worker] = count
    else:
        counts.pop(worker, None)


def _index(index: dict[str, set[int]], worker: str, task: int) -> None:
    index.setdefault(worker, set()).add(task)


def _unindex(index: dict[str, set[int]], worker: str | None, task: int) -> None:
    tasks = index.get(worker or "")
    if tasks is not None:
        tasks.discard(task)
        if not tasks:
            del index[worker or ""]


_JOB_CHANGES: dict[type, Callable[[Job, Any], None]] = {
    j.JobStarted: _started,
    j.OwnersMoved: _owners_moved,
    j.JobConcluded: _ended,
    j.OutputFinished: _output_finished,
    j.TaskAssigned: _assigned,
    j.TaskSetback: _setback,
    j.MapCommitted: _map_committed,
    j.MapUncommitted: _map_uncommitted,
    j.CommitGranted: _commit_granted,
    j.CommitRevoked: _commit_revoked,
    j.CommitConfirmed: _commit_confirmed,
    j.ReduceReopened: _reduce_reopened,
}
