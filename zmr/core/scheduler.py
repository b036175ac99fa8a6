"""The coordinator's brain: a pure state machine. Events in, actions out, the clock passed in.

`Scheduler.handle(event, now)` never touches a socket, a file or the wall clock, so every fault case is
a fast deterministic unit test and a simulator can drive it at scale. The shell around it
(`zmr.runtime.coordinator`) turns socket traffic into events and carries out the actions.

Around it: `events` (what goes in and out), `params` (its settings), `durable` (the state a journal
keeps, changed only by applying records) and `views` (the status it reports).
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections.abc import Callable, Iterable
from typing import Any

from zmr.core import recovery, views
from zmr.core.durable import Ledger
from zmr.core.events import Action, ConnectionsAlive, Event, JobFinished, Journal, Log, Received, Send, Tick
from zmr.core.params import SchedulerParams
from zmr.core.specs import spec_problem
from zmr.core.state import MAP, REDUCE, AttemptRun, Job, JobState, Task, TaskState, WorkerEntry
from zmr.protocol import journal as j
from zmr.protocol import messages as m
from zmr.protocol.success import SuccessMarker

__all__ = ["Action", "ConnectionsAlive", "Event", "JobFinished", "Journal", "Log", "Received", "Scheduler",
           "SchedulerParams", "Send", "Tick"]


class Scheduler:
    """Owns jobs, tasks and workers; decides who runs what and what counts."""

    def __init__(self, params: SchedulerParams) -> None:
        self.params = params
        self.book = Ledger(params.first_job_number)   # durable state: changed only by `_record`
        self._by_peer: dict[bytes, str] = {}
        self._idle: dict[str, None] = {}                     # ordered set of idle worker ids
        self._ready_reduces: dict[str, dict[tuple[str, int], None]] = {}   # owner -> (job, partition)
        self._backoff: list[tuple[float, str, str, int]] = []               # (not_before, job, kind, index)
        self._liveness: list[tuple[float, str]] = []                        # (deadline, worker)
        self._draining: list[Job] = []               # ended jobs whose workers still report leases
        self._waiters: dict[tuple[bytes, str], float] = {}   # WaitJob held: (client, job) -> answer by
        self._out: list[Action] = []
        self._now = 0.0

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
            self._on_message(event.peer, event.msg, event.key)
        self._dispatch()
        if self._waiters:
            self._answer_waiters()
        return self._out

    def _on_message(self, peer: bytes, msg: m.ToCoordinator, key: str = "") -> None:
        if isinstance(msg, m.SubmitJob):
            self._on_submit(peer, msg.spec)
        elif isinstance(msg, m.StatusRequest):
            self._send(peer, self.status(msg.job_id))
        elif isinstance(msg, m.WaitJob):
            # one held wait per client and job (a client waits for one answer at a time): a repeat replaces it
            self._waiters[(peer, msg.job_id)] = self._now + msg.timeout
        elif isinstance(msg, m.CancelJob):
            self._on_cancel(peer, msg.job_id)
        elif isinstance(msg, m.Register):
            self._on_register(peer, msg, key)
        else:
            worker = self._known_worker(peer, msg.worker_id)
            if worker is not None:
                worker.last_seen = self._now
                self._WORKER_HANDLERS[type(msg)](self, worker, msg)

    def _known_worker(self, peer: bytes, worker_id: str) -> WorkerEntry | None:
        """The live worker behind `peer`, or None after telling the peer to register again."""
        worker = self.workers.get(worker_id)
        if worker is None or not worker.alive or worker.peer != peer:
            self._log("unknown_worker", "warning", worker=worker_id)
            self._send(peer, m.RegisterAgain())
            return None
        return worker

    # ------------------------------------------------------------ durability

    def recover(self, records: Iterable[j.Record], now: float, found: recovery.Found | None = None) -> list[Action]:
        """Rebuild the state a journal describes; call once, before the first event.

        Queued and ended jobs come back as they were. A running job keeps its committed tasks, its
        partition owners and its attempt numbers; what was running is ready again. Every worker the
        journal names as holding something is awaited for `recovery_grace`: if it registers again it
        keeps what it still holds, otherwise it is lost like any other worker and its work is redone.
        `found` is what the `_SUCCESS` files in the jobs' output directories say (see core.recovery): a
        job whose output is committed there is never run again. The changes that decides are in the
        snapshot, which the caller writes before carrying out any action.
        """
        self._now, self._out = now, []
        joined: dict[str, j.WorkerJoined] = {}   # the address and key each worker last joined with
        for record in records:
            if isinstance(record, j.WorkerJoined):
                joined[record.worker_id] = record
            self.book.apply(record)
        for finding in recovery.findings(list(self.jobs.values()), found or {}, now):
            for record in finding.records:
                self.book.apply(record)
            self._archive(self.jobs[finding.job_id])   # ended, output done: only its final status is left
            self._log(finding.event, finding.level, job=finding.job_id, reason=finding.reason)
        timeout = self.params.heartbeat_interval * self.params.heartbeat_liveness
        for job in self._running_jobs():
            awaited = set(job.owners)
            for task in job.maps:
                if task.state is TaskState.DONE:
                    awaited.add(task.committed_worker or "")
                else:
                    task.state = TaskState.READY
                    job.ready_maps.append(task.index)
            for task in job.reduces:
                if task.state is TaskState.COMMITTING:
                    awaited.add(task.granted_worker or "")
                elif task.state is not TaskState.DONE:
                    task.state = TaskState.WAITING
                    if job.maps_done == len(job.maps):
                        self._make_ready(job, task)
            for worker_id in sorted(awaited - {""} - set(self.workers)):
                known = joined.get(worker_id, j.WorkerJoined(worker_id=worker_id, data_addr=""))
                worker = WorkerEntry(worker_id, b"", known.data_addr, key=known.key,
                                last_seen=now + self.params.recovery_grace - timeout)
                self.workers[worker_id] = worker
                self._push_liveness(worker)
        for job in self.jobs.values():   # it ended, but the crash came before its output was finished
            if job.state.ended and not job.output_done:
                self._out.append(JobFinished(job.id, job.state, job.spec.output_dir, job.spec.n_reduce))
        self._log("recovered", "info", jobs=len(self.jobs) + len(self.archived), next_job=self.book.next_job,
                  running=len(self._running_jobs()), awaited_workers=len(self.workers))
        return self._out

    def snapshot(self) -> list[j.Record]:
        """The journal's records rewritten as few as possible; ended jobs keep only their final status."""
        return self.book.snapshot(self._job_info)

    def success_marker(self, job_id: str) -> SuccessMarker | None:
        """What the `_SUCCESS` of a job that succeeded says (None for a job no longer known)."""
        job = self.jobs.get(job_id)
        return recovery.success_marker(job) if job is not None else None

    def output_finished(self, job_id: str) -> list[Action]:
        """The shell carried out a JobFinished: journal it, so a restart does not do it again."""
        job = self.jobs.get(job_id)
        if job is None or job.output_done:
            return []
        self._out = []
        self._record(j.OutputFinished(job_id=job_id))
        return self._out

    def archive_ended(self) -> None:
        """Keep only the final status of ended jobs whose leases are gone (frees their app and inputs)."""
        referenced = {w.current.job_id for w in self.workers.values() if w.current is not None}
        for job in [job for job in self.jobs.values()
                    if job.state.ended and job.output_done and job not in self._draining
                    and job.id not in referenced]:
            self._archive(job)

    def _archive(self, job: Job) -> None:
        self.archived[job.id] = self._job_info(job)
        del self.jobs[job.id]

    # ------------------------------------------------------------ clients

    def _on_submit(self, peer: bytes, spec: m.JobSpec) -> None:
        problem = spec_problem(spec, self.params.limits) or (
            f"output directory {spec.output_dir} is in use by a running job"
            if self.output_dir_busy(spec.output_dir) else "")
        if problem:
            self._send(peer, m.ErrorReply(message=problem))
            return
        number = self.book.next_job
        submitted = j.JobSubmitted(job_id=f"job-{number:04d}", number=number, spec=spec, submitted=self._now)
        self._record(submitted)
        job = self.jobs[submitted.job_id]
        self._send(peer, m.JobAccepted(job_id=job.id))
        self._log("job_submitted", "info", job=job.id, maps=len(job.maps), reduces=spec.n_reduce)
        self._start_queued_jobs()

    def _on_cancel(self, peer: bytes, job_id: str) -> None:
        if job_id in self.archived:
            self._send(peer, self.status(job_id))
            return
        job = self.jobs.get(job_id)
        if job is None:
            self._send(peer, m.ErrorReply(message=f"no job {job_id}"))
            return
        if not job.state.ended:
            self._end_job(job, JobState.CANCELLED, "cancelled by a client")
        self._send(peer, self.status(job_id))

    # ------------------------------------------------------------ workers

    def _on_register(self, peer: bytes, msg: m.Register, key: str) -> None:
        if msg.python != self.params.python:
            self._send(peer, m.Reject(reason=f"worker runs Python {msg.python}, "
                                      f"the cluster needs {self.params.python}"))
            return
        old = self.workers.get(msg.worker_id)
        if old is not None and not self._claim_id(old, peer, msg, key):
            return
        if old is not None and old.alive and not old.peer and not old.data_addr:
            # awaited since a restart, its address not in the journal
            self._record(j.WorkerJoined(worker_id=old.id, data_addr=msg.data_addr, key=old.key))
        if old is not None and old.alive and old.data_addr == msg.data_addr:
            self._readopt(old, peer, msg)
            return
        if old is not None and old.alive:
            self._lose_worker(old, "registered again")
        for job in self.jobs.values():   # a new life: it gets every job's setup afresh
            job.set_up_on.discard(msg.worker_id)
        for holding in msg.holdings:    # and nothing it held before counts
            self._send(peer, m.JobEnded(job_id=holding.job_id))
        if msg.running is not None:
            self._send(peer, _cancel(msg.running))
        worker = WorkerEntry(msg.worker_id, peer, msg.data_addr, self._now, key=key, token=msg.token)
        self.workers[worker.id] = worker
        self._by_peer[peer] = worker.id
        self._push_liveness(worker)
        self._record(j.WorkerJoined(worker_id=worker.id, data_addr=worker.data_addr, key=key))
        self._send(peer, m.Welcome(worker_id=worker.id, heartbeat_interval=self.params.heartbeat_interval))
        self._log("worker_joined", "info", worker=worker.id, addr=msg.data_addr, pid=msg.pid, host=msg.host)
        self._start_queued_jobs()
        for job in self._running_jobs():
            self._replan(job)
            self._set_up_owners(job)

    def _claim_id(self, old: WorkerEntry, peer: bytes, msg: m.Register, key: str) -> bool:
        """May this Register speak for the worker id `old` already holds? Refuse it (and say so) if not.

        A worker id names one process life (a restarted worker comes back under a new id), so only the
        process that first registered an id may register it again: over a new connection, after a
        coordinator restart, or after it was declared dead while stalled. That process holds the same
        CURVE key and the same token (a random secret it never shows anyone but the coordinator); anyone
        else, a peer with another worker key, or any local peer when CURVE is off, is refused and the
        live worker keeps its registration. What is not known yet (the token of a worker recovered from
        the journal, or any key without CURVE) is taken from the first registration that passes.
        """
        wrong = ("another key" if old.key and old.key != key else
                 "another process" if old.token and old.token != msg.token else "")
        if not wrong:
            old.key, old.token = key, msg.token
            return True
        self._log("worker_id_refused", "warning", worker=old.id, peer=peer.hex(), why=f"registered by {wrong}",
                  key=key, host=msg.host, pid=msg.pid)
        self._send(peer, m.Reject(reason=f"worker id {old.id} is registered by {wrong}: refused"))
        return False

    def _readopt(self, worker: WorkerEntry, peer: bytes, msg: m.Register) -> None:
        """A live worker registers again: after a coordinator restart, or over a new connection.

        It is the same process with the same data, so whatever it still holds is reused: committed map
        output it kept, partitions it received, even the task it is running. Committed work it no longer
        holds is made again; jobs this coordinator does not run any more are dropped on the worker.
        """
        if worker.peer != peer:
            self._by_peer.pop(worker.peer, None)
            worker.peer = peer
            self._by_peer[peer] = worker.id
        worker.last_seen = self._now
        held = {h.job_id: h for h in msg.holdings}
        for holding in msg.holdings:
            job = self.jobs.get(holding.job_id)
            if job is None or job.state is not JobState.RUNNING:
                self._send(peer, m.JobEnded(job_id=holding.job_id))
        for job in self._running_jobs():
            kept = set(map(tuple, held[job.id].maps)) if job.id in held else set()
            for task in job.maps:
                if (task.state is TaskState.DONE and task.committed_worker == worker.id
                        and (task.index, task.committed) not in kept):
                    self._log("map_output_gone", "warning", job=job.id, task=task.label, worker=worker.id)
                    self._uncommit_map(job, task)
            if job.id not in held:
                job.set_up_on.discard(worker.id)   # it lost the job (its lease ran out): set it up again
            if job.id in held or worker.id in job.owners:
                self._set_up(job, worker)
        self._readopt_running(worker, msg.running)
        self._drop_orphan_grants(worker)
        for report in msg.finished_maps:
            self._readopt_finished_map(worker, report, held)
        self._send(peer, m.Welcome(worker_id=worker.id, heartbeat_interval=self.params.heartbeat_interval))
        self._log("worker_back", "info", worker=worker.id, jobs=len(held), pid=msg.pid)
        self._start_queued_jobs()

    def _readopt_finished_map(self, worker: WorkerEntry, report: m.MapDone, held: dict[str, m.Holding]) -> None:
        """A map the worker finished while this coordinator was away still counts if its output is there."""
        job = self.jobs.get(report.job_id)
        task = job.task(MAP, report.task) if job else None
        holding = held.get(report.job_id)
        if (job is None or task is None or holding is None or job.state is not JobState.RUNNING
                or task.state is TaskState.DONE or report.attempt in task.running
                or not 1 <= report.attempt <= task.attempts_made
                or (report.task, report.attempt) not in set(map(tuple, holding.maps))):
            return
        self._log("map_readopted", "info", job=job.id, task=task.label, attempt=report.attempt, worker=worker.id)
        self._commit_map(job, task, worker, report.attempt, report)

    def _readopt_running(self, worker: WorkerEntry, running: m.AttemptId | None) -> None:
        """Keep the attempt the worker says it runs if it may still count; cancel it otherwise."""
        if worker.current is not None and worker.current != running:
            self._abandon_current(worker, "the worker no longer runs it")
        if running is None or worker.current == running:
            return
        job, task = self._task_of(running)
        usable = (running.kind in (MAP, REDUCE) and running.number >= 1
                  and job is not None and task is not None and job.state is JobState.RUNNING
                  and task.state in (TaskState.READY, TaskState.RUNNING, TaskState.COMMITTING)
                  and running.number <= task.attempts_made and running.number not in task.running
                  and (task.committing is None or task.committing == running.number))
        if not usable or job is None or task is None:
            self._send(worker.peer, _cancel(running))
            return
        self._idle.pop(worker.id, None)
        task.running[running.number] = AttemptRun(worker.id, self._now, self._now)
        task.started = task.started or self._now
        worker.current, worker.busy_since = running, self._now
        if task.committing == running.number:   # it was granted the rename: say so again
            task.state = TaskState.COMMITTING
            self._send(worker.peer, _decision(running, True))
        else:
            task.state = TaskState.RUNNING
        self._log("attempt_readopted", "info", job=job.id, task=task.label, attempt=running.number,
                  worker=worker.id)

    def _on_heartbeat(self, worker: WorkerEntry, msg: m.Heartbeat) -> None:
        for stat in msg.partitions:
            job = self.jobs.get(stat.job_id)
            if (job is not None and 0 <= stat.partition < len(job.reduces) and job.owners
                    and job.owners[stat.partition] == worker.id
                    and job.reduces[stat.partition].state not in (TaskState.COMMITTING, TaskState.DONE)):
                job.partition_stats[stat.partition] = stat
        worker.leases = {stat.job_id: stat.leases for stat in msg.leases if stat.leases > 0}
        run = self._current_run(worker)
        if run is not None and msg.progress != run.progress:
            run.progress = msg.progress
            run.last_progress = self._now

    def _on_task_request(self, worker: WorkerEntry, msg: m.TaskRequest) -> None:
        """Idle now, unless the request crossed an assignment on the wire (it names an earlier attempt, or
        none at all): then the worker is about to get that assignment, and the request is stale."""
        if worker.current is not None:
            if msg.finished != worker.current:
                self._log("stale_task_request", "debug", worker=worker.id)
                return
            job = self.jobs.get(worker.current.job_id)
            self._abandon_current(worker, "the worker ended it without a report that counts")
            if job is not None:   # perhaps it had lost the job: the next assignment sets it up again
                job.set_up_on.discard(worker.id)
        self._idle[worker.id] = None

    def _on_map_done(self, worker: WorkerEntry, msg: m.MapDone) -> None:
        attempt = _reported(msg, MAP)
        found = self._own_attempt(worker, attempt)
        if found is None:
            return
        job, task = found
        self._record_duration(job, task, attempt.number)
        self._finish_attempt(worker, task, attempt.number)
        if task.state is TaskState.DONE:
            return  # another attempt committed first; this one's output never counts
        self._commit_map(job, task, worker, attempt.number, msg)

    def _commit_map(self, job: Job, task: Task, worker: WorkerEntry, number: int, report: m.MapDone) -> None:
        self._record(j.MapCommitted(job_id=job.id, task=task.index, attempt=number, worker_id=worker.id,
                                    records_out=report.records_out, bytes_out=report.bytes_out, finished=self._now))
        self._cancel_other_attempts(job, task)
        self._log("map_committed", "debug", job=job.id, task=task.label, attempt=number, worker=worker.id)
        self._sample(job)
        if job.maps_done == len(job.maps):
            for reduce in job.reduces:
                if reduce.state is TaskState.WAITING:
                    self._make_ready(job, reduce)

    def _on_reduce_done(self, worker: WorkerEntry, msg: m.ReduceDone) -> None:
        attempt = _reported(msg, REDUCE)
        found = self._own_attempt(worker, attempt)
        if found is None:
            return
        job, task = found
        ok = task.state is TaskState.RUNNING and task.committing is None
        if task.committing == attempt.number:   # a duplicate report: the grant stands (refusing would wedge it)
            ok = True
        elif ok:
            self._record_duration(job, task, attempt.number)
            self._record(j.CommitGranted(job_id=job.id, task=task.index, attempt=attempt.number,
                                         worker_id=worker.id, records_out=msg.records_out))
            if msg.received is not None and msg.received.partition == task.index:
                job.partition_stats[task.index] = msg.received   # final: heartbeats may lag behind
        self._send(worker.peer, _decision(attempt, ok))
        if not ok:
            self._finish_attempt(worker, task, attempt.number)

    def _on_reduce_committed(self, worker: WorkerEntry, msg: m.ReduceCommitted) -> None:
        attempt = _reported(msg, REDUCE)
        found = self._own_attempt(worker, attempt)
        if found is None:
            return
        job, task = found
        self._finish_attempt(worker, task, attempt.number)
        if task.committing != attempt.number:   # never granted: it does not count, and the task must run again
            self._requeue(job, task)
            return
        self._record(j.CommitConfirmed(job_id=job.id, task=task.index, attempt=attempt.number,
                                       worker_id=worker.id, records_out=task.records_out, finished=self._now))
        self._cancel_other_attempts(job, task)
        release = m.ReleasePartitions(job_id=job.id, partitions=[task.index])
        for worker_id in sorted(job.set_up_on):   # its batches and kept copies are garbage now
            if self.workers[worker_id].alive and job.reduces_done < len(job.reduces):
                self._send(self.workers[worker_id].peer, release)
        self._log("reduce_committed", "debug", job=job.id, task=task.label, attempt=attempt.number,
                  worker=worker.id)
        self._sample(job)
        if job.reduces_done == len(job.reduces):
            self._end_job(job, JobState.SUCCEEDED, "")

    def _on_task_failed(self, worker: WorkerEntry, msg: m.TaskFailed) -> None:
        attempt = _reported(msg, worker.current.kind if worker.current else MAP)   # one task at a time
        found = self._own_attempt(worker, attempt)
        if found is None:
            return
        job, task = found
        run = task.running.get(attempt.number)
        assigned = run.started if run is not None else self._now
        self._finish_attempt(worker, task, attempt.number)
        if task.committing == attempt.number:   # it failed after its commit was granted (e.g. the rename)
            self._revoke_grant(job, task)   # a backup, if any, may commit now
        self._log("task_failed", "warning", job=job.id, task=task.label, attempt=attempt.number,
                  worker=worker.id, kind=msg.kind, error=msg.error)
        if msg.kind == "missing_data":
            self._on_missing_data(job, task, msg.missing_maps, assigned)
            return
        self._setback(job, task, app_failures=1)
        if task.app_failures >= self.params.max_attempts:
            detail = f"{task.label} failed {task.app_failures} times; last error: {msg.error}"
            self._end_job(job, JobState.FAILED, detail + ("\n" + msg.traceback if msg.traceback else ""))
            return
        self._retry_later(job, task, self.params.retry_delay(task.app_failures))

    def _on_missing_data(self, job: Job, reduce: Task, missing: list[int], assigned: float) -> None:
        """A reducer could not get some committed map output: run those maps again.

        Only output committed before the failed attempt was assigned is what it looked for: a map whose
        output was lost, and that ran again and committed since (its worker died, say), is not undone.
        """
        self._setback(job, reduce, worker_losses=1)
        if reduce.worker_losses > self.params.max_worker_losses:
            self._end_job(job, JobState.FAILED, f"{reduce.label} lost its input too many times")
            return
        for index in missing:
            task = job.task(MAP, index)
            if task is not None and task.state is TaskState.DONE and (task.finished or 0.0) <= assigned:
                self._uncommit_map(job, task)
        self._requeue(job, reduce)

    _WORKER_HANDLERS: dict[type, Callable[[Scheduler, WorkerEntry, Any], None]] = {
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
        renew: dict[str, list[str]] = {}
        for job in self._running_jobs():
            for worker_id in job.set_up_on:
                renew.setdefault(worker_id, []).append(job.id)
            self._sample(job)
        for job in list(self._draining):   # sampling may end a job's draining
            self._sample(job)
        for worker in self.workers.values():
            if worker.alive and worker.peer:
                self._send(worker.peer, m.Ping(jobs=sorted(renew.get(worker.id, [])),
                                               lease_ttl=self.params.lease_ttl))
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
            run = self._current_run(worker) if worker.alive else None
            if run is not None and worker.current is not None \
                    and run.last_progress + self.params.task_timeout <= self._now:
                self._send(worker.peer, _cancel(worker.current))
                self._time_out_current(worker, worker.current)

    def _time_out_current(self, worker: WorkerEntry, current: m.AttemptId) -> None:
        """A stalled attempt is the app's failure, not the worker's: a map that loops for ever would
        otherwise be retried without end, one worker at a time. The worker stays busy (its `current`
        kept) until it says the attempt is gone: it kills the task process first, so what status
        shows is what the worker does."""
        found = self._take_attempt_off(worker, current, "no progress within the task timeout")
        if found is None:
            return
        job, task = found
        if job.state is not JobState.RUNNING or task.state is TaskState.DONE:
            return
        self._setback(job, task, app_failures=1)
        if task.app_failures >= self.params.max_attempts:
            self._end_job(job, JobState.FAILED, f"{task.label}: no progress within "
                          f"{self.params.task_timeout:g} s (attempt {task.app_failures} of {self.params.max_attempts})")
            return
        self._requeue(job, task)   # at once: the attempt has waited out the timeout already

    def _take_attempt_off(self, worker: WorkerEntry, current: m.AttemptId, why: str) -> tuple[Job, Task] | None:
        """The worker's current attempt no longer counts: off its task, its commit grant revoked."""
        job, task = self._task_of(current)
        if job is None or task is None or current.number not in task.running:
            return None
        del task.running[current.number]
        if task.committing == current.number:
            self._revoke_grant(job, task)
        self._log("attempt_lost", "warning", job=job.id, task=task.label, attempt=current.number, worker=worker.id,
                  why=why)
        return job, task

    def _push_liveness(self, worker: WorkerEntry) -> None:
        deadline = worker.last_seen + self.params.heartbeat_interval * self.params.heartbeat_liveness
        heapq.heappush(self._liveness, (deadline, worker.id))

    # ------------------------------------------------------------ losing work

    def _lose_worker(self, worker: WorkerEntry, why: str) -> None:
        worker.alive = False
        self._idle.pop(worker.id, None)
        self._log("worker_lost", "warning", worker=worker.id, why=why)
        if worker.current is not None:
            self._abandon_current(worker, f"worker lost: {why}")
        self._drop_orphan_grants(worker)
        self._tell_reducers_sources_lost(worker)
        for job in self._running_jobs():
            self._replan(job)

    def _tell_reducers_sources_lost(self, dead: WorkerEntry) -> None:
        """Every running reduce may be pulling the dead worker's kept map output, which died with it.

        The scheduler does not know which reducers already hold those maps' pushed streams (they may
        carry on), so each running reduce attempt hears it and decides: one that still needs the data
        fails at once with missing data instead of waiting for pulls from a dead peer to time out.
        """
        if not dead.data_addr:
            return
        for worker in self.workers.values():
            if not worker.alive or not worker.peer or worker.current is None:
                continue
            current = worker.current
            job = self.jobs.get(current.job_id)
            if current.kind == REDUCE and job is not None and job.state is JobState.RUNNING:
                self._send(worker.peer, m.SourcesLost(job_id=current.job_id, task=current.task,
                                                      attempt=current.number, addr=dead.data_addr))

    def _abandon_current(self, worker: WorkerEntry, why: str) -> None:
        """The worker's attempt will never report: put its task back (a machine failure, not the app's)."""
        current, worker.current = worker.current, None
        found = self._take_attempt_off(worker, current, why) if current is not None else None
        if found is None:
            return
        job, task = found
        if job.state is not JobState.RUNNING or task.state is TaskState.DONE or task.running:
            return
        self._setback(job, task, worker_losses=1)
        if task.worker_losses > self.params.max_worker_losses:
            self._end_job(job, JobState.FAILED, f"{task.label} lost its worker {task.worker_losses} times")
            return
        self._requeue(job, task)

    def _drop_orphan_grants(self, worker: WorkerEntry) -> None:
        """A reduce granted to this worker before a restart, which it no longer runs, must run again.

        Its output may already be in place; running again replaces it atomically with the same records.
        """
        for job in self._running_jobs():
            for task in job.reduces:
                if (task.state is TaskState.COMMITTING and task.granted_worker == worker.id
                        and task.committing not in task.running):
                    self._log("attempt_lost", "warning", job=job.id, task=task.label, attempt=task.committing,
                              worker=worker.id, why="granted before a restart, not running any more")
                    self._revoke_grant(job, task)
                    self._requeue(job, task)

    def _revoke_grant(self, job: Job, task: Task) -> None:
        self._record(j.CommitRevoked(job_id=job.id, task=task.index))
        task.state = TaskState.RUNNING   # a backup may run on; if none does, the caller puts the task back

    def _replan(self, job: Job) -> None:
        """Move partitions off dead owners; map output the new owners cannot pull is made again."""
        alive = [w for w in self.workers.values() if w.alive]
        if not alive:
            return
        load = {w.id: 0 for w in alive}
        for owner in job.owners:
            if owner in load:
                load[owner] += 1
        moves: dict[int, str] = {}
        for p, owner in enumerate(job.owners):
            if owner not in load and job.reduces[p].state is not TaskState.DONE:
                new = min(load, key=lambda w: (load[w], w))
                load[new] += 1
                moves[p] = new
        if not moves:
            return
        self._move_partitions(job, moves)
        for task in job.maps:
            if task.state is TaskState.DONE and task.committed_worker not in load:
                self._uncommit_map(job, task)

    def _move_partitions(self, job: Job, moves: dict[int, str]) -> None:
        """New owners for some partitions: journaled, announced to the job's workers, set up on the new ones."""
        owners = list(job.owners)
        for p, new in moves.items():
            self._move_ready_reduce(job, p, owners[p], new)
            owners[p] = new
        self._record(j.OwnersMoved(job_id=job.id, owners=owners, epoch=job.owners_epoch + 1))
        update = m.OwnersUpdate(job_id=job.id, owners=self._owner_addrs(job), owners_epoch=job.owners_epoch)
        for worker_id in job.set_up_on:
            worker = self.workers[worker_id]
            if worker.alive and worker.peer:
                self._send(worker.peer, update)
        self._set_up_owners(job)

    def _uncommit_map(self, job: Job, task: Task) -> None:
        self._record(j.MapUncommitted(job_id=job.id, task=task.index))
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
                break
            worker_id = next(iter(self._idle))
            self._assign(self.workers[worker_id], found[0], found[1])
        for worker_id in list(self._idle):
            if not self._steal_reduce(self.workers[worker_id]):
                return

    def _steal_reduce(self, thief: WorkerEntry) -> bool:
        """An idle worker takes over a ready partition whose owner has been busy for `min_elapsed`.

        A reduce runs on its partition's owner, which holds the pushed batches. If that owner is stuck
        in a long task (a straggling map that lost to its backup may still be in app code), the job
        should not wait for it: the partition moves to the idle worker, which pulls its input from the
        mappers' kept copies.
        """
        for owner_id, queue in self._ready_reduces.items():
            owner = self.workers.get(owner_id)
            if owner_id == thief.id or not queue or owner is None or not owner.alive or owner_id in self._idle:
                continue   # busy: it runs a task, or one it was told to give up that it has not left yet
            if not owner.peer or not owner.busy_since or self._now - owner.busy_since < self.params.min_elapsed:
                continue
            for job_id, partition in list(queue):
                job = self.jobs.get(job_id)
                task = job.reduces[partition] if job else None
                if (job is None or task is None or job.state is not JobState.RUNNING
                        or task.state is not TaskState.READY or task.running or task.not_before > self._now):
                    del queue[(job_id, partition)]
                    continue
                self._log("partition_moved", "info", job=job.id, partition=partition, old=owner_id,
                          worker=thief.id, why="its owner is busy")
                self._move_partitions(job, {partition: thief.id})
                self._assign_reduce(thief)
                return True
        return False

    def _next_map(self) -> tuple[Job, Task] | None:
        for job in self._running_jobs():
            while job.ready_maps:
                task = job.maps[job.ready_maps.popleft()]
                if task.state is TaskState.READY and not task.running and task.not_before <= self._now:
                    return job, task
        return None

    def _assign_reduce(self, worker: WorkerEntry) -> None:
        queue = self._ready_reduces[worker.id]
        while queue:
            job_id, partition = next(iter(queue))
            del queue[(job_id, partition)]
            job = self.jobs.get(job_id)
            task = job.reduces[partition] if job else None
            if (job and task and job.state is JobState.RUNNING and task.state is TaskState.READY
                    and not task.running and task.not_before <= self._now):
                self._assign(worker, job, task)
                return

    def _assign(self, worker: WorkerEntry, job: Job, task: Task) -> None:
        self._idle.pop(worker.id, None)
        number = task.attempts_made + 1
        self._record(j.TaskAssigned(job_id=job.id, kind=task.kind, task=task.index, attempt=number,
                                    worker_id=worker.id))
        task.running[number] = AttemptRun(worker.id, self._now, self._now)
        task.state = TaskState.RUNNING
        task.started = task.started or self._now
        worker.current, worker.busy_since = task.attempt_id(job.id, number), self._now
        self._set_up(job, worker)
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

    def _straggler(self, worker: WorkerEntry) -> tuple[Job, Task] | None:
        if not worker.alive or worker.current is None:
            return None
        job, task = self._task_of(worker.current)
        attempt = task.running.get(worker.current.number) if task else None
        if job is None or task is None or attempt is None or len(task.running) != 1:
            return None
        durations = job.durations.get(task.kind)
        if task.state is not TaskState.RUNNING or not durations:
            return None
        if task.kind == REDUCE and job.maps_done < len(job.maps):
            return None   # some map output was lost since it started: a backup could not read it
        median = durations[len(durations) // 2]
        slow = self._now - attempt.started >= max(self.params.min_elapsed, self.params.slow_factor * median)
        return (job, task) if slow else None

    # ------------------------------------------------------------ jobs

    def _running_jobs(self) -> list[Job]:
        return [j for j in self.jobs.values() if j.state is JobState.RUNNING]

    def _start_queued_jobs(self) -> None:
        alive = sorted(w.id for w in self.workers.values() if w.alive and w.peer)
        if not alive:
            return
        for job in self.jobs.values():
            if job.state is JobState.QUEUED:
                owners = [alive[p % len(alive)] for p in range(job.spec.n_reduce)]
                self._record(j.JobStarted(job_id=job.id, started=self._now, owners=owners))
                job.ready_maps.extend(range(len(job.maps)))
                self._log("job_started", "info", job=job.id, owners=len(set(job.owners)))
                self._set_up_owners(job)
                self._sample(job)
                if not job.maps:
                    for reduce in job.reduces:
                        self._make_ready(job, reduce)

    def _set_up(self, job: Job, worker: WorkerEntry) -> None:
        """Send the job (and so a lease on its data) to a worker once per worker life."""
        if worker.id not in job.set_up_on and worker.alive and worker.peer:
            job.set_up_on.add(worker.id)
            self._send(worker.peer, self._job_setup(job))

    def _set_up_owners(self, job: Job) -> None:
        """Owners get the job before any mapper pushes to them, so they only ever store leased data."""
        for owner in sorted(set(job.owners)):
            worker = self.workers.get(owner)
            if worker is not None:
                self._set_up(job, worker)

    def _end_job(self, job: Job, state: JobState, error: str) -> None:
        self._record(j.JobConcluded(job_id=job.id, state=state.value, error=error, finished=self._now))
        for task in itertools.chain(job.maps, job.reduces):
            for number, attempt in list(task.running.items()):
                worker = self.workers.get(attempt.worker)
                if worker is not None and worker.alive and worker.current is not None:
                    self._send(worker.peer, _cancel(task.attempt_id(job.id, number)))
            task.running.clear()
        job.ready_maps.clear()
        for worker_id in job.set_up_on:
            worker = self.workers[worker_id]
            if worker.alive:
                self._send(worker.peer, m.JobEnded(job_id=job.id))
        self._out.append(JobFinished(job.id, state, job.spec.output_dir, job.spec.n_reduce))
        self._draining.append(job)
        level = "info" if state is JobState.SUCCEEDED else "error"
        self._log("job_" + state.value, level, job=job.id, error=error.splitlines()[0] if error else "")

    def _cancel_other_attempts(self, job: Job, task: Task) -> None:
        for number, attempt in list(task.running.items()):
            worker = self.workers.get(attempt.worker)
            if worker is not None and worker.alive:
                self._send(worker.peer, _cancel(task.attempt_id(job.id, number)))
        task.running.clear()

    def _job_setup(self, job: Job) -> m.JobSetup:
        p = self.params
        return m.JobSetup(job_id=job.id, app_blob=job.spec.app_blob, args=job.spec.args,
                          n_reduce=job.spec.n_reduce, owners=self._owner_addrs(job),
                          owners_epoch=job.owners_epoch, push=p.push, batch_bytes=p.batch_bytes,
                          window_bytes=p.window_bytes, lease_ttl=p.lease_ttl,
                          released=[t.index for t in job.reduces if t.state is TaskState.DONE])

    def _owner_addrs(self, job: Job) -> list[str]:
        return [self.workers[w].data_addr if w in self.workers and self.workers[w].alive else ""
                for w in job.owners]

    def _sources(self, job: Job) -> list[m.MapSource]:
        sources = []
        for task in job.maps:
            worker = self.workers.get(task.committed_worker or "")
            addr = worker.data_addr if worker is not None and worker.alive else ""
            sources.append(m.MapSource(task=task.index, attempt=task.committed or 0, addr=addr))
        return sources

    # ------------------------------------------------------------ attempts

    def _task_of(self, attempt: m.AttemptId) -> tuple[Job | None, Task | None]:
        job = self.jobs.get(attempt.job_id)
        return job, job.task(attempt.kind, attempt.task) if job else None

    def _current_run(self, worker: WorkerEntry) -> AttemptRun | None:
        if worker.current is None:
            return None
        _, task = self._task_of(worker.current)
        return task.running.get(worker.current.number) if task else None

    def _own_attempt(self, worker: WorkerEntry, attempt: m.AttemptId) -> tuple[Job, Task] | None:
        """The (job, task) if `worker` really runs that attempt now; stale or foreign reports are dropped."""
        if worker.current != attempt:
            self._log("stale_report", "info", worker=worker.id, job=attempt.job_id,
                      task=f"{attempt.kind}-{attempt.task}", attempt=attempt.number)
            return None
        job, task = self._task_of(attempt)
        if job is None or task is None or attempt.number not in task.running or job.state is not JobState.RUNNING:
            worker.current = None
            return None
        return job, task

    def _finish_attempt(self, worker: WorkerEntry, task: Task, number: int) -> None:
        task.running.pop(number, None)
        worker.current = None

    # ------------------------------------------------------------ views

    def output_dir_busy(self, output_dir: str) -> bool:
        """Does a job that has not ended write to `output_dir`?"""
        return any(j.spec.output_dir == output_dir and not j.state.ended for j in self.jobs.values())

    def status(self, job_id: str | None) -> m.StatusReply | m.ErrorReply:
        return views.status(self.book, job_id, self._now)

    def job_leases(self, job: Job) -> int:
        """Leased resources the job's live workers last reported holding."""
        return views.job_leases(job, self.book)

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

    def _answer_waiters(self) -> None:
        """Answer each held WaitJob whose job has ended (or is unknown), or whose time is up."""
        held = {}
        for (peer, job_id), answer_by in self._waiters.items():
            job = self.jobs.get(job_id)
            if job is not None and not job.state.ended and self._now < answer_by:
                held[(peer, job_id)] = answer_by
            else:
                self._send(peer, views.wait_reply(self.book, job_id, self._now))
        self._waiters = held

    def _job_info(self, job: Job) -> m.JobInfo:
        return views.job_info(job, self.book, detail=True)

    # ------------------------------------------------------------ output helpers

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

    def _log(self, event: str, level: str, **fields: Any) -> None:
        self._out.append(Log(event, level, fields))


def _reported(report: m.MapDone | m.ReduceDone | m.ReduceCommitted | m.TaskFailed, kind: m.TaskKind) -> m.AttemptId:
    """The attempt a worker's report is about: the one place that reads a report's attempt fields."""
    return m.AttemptId(job_id=report.job_id, kind=kind, task=report.task, number=report.attempt)


def _cancel(attempt: m.AttemptId) -> m.CancelTask:
    return m.CancelTask(job_id=attempt.job_id, task=attempt.task, attempt=attempt.number, kind=attempt.kind)


def _decision(attempt: m.AttemptId, ok: bool) -> m.CommitDecision:
    return m.CommitDecision(job_id=attempt.job_id, task=attempt.task, attempt=attempt.number, ok=ok)
