"""The coordinator's brain: a pure state machine. Events in, actions out, the clock passed in.

`Scheduler.handle(event, now)` never touches a socket, a file or the wall clock, so every fault case is
a fast deterministic unit test and a simulator can drive it at scale. The shell around it
(`zmr.runtime.coordinator`) turns socket traffic into events and carries out the actions.

Around it: `events` (what goes in and out), `params` (its settings), `durable` (the state a journal
keeps, changed only by applying records) and `views` (the status it reports). The Scheduler itself is
built in layers, one module each (see `schedbase`): dispatch, losses, reports and rejoin; this module
adds the entry point, recovery and snapshots, clients and the clock.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

import msgspec

from zmr.core import recovery, views
from zmr.core.events import (
    Action,
    AddressChecked,
    CheckAddress,
    ConnectionsAlive,
    Event,
    JobFinished,
    Journal,
    Log,
    Received,
    Send,
    Tick,
)
from zmr.core.params import SchedulerParams
from zmr.core.rejoin import Rejoin
from zmr.core.specs import spec_problem
from zmr.core.state import Job, JobState, TaskState, WorkerEntry, job_id_of
from zmr.core.stepgraph import FILES
from zmr.protocol import journal as j
from zmr.protocol import messages as m
from zmr.protocol.success import SuccessMarker

__all__ = ["Action", "AddressChecked", "CheckAddress", "ConnectionsAlive", "Event", "JobFinished", "Journal", "Log",
           "Received", "Scheduler", "SchedulerParams", "Send", "Tick"]


# ticks this many heartbeat intervals apart mean the coordinator stood still (see _forgive_own_stall)
_STALL_TICKS = 4
RELEASE_EVERY = 10.0   # s between two ReleasePartitions of a job


class Scheduler(Rejoin):
    """Owns jobs, tasks and workers; decides who runs what and what counts."""

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
        elif isinstance(event, AddressChecked):
            self._on_address_checked(event)
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
            self._send(peer, self.status(msg.job_id, msg.tasks))
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
            job.announced_epoch = job.owners_epoch   # every worker is set up afresh when it comes back
            for task in job.maps:
                if task.state is TaskState.DONE:
                    awaited.add(task.committed_worker or "")
                    job.log_commit(task.index, task.committed or 0)
                elif not job.spec.fed_maps:   # (a step job's maps are made by the reduces that feed it)
                    task.state = TaskState.READY
                    job.ready_maps.append(task.index)
            for task in job.reduces:
                if task.state is TaskState.COMMITTING:
                    awaited.add(task.granted_worker or "")
                elif task.state is not TaskState.DONE:
                    task.state = TaskState.WAITING
                    if job.reduce_phase:   # an owner that lacks some input remade since says so
                        self._make_ready(job, task)
            for worker_id in sorted(awaited - {""} - set(self.workers)):
                known = joined.get(worker_id, j.WorkerJoined(worker_id=worker_id, data_addr=""))
                worker = WorkerEntry(worker_id, b"", known.data_addr, key=known.key,
                                last_seen=now + self.params.recovery_grace - timeout)
                self.workers[worker_id] = worker
                self._push_liveness(worker)
        self._recover_steps()
        for job in self.jobs.values():   # it ended, but the crash came before its output was finished
            if job.state.ended and not job.output_done:
                self._out.append(JobFinished(job.id, job.state, job.spec.output_dir, job.spec.n_reduce))
        self._log("recovered", "info", jobs=len(self.jobs) + len(self.archived), next_job=self.book.next_job,
                  running=len(self._running_jobs()), awaited_workers=len(self.workers))
        return self._out

    def _recover_steps(self) -> None:
        """Step jobs whose head ended (its output was found committed, say) end with it; a step job's map
        whose feeding reduce is committed, a crash having come between the two records that undo both,
        is made again by that reduce."""
        for job in self._running_jobs():
            head = self.jobs.get(job.spec.head) if job.spec.is_step else job
            if head is None:
                archived = self.archived.get(job.spec.head)
                self._end_one(job, JobState(archived.state) if archived is not None else JobState.FAILED, "")
            elif head.state.ended:
                self._end_one(job, head.state, "")
            elif job.spec.fed_maps:
                for task in job.maps:
                    if task.state is not TaskState.DONE:
                        self._reopen_feeder(job, task.index)

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

    def _on_submit(self, peer: bytes, spec: m.JobSpec) -> None:
        problem = spec_problem(spec, self.params.limits) or (
            f"output directory {spec.output_dir} is in use by a running job"
            if self.output_dir_busy(spec.output_dir) else "")
        if problem:
            self._send(peer, m.ErrorReply(message=problem))
            return
        number = self.book.next_job
        if spec.steps:
            job = self._submit_steps(spec, number)
        else:
            submitted = j.JobSubmitted(job_id=job_id_of(number), number=number, spec=spec, submitted=self._now)
            self._record(submitted)
            job = self.jobs[submitted.job_id]
        self._send(peer, m.JobAccepted(job_id=job.id))
        self._log("job_submitted", "info", job=job.id, maps=len(spec.splits), reduces=spec.n_reduce,
                  steps=len(spec.steps))
        self._start_queued_jobs()

    def _submit_steps(self, spec: m.JobSpec, number: int) -> Job:
        """A multi-step job becomes a job per step, all started together: the one running the last step
        takes the job's number and is the job the client knows (the head); the others take the numbers
        after it. A step reading files maps their splits; a step reading steps has a map per partition
        of each step it reads, in the order of its inputs, made by that partition's reduce (`feeds`)."""
        steps = spec.steps
        ids = {s.name: job_id_of(number + 1 + k) for k, s in enumerate(steps[:-1])}
        ids[steps[-1].name] = head = job_id_of(number)
        width = {s.name: s.n_reduce for s in steps}
        links: dict[str, list[m.StepLink]] = {s.name: [] for s in steps}
        for step in steps:
            first = 0
            for source in step.inputs:
                if source in links:
                    links[source].append(m.StepLink(job_id=ids[step.name], first=first))
                    first += width[source]
        for k in [len(steps) - 1, *range(len(steps) - 1)]:
            step = steps[k]
            files = step.inputs == [FILES]
            derived = msgspec.structs.replace(
                spec, splits=spec.splits if files else [], n_reduce=step.n_reduce, step=k, head=head,
                fed_maps=0 if files else sum(width[source] for source in step.inputs), feeds=links[step.name])
            self._record(j.JobSubmitted(job_id=ids[step.name], number=number + (k + 1) % len(steps), spec=derived,
                                        submitted=self._now))
        return self.jobs[head]

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

    def _on_tick(self) -> None:
        self._forgive_own_stall()
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
        self._release_committed()
        self._dispatch()
        self._steal_reduces()
        self._speculate()
        self._restart_slow_attempts()
        self._announce_moves()

    def _release_committed(self) -> None:
        """Tell each job's workers which partitions committed since the last release, at most every
        `RELEASE_EVERY` s: every worker hears of every partition, so the messages are few (each a
        bitmap), and a committed partition's data stays on disk up to `RELEASE_EVERY` s longer."""
        for job in self._running_jobs():
            if not job.releasing or self._now < job.released_at + RELEASE_EVERY:
                continue
            release = m.ReleasePartitions(job_id=job.id, partitions=m.PartitionSet.of(job.releasing))
            job.releasing, job.released_at = [], self._now
            for worker_id in job.set_up_on:
                worker = self.workers[worker_id]
                if worker.alive and worker.peer:
                    self._send(worker.peer, release)

    def _forgive_own_stall(self) -> None:
        """Time the coordinator itself stood still (ticks far apart: a long journal compaction, a frozen
        process, a starved CPU) is not held against workers: while it did not listen it heard no
        heartbeat and no progress, and once it listens again the backlog is read only bit by bit. So
        every worker's silence and every attempt's quiet since the last tick starts from now."""
        last, self._last_tick = self._last_tick, self._now
        gap = self._now - last if last is not None else 0.0
        if gap <= self.params.heartbeat_interval * _STALL_TICKS:
            return
        self._log("coordinator_stalled", "warning", seconds=round(gap, 1), workers=len(self.workers))
        for worker in self.workers.values():
            if worker.alive:
                worker.last_seen = max(worker.last_seen, self._now - self.params.heartbeat_interval)
                self._push_liveness(worker)
                run = self._current_run(worker)
                if run is not None:
                    run.last_progress = max(run.last_progress, self._now - self.params.heartbeat_interval)

    def output_dir_busy(self, output_dir: str) -> bool:
        """Does a job that has not ended write to `output_dir`?"""
        return any(j.spec.output_dir == output_dir and not j.state.ended for j in self.jobs.values())

    def status(self, job_id: str | None, tasks: bool = False) -> m.StatusReply | m.ErrorReply:
        return views.status(self.book, job_id, self._now, tasks)

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
