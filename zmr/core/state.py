"""The scheduler's state records: jobs, tasks, attempts, workers. Plain data, no behaviour beyond views."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

from zmr.core.median import RunningMedian
from zmr.protocol.messages import (
    AttemptId,
    AttemptOutcome,
    AttemptSpan,
    JobSpec,
    PartitionStat,
    TaskKind,
    TimelinePoint,
)


class TaskState(StrEnum):
    WAITING = "waiting"        # a reduce before its job's reduce phase, or one lacking maps being made again
    READY = "ready"            # can run now (or after its backoff)
    RUNNING = "running"
    COMMITTING = "committing"  # a reduce attempt was granted the rename
    DONE = "done"


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def ended(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


ATTEMPTS_SHOWN = 20_000   # attempts a job's timeline keeps (each ~100 bytes; later ones are counted)

MAP: TaskKind = "map"
REDUCE: TaskKind = "reduce"


def job_id_of(number: int) -> str:
    return f"job-{number:04d}"


@dataclass(slots=True)
class AttemptRun:
    """How one attempt (named by its AttemptId) runs on its worker: where, since when, how far."""

    worker: str
    started: float
    last_progress: float
    progress: int = 0
    commits_seen: int = 0   # a reduce: how much of its job's commit log its worker's table held when it began


@dataclass(slots=True)
class Task:
    """One map or reduce of a job. There are up to 100,000 of them per job, so no per-instance __dict__."""

    kind: TaskKind
    index: int
    state: TaskState
    attempts_made: int = 0
    running: dict[int, AttemptRun] = field(default_factory=dict)
    committed: int | None = None          # the attempt whose output counts
    committed_worker: str | None = None   # where a committed map's output lives
    committing: int | None = None         # a reduce attempt granted the rename
    granted_worker: str | None = None     # ... and the worker running it
    app_failures: int = 0
    worker_losses: int = 0
    not_before: float = 0.0
    restarted: bool = False               # an attempt was cancelled for its slow pace (once per task)
    failed_on: str | None = None          # the worker its last failed attempt ran on (a map's retry avoids it)
    started: float | None = None
    finished: float | None = None
    records_out: int = 0
    bytes_out: int = 0

    @property
    def label(self) -> str:
        return f"{self.kind}-{self.index}"

    @property
    def failed_times(self) -> str:
        """'map-3 failed 2 times' (or '1 time'), as a failed job's reason starts."""
        return f"{self.label} failed {self.app_failures} time{'' if self.app_failures == 1 else 's'}"

    def attempt_id(self, job_id: str, number: int) -> AttemptId:
        return AttemptId(job_id=job_id, kind=self.kind, task=self.index, number=number)


class AttemptLog:
    """A job's attempts as they ran, for the timeline a person reads; live only, like the commit log.

    Bounded: the first `limit` attempts are kept and later ones only counted, so a job of 100,000 tasks
    costs no more than a small one. An attempt is open (running) until `end` names its outcome.
    """

    __slots__ = ("spans", "dropped", "_open", "_limit")

    def __init__(self, limit: int) -> None:
        self.spans: list[AttemptSpan] = []
        self.dropped = 0
        self._open: dict[tuple[TaskKind, int, int], int] = {}   # (kind, task, number) -> index in spans
        self._limit = limit

    def begin(self, kind: TaskKind, task: int, number: int, worker: str, now: float, backup: bool) -> None:
        if len(self.spans) >= self._limit:
            self.dropped += 1
            return
        self._open[(kind, task, number)] = len(self.spans)
        self.spans.append(AttemptSpan(kind=kind, task=task, number=number, worker=worker, started=now,
                                      ended=None, outcome="running", backup=backup))

    def end(self, kind: TaskKind, task: int, number: int, now: float, outcome: AttemptOutcome) -> None:
        index = self._open.pop((kind, task, number), None)
        if index is not None:
            span = self.spans[index]
            self.spans[index] = AttemptSpan(kind=span.kind, task=span.task, number=span.number, worker=span.worker,
                                            started=span.started, ended=now, outcome=outcome, backup=span.backup)

    def end_all(self, now: float, outcome: AttemptOutcome) -> None:
        for kind, task, number in list(self._open):
            self.end(kind, task, number, now, outcome)


@dataclass
class Job:
    id: str
    spec: JobSpec
    submitted: float
    state: JobState = JobState.QUEUED
    maps: list[Task] = field(default_factory=list)
    reduces: list[Task] = field(default_factory=list)
    owners: list[str] = field(default_factory=list)
    owners_epoch: int = 0
    compressed_inputs: int = 0   # of its input files (each one map task, read whole)
    # workers sent its JobSetup this life, in that order: an ordered set, so messages to all of them go
    # out in an order that is the same in every run without sorting up to 1,000 ids per committed reduce
    set_up_on: dict[str, None] = field(default_factory=dict)
    ready_maps: deque[int] = field(default_factory=deque)
    maps_done: int = 0
    reduces_done: int = 0
    started: float | None = None
    finished: float | None = None
    error: str = ""
    partition_stats: dict[int, PartitionStat] = field(default_factory=dict)
    durations: dict[str, RunningMedian] = field(default_factory=dict)   # kind -> finished attempts' durations
    paces: dict[str, RunningMedian] = field(default_factory=dict)   # ... and their progress per second
    number: int = 0
    output_done: bool = False   # its JobFinished was carried out (and journaled as such)
    timeline: list[TimelinePoint] = field(default_factory=list)
    attempt_log: AttemptLog = field(default_factory=lambda: AttemptLog(ATTEMPTS_SHOWN))

    bytes_committed: int = 0   # kept up to date on every map commit and uncommit: no O(maps) sums per event
    owner_cycle: list[str] = field(default_factory=list)    # owners repeat this list over the partitions ...
    owner_moves: dict[int, str] = field(default_factory=dict)   # ... except these (partition -> worker)
    # live only (rebuilt on recovery): the commit log workers' tables are built from, and how much of it
    # each worker has been sent (see m.AssignReduce); partitions committed since the last release
    commit_log: list[tuple[int, int]] = field(default_factory=list)
    logged_maps: set[int] = field(default_factory=set)   # maps the log names: a commit of attempt 1 is news
    commits_sent: dict[str, int] = field(default_factory=dict)
    releasing: list[int] = field(default_factory=list)
    released_at: float = float("-inf")   # when the last ReleasePartitions went out
    announced_epoch: int = 0    # the owner epoch the job's workers were last told of, in JobSetup or OwnersUpdate
    unannounced: dict[int, str] = field(default_factory=dict)   # partitions moved since: see _announce_moves
    # Indexes of durable state, kept by Ledger.apply (so replay rebuilds them): what one worker's loss or
    # return touches is found without a scan of every task.
    maps_held: dict[str, set[int]] = field(default_factory=dict)   # worker -> committed maps whose output it keeps
    grants: dict[str, set[int]] = field(default_factory=dict)      # worker -> reduces granted the rename there
    owned: dict[str, int] = field(default_factory=dict)            # owner -> how many partitions it owns
    unfinished: dict[str, int] = field(default_factory=dict)       # ... and how many of them have not committed
    # Maps whose committed output was lost, not committed again yet. The reduce phase begins once every
    # map has committed at least once (in replay of a snapshot: once a reduce was assigned): owners hold
    # what was pushed to them, so lost output holds back only the reduces that lack it, not every reduce.
    remaking: set[int] = field(default_factory=set)
    reduce_phase: bool = False
    # live only: reduce -> the maps being made again that it waits for, and map -> the reduces waiting for it
    lacking: dict[int, set[int]] = field(default_factory=dict)
    awaited: dict[int, set[int]] = field(default_factory=dict)
    # live only: a partition whose owner died -> the worker holding the second copies of the output the
    # dead owner's maps made for it (`m.replica_owner`), and those maps with their attempts then. The maps
    # run again at once; until they commit again, the partition's reduce pulls those attempts from there.
    copied: dict[int, tuple[str, dict[int, int]]] = field(default_factory=dict)

    @property
    def bytes_shuffled(self) -> int:
        """Shuffle bytes of the committed map attempts (what reducers read, whether pushed or pulled)."""
        return self.bytes_committed

    @property
    def records_out(self) -> int:
        return sum(t.records_out for t in self.reduces)

    def task(self, kind: str, index: int) -> Task | None:
        tasks = self.maps if kind == MAP else self.reduces
        return tasks[index] if 0 <= index < len(tasks) else None

    def log_commit(self, index: int, attempt: int) -> None:
        """Put a map's commit in the log workers' tables are built from. A table takes attempt 1 for a map
        it has no entry for, so a first attempt is logged only when the log named another one before
        (a map committed as attempt 2, lost, and then found committed as attempt 1 on a worker that
        came back): left out, a worker's table would keep the old attempt."""
        if attempt != 1 or index in self.logged_maps:
            self.commit_log.append((index, attempt))
            self.logged_maps.add(index)


@dataclass
class WorkerEntry:
    """The scheduler's record of one worker process (the process itself is zmr.runtime.worker.Worker)."""

    id: str
    peer: bytes
    data_addr: str
    last_seen: float
    alive: bool = True
    current: AttemptId | None = None   # the attempt it runs, or was told to give up and has not left yet
    busy_since: float = 0.0            # when `current` was assigned
    leases: dict[str, int] = field(default_factory=dict)   # job -> leased resources it reported holding
    key: str = ""      # the CURVE public key it registered with ("" without CURVE, or not known yet)
    token: str = ""    # the secret its process registered with ("" if not known yet, e.g. after a restart)
    rss: int = 0         # what its last heartbeat said (see m.WorkerInfo)
    bytes_in: int = 0
    bytes_out: int = 0
    unreachable: str = ""   # why its data address could not be reached (it was refused), or ""
