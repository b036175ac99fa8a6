"""Losing work: dead and silent workers, stalled attempts, revoked commit grants, lost map output."""

from __future__ import annotations

import heapq

from zmr.core.dispatch import Dispatch
from zmr.core.state import MAP, REDUCE, Job, JobState, Task, TaskState, WorkerEntry
from zmr.protocol import journal as j
from zmr.protocol import messages as m


class Losses(Dispatch):
    """Puts back what a lost worker, a stalled attempt or lost map output took away."""

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
                self._send(worker.peer, m.CancelTask(attempt=worker.current))
                self._time_out_current(worker, worker.current)

    def _restart_slow_attempts(self) -> None:
        """An attempt moving far slower than its job's finished tasks of its kind did is cancelled and
        its task put first in line: it costs what it ran, not the rest of a slow run.

        A map is restarted only while no worker is idle: then no backup (`_speculate`) can start, and a
        straggler would hold its slot for its whole slow run. A reduce is restarted whenever it is slow:
        it runs again on its partition's owner, which still holds what was pushed to it, where a backup
        elsewhere would first pull the whole partition. Like Mantri's restarts, this acts when the
        attempt's pace (progress per second, from heartbeats) is under 1/`slow_factor` of the median pace
        of its job's finished tasks of its kind, after `min_elapsed`, and only if what is left of it at
        that pace would take longer than a median task. Once per task: a task slow by nature (a heavy
        split, a large partition) runs on after that, and the task timeout still catches one that stops.
        """
        if not self.params.speculation:
            return
        maps_too = not self._idle
        for worker in self.workers.values():
            current = worker.current
            if current is None or not worker.alive or (current.kind == MAP and not maps_too):
                continue
            job, task = self._task_of(current)
            if job is None or task is None or task.restarted or len(task.running) != 1 \
                    or task.state is not TaskState.RUNNING:
                continue
            if task.kind == REDUCE and job.owners[task.index] != worker.id:
                continue   # a backup: its partition's input is kept on the owner, not here
            ratio = self._slow_pace(job, task, current.number)
            if ratio is not None:
                self._restart(worker, job, task, current, ratio)

    def _restart(self, worker: WorkerEntry, job: Job, task: Task, current: m.AttemptId, ratio: float) -> None:
        self._send(worker.peer, m.CancelTask(attempt=current))
        self._take_attempt_off(worker, current,
                               f"moving at {ratio:.2f} of the median pace of its job's {task.kind}s")
        task.restarted = True
        if job.state is not JobState.RUNNING or task.state is TaskState.DONE or task.running:
            return
        if task.kind == MAP:
            task.state = TaskState.READY
            job.ready_maps.appendleft(task.index)   # first in line: the next idle worker runs it
        else:
            self._make_ready(job, task)   # on its owner, which is about to be idle

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
        if task.app_failures >= self._max_attempts(job):
            self._end_job(job, JobState.FAILED, f"{task.failed_times}; last error: "
                          f"no progress within {self.params.task_timeout:g} s")
            return
        self._requeue(job, task)   # at once: the attempt has waited out the timeout already

    def _take_attempt_off(self, worker: WorkerEntry, current: m.AttemptId, why: str) -> tuple[Job, Task] | None:
        """The worker's current attempt no longer counts: off its task, its commit grant revoked."""
        job, task = self._task_of(current)
        if job is None or task is None or current.number not in task.running:
            return None
        del task.running[current.number]
        job.attempt_log.end(task.kind, task.index, current.number, self._now, "lost")
        if task.committing == current.number:
            self._revoke_grant(job, task)
        self._log("attempt_lost", "warning", job=job.id, task=task.label, attempt=current.number, worker=worker.id,
                  why=why)
        return job, task

    def _lose_worker(self, worker: WorkerEntry, why: str) -> None:
        self._count_leases(worker, -1)   # what a dead worker held is gone with it
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
                self._send(worker.peer, m.SourcesLost(attempt=current, addr=dead.data_addr))

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
        Only the reduces granted on this worker are looked at (`Job.grants`), not every reduce.
        """
        for job in self._running_jobs():
            for index in sorted(job.grants.get(worker.id, ())):
                task = job.reduces[index]
                if task.state is TaskState.COMMITTING and task.committing not in task.running:
                    self._log("attempt_lost", "warning", job=job.id, task=task.label, attempt=task.committing,
                              worker=worker.id, why="granted before a restart, not running any more")
                    self._revoke_grant(job, task)
                    self._requeue(job, task)

    def _revoke_grant(self, job: Job, task: Task) -> None:
        self._record(j.CommitRevoked(job_id=job.id, task=task.index))
        task.state = TaskState.RUNNING   # a backup may run on; if none does, the caller puts the task back

    def _replan(self, job: Job) -> None:
        """Move partitions off dead owners; map output the new owners cannot pull is made again.

        Runs for every running job on each lost or new worker, so it first asks the owner counts
        (`Job.unfinished`) whether any owner of a partition not committed yet is dead at all; only then
        does it visit the partitions. The moved partitions are dealt one each to the live workers with the
        fewest such partitions (by id on a tie; round again if there are more partitions than workers):
        a moved partition's new owner must pull what was pushed before the move, so a dead owner's
        partitions are spread out, not piled on one newcomer that would pull every one of them in turn,
        and in the reduce phase they go to workers done with their own.
        """
        workers = self.workers
        dead = {w for w in job.unfinished if w not in workers or not workers[w].alive}
        alive = [w.id for w in workers.values() if w.alive] if dead else []
        if not alive:
            return
        orphans = [p for p, owner in enumerate(job.owners)
                   if owner in dead and job.reduces[p].state is not TaskState.DONE]
        heirs = [w for _, w in heapq.nsmallest(len(orphans), ((job.unfinished.get(w, 0), w) for w in alive))]
        moves = {p: heirs[k % len(heirs)] for k, p in enumerate(orphans)}
        if not moves:
            return
        live = set(alive)
        if self.params.replicate:
            self._note_copies(job, orphans, live)
        self._move_partitions(job, moves)
        # (a step job whose reduces all committed needs its maps' output only if one of them runs again)
        lost = sorted(i for w, held in job.maps_held.items() if w not in live for i in held) \
            if job.reduces_done < len(job.reduces) else []
        for index in lost:   # found by holder (`Job.maps_held`), not by a scan of every map
            self._uncommit_map(job, job.maps[index])   # (a moved reduce runs meanwhile: _begin_reduce_phase)

    @staticmethod
    def _note_copies(job: Job, orphans: list[int], live: set[str]) -> None:
        """Before a dead owner's partitions move: each has the second copies of the output its owner's
        maps made for it on its replica (by the table they were made with), so its new owner need not
        wait for those maps to run again. One map-to-attempt table is shared by the owner's partitions.
        Only a partition's first move is noted: after that, its owner's maps pushed to the old owner."""
        tables: dict[str, dict[int, int]] = {}
        for p in orphans:
            owner, replica = job.owners[p], m.replica_owner(job.owners, p)
            if p in job.copied or replica is None or replica not in live:
                continue
            if owner not in tables:
                tables[owner] = {i: job.maps[i].committed or 0 for i in job.maps_held.get(owner, ())}
            job.copied[p] = (replica, tables[owner])

    def _uncommit_map(self, job: Job, task: Task) -> None:
        """The map must run again. Before the reduce phase no reduce is ready; in it, a reduce whose owner
        lacks this output finds out (SourcesLost, or missing data) and waits for it then."""
        self._record(j.MapUncommitted(job_id=job.id, task=task.index))
        if job.spec.fed_maps:
            self._reopen_feeder(job, task.index)
        else:
            self._enqueue(job, task)

    def _feeder(self, job: Job, index: int) -> tuple[Job, Task] | None:
        """The step job and reduce whose output is map `index` of the step job `job` (see m.StepLink)."""
        for feeder in self._steps_of(job.spec.head):
            for link in feeder.spec.feeds:
                if link.job_id == job.id and link.first <= index < link.first + len(feeder.reduces):
                    return feeder, feeder.reduces[index - link.first]
        return None

    def _reopen_feeder(self, job: Job, index: int) -> None:
        """A step job's map output was lost: the reduce that made it runs again. Its input is still held
        (a step job keeps it until the whole job ends), so nothing before it runs again, unless its
        own input was lost too: then `_replan` finds that, and so on up the steps."""
        found = self._feeder(job, index)
        if found is not None and found[0].state is JobState.RUNNING and found[1].state is TaskState.DONE:
            self._reopen(*found)

    def _reopen(self, job: Job, task: Task) -> None:
        """A committed reduce of a step job runs again: its partition moves off a dead owner, the map
        output it lacks is made again, and it is ready once that is there."""
        self._record(j.ReduceReopened(job_id=job.id, task=task.index))
        self._log("reduce_reopened", "info", job=job.id, task=task.label)
        self._replan(job)
        if task.state is TaskState.WAITING and not task.running and task.index not in job.lacking:
            self._make_ready(job, task)
