"""Who runs what: ready queues, assignment, backup attempts, jobs' start and end, partition placement."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable
from typing import NamedTuple

from zmr.core.events import JobFinished
from zmr.core.median import RunningMedian
from zmr.core.schedbase import SchedulerBase
from zmr.core.state import MAP, REDUCE, AttemptRun, Job, JobState, Task, TaskState, WorkerEntry, job_id_of
from zmr.protocol import journal as j
from zmr.protocol import messages as m

# finished tasks whose paces must be known before an attempt is judged slow by its pace
_PACE_SAMPLES = 5
# attempts of one task that may run at once: the first and up to two backups
_MOST_ATTEMPTS_AT_ONCE = 3


class _Copies(NamedTuple):
    """The part of a MapLocations about second copies (see `Job.copied`)."""

    replicas: list[str]
    runs: list[list[tuple[int, int]]]
    commits: dict[int, int]


class Dispatch(SchedulerBase):
    """Keeps idle workers busy, oldest job first, and starts and ends jobs."""

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
            owner = job.owners[task.index]
            self._ready_reduces.setdefault(owner, {})[(job.id, task.index)] = None
            self._wake[owner] = None

    def _requeue(self, job: Job, task: Task) -> None:
        """Back to ready now (a reduce before its job's reduce phase waits for it)."""
        if task.running:
            return
        if task.kind == REDUCE and not job.reduce_phase:
            task.state = TaskState.WAITING
        else:
            self._make_ready(job, task)

    def _retry_later(self, job: Job, task: Task, delay: float) -> None:
        if task.running:
            return
        task.not_before = self._now + delay
        if task.kind == REDUCE and not job.reduce_phase:
            task.state = TaskState.WAITING
            return
        task.state = TaskState.READY
        heapq.heappush(self._backoff, (task.not_before, job.id, task.kind, task.index))

    def _await_maps(self, job: Job, task: Task, maps: Iterable[int]) -> bool:
        """The reduce waits for those of `maps` that are being made again; False if none is.

        In the reduce phase a lost map output holds back only the reduces that lack it: their owners
        still hold what was pushed to them. A reduce that found some input nowhere, or whose partition
        moved to a worker that holds none of it, waits here for just those maps (`Job.lacking`, indexed
        by map in `Job.awaited`) and is ready again when the last of them commits (`_maps_arrived`).
        """
        need = {i for i in maps if job.maps[i].state is not TaskState.DONE}
        if not need:
            return False
        if task.state is TaskState.READY:
            self._ready_reduces.get(job.owners[task.index], {}).pop((job.id, task.index), None)
        task.state = TaskState.WAITING
        job.lacking.setdefault(task.index, set()).update(need)
        for i in need:
            job.awaited.setdefault(i, set()).add(task.index)
        return True

    def _live_copies(self, job: Job, partition: int) -> tuple[str, dict[int, int]] | None:
        """The second copies of a dead owner's output for this partition, while their holder lives."""
        found = job.copied.get(partition)
        return found if found is not None and self._data_addr(found[0]) else None

    def _maps_arrived(self, job: Job, index: int) -> None:
        """Map `index` committed again: the reduces that lacked only it are ready."""
        for partition in sorted(job.awaited.pop(index, ())):
            lacking = job.lacking.get(partition)
            if lacking is None:
                continue
            lacking.discard(index)
            if not lacking:
                del job.lacking[partition]
                task = job.reduces[partition]
                if task.state is TaskState.WAITING and not task.running:
                    self._make_ready(job, task)

    def _move_ready_reduce(self, job: Job, partition: int, old: str, new: str) -> None:
        queue = self._ready_reduces.get(old, {})
        if (job.id, partition) in queue:
            del queue[(job.id, partition)]
            self._ready_reduces.setdefault(new, {})[(job.id, partition)] = None
            self._wake[new] = None

    def _dispatch(self) -> None:
        """Give every idle worker work: its own partitions' reduces first, then maps, oldest job first.

        Runs after every event, so it costs what it hands out, not a scan of every idle worker: only the
        workers woken since the last dispatch (idle now, or an owner given a ready reduce) can have one of
        their own reduces to run, and stealing, which waits for an owner to be busy for `min_elapsed`,
        is left to the tick (`_steal_reduces`).
        """
        woken, self._wake = self._wake, {}
        if self._remade_first():
            self._assign_maps(remade=True)   # maps made again go first: reduces wait for them
        for worker_id in woken:
            if worker_id in self._idle and self._ready_reduces.get(worker_id):
                self._assign_reduce(self.workers[worker_id])
        self._assign_maps(remade=False)

    def _remade_first(self) -> bool:
        """Maps made again go first, as reduces wait for them. Only where a dead owner's partitions pull
        second copies instead (`Job.copied`) and no reduce waits are they a safeguard against the next
        death, and yield to the workers' own reduces."""
        return any(job.awaited or not job.copied for job in self._running_jobs())

    def _assign_maps(self, remade: bool) -> None:
        """Ready maps to idle workers, oldest job first (`remade`: only maps of jobs in the reduce phase).

        A map whose last attempt failed on a worker goes to another one: a fault of that worker (its disk
        full, say) would fail every attempt there. While that worker is the only one idle, the map waits at
        the head of its queue for another, unless no other worker is alive.
        """
        waiting: list[tuple[Job, Task]] = []
        while self._idle:
            found = self._next_map(remade)
            if found is None:
                break
            job, task = found
            worker_id = self._idle_worker_for(task)
            if worker_id is None:
                waiting.append(found)
                continue
            self._assign(self.workers[worker_id], job, task)
        for job, task in reversed(waiting):
            job.ready_maps.appendleft(task.index)

    def _idle_worker_for(self, task: Task) -> str | None:
        """An idle worker for `task`: not the one its last attempt failed on if another can take it (None:
        wait for one that is busy now)."""
        idle = iter(self._idle)
        first = next(idle)
        if task.failed_on is None or first != task.failed_on:
            return first
        other = next(idle, None)
        if other is not None:
            return other
        alive_elsewhere = any(w.alive and w.id != first for w in self.workers.values())
        return None if alive_elsewhere else first

    def _steal_reduces(self) -> None:
        """On a tick: idle workers take over ready partitions whose owners have been busy too long."""
        for worker_id in list(self._idle):
            if not self._steal_reduce(self.workers[worker_id]):
                return

    def _steal_reduce(self, thief: WorkerEntry) -> bool:
        """An idle worker takes over a ready partition whose owner has been busy for `min_elapsed`.

        A reduce runs on its partition's owner, which holds the pushed batches. If that owner is stuck
        in a long task (a straggling map that lost to its backup may still be in app code), the job
        should not wait for it: the partition moves to the idle worker, which pulls its input from the
        mappers' kept copies. It does so even while some map output is being made again: the thief pulls
        all the rest meanwhile, keeps it, and fails for just those maps, a loss no worker is blamed for,
        then waits for them (`_await_maps`) as the old owner would have had to.
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

    def _next_map(self, remade: bool) -> tuple[Job, Task] | None:
        for job in self._running_jobs():
            if remade and not job.reduce_phase:
                continue
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
        job.attempt_log.begin(task.kind, task.index, number, worker.id, self._now, backup=bool(task.running))
        task.running[number] = AttemptRun(worker.id, self._now, self._now, commits_seen=len(job.commit_log))
        task.state = TaskState.RUNNING
        task.started = task.started or self._now
        attempt = task.attempt_id(job.id, number)
        worker.current, worker.busy_since = attempt, self._now
        self._set_up(job, worker)
        if task.kind == REDUCE:   # a step job's reduce pushes to the owners of the steps it feeds
            for link in job.spec.feeds:
                if (reader := self.jobs.get(link.job_id)) is not None:
                    self._set_up(reader, worker)
        if task.kind == MAP:
            self._announce(job)   # moves held back while every map was committed: this one pushes by them
            msg: m.FromCoordinator = m.AssignMap(attempt=attempt, split=job.spec.splits[task.index])
        else:
            base = job.commits_sent.get(worker.id, 0)
            job.commits_sent[worker.id] = len(job.commit_log)
            msg = m.AssignReduce(attempt=attempt, output_dir=job.spec.output_dir, n_maps=len(job.maps),
                                 commits_base=base, commits=job.commit_log[base:])
        self._send(worker.peer, msg)
        self._log("task_assigned", "debug", **attempt.log_fields(), worker=worker.id)

    def _start_queued_jobs(self) -> None:
        """Start every queued job on the workers up now. Called on every registration (all of them come
        back after a restart), so the workers are only listed when a job is waiting to start."""
        queued = [job for job in self.jobs.values() if job.state is JobState.QUEUED]
        alive = sorted(w.id for w in self.workers.values() if w.alive and w.peer) if queued else []
        if not alive:
            return
        for job in queued:
            owners = [alive[p % len(alive)] for p in range(job.spec.n_reduce)]
            self._record(j.JobStarted(job_id=job.id, started=self._now, owners=owners))
            if not job.spec.fed_maps:   # a step job's maps are the reduces of the steps it reads
                job.ready_maps.extend(range(len(job.maps)))
            self._log("job_started", "info", job=job.id, owners=len(job.owned))
            self._set_up_owners(job)
            self._sample(job)
            if not job.maps:
                for reduce in job.reduces:
                    self._make_ready(job, reduce)

    def _set_up(self, job: Job, worker: WorkerEntry) -> None:
        """Send the job (and so a lease on its data) to a worker once per worker life."""
        if worker.id not in job.set_up_on and worker.alive and worker.peer:
            job.set_up_on[worker.id] = None
            self._send_setup(job, worker)

    def _send_setup(self, job: Job, worker: WorkerEntry) -> None:
        """The job's setup; the worker may start its commit table afresh from here, so it gets all of it."""
        job.commits_sent.pop(worker.id, None)
        self._send(worker.peer, self._job_setup(job))

    def _set_up_owners(self, job: Job) -> None:
        """Owners get the job before any mapper pushes to them, so they only ever store leased data."""
        for owner in sorted(job.owned):
            worker = self.workers.get(owner)
            if worker is not None:
                self._set_up(job, worker)

    def _move_partitions(self, job: Job, moves: dict[int, str]) -> None:
        """New owners for some partitions: journaled now, set up on the new owners now, announced to the
        job's other workers later (`_announce_moves`)."""
        for p, new in moves.items():
            self._move_ready_reduce(job, p, job.owners[p], new)
        self._record(j.OwnersMoved(job_id=job.id, moves=dict(moves), epoch=job.owners_epoch + 1))
        job.unannounced.update(moves)
        self._set_up_owners(job)

    def _announce_moves(self) -> None:
        """Each job's partition moves since the last tick, as one OwnersUpdate per worker: a tail of
        partition take-overs costs a message per worker and tick, not per move and worker.

        Only mappers read the owner table (to push), so a job whose maps are all committed keeps its
        moves until a map must run again: the broadcast of every take-over of the reduce phase to every
        worker would cost O(workers x moves) for nothing. `_assign` announces them before the map."""
        for job in self._running_jobs():
            if job.maps_done < len(job.maps):
                self._announce(job)

    def _announce(self, job: Job) -> None:
        """The job's moves not yet told, as one OwnersUpdate to each of its workers."""
        if not job.unannounced:
            return
        update = m.OwnersUpdate(job_id=job.id, base_epoch=job.announced_epoch, owners_epoch=job.owners_epoch,
                                moves={p: self._data_addr(job.owners[p]) for p in job.unannounced})
        job.announced_epoch, job.unannounced = job.owners_epoch, {}
        for worker_id in job.set_up_on:
            worker = self.workers[worker_id]
            if worker.alive and worker.peer:
                self._send(worker.peer, update)

    def _end_job(self, job: Job, state: JobState, error: str) -> None:
        """End a job; a step job ends with every other step of its job, in the same state, and the head
        (the job the client knows) carries the error, naming the step a failure came from (a cancel, of
        the head or of any step, is the whole job's)."""
        if not job.spec.is_step:
            self._end_one(job, state, error)
            return
        steps = self._steps_of(job.spec.head) or [job]
        named = error and state is not JobState.CANCELLED and job.spec.step < len(job.spec.steps)
        where = f"step {job.spec.steps[job.spec.step].name!r}: " if named else ""
        for member in steps:
            if not member.state.ended:
                self._end_one(member, state, where + error if member.id == job.spec.head else "")

    def _steps_of(self, head: str) -> list[Job]:
        """The jobs of a multi-step job's steps still known here, the head last (see _submit_steps)."""
        first = self.jobs.get(head)
        if first is None:
            return []
        number, count = first.number, len(first.spec.steps)
        found = [self.jobs.get(job_id_of(number + k)) for k in range(1, count)]
        return [job for job in found if job is not None and job.spec.head == head] + [first]

    def _end_one(self, job: Job, state: JobState, error: str) -> None:
        self._record(j.JobConcluded(job_id=job.id, state=state.value, error=error, finished=self._now))
        for task in itertools.chain(job.maps, job.reduces):
            for number, attempt in list(task.running.items()):
                worker = self.workers.get(attempt.worker)
                if worker is not None and worker.alive and worker.current is not None:
                    self._send(worker.peer, m.CancelTask(attempt=task.attempt_id(job.id, number)))
            task.running.clear()
        job.attempt_log.end_all(self._now, "cancelled")
        job.ready_maps.clear()
        job.lacking.clear()
        job.awaited.clear()
        for worker_id in job.set_up_on:
            worker = self.workers[worker_id]
            if worker.alive:
                self._send(worker.peer, m.JobEnded(job_id=job.id))
        if job.spec.is_step and job.spec.head != job.id:   # the head's output is the job's; a step's has none
            self._record(j.OutputFinished(job_id=job.id))
        else:
            self._out.append(JobFinished(job.id, state, job.spec.output_dir, job.spec.n_reduce))
        self._draining.append(job)
        level = "info" if state is JobState.SUCCEEDED else "error"
        self._log("job_" + state.value, level, job=job.id, error=error.splitlines()[0] if error else "")

    def _cancel_other_attempts(self, job: Job, task: Task) -> None:
        for number, attempt in list(task.running.items()):
            worker = self.workers.get(attempt.worker)
            if worker is not None and worker.alive:
                self._send(worker.peer, m.CancelTask(attempt=task.attempt_id(job.id, number)))
            job.attempt_log.end(task.kind, task.index, number, self._now, "cancelled")
        task.running.clear()

    def _job_setup(self, job: Job) -> m.JobSetup:
        """The job as a worker needs it; owners in their compact form, O(workers + moved partitions)."""
        p = self.params
        slots: dict[str, int] = {}
        cycle = [slots.setdefault(w, len(slots)) for w in job.owner_cycle]
        moved = {q: slots.setdefault(w, len(slots)) for q, w in job.owner_moves.items()}
        return m.JobSetup(job_id=job.id, app_blob=job.spec.app_blob, args=job.spec.args,
                          n_reduce=job.spec.n_reduce, peers=[self._data_addr(w) for w in slots], cycle=cycle,
                          moved=moved, owners_epoch=job.owners_epoch, push=p.push, replicate=p.replicate,
                          batch_bytes=p.batch_bytes,
                          window_bytes=p.window_bytes, lease_ttl=p.lease_ttl,
                          compression=job.spec.compression or p.compression,
                          output_format=job.spec.output_format, py_files=job.spec.py_files,
                          released=m.PartitionSet.of(t.index for t in job.reduces if t.state is TaskState.DONE)
                          if job.reduces_done and not job.spec.feeds else m.PartitionSet(),
                          step=job.spec.step, feeds=job.spec.feeds)

    def _data_addr(self, worker_id: str) -> str:
        """Where a worker serves data; "" for one that is gone."""
        worker = self.workers.get(worker_id)
        return worker.data_addr if worker is not None and worker.alive else ""

    def _locations(self, attempt: m.AttemptId, job: Job, asked: set[int], runs: int, seen: int) -> m.MapLocations:
        """Which live workers keep the committed output of the `asked` maps (`runs` runs of them), and
        which of them committed another attempt since the asking attempt's table held `seen` of the log.

        Built from the per-worker index (`Job.maps_held`) with set operations, never a Python step per
        map. When naming each holder's maps would cost more than asking every holder for all of the asked
        runs (a reduce that took a partition over asks about every map, as one run), the answer only
        counts them per holder: O(workers), however many maps."""
        holders: list[tuple[str, set[int]]] = []
        covered = 0
        every = len(asked) == len(job.maps)   # (asked holds valid map numbers only)
        for worker_id, held in job.maps_held.items():
            addr = self._data_addr(worker_id)
            mine = held if every else held & asked
            if mine and addr:
                holders.append((addr, mine))
                covered += len(mine)
        nowhere = sorted(asked.difference(*(held for _, held in holders))) if covered < len(asked) else []
        peers = [addr for addr, _ in holders]
        if runs * len(holders) < covered:
            return self._answer(attempt, job, seen, peers, nowhere, asked, counts=[len(mine) for _, mine in holders])
        return self._answer(attempt, job, seen, peers, nowhere, asked, maps=[sorted(mine) for _, mine in holders])

    def _every_location(self, attempt: m.AttemptId, job: Job, seen: int) -> m.MapLocations:
        """`_locations` of every map (a reduce that took a partition over asks for all), in the reduce
        phase, without a step or a set operation over every map: each live holder is counted, and what is
        nowhere is what is being made again (in the reduce phase, every map not committed) plus what
        holders now gone still have on their index."""
        peers: list[str] = []
        counts: list[int] = []
        gone: list[set[int]] = []
        for worker_id, held in job.maps_held.items():
            addr = self._data_addr(worker_id)
            if not addr:
                gone.append(held)
            elif held:
                peers.append(addr)
                counts.append(len(held))
        return self._answer(attempt, job, seen, peers, sorted(job.remaking.union(*gone)), counts=counts)

    def _answer(self, attempt: m.AttemptId, job: Job, seen: int, peers: list[str], nowhere: list[int],
                asked: set[int] | None = None, *, counts: list[int] | None = None,
                maps: list[list[int]] | None = None) -> m.MapLocations:
        """A MapLocations naming these holders (with counts or lists of maps): of the maps kept nowhere,
        those a live replica holds second copies of for the asking partition are named with it, and the
        commits are those the asking attempt's table lacks about the asked maps (all when `asked` is None)."""
        nowhere, copies = self._from_copies(job, attempt.task, nowhere)
        commits = self._commit_changes(job, seen, nowhere, asked) | copies.commits
        return m.MapLocations(attempt=attempt, peers=peers, maps=maps or [], counts=counts or [], nowhere=nowhere,
                              commits=commits, replicas=copies.replicas, replica_runs=copies.runs)

    def _from_copies(self, job: Job, partition: int, nowhere: list[int]) -> tuple[list[int], _Copies]:
        """Of the maps kept nowhere, those whose second copies for `partition` a live replica holds: they
        are pulled from it, as the attempts the copies are of (which may have run again since)."""
        found = self._live_copies(job, partition) if nowhere else None
        copied = [i for i in nowhere if found[1].get(i)] if found is not None else []
        if found is None or not copied:
            return nowhere, _Copies([], [], {})
        replica, attempts = found
        rest = sorted(set(nowhere).difference(copied))
        return rest, _Copies([self._data_addr(replica)], [m.to_runs(copied)], {i: attempts[i] for i in copied})

    @staticmethod
    def _commit_changes(job: Job, seen: int, nowhere: list[int], asked: set[int] | None = None) -> dict[int, int]:
        """What an attempt whose table held `seen` of the commit log lacks about the asked maps (all when
        `asked` is None): later commits, and 0 for the maps not committed now."""
        log = job.commit_log[seen:]
        commits = dict(log) if asked is None else {i: a for i, a in log if i in asked}
        commits.update((i, 0) for i in nowhere if job.maps[i].committed is None)
        return commits

    def _record_duration(self, job: Job, task: Task, number: int) -> None:
        attempt = task.running.get(number)
        if attempt is not None:
            job.durations.setdefault(task.kind, RunningMedian()).add(self._now - attempt.started)
            if attempt.progress > 0 and attempt.last_progress > attempt.started:
                job.paces.setdefault(task.kind, RunningMedian()).add(
                    attempt.progress / (attempt.last_progress - attempt.started))

    def _speculate(self) -> None:
        """Near the end of a phase, a task far slower than its finished peers gets a backup attempt.

        Runs on ticks only. A backup needs an idle worker (so no task is waiting for one) and finished
        tasks to compare with; which attempts qualify is `_straggler`'s rule.
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
        """The task of the worker's attempt if it wants a backup: the attempt is its task's newest, fewer
        than `_MOST_ATTEMPTS_AT_ONCE` run, and it has run `slow_factor` times its job's median task of
        its kind, or (a map) moves at under 1/`slow_factor` of their median pace. So a backup that
        straggles too gets a backup of its own, and a map seen slow early is not waited on."""
        if not worker.alive or worker.current is None:
            return None
        job, task = self._task_of(worker.current)
        attempt = task.running.get(worker.current.number) if task else None
        if job is None or task is None or attempt is None or len(task.running) >= _MOST_ATTEMPTS_AT_ONCE:
            return None
        durations = job.durations.get(task.kind)
        if task.state is not TaskState.RUNNING or not durations \
                or any(run.started > attempt.started for run in task.running.values()):
            return None
        if task.kind == REDUCE and job.remaking:
            return None   # some map output was lost since it started: a backup could not read it
        limit = max(self.params.min_elapsed, self.params.slow_factor * durations.median)
        if self._now - attempt.started >= limit:
            return job, task
        if task.kind == MAP and self._slow_pace(job, task, worker.current.number) is not None:
            return job, task
        return None

    def _slow_pace(self, job: Job, task: Task, number: int) -> float | None:
        """The attempt's pace over the median pace of its job's finished tasks of its kind, if that is
        under 1/`slow_factor` after `min_elapsed` and its rest at that pace outlasts a median task."""
        p = self.params
        run = task.running.get(number)
        durations, paces = job.durations.get(task.kind), job.paces.get(task.kind)
        if run is None or not durations or not paces or len(paces) < _PACE_SAMPLES or run.progress <= 0:
            return None
        elapsed = run.last_progress - run.started
        if self._now - run.started < p.min_elapsed or elapsed <= 0:
            return None
        pace, typical = run.progress / elapsed, paces.median
        left = durations.median * typical / pace - (self._now - run.started)
        return pace / typical if pace * p.slow_factor < typical and left > durations.median else None
