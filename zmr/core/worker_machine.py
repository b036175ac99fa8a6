"""The worker's side of the control protocol: a pure state machine. Events in, actions out, the clock
passed in.

`WorkerMachine.handle(event, now)` decides everything a worker says to the coordinator and does about
what it hears: registering (and again when asked, at most once per heartbeat interval), heartbeats,
job contexts and their leases, cancels, commit decisions, the fence of a worker that stood still, and
when a silent coordinator ends the session. It never touches a socket, a file, a thread or the clock;
the worker process (`zmr.runtime.worker`) and the simulator (`zmr.testing`) both drive this one
implementation.

What the machine promises, whatever the order of events: at most one attempt runs (others wait in
order); a job whose lease expired or ended has no context and no lease left; a commit decision reaches
the executor only for the attempt awaiting it, once; in each session the first message is a Register.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from zmr.core.worker_events import (
    Assignment,
    BeatDue,
    CancelAttempt,
    Connected,
    DeliverDecision,
    DeliverLocations,
    DropJob,
    DropPartitions,
    EndSession,
    ExecutorDied,
    FenceStalled,
    Garbled,
    Heard,
    JobContext,
    Level,
    LogLine,
    LoopTurn,
    NoteLostSource,
    OpenJob,
    ParentGone,
    PublishJob,
    Reported,
    Say,
    StartTask,
    StopWorker,
    TaskEnded,
    TimePassed,
    WorkerAction,
    WorkerEvent,
    WorkerView,
)
from zmr.protocol import messages as m


@dataclass(frozen=True)
class WorkerParams:
    """Who the worker is, and its timing until the coordinator's Welcome says otherwise."""

    worker_id: str
    data_addr: str
    python: str
    pid: int = 0
    host: str = ""
    token: str = ""                 # shown to the coordinator only: it proves a re-registration ours
    heartbeat_interval: float = 0.5
    heartbeat_liveness: int = 6
    recent_maps: int = 32           # MapDone reports offered again when registering


class WorkerMachine:
    """One worker's protocol state; see the module docstring for what it promises."""

    def __init__(self, params: WorkerParams) -> None:
        self.params = params
        self.jobs: dict[str, JobContext] = {}
        self.leases: dict[str, float] = {}             # job -> time its data must be gone by
        self.running: m.AttemptId | None = None        # the attempt the executor runs (or is about to)
        self.queued: deque[Assignment] = deque()       # assignments that came while one ran
        self.awaiting: m.ReduceDone | None = None      # a finished reduce waiting for its CommitDecision
        self.connected = False                          # a session is open (Register went out on it)
        self.registered = False                         # ... and the coordinator welcomed us on it
        self.stopped = False
        self.heartbeat_interval = params.heartbeat_interval
        self._recent: deque[m.MapDone] = deque(maxlen=params.recent_maps)
        self._held: list[m.WorkerToCoord] = []          # reports made while no session was open
        self._sent_stats: dict[tuple[str, int], m.PartitionStat] = {}   # as last sent in a heartbeat
        self._registered_at: float | None = None
        self._next_beat = 0.0
        self._heard = 0.0
        self._answered = False
        self._session_timeout = 0.0
        self._last_turn: float | None = None
        self._now = 0.0
        self._out: list[WorkerAction] = []

    # ------------------------------------------------------------ entry point

    def handle(self, event: WorkerEvent, now: float) -> list[WorkerAction]:
        """Take one event at time `now`; returns what to carry out, in order. A stopped worker does nothing."""
        self._now, self._out = now, []
        if not self.stopped:
            self._EVENTS[type(event)](self, event)
        return self._out

    def beat_due(self, now: float) -> bool:
        """Whether a TimePassed at `now` sends a heartbeat (or a Register), and so needs a view."""
        return self.connected and now >= self._next_beat

    @property
    def idle(self) -> bool:
        return self.running is None and not self.queued

    def job(self, job_id: str) -> JobContext | None:
        return self.jobs.get(job_id)

    # ------------------------------------------------------------ events

    def _on_connected(self, event: Connected) -> None:
        self.connected, self.registered, self._answered = True, False, False
        self._session_timeout = self.heartbeat_interval * self.params.heartbeat_liveness
        self._register(event.view)
        self._heard = self._now
        self._last_turn = self._now
        self._next_beat = self._now + self.heartbeat_interval   # the Register just went out
        held, self._held = self._held, []
        self._out += [Say(msg, keep=True) for msg in held]

    def _on_heard(self, event: Heard) -> None:
        if not self.connected:
            return   # from a connection that is gone: the session it belonged to has ended
        self._heard, self._answered = self._now, True
        self._MESSAGES[type(event.msg)](self, event.msg, event.view)

    def _on_garbled(self, event: Garbled) -> None:
        if not self.connected:
            return
        self._heard, self._answered = self._now, True
        self._log("bad_coordinator_message", "warning", error=event.error)

    def _on_reported(self, event: Reported) -> None:
        msg = event.msg
        if isinstance(msg, m.MapDone):
            self._recent.append(msg)
        elif isinstance(msg, m.ReduceDone):
            self.awaiting = msg
        elif isinstance(msg, m.ReduceCommitted | m.TaskFailed) and self.awaiting is not None \
                and _same_report(self.awaiting, msg):
            self.awaiting = None
        self._report(msg)

    def _on_task_ended(self, event: TaskEnded) -> None:
        attempt = event.attempt
        if self.awaiting is not None and _same_report(self.awaiting, attempt):
            self.awaiting = None
        if self.running == attempt:
            self.running = None
        self._report(m.TaskRequest(worker_id=self.params.worker_id, finished=attempt))
        if self.running is None and self.queued:
            self._start(self.queued.popleft())

    def _on_loop_turn(self, event: LoopTurn) -> None:
        last, self._last_turn = self._last_turn, self._now
        if not self.connected or last is None or self.awaiting is None:
            return
        gap = self._now - last
        if gap > self._session_timeout / 2:
            # fence before reading on: a grant in the socket may predate the coordinator's giving up on us
            self._log("stalled_awaiting_commit", "warning", seconds=round(gap, 1))
            self._out.append(FenceStalled(gap))

    def _on_time_passed(self, event: TimePassed) -> None:
        self._expire_leases()   # a lease runs out on time, connected or not
        if not self.connected:
            return
        if self._now >= self._next_beat:
            self._beat(_needed(event.view, "a due heartbeat"))
        silence = self._now - self._heard
        if silence > max(self._session_timeout, self.heartbeat_interval * 2) and not event.unread:
            self.connected = self.registered = False
            self._out.append(EndSession(self._answered))

    def _on_beat_due(self, event: BeatDue) -> None:
        if self.connected:
            self._beat(event.view)

    def _on_executor_died(self, event: ExecutorDied) -> None:
        self._log("worker_cannot_run_tasks", "error")
        self._stop("the executor died", failed=True)

    def _on_parent_gone(self, event: ParentGone) -> None:
        self._log("parent_gone", "warning")
        self._stop("the parent process is gone")

    _EVENTS: dict[type, Callable[..., None]] = {   # each handler takes its own event type
        Connected: _on_connected, Heard: _on_heard, Garbled: _on_garbled, Reported: _on_reported,
        TaskEnded: _on_task_ended, LoopTurn: _on_loop_turn, TimePassed: _on_time_passed,
        BeatDue: _on_beat_due, ExecutorDied: _on_executor_died, ParentGone: _on_parent_gone,
    }

    # ------------------------------------------------------------ messages from the coordinator

    def _on_welcome(self, msg: m.Welcome, view: WorkerView | None) -> None:
        if self.registered:
            return   # a duplicate: one Welcome per registration asks for one task
        self.registered = True
        self.heartbeat_interval = msg.heartbeat_interval
        self._log("registered", "info")
        if self.awaiting is not None:   # its ReduceDone may have gone to a coordinator that died: ask again
            self._out.append(Say(self.awaiting))
        elif self.idle:
            self._out.append(Say(m.TaskRequest(worker_id=self.params.worker_id)))

    def _on_register_again(self, msg: m.RegisterAgain, view: WorkerView | None) -> None:
        self.registered = False   # e.g. a restarted coordinator: it hears what is held and decides
        last = self._registered_at
        if last is None or self._now - last >= self.heartbeat_interval:
            # once per interval: every message queued meanwhile is answered so
            self._register(_needed(view, "a RegisterAgain"))

    def _on_reject(self, msg: m.Reject, view: WorkerView | None) -> None:
        self._log("rejected", "error", reason=msg.reason)
        self._stop(f"rejected: {msg.reason}")

    def _on_job_setup(self, msg: m.JobSetup, view: WorkerView | None) -> None:
        """Grants the job's lease: its data may exist here from now on."""
        try:
            owners = m.owner_table(msg)
        except ValueError as exc:
            self._log("bad_job_setup", "warning", job=msg.job_id, error=str(exc))
            return
        known = self.jobs.get(msg.job_id)
        if known is None:
            self._publish(JobContext(msg, owners, msg.owners_epoch))
        elif msg.owners_epoch > known.owners_epoch:
            self._publish(dataclasses.replace(known, owners=owners, owners_epoch=msg.owners_epoch))
        self.leases[msg.job_id] = self._now + msg.lease_ttl
        self._out.append(OpenJob(msg.job_id, msg.n_reduce))
        released = msg.released.members(msg.n_reduce)
        if released:
            self._out.append(DropPartitions(msg.job_id, tuple(released)))

    def _on_ping(self, msg: m.Ping, view: WorkerView | None) -> None:
        renewed = self._now + msg.lease_ttl
        for job_id in msg.jobs:
            if job_id in self.leases:
                self.leases[job_id] = renewed

    def _on_release(self, msg: m.ReleasePartitions, view: WorkerView | None) -> None:
        """Read within the job's partitions: a job this worker was not set up for holds nothing."""
        known = self.jobs.get(msg.job_id)
        if known is not None:
            self._out.append(DropPartitions(msg.job_id, tuple(msg.partitions.members(len(known.owners)))))

    def _on_owners(self, msg: m.OwnersUpdate, view: WorkerView | None) -> None:
        """Moves apply on top of any epoch from the one they were made from on (they name every partition
        moved since, with its owner now); a base past ours means an update was lost."""
        known = self.jobs.get(msg.job_id)
        if known is None or msg.owners_epoch <= known.owners_epoch:
            return
        if msg.base_epoch > known.owners_epoch:
            self._log("owners_update_missed", "warning", job=msg.job_id, epoch=known.owners_epoch,
                      base=msg.base_epoch)
            self._report(m.SetupRequest(worker_id=self.params.worker_id, job_id=msg.job_id))
            return
        owners = list(known.owners)
        for partition, addr in msg.moves.items():
            if 0 <= partition < len(owners):
                owners[partition] = addr
        self._publish(dataclasses.replace(known, owners=tuple(owners), owners_epoch=msg.owners_epoch))

    def _on_assign(self, msg: Assignment, view: WorkerView | None) -> None:
        if isinstance(msg, m.AssignReduce) and not self._learn_commits(msg):
            return
        if self.running is None:
            self._start(msg)
        else:
            self.queued.append(msg)   # run in the order they came, as the executor's inbox did

    def _on_decision(self, msg: m.CommitDecision, view: WorkerView | None) -> None:
        pending = self.awaiting
        if pending is not None and pending.attempt == msg.attempt:
            self.awaiting = None   # the executor acts on the first decision only
            self._out.append(DeliverDecision(msg))

    def _on_locations(self, msg: m.MapLocations, view: WorkerView | None) -> None:
        if self.running != msg.attempt:
            return
        try:
            m.check_locations(msg)
        except ValueError as exc:   # the reduce waits on, and gives up when no answer comes
            self._log("bad_coordinator_message", "warning", error=str(exc))
            return
        self._out.append(DeliverLocations(msg))

    def _on_sources_lost(self, msg: m.SourcesLost, view: WorkerView | None) -> None:
        self._out.append(NoteLostSource(msg))   # a pull from that peer must not wait for its timeout

    def _on_cancel(self, msg: m.CancelTask, view: WorkerView | None) -> None:
        running = self.running
        if running is not None and running == msg.attempt:
            self._out.append(CancelAttempt(running))

    def _on_job_ended(self, msg: m.JobEnded, view: WorkerView | None) -> None:
        self._drop_job(msg.job_id)

    _MESSAGES: dict[type, Callable[..., None]] = {   # each handler takes its own message type
        m.Welcome: _on_welcome, m.RegisterAgain: _on_register_again, m.Reject: _on_reject,
        m.JobSetup: _on_job_setup, m.Ping: _on_ping, m.ReleasePartitions: _on_release,
        m.OwnersUpdate: _on_owners, m.AssignMap: _on_assign, m.AssignReduce: _on_assign,
        m.CommitDecision: _on_decision, m.MapLocations: _on_locations, m.SourcesLost: _on_sources_lost,
        m.CancelTask: _on_cancel,
        m.JobEnded: _on_job_ended,
    }

    # ------------------------------------------------------------ helpers

    def _register(self, view: WorkerView) -> None:
        p = self.params
        self._out.append(Say(m.Register(
            worker_id=p.worker_id, data_addr=p.data_addr, python=p.python, pid=p.pid, host=p.host,
            holdings=self._holdings(view), running=self.running, finished_maps=list(self._recent),
            token=p.token)))
        self._registered_at = self._now
        self._sent_stats.clear()   # perhaps a new coordinator: it hears every stat again

    def _holdings(self, view: WorkerView) -> list[m.Holding]:
        held = {h.job_id: h for h in view.held}
        return [held.get(job_id) or m.Holding(job_id=job_id) for job_id in sorted(set(self.jobs) | set(held))]

    def _beat(self, view: WorkerView) -> None:
        if self.registered:
            self._out.append(Say(m.Heartbeat(
                worker_id=self.params.worker_id, task=self.running.label if self.running else "",
                progress=view.progress, partitions=self._changed_stats(view), leases=list(view.leases),
                rss=view.rss, bytes_in=view.bytes_in, bytes_out=view.bytes_out)))
        else:
            self._register(view)
        self._next_beat = self._now + self.heartbeat_interval

    def _changed_stats(self, view: WorkerView) -> list[m.PartitionStat]:
        """The partition stats that changed since the last heartbeat of this registration: an owner of
        many partitions does not repeat the quiet ones twice a second (the coordinator keeps the last)."""
        changed = [s for s in view.partitions if self._sent_stats.get((s.job_id, s.partition)) != s]
        self._sent_stats.update(((s.job_id, s.partition), s) for s in changed)
        return changed

    def _report(self, msg: m.WorkerToCoord) -> None:
        """The executor's reports go out in order once a session is open (after its Register)."""
        if self.connected:
            self._out.append(Say(msg, keep=True))
        else:
            self._held.append(msg)

    def _learn_commits(self, msg: m.AssignReduce) -> bool:
        """Apply the commit changes a reduce assignment carries to the job's table; False (and the attempt
        given back at once) if they do not follow on from the table this worker has."""
        known = self.jobs.get(msg.attempt.job_id)
        if known is None:
            return True   # the executor finds no job and fails the attempt, as for a map
        if msg.commits_base == 0:
            table: dict[int, int] = {}
        elif msg.commits_base == known.commits_version:
            table = dict(known.commits)
        else:
            self._log("commits_out_of_step", "warning", **msg.attempt.log_fields(), have=known.commits_version,
                      base=msg.commits_base)
            self._report(m.TaskFailed(worker_id=self.params.worker_id, attempt=msg.attempt, kind="internal",
                                      error=f"the commit table here is at {known.commits_version}, the "
                                            f"assignment builds on {msg.commits_base}"))
            if self.running is None and not self.queued:
                self._report(m.TaskRequest(worker_id=self.params.worker_id, finished=msg.attempt))
            return False
        table.update(msg.commits)
        self._publish(dataclasses.replace(known, commits=table,
                                          commits_version=msg.commits_base + len(msg.commits)))
        return True

    def _start(self, assign: Assignment) -> None:
        self.running = assign.attempt
        self._out.append(StartTask(assign))

    def _publish(self, context: JobContext) -> None:
        self.jobs[context.setup.job_id] = context
        self._out.append(PublishJob(context))

    def _drop_job(self, job_id: str) -> None:
        self.jobs.pop(job_id, None)
        self.leases.pop(job_id, None)
        running = self.running
        if running is not None and running.job_id == job_id:
            self._out.append(CancelAttempt(running))
        self._out.append(DropJob(job_id))

    def _expire_leases(self) -> None:
        """No renewal within the TTL (the coordinator is gone, or forgot the job): delete the job's data."""
        for job_id in [j for j, expiry in self.leases.items() if expiry <= self._now]:
            self._log("lease_expired", "warning", job=job_id)
            self._drop_job(job_id)

    def _stop(self, reason: str, failed: bool = False) -> None:
        self.stopped = True
        self._out.append(StopWorker(reason, failed))

    def _log(self, event: str, level: Level, **fields: object) -> None:
        self._out.append(LogLine(event, level, fields))


def _same_report(done: m.ReduceDone, other: m.ReduceCommitted | m.TaskFailed | m.MapDone | m.AttemptId) -> bool:
    """Whether `other` is about the attempt that reported `done`."""
    return (other if isinstance(other, m.AttemptId) else other.attempt) == done.attempt


def _needed(view: WorkerView | None, what: str) -> WorkerView:
    if view is None:
        raise ValueError(f"{what} needs a WorkerView: pass one with the event")
    return view
