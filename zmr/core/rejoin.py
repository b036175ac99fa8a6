"""Workers that register: new ones, and ones coming back with what they still hold."""

from __future__ import annotations

from zmr.core.events import AddressChecked, CheckAddress
from zmr.core.reports import Reports
from zmr.core.state import MAP, REDUCE, AttemptRun, JobState, TaskState, WorkerEntry
from zmr.protocol import journal as j
from zmr.protocol import messages as m


class Rejoin(Reports):
    """Admits registering workers and re-adopts what returning ones still hold and run."""

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
            job.set_up_on.pop(msg.worker_id, None)
        for holding in msg.holdings:    # and nothing it held before counts
            self._send(peer, m.JobEnded(job_id=holding.job_id))
        if msg.running is not None:
            self._send(peer, m.CancelTask(attempt=msg.running))
        worker = WorkerEntry(msg.worker_id, peer, msg.data_addr, self._now, key=key, token=msg.token)
        self.workers[worker.id] = worker
        self._by_peer[peer] = worker.id
        self._push_liveness(worker)
        self._record(j.WorkerJoined(worker_id=worker.id, data_addr=worker.data_addr, key=key))
        self._send(peer, m.Welcome(worker_id=worker.id, heartbeat_interval=self.params.heartbeat_interval))
        self._log("worker_joined", "info", worker=worker.id, addr=msg.data_addr, pid=msg.pid, host=msg.host)
        if self.params.check_addresses:
            self._out.append(CheckAddress(worker.id, worker.data_addr))
        self._start_queued_jobs()
        for job in self._running_jobs():
            self._replan(job)
            self._set_up_owners(job)

    def _on_address_checked(self, event: AddressChecked) -> None:
        """A new worker's data address was tried from here. One that cannot be reached is refused at once,
        before a shuffle hangs on it: it is lost (whatever it was given runs elsewhere), told why, and
        stays listed as `unreachable`, with the reason, in status."""
        worker = self.workers.get(event.worker_id)
        if worker is None or not worker.alive or worker.data_addr != event.data_addr or not event.problem:
            return
        why = (f"its data address {worker.data_addr} cannot be reached from the coordinator ({event.problem}); "
               "set worker.advertise to an address its peers reach")
        worker.unreachable = why
        self._lose_worker(worker, why)
        self._send(worker.peer, m.Reject(reason=why))

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
        self._push_liveness(worker)   # one awaited since a restart had its first check at the grace's end
        held = {h.job_id: h for h in msg.holdings}
        for holding in msg.holdings:
            job = self.jobs.get(holding.job_id)
            if job is None or job.state is not JobState.RUNNING:
                self._send(peer, m.JobEnded(job_id=holding.job_id))
        for job in self._running_jobs():
            kept = set(map(tuple, held[job.id].maps)) if job.id in held else set()
            for index in sorted(job.maps_held.get(worker.id, ())):   # its committed maps, by index
                task = job.maps[index]
                if (task.index, task.committed) not in kept:
                    self._log("map_output_gone", "warning", job=job.id, task=task.label, worker=worker.id)
                    self._uncommit_map(job, task)
            # messages to the old connection may be lost (an owner update, say), or it lost the job when
            # its lease ran out: it is set up again (its next reduce gets the whole commit table too)
            job.set_up_on.pop(worker.id, None)
            if job.id in held or worker.id in job.owned:
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
        attempt = report.attempt
        job, task = self._task_of(attempt) if attempt.kind == MAP else (None, None)
        holding = held.get(attempt.job_id)
        if (job is None or task is None or holding is None or job.state is not JobState.RUNNING
                or task.state is TaskState.DONE or attempt.number in task.running
                or not 1 <= attempt.number <= task.attempts_made
                or (attempt.task, attempt.number) not in set(map(tuple, holding.maps))):
            return
        self._log("map_readopted", "info", job=job.id, task=task.label, attempt=attempt.number, worker=worker.id)
        self._commit_map(job, task, worker, attempt.number, report)

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
            self._send(worker.peer, m.CancelTask(attempt=running))
            return
        self._idle.pop(worker.id, None)
        task.running[running.number] = AttemptRun(worker.id, self._now, self._now)
        job.attempt_log.begin(task.kind, task.index, running.number, worker.id, self._now, backup=False)
        task.started = task.started or self._now
        worker.current, worker.busy_since = running, self._now
        if task.committing == running.number:   # it was granted the rename: say so again
            task.state = TaskState.COMMITTING
            self._send(worker.peer, m.CommitDecision(attempt=running, ok=True))
        else:
            task.state = TaskState.RUNNING
        self._log("attempt_readopted", "info", job=job.id, task=task.label, attempt=running.number,
                  worker=worker.id)
