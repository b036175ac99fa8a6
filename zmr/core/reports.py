"""What workers report: heartbeats, task requests, finished, committed and failed attempts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zmr.core.losses import Losses
from zmr.core.state import MAP, REDUCE, Job, JobState, Task, TaskState, WorkerEntry
from zmr.protocol import journal as j
from zmr.protocol import messages as m


class Reports(Losses):
    """Decides what each report from a worker changes; stale and foreign reports change nothing."""

    def _on_heartbeat(self, worker: WorkerEntry, msg: m.Heartbeat) -> None:
        for stat in msg.partitions:
            job = self.jobs.get(stat.job_id)
            if (job is not None and 0 <= stat.partition < len(job.reduces) and job.owners
                    and job.owners[stat.partition] == worker.id
                    and job.reduces[stat.partition].state not in (TaskState.COMMITTING, TaskState.DONE)):
                job.partition_stats[stat.partition] = stat
        self._set_leases(worker, {stat.job_id: stat.leases for stat in msg.leases if stat.leases > 0})
        worker.rss, worker.bytes_in, worker.bytes_out = msg.rss, msg.bytes_in, msg.bytes_out
        run = self._current_run(worker)
        # the progress of the attempt the beat names (one about the attempt before may cross an assignment)
        if run is not None and msg.progress != run.progress and worker.current is not None \
                and msg.task == worker.current.label:
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
            unexplained = self._current_run(worker) is not None   # not cancelled here: it ended it by itself
            self._abandon_current(worker, "the worker ended it without a report that counts")
            if job is not None and unexplained:   # perhaps it had lost the job: the next assignment sets it up
                for lost in [job, *(self.jobs.get(link.job_id) for link in job.spec.feeds)]:   # (and what it feeds)
                    if lost is not None:
                        lost.set_up_on.pop(worker.id, None)
        self._idle[worker.id] = None
        self._wake[worker.id] = None

    def _on_map_done(self, worker: WorkerEntry, msg: m.MapDone) -> None:
        attempt = msg.attempt
        found = self._own_attempt(worker, attempt, MAP)
        if found is None:
            return
        job, task = found
        self._record_duration(job, task, attempt.number)
        self._finish_attempt(worker, job, task, attempt.number, "cancelled" if task.state is TaskState.DONE else "ok")
        if task.state is TaskState.DONE:
            return  # another attempt committed first; this one's output never counts
        self._commit_map(job, task, worker, attempt.number, msg)

    def _commit_map(self, job: Job, task: Task, worker: WorkerEntry, number: int, report: m.MapDone) -> None:
        in_reduce_phase = job.reduce_phase
        self._record(j.MapCommitted(job_id=job.id, task=task.index, attempt=number, worker_id=worker.id,
                                    records_out=report.records_out, bytes_out=report.bytes_out, finished=self._now))
        job.log_commit(task.index, number)
        self._cancel_other_attempts(job, task)
        self._log("map_committed", "debug", job=job.id, task=task.label, attempt=number, worker=worker.id)
        self._sample(job)
        if in_reduce_phase:
            self._maps_arrived(job, task.index)
        elif job.reduce_phase:
            self._begin_reduce_phase(job)

    def _begin_reduce_phase(self, job: Job) -> None:
        """Every map has committed once: every reduce can run.

        So can a partition that moved while some output was being made again, though that output was
        pushed to its old owner: its new owner pulls all the rest from the mappers' kept copies while
        those maps run, keeps it, and fails for just them (a loss no worker is blamed for), then waits
        for them (`_await_maps`). Its pull overlaps the remaking instead of following it; under a death
        every few seconds, which keeps some map always being made again, waiting first would hold a
        moved partition back by a map's time on every try."""
        for reduce in job.reduces:
            if reduce.state is TaskState.WAITING:
                self._make_ready(job, reduce)

    def _on_reduce_done(self, worker: WorkerEntry, msg: m.ReduceDone) -> None:
        attempt = msg.attempt
        found = self._own_attempt(worker, attempt, REDUCE)
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
        self._send(worker.peer, m.CommitDecision(attempt=attempt, ok=ok))
        if not ok:
            self._finish_attempt(worker, job, task, attempt.number, "cancelled")

    def _on_reduce_committed(self, worker: WorkerEntry, msg: m.ReduceCommitted) -> None:
        attempt = msg.attempt
        found = self._own_attempt(worker, attempt, REDUCE)
        if found is None:
            return
        job, task = found
        self._finish_attempt(worker, job, task, attempt.number,
                             "ok" if task.committing == attempt.number else "cancelled")
        if task.committing != attempt.number:   # never granted: it does not count, and the task must run again
            self._requeue(job, task)
            return
        self._record(j.CommitConfirmed(job_id=job.id, task=task.index, attempt=attempt.number,
                                       worker_id=worker.id, records_out=task.records_out, finished=self._now))
        self._cancel_other_attempts(job, task)
        self._log("reduce_committed", "debug", job=job.id, task=task.label, attempt=attempt.number,
                  worker=worker.id)
        if job.spec.feeds:   # its input stays: were the maps it fed lost, it runs again (see _reopen_feeder)
            self._feed(job, task, worker, attempt.number, msg.fed)
            self._sample(job)
            return
        job.releasing.append(task.index)   # its batches and kept copies are garbage now: said on the next tick
        self._sample(job)
        if job.reduces_done == len(job.reduces):
            self._end_job(job, JobState.SUCCEEDED, "")

    def _feed(self, job: Job, task: Task, worker: WorkerEntry, number: int, fed: list[m.FedMap]) -> None:
        """A step job's reduce committed: what it made through each later step's map is that step's
        map, committed as this attempt on this worker, which keeps it. A report that lacks one (a
        broken or hostile worker) commits none of it: the reduce runs again."""
        made = {(f.job_id, f.task): f for f in fed}
        readers = [(reader, reader.maps[link.first + task.index]) for link in job.spec.feeds
                   if (reader := self.jobs.get(link.job_id)) is not None and reader.state is JobState.RUNNING
                   and link.first + task.index < len(reader.maps)]
        if any((reader.id, fed_map.index) not in made for reader, fed_map in readers):
            self._log("feed_incomplete", "error", job=job.id, task=task.label, attempt=number, worker=worker.id)
            self._reopen(job, task)
            return
        for reader, fed_map in readers:
            if fed_map.state is TaskState.DONE:
                continue
            report = made[(reader.id, fed_map.index)]
            self._commit_map(reader, fed_map, worker, number, m.MapDone(
                worker_id=worker.id, attempt=fed_map.attempt_id(reader.id, number), records_out=report.records_out,
                bytes_out=report.bytes_out))

    def _on_task_failed(self, worker: WorkerEntry, msg: m.TaskFailed) -> None:
        attempt = msg.attempt
        found = self._own_attempt(worker, attempt)
        if found is None:
            return
        job, task = found
        if task.kind == REDUCE and msg.kind != "missing_data":
            # perhaps its commit table was out of step (a worker says so as an internal failure): the next
            # assignment carries all of it. Missing data, the everyday loss under deaths, says nothing of
            # the table, and resending it each time would cost O(maps made again) per such failure.
            job.commits_sent.pop(worker.id, None)
        run = task.running.get(attempt.number)
        assigned = run.started if run is not None else self._now
        self._finish_attempt(worker, job, task, attempt.number, "failed")
        if task.committing == attempt.number:   # it failed after its commit was granted (e.g. the rename)
            self._revoke_grant(job, task)   # a backup, if any, may commit now
        self._log("task_failed", "warning", job=job.id, task=task.label, attempt=attempt.number,
                  worker=worker.id, kind=msg.kind, error=msg.error)
        if msg.kind == "missing_data":
            self._on_missing_data(job, task, msg.missing_maps, assigned)
            return
        self._setback(job, task, app_failures=1)
        task.failed_on = worker.id
        if msg.kind == "invalid":   # a broken contract, not a fault: another attempt would break it again
            detail = f"{task.label} failed: {msg.error}"
            self._end_job(job, JobState.FAILED, detail + ("\n" + msg.traceback if msg.traceback else ""))
            return
        if task.app_failures >= self._max_attempts(job):
            detail = f"{task.failed_times}; last error: {msg.error}"
            self._end_job(job, JobState.FAILED, detail + ("\n" + msg.traceback if msg.traceback else ""))
            return
        self._retry_later(job, task, self.params.retry_delay(task.app_failures))

    def _on_missing_data(self, job: Job, reduce: Task, missing: list[int], assigned: float) -> None:
        """A reducer could not get some map output: those maps run again, and the reduce waits for them.

        Only output committed before the failed attempt was assigned is what it looked for: a map whose
        output was lost, and that ran again and committed since (its worker died, say), is not undone.
        The failure counts against the reduce (`max_worker_losses`) unless a worker's death explains
        every map it names: each such map is being made again, was made again since, or was kept by a
        worker now dead. So a reduce phase under a steady trickle of deaths never fails a reduce, and a
        reducer that cannot read output a live worker keeps still ends its job in a bounded number of tries.
        """
        maps = [task for index in missing if (task := job.task(MAP, index)) is not None]
        copied = job.copied.get(reduce.index)
        if copied is not None and any(i in copied[1] for i in missing):
            del job.copied[reduce.index]   # the copies are not all there: it waits for those maps instead
        lost = {task.index for task in maps if task.state is TaskState.DONE and (task.finished or 0.0) <= assigned}
        explained = bool(maps) and all(task.index not in lost or not self._alive(task.committed_worker)
                                       for task in maps)
        if not explained:
            self._setback(job, reduce, worker_losses=1)
            if reduce.worker_losses > self.params.max_worker_losses:
                self._end_job(job, JobState.FAILED, f"{reduce.label} lost its input too many times")
                return
        for index in sorted(lost):
            self._uncommit_map(job, job.maps[index])
        if reduce.running or not self._await_maps(job, reduce, [task.index for task in maps]):
            self._requeue(job, reduce)

    def _on_locate_maps(self, worker: WorkerEntry, msg: m.LocateMaps) -> None:
        """A reduce attempt asks where the committed output of the maps it lacks is kept."""
        found = self._own_attempt(worker, msg.attempt, REDUCE)
        if found is not None:
            job, task = found
            seen = task.running[msg.attempt.number].commits_seen
            n = len(job.maps)
            if job.reduce_phase and any(start <= 0 and end >= n for start, end in msg.runs):
                self._send(worker.peer, self._every_location(msg.attempt, job, seen))
                return
            asked = m.from_runs(msg.runs, n)
            self._send(worker.peer, self._locations(msg.attempt, job, asked, len(msg.runs), seen))

    def _on_setup_request(self, worker: WorkerEntry, msg: m.SetupRequest) -> None:
        """The worker missed an owner update: it gets the whole setup again (or hears the job is over)."""
        job = self.jobs.get(msg.job_id)
        if job is None or job.state is not JobState.RUNNING:
            self._send(worker.peer, m.JobEnded(job_id=msg.job_id))
        elif worker.id in job.set_up_on:
            self._send_setup(job, worker)

    _WORKER_HANDLERS: dict[type, Callable[[Reports, WorkerEntry, Any], None]] = {
        m.Heartbeat: _on_heartbeat,
        m.TaskRequest: _on_task_request,
        m.MapDone: _on_map_done,
        m.ReduceDone: _on_reduce_done,
        m.ReduceCommitted: _on_reduce_committed,
        m.TaskFailed: _on_task_failed,
        m.LocateMaps: _on_locate_maps,
        m.SetupRequest: _on_setup_request,
    }
