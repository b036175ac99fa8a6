"""Every message of the zmr wire protocol, as typed, frozen records.

Control plane (client/worker <-> coordinator) and data plane (worker <-> worker) messages are
msgspec Structs in tagged unions, so a decoder accepts exactly these shapes and nothing else.
Bulky bytes (partition batches) travel in a separate frame, never inside a record.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence
from typing import Annotated, Literal, NamedTuple, TypeVar

import msgspec

PROTOCOL_VERSION = 12
MAX_WAIT_SECONDS = 60.0   # the longest a WaitJob may be held unanswered
T = TypeVar("T")


class _Msg(msgspec.Struct, frozen=True, tag=True, array_like=True, forbid_unknown_fields=True):
    """Base of every record: frozen, tagged by class name, encoded as a msgpack array."""


TaskKind = Literal["map", "reduce"]
OutputFormat = Literal["text", "jsonl", "csv", "parquet", "raw"]
"""How a job writes its results (see `zmr.output_formats`)."""
Compression = Literal["none", "lz4", "zstd", "auto"]
"""How map output chunks may be compressed on the wire and on disk (`shuffle.compression`)."""
JobCompression = Literal["", "none", "lz4", "zstd", "auto"]
"""A job's own choice of `Compression`; "" leaves it to the cluster's `shuffle.compression`."""
Codec = Literal["", "gzip", "bz2", "xz", "zstd"]
"""How an input file is compressed; "" for not at all (see `zmr.compressed`)."""


class PartitionSet(msgspec.Struct, frozen=True, array_like=True):
    """Partition numbers as a bitmap from `first` on: bit i (byte i // 8, least significant bit first)
    stands for partition `first + i`.

    Every worker of a job hears of every partition committed, and reducers commit in no useful order,
    so a list (3 bytes a number) or runs cost several times the bitmap over the span they cover.
    """

    first: Annotated[int, msgspec.Meta(ge=0)] = 0
    bits: bytes = b""

    @classmethod
    def of(cls, partitions: Iterable[int]) -> PartitionSet:
        ordered = sorted(set(partitions))
        if not ordered:
            return cls()
        first = ordered[0]
        bits = bytearray((ordered[-1] - first) // 8 + 1)
        for p in ordered:
            i = p - first
            bits[i >> 3] |= 1 << (i & 7)
        return cls(first, bytes(bits))

    def members(self, limit: int) -> list[int]:
        """The partitions named, in order, below `limit` (the job's partitions: a peer's bitmap may run past)."""
        out: list[int] = []
        for at, byte in enumerate(self.bits[:max(0, limit - self.first + 7) // 8]):
            if byte:
                base = self.first + 8 * at
                out.extend(base + bit for bit in range(8) if byte >> bit & 1 and base + bit < limit)
        return out


class AttemptId(msgspec.Struct, frozen=True, array_like=True):
    """One run of one task: the identity an attempt keeps from its assignment to its output's name.

    `number` counts the task's attempts from 1; a task is `(job_id, kind, task)`.
    """

    job_id: str
    kind: TaskKind
    task: Annotated[int, msgspec.Meta(ge=0)]
    number: Annotated[int, msgspec.Meta(ge=1)]

    @property
    def task_label(self) -> str:
        """The task it runs, as logs name it: `map-3`."""
        return f"{self.kind}-{self.task}"

    @property
    def label(self) -> str:
        """As heartbeats and `zmr status` print it: `job/map-3.1`."""
        return f"{self.job_id}/{self.task_label}.{self.number}"

    def log_fields(self) -> dict[str, str | int]:
        """The fields every log line about this attempt carries."""
        return {"job": self.job_id, "task": self.task_label, "attempt": self.number}


# ---------------------------------------------------------------- job descriptions


class InputSplit(msgspec.Struct, frozen=True, array_like=True):
    """A byte range of an input file; `name` is the path as the user typed it; `codec` the file's
    compression (the split is then the whole file, read decompressed)."""

    name: str
    path: str
    start: int
    end: int
    codec: Codec = ""


class StepPlan(msgspec.Struct, frozen=True, array_like=True):
    """One step of a multi-step app as the client planned it (zmr.steps), in graph order: the
    coordinator checks the graph again (zmr.core.stepgraph) and runs each step as a job of its own."""

    name: str
    n_reduce: int
    inputs: list[str]   # "<files>" or names of the steps it reads
    has_map: bool
    has_reduce: bool


class StepLink(msgspec.Struct, frozen=True, array_like=True):
    """A step job's reduces feed job `job_id`: the output of reduce r is that job's map `first + r`."""

    job_id: str
    first: int


class JobSpec(msgspec.Struct, frozen=True, array_like=True):
    """What a client submits: the app (cloudpickled by value), its inputs and where output goes.

    A multi-step app comes with its `steps`. The coordinator runs each step as a job of its own and
    gives the client the id of the one that runs the last step (`head`), whose output is the job's.
    The fields after `steps` are the coordinator's, set on those jobs only; a client's must be unset.
    """

    app_name: str
    app_blob: bytes
    splits: list[InputSplit]
    output_dir: str
    n_reduce: int
    args: list[str] = []
    overwrite: bool = False
    max_attempts: int = 0   # failed attempts of one task that fail the job; 0: the cluster's retry.max_attempts
    output_format: OutputFormat = "text"
    py_files: list[bytes] = []   # zip archives put on the workers' sys.path for this job (zmr.pyfiles)
    compression: JobCompression = ""   # of its shuffle; "": the cluster's shuffle.compression
    steps: list[StepPlan] = []   # a multi-step app's plan; the last step's output is the job's
    step: int = -1               # a step job: which of the head job's steps it runs
    head: str = ""               # ... and the id of the job the client knows
    fed_maps: int = 0            # maps that are the reduces of the steps it reads (instead of splits)
    feeds: list[StepLink] = []   # the step jobs its reduces feed

    @property
    def is_step(self) -> bool:
        return bool(self.head)


# ---------------------------------------------------------------- client -> coordinator


class SubmitJob(_Msg, frozen=True):
    spec: JobSpec


class StatusRequest(_Msg, frozen=True):
    """Every job in brief with the workers; or one job (`job_id`), whose task and partition tables and
    timeline, O(tasks), come only with `tasks`: a large job's status stays small unless asked."""

    job_id: str | None = None
    tasks: bool = False


class WaitJob(_Msg, frozen=True):
    """Answer (a StatusReply with the job's summary, no task list) once the job has ended, or after
    `timeout` seconds with its progress: a waiting client hears the end at once without polling."""

    job_id: str
    timeout: Annotated[float, msgspec.Meta(ge=0.0, le=MAX_WAIT_SECONDS)]


class CancelJob(_Msg, frozen=True):
    job_id: str


# ---------------------------------------------------------------- coordinator -> client


class JobAccepted(_Msg, frozen=True):
    job_id: str


class ErrorReply(_Msg, frozen=True):
    message: str


TaskStateName = Literal["waiting", "ready", "running", "committing", "done"]   # zmr.core.state.TaskState
JobStateName = Literal["queued", "running", "succeeded", "failed", "cancelled"]   # zmr.core.state.JobState


class TaskInfo(msgspec.Struct, frozen=True, array_like=True):
    kind: TaskKind
    index: int
    state: TaskStateName
    attempts: int
    worker: str
    started: float | None
    finished: float | None


class PartitionInfo(msgspec.Struct, frozen=True, array_like=True):
    partition: int
    owner: str
    bytes_in: int
    batches_in: int
    first_batch: float | None
    last_batch: float | None


class TimelinePoint(msgspec.Struct, frozen=True, array_like=True):
    """One sample of a job's life: live leases and progress at wall-clock time `t`."""

    t: float
    leases: int
    maps_done: int
    reduces_done: int
    bytes_shuffled: int


AttemptOutcome = Literal["running", "ok", "failed", "lost", "cancelled"]


class AttemptSpan(msgspec.Struct, frozen=True, array_like=True):
    """One attempt of a task as it ran: on which worker, from when to when, and how it ended.

    `ok` is the attempt whose output counts; `cancelled` lost a race (a backup or the original) or ended
    with its job; `lost` went with its worker or its timeout. `backup` marks an attempt started while
    another of the same task ran.
    """

    kind: TaskKind
    task: int
    number: int
    worker: str
    started: float
    ended: float | None
    outcome: AttemptOutcome
    backup: bool = False


class StepInfo(msgspec.Struct, frozen=True, array_like=True):
    """One step of a multi-step job, as its status shows it: the step job that runs it and its wave."""

    name: str
    job_id: str
    wave: int
    state: JobStateName
    maps_done: int
    maps_total: int
    reduces_done: int
    reduces_total: int
    bytes_shuffled: int
    leases: int = 0


class JobInfo(msgspec.Struct, frozen=True, array_like=True):
    job_id: str
    app_name: str
    state: JobStateName
    submitted: float
    started: float | None
    finished: float | None
    maps_done: int
    maps_total: int
    reduces_done: int
    reduces_total: int
    bytes_shuffled: int
    records_out: int
    output_dir: str
    error: str = ""
    tasks: list[TaskInfo] = []
    partitions: list[PartitionInfo] = []
    leases: int = 0
    timeline: list[TimelinePoint] = []
    output_format: OutputFormat = "text"
    compressed_inputs: int = 0   # input files read decompressed, each whole by one map task
    attempts: list[AttemptSpan] = []   # the first attempts of its life (see `attempts_dropped`)
    attempts_dropped: int = 0   # attempts made after the record was full, not in `attempts`
    steps: list[StepInfo] = []   # a multi-step job's steps (the counts above are its last step's)
    head: str = ""               # a step job: the job it is a step of (job lists show only that one)


class WorkerInfo(msgspec.Struct, frozen=True, array_like=True):
    worker_id: str
    data_addr: str
    state: str
    last_heartbeat: float
    task: str
    leases: int = 0
    rss: int = 0         # resident memory of the worker and its task process, bytes
    bytes_in: int = 0    # shuffle bytes it received, pushed to it or pulled by it
    bytes_out: int = 0   # shuffle bytes its map tasks produced


class StatusReply(_Msg, frozen=True):
    now: float
    jobs: list[JobInfo]
    workers: list[WorkerInfo]


# ---------------------------------------------------------------- worker -> coordinator


class Holding(msgspec.Struct, frozen=True, array_like=True):
    """What a worker still holds of one job: kept map output and partitions it received batches for."""

    job_id: str
    maps: list[tuple[int, int]] = []       # (map task, attempt) whose kept output is here
    partitions: list[int] = []


class Register(_Msg, frozen=True):
    """Joins the cluster, or comes back to a restarted coordinator with what survived."""

    worker_id: str
    data_addr: str
    python: str
    pid: int
    host: str
    holdings: list[Holding] = []
    running: AttemptId | None = None
    finished_maps: list[MapDone] = []     # recent map reports, which a restarted coordinator may have missed
    token: str = ""   # a random secret of this process's life: only its holder may register this id again


class PartitionStat(msgspec.Struct, frozen=True, array_like=True):
    """What an owner has received so far for one partition."""

    job_id: str
    partition: int
    bytes_in: int
    batches_in: int
    first_batch: float
    last_batch: float


class LeaseStat(msgspec.Struct, frozen=True, array_like=True):
    """How many leased resources (received partitions, kept partitions of map output) a job holds here."""

    job_id: str
    leases: int


class Heartbeat(_Msg, frozen=True):
    """Liveness plus progress: libzmq answers pings by itself, so only this proves the worker works."""

    worker_id: str
    task: str = ""
    progress: int = 0
    partitions: list[PartitionStat] = []
    leases: list[LeaseStat] = []
    rss: int = 0         # see WorkerInfo
    bytes_in: int = 0
    bytes_out: int = 0


class TaskRequest(_Msg, frozen=True):
    """The worker's slot is free; `finished` names the attempt it just ended (none: it was idle already).

    Naming it lets the coordinator tell a request that follows the current assignment from one that
    crossed it on the wire.
    """

    worker_id: str
    finished: AttemptId | None = None


class MapDone(_Msg, frozen=True):
    worker_id: str
    attempt: AttemptId
    records_out: int
    bytes_out: int


class ReduceDone(_Msg, frozen=True):
    """Output is written under a temporary name; the worker asks before renaming it into place.

    `received` is what the reducer got for its partition, final (heartbeats carry it only now and then).
    """

    worker_id: str
    attempt: AttemptId
    records_out: int
    received: PartitionStat | None = None


class FedMap(msgspec.Struct, frozen=True, array_like=True):
    """What a step job's reduce made as map `task` of the step job `job_id` it feeds (see StepLink)."""

    job_id: str
    task: int
    records_out: int
    bytes_out: int


class ReduceCommitted(_Msg, frozen=True):
    """The granted attempt renamed its output into place; or, for a step job that feeds others, its
    output went through their maps to their owners, and this worker keeps a copy (`fed`)."""

    worker_id: str
    attempt: AttemptId
    fed: list[FedMap] = []


class LocateMaps(_Msg, frozen=True):
    """A reduce attempt lacks the complete pushed output of these maps: where is their kept copy?

    The maps travel as runs `[start, end)`: a reduce that took a partition over lacks every map, one run.
    """

    worker_id: str
    attempt: AttemptId
    runs: list[tuple[int, int]]


def to_runs(tasks: Iterable[int]) -> list[tuple[int, int]]:
    """Task numbers as `[start, end)` runs, in order."""
    ordered = sorted(set(tasks))
    if ordered and ordered[-1] - ordered[0] + 1 == len(ordered):   # one run: every map, as a take-over asks
        return [(ordered[0], ordered[-1] + 1)]
    runs: list[tuple[int, int]] = []
    for task in ordered:
        if runs and runs[-1][1] == task:
            runs[-1] = (runs[-1][0], task + 1)
        else:
            runs.append((task, task + 1))
    return runs


LOCATE_RUNS = 64   # the most runs a reducer's LocateMaps (and so each PullMaps) carries: see coarse_runs


def coarse_runs(tasks: Iterable[int], most: int = LOCATE_RUNS) -> list[tuple[int, int]]:
    """`to_runs(tasks)` with the smallest gaps between runs filled until at most `most` runs are left.

    A partition that moved lacks most maps but holds scattered ones pushed to it since: thousands of
    runs, which a LocateMaps and every PullMaps would carry. Coarse runs keep both small at the cost of
    asking for some maps that are here already; a reducer keeps only the streams it lacks.
    """
    runs = to_runs(tasks)
    if len(runs) <= most:
        return runs
    by_size = sorted(range(len(runs) - 1), key=lambda i: runs[i + 1][0] - runs[i][1])
    kept = set(by_size[len(runs) - max(1, most):])   # the largest gaps stay
    out: list[tuple[int, int]] = []
    start = runs[0][0]
    for i in range(len(runs) - 1):
        if i in kept:
            out.append((start, runs[i][1]))
            start = runs[i + 1][0]
    out.append((start, runs[-1][1]))
    return out


def runs_filter(runs: list[tuple[int, int]]) -> Callable[[int], bool]:
    """A test of whether a task number is in `runs` (in any order, overlapping or not): O(log runs)."""
    merged: list[list[int]] = []
    for start, end in sorted(r for r in runs if r[0] < r[1]):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    starts = [start for start, _ in merged]

    def contains(task: int) -> bool:
        i = bisect.bisect_right(starts, task) - 1
        return i >= 0 and task < merged[i][1]
    return contains


def from_runs(runs: list[tuple[int, int]], limit: int) -> set[int]:
    """The task numbers `runs` name, below `limit` (a run outside [0, limit) names nothing past it)."""
    out: set[int] = set()
    for start, end in runs:
        out.update(range(max(0, start), min(end, limit)))
    return out


class SetupRequest(_Msg, frozen=True):
    """The worker missed an owner update of this job (its epoch is behind): send the job's setup again."""

    worker_id: str
    job_id: str


FailureKind = Literal["app", "io", "missing_data", "internal", "invalid"]
"""Why an attempt failed: the app raised; an I/O error; its input was lost; a worker's own bug; or
"invalid", a broken contract zmr detected (the app's output, its module, an input that is not text),
which running it again would only repeat, so the job fails at once."""


class TaskFailed(_Msg, frozen=True):
    worker_id: str
    attempt: AttemptId
    kind: FailureKind
    error: str
    traceback: str = ""
    missing_maps: list[int] = []


# ---------------------------------------------------------------- coordinator -> worker


class Welcome(_Msg, frozen=True):
    worker_id: str
    heartbeat_interval: float


class Reject(_Msg, frozen=True):
    reason: str


class RegisterAgain(_Msg, frozen=True):
    """Sent to a peer the coordinator does not know (e.g. after the coordinator restarted)."""


class Ping(_Msg, frozen=True):
    """Proves the coordinator alive and renews the leases of `jobs` on this worker for `lease_ttl` s."""

    jobs: list[str] = []
    lease_ttl: float = 0.0


class JobSetup(_Msg, frozen=True):
    """Everything a worker needs to run tasks of a job; sent again when the worker lost track of owners.

    Partition owners travel compactly, in O(workers + moved partitions) rather than O(partitions):
    partition p is owned by `peers[cycle[p % len(cycle)]]` unless `moved` names it (then by
    `peers[moved[p]]`); see `owner_table`.
    """

    job_id: str
    app_blob: bytes
    args: list[str]
    n_reduce: int
    peers: list[str]            # data addresses ("" for an owner that is gone)
    cycle: list[int]            # indices into peers, repeated over the partitions
    moved: dict[int, int]       # partition -> index into peers, where it differs from the cycle
    owners_epoch: int
    push: bool
    batch_bytes: int
    window_bytes: int
    lease_ttl: float = 30.0
    released: PartitionSet = PartitionSet()   # partitions already committed: nothing of them is kept
    compression: Compression = "none"   # of the map output chunks this worker makes
    output_format: OutputFormat = "text"
    py_files: list[bytes] = []
    replicate: bool = False     # a mapper also pushes the output of the partitions it owns to their replica
    step: int = -1              # a step job (see JobSpec.step): its functions are that step's
    feeds: list[StepLink] = []  # ... and its reduces feed these step jobs' maps


def owner_table(setup: JobSetup) -> tuple[str, ...]:
    """Every partition's owner address, from a JobSetup's compact form; refuses an inconsistent one."""
    peers, cycle = setup.peers, setup.cycle
    if setup.n_reduce and not cycle:
        raise ValueError("a JobSetup with partitions needs a non-empty owner cycle")
    if any(not 0 <= i < len(peers) for i in cycle) or any(
            not 0 <= p < setup.n_reduce or not 0 <= i < len(peers) for p, i in setup.moved.items()):
        raise ValueError("a JobSetup's owner table points outside its peers or partitions")
    return tuple(peers[setup.moved[p]] if p in setup.moved else peers[cycle[p % len(cycle)]]
                 for p in range(setup.n_reduce))


def replica_owner(owners: Sequence[T], partition: int) -> T | None:
    """Who keeps the second copy of the map output a partition's owner makes for its own partition: the
    owner of the next partition (cyclically) that another owner holds; None when one owner holds all.

    A mapper's output for the partitions it owns lives on that worker alone; with `shuffle.replicate`
    it pushes a second copy there, so that when it dies the new owners of those partitions need not wait
    for its maps to run again. Mapper and coordinator both derive the replica from the owner table, so
    it costs no message; where their tables differ (an owner moved meanwhile), the reducer misses that
    copy and waits for the maps, as without one.
    """
    n = len(owners)
    if not 0 <= partition < n:
        return None
    own = owners[partition]
    for step in range(1, n):
        other = owners[(partition + step) % n]
        if other != own:
            return other
    return None


class OwnersUpdate(_Msg, frozen=True):
    """Partitions moved to new owners: every partition moved since `base_epoch`, with its owner at
    `owners_epoch`, so it makes `owners_epoch` of a table at any epoch from `base_epoch` on (a worker
    set up between two updates has such a table).

    A worker whose epoch is before `base_epoch` missed an update: it asks for the job's setup again
    (`SetupRequest`) rather than apply a change to a table it does not have.
    """

    job_id: str
    base_epoch: int
    owners_epoch: int
    moves: dict[int, str]       # partition -> its new owner's data address ("" if none is alive)


class AssignMap(_Msg, frozen=True):
    attempt: AttemptId
    split: InputSplit


class AssignReduce(_Msg, frozen=True):
    """Run one reduce over the committed output of the job's `n_maps` maps.

    Which attempt of each map counts is a table the worker keeps per job, sent as changes: attempt 1
    unless the table says otherwise. `commits` are the table's changes from position `commits_base`
    of the job's commit log on (from 0: the worker starts a fresh table), so each worker gets each
    change once. Where a committed map's output is kept is asked for only when needed (`LocateMaps`).
    """

    attempt: AttemptId
    output_dir: str
    n_maps: int
    commits_base: int
    commits: list[tuple[int, int]]   # (map task, its committed attempt), in commit order


class MapLocations(_Msg, frozen=True):
    """The answer to a LocateMaps: which live peers keep the committed output of the asked maps.

    A reduce that took a partition over asks about every map, so the answer must not grow with the
    maps. When the asked maps outnumber what naming them per peer would save, it says only how many of
    them each peer keeps (`counts`), and the reducer asks each peer for all the asked maps it keeps; the
    answer is then O(peers). Otherwise it lists them per peer (`maps`). Asked maps no live worker keeps
    are `nowhere`. `commits` names the asked maps committed again since the attempt's commit table was
    made (their attempt now), and those none of whose attempts is committed now (0); for the others the
    table is right. Maps kept nowhere whose output for the asking partition has a second copy (their
    dead mapper owned the partition: see `replica_owner`) are named per `replicas` peer, as runs in
    `replica_runs`, with the attempts the copies are of in `commits`, and pulled from what that peer
    received. `peer_requests` unpacks it; `check_locations` refuses one whose lists do not match.
    """

    attempt: AttemptId
    peers: list[str]
    maps: list[list[int]] = []   # per peer, in the order of `peers`, the asked maps it keeps ...
    counts: list[int] = []       # ... or, instead, how many of them it keeps
    nowhere: list[int] = []
    commits: dict[int, int] = {}
    replicas: list[str] = []
    replica_runs: list[list[tuple[int, int]]] = []


class PeerRequest(NamedTuple):
    """What a reducer asks one peer for: its kept output of the maps in `runs`, `expected` of them (with
    `received`: the second copies it was pushed, see `replica_owner`)."""

    addr: str
    runs: list[tuple[int, int]]
    expected: int
    received: bool = False


def check_locations(msg: MapLocations) -> None:
    """ValueError unless the answer's per-peer lists (or counts) match its peers."""
    if msg.counts and (msg.maps or len(msg.counts) != len(msg.peers)):
        raise ValueError(f"a MapLocations names {len(msg.peers)} peers, {len(msg.counts)} counts and "
                         f"{len(msg.maps)} lists of maps")
    if not msg.counts and len(msg.maps) != len(msg.peers):
        raise ValueError(f"a MapLocations names {len(msg.peers)} peers and {len(msg.maps)} lists of maps")
    if len(msg.replicas) != len(msg.replica_runs):
        raise ValueError(f"a MapLocations names {len(msg.replicas)} replicas and {len(msg.replica_runs)} "
                         "lists of their maps")


def peer_requests(msg: MapLocations, asked: list[tuple[int, int]]) -> list[PeerRequest]:
    """One request per peer the answer names, for the maps of the LocateMaps that asked (`asked`, as runs)."""
    check_locations(msg)
    copies = [PeerRequest(addr, runs, sum(end - start for start, end in runs), received=True)
              for addr, runs in zip(msg.replicas, msg.replica_runs, strict=True)]
    if msg.counts:
        return [*copies, *(PeerRequest(addr, asked, n) for addr, n in zip(msg.peers, msg.counts, strict=True))]
    return [*copies, *(PeerRequest(addr, to_runs(tasks), len(tasks))
                       for addr, tasks in zip(msg.peers, msg.maps, strict=True))]


class SourcesLost(_Msg, frozen=True):
    """The worker at data address `addr` was declared dead while this reduce attempt ran.

    Its kept map output died with it, so the attempt pulls none of it: unless the pushed streams from
    that worker are complete here, it fails at once with missing data and runs again once those maps
    have, instead of waiting for pulls from a dead peer to time out.
    """

    attempt: AttemptId
    addr: str


class CommitDecision(_Msg, frozen=True):
    attempt: AttemptId
    ok: bool


class CancelTask(_Msg, frozen=True):
    attempt: AttemptId


class JobEnded(_Msg, frozen=True):
    """The job is over (or not this worker's any more): it drops everything it holds for it."""

    job_id: str


class ReleasePartitions(_Msg, frozen=True):
    """These partitions are committed: their received batches and kept map output are garbage now."""

    job_id: str
    partitions: PartitionSet


# ---------------------------------------------------------------- worker <-> worker (data plane)


class Batch(_Msg, frozen=True):
    """Header of a batch of one map attempt's records for one partition; the payload is the next frame."""

    source: AttemptId   # the map attempt that made it
    partition: int
    seq: int
    n_records: int


class StreamEnd(_Msg, frozen=True):
    """A map attempt is done: how many batches (zero included) it made for each partition the receiver owns.

    A partition not listed was not this receiver's when the map ended; its reducer pulls it instead.
    """

    source: AttemptId
    counts: dict[int, int]


class BatchAck(_Msg, frozen=True):
    """Returns byte credit to the sender once a batch is stored."""

    source: AttemptId
    partition: int
    seq: int
    nbytes: int


class PullMaps(_Msg, frozen=True):
    """Fallback: a reducer asks a mapper for its kept copy of one partition of every finished map
    attempt it keeps among the maps in `runs` (one request per peer, however many maps)."""

    job_id: str
    partition: int
    runs: list[tuple[int, int]]
    received: bool = False   # serve the complete streams of this partition pushed here instead (second copies)


class PullEnd(_Msg, frozen=True):
    """Closes a pull reply: the map attempts served, each `(map, attempt, n_batches)` with that many
    batches of it before this message (none served: the peer keeps none of them)."""

    job_id: str
    partition: int
    served: list[tuple[int, int, int]]


ClientToCoord = SubmitJob | StatusRequest | WaitJob | CancelJob
WorkerToCoord = (
    Register | Heartbeat | TaskRequest | MapDone | ReduceDone | ReduceCommitted | TaskFailed | LocateMaps
    | SetupRequest
)
ToCoordinator = ClientToCoord | WorkerToCoord
CoordToClient = JobAccepted | ErrorReply | StatusReply
CoordToWorker = (
    Welcome | Reject | RegisterAgain | Ping | JobSetup | OwnersUpdate | AssignMap | AssignReduce
    | MapLocations | SourcesLost | CommitDecision | CancelTask | JobEnded | ReleasePartitions
)
FromCoordinator = CoordToClient | CoordToWorker
DataMessage = Batch | StreamEnd | BatchAck | PullMaps | PullEnd
