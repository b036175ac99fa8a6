"""The vocabulary of the worker's state machine: what happens to a worker (events) and what it does about
it (actions), plus the values the two carry.

Events are frozen values the shell (or a simulator) makes from socket traffic, the executor's reports and
the passing of time; actions are what `WorkerMachine.handle` asks the shell to carry out. Whatever the shell
alone can read (the stores' holdings, the executor's progress counter) travels in a `WorkerView` with the
event that needs it, so the machine never does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from zmr.protocol import messages as m

Assignment = m.AssignMap | m.AssignReduce
Level = Literal["debug", "info", "warning", "error"]
Report = m.MapDone | m.ReduceDone | m.ReduceCommitted | m.TaskFailed | m.LocateMaps


@dataclass(frozen=True)
class JobContext:
    """What a worker knows of a job, from JobSetup, OwnersUpdate and the commit changes of AssignReduce.

    Immutable: a change makes a new context, which replaces the old one in one reference write, so the
    executor's thread always reads a consistent (owners, epoch) pair and a whole commit table.
    """

    setup: m.JobSetup
    owners: tuple[str, ...]
    owners_epoch: int
    commits: Mapping[int, int] = field(default_factory=dict)   # map task -> committed attempt, if not 1
    commits_version: int = 0    # how many entries of the job's commit log `commits` holds

    def committed(self, task: int) -> int:
        """The attempt of map `task` whose output counts, as this worker last heard."""
        return self.commits.get(task, 1)


@dataclass(frozen=True)
class WorkerView:
    """What only the shell can read, as of now: for a Register (`held`) or a Heartbeat (the rest).

    `held` lists what the stores hold, per job; jobs the machine knows of but the stores do not are
    added by the machine.
    """

    held: tuple[m.Holding, ...] = ()
    partitions: tuple[m.PartitionStat, ...] = ()
    leases: tuple[m.LeaseStat, ...] = ()
    progress: int = 0
    rss: int = 0   # see m.WorkerInfo
    bytes_in: int = 0
    bytes_out: int = 0


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class Connected:
    """A new connection to the coordinator can take messages: the worker registers on it."""

    view: WorkerView


@dataclass(frozen=True)
class Heard:
    """A decoded message from the coordinator. A RegisterAgain needs `view` (it is answered by a Register)."""

    msg: m.CoordToWorker
    view: WorkerView | None = None


@dataclass(frozen=True)
class Garbled:
    """The coordinator's connection delivered something that does not decode: it is alive all the same."""

    error: str


@dataclass(frozen=True)
class Reported:
    """The executor made a report for the coordinator."""

    msg: Report


@dataclass(frozen=True)
class TaskEnded:
    """The executor is done with an attempt, whatever came of it; its slot is free."""

    attempt: m.AttemptId


@dataclass(frozen=True)
class LoopTurn:
    """The control loop starts a turn, before it reads the socket: a long gap since the last turn means
    the worker stood still (frozen, or starved of CPU)."""


@dataclass(frozen=True)
class TimePassed:
    """Time passed: leases expire, a heartbeat may be due (`view` is needed when `beat_due`), and a
    silent coordinator ends the session unless messages still wait `unread` in the socket."""

    view: WorkerView | None = None
    unread: bool = False


@dataclass(frozen=True)
class BeatDue:
    """The heartbeat timer fired, whatever the machine's own schedule says (a simulator's clock)."""

    view: WorkerView


@dataclass(frozen=True)
class ExecutorDied:
    """The executor's thread ended: a worker that cannot run tasks must not take them."""


@dataclass(frozen=True)
class ParentGone:
    """The process that started this worker (and asked it to exit with it) is gone."""


WorkerEvent = (Connected | Heard | Garbled | Reported | TaskEnded | LoopTurn | TimePassed | BeatDue
               | ExecutorDied | ParentGone)


# ---------------------------------------------------------------- actions


@dataclass(frozen=True)
class Say:
    """Send a message to the coordinator. `keep`: a report that must get there; if the socket cannot take
    it now it waits, and later kept messages wait behind it."""

    msg: m.WorkerToCoord
    keep: bool = False


@dataclass(frozen=True)
class StartTask:
    """Hand an assignment to the executor (the slot is free)."""

    assign: Assignment


@dataclass(frozen=True)
class CancelAttempt:
    """Stop the running attempt (kill its task process); the executor then reports TaskEnded."""

    attempt: m.AttemptId


@dataclass(frozen=True)
class DeliverDecision:
    """Give the reduce awaiting its commit the coordinator's decision."""

    decision: m.CommitDecision


@dataclass(frozen=True)
class DeliverLocations:
    """Give the running reduce the answer to its LocateMaps."""

    locations: m.MapLocations


@dataclass(frozen=True)
class FenceStalled:
    """Tell the reduce awaiting its commit that the worker stood still: a grant read now may be stale."""

    seconds: float


@dataclass(frozen=True)
class PublishJob:
    """A job's context is new or changed: the executor reads this one from now on."""

    context: JobContext


@dataclass(frozen=True)
class OpenJob:
    """The job's lease is granted: its stores may hold data from now on."""

    job_id: str
    n_reduce: int


@dataclass(frozen=True)
class DropPartitions:
    """These partitions are committed: delete what the stores hold of them."""

    job_id: str
    partitions: tuple[int, ...]


@dataclass(frozen=True)
class DropJob:
    """The job is over here (ended, or its lease lapsed): forget its context and delete all its data."""

    job_id: str


@dataclass(frozen=True)
class NoteLostSource:
    """A reduce's source peer was declared dead: its pulls from there stop waiting."""

    lost: m.SourcesLost


@dataclass(frozen=True)
class StopWorker:
    """The worker stops for good. `failed`: it could not run tasks, and its exit says so."""

    reason: str
    failed: bool = False


@dataclass(frozen=True)
class EndSession:
    """The coordinator is silent: close this connection and reconnect (backoff restarts if it ever
    `answered`)."""

    answered: bool


@dataclass(frozen=True)
class LogLine:
    event: str
    level: Level
    fields: dict[str, Any] = field(default_factory=dict)


WorkerAction = (Say | StartTask | CancelAttempt | DeliverDecision | DeliverLocations | FenceStalled | PublishJob
                | OpenJob | DropPartitions | DropJob | NoteLostSource | StopWorker | EndSession | LogLine)
