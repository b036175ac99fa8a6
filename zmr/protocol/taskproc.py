"""The local channel between a worker and its task process: typed records, one per zmq frame.

The worker (the driver) keeps the protocol with the coordinator and its peers; the task process runs
app code. The worker says what to run (`RunMap`, `RunReduce`) and what changed (`JobUpdate`); the task
process answers with progress (`Tick`) and one result per task (`MapResult`, `ReduceResult` or
`TaskError`). A map's batches never travel here: the task process pushes them to their owners itself.
"""

from __future__ import annotations

from typing import Literal, TypeVar

import msgspec

from zmr.protocol.messages import AttemptId, Compression, InputSplit, OutputFormat


class _Rec(msgspec.Struct, frozen=True, tag=True, array_like=True, forbid_unknown_fields=True):
    """Base of the channel's records: tagged by class name, encoded as a msgpack array."""


# ---------------------------------------------------------------- worker -> task process


class ProcSetup(_Rec, frozen=True):
    """Sent once, first: what a task process needs from the worker's configuration."""

    worker_id: str
    max_message_bytes: int
    ack_timeout: float
    memory_budget: int
    task_memory_mb: int
    peer_public: bytes = b""        # CURVE keys for pushing to peers; empty when security is off
    peer_secret: bytes = b""
    peer_server_key: bytes = b""
    data_addr: str = ""             # this worker's data address, as owner tables name it


class JobInfo(_Rec, frozen=True):
    """A job's app and shuffle settings, sent before its first task on this process."""

    job_id: str
    app_blob: bytes
    args: list[str]
    n_reduce: int
    push: bool
    batch_bytes: int
    window_bytes: int
    owners: list[str]
    owners_epoch: int
    compression: Compression = "none"
    output_format: OutputFormat = "text"
    py_paths: list[str] = []   # archives of the job's --py-files, on this worker's disk: on sys.path for it
    replicate: bool = False    # push the output of partitions this worker owns to their replica too
    step: int = -1             # a step job: the app's step whose functions it runs (see zmr.steps)


class JobUpdate(_Rec, frozen=True):
    """Partition owners moved: a running map pushes to the new ones from its next batch."""

    job_id: str
    owners: list[str]
    owners_epoch: int


V = TypeVar("V")
JOBS_KEPT = 4   # jobs (their apps loaded) a task process keeps; older ones are sent again when needed


def keep_latest(jobs: dict[str, V], job_id: str, value: V) -> None:
    """Add a job a task process is sent, dropping the oldest beyond JOBS_KEPT. The task process (for
    its apps) and the worker (for what it has sent) both keep jobs by this one rule, so the worker
    knows which jobs it must send again: a job the process dropped while the worker thought it known
    failed every later task of that job with a KeyError, once four newer jobs had passed through."""
    jobs[job_id] = value
    while len(jobs) > JOBS_KEPT:
        del jobs[next(iter(jobs))]


class ForgetJob(_Rec, frozen=True):
    job_id: str


class RunMap(_Rec, frozen=True):
    attempt: AttemptId
    split: InputSplit
    kept_dir: str                  # where the map's kept copy goes: one file per partition
    released: list[int] = []       # partitions already committed: no batch of theirs is kept or sent


class Feed(msgspec.Struct, frozen=True, array_like=True):
    """A reduce of a step job that feeds another: its output pairs go through that job's map as this
    map attempt, kept in `kept_dir` and pushed to that job's owners, as a map's would be."""

    attempt: AttemptId
    kept_dir: str
    released: list[int] = []


class RunReduce(_Rec, frozen=True):
    attempt: AttemptId
    runs: list[tuple[str, int, int]]   # (path, offset, length) of every batch to merge
    tmp_path: str
    scratch: str
    fan_in: int
    feeds: list[Feed] = []   # a step job's reduce feeding later steps writes no output: it feeds these


ToProc = ProcSetup | JobInfo | JobUpdate | ForgetJob | RunMap | RunReduce


# ---------------------------------------------------------------- task process -> worker


class Ready(_Rec, frozen=True):
    pid: int


class Tick(_Rec, frozen=True):
    """The task moved on by `progress` units of work since the last Tick; sent at most a few times a second.

    Its pace (units per second) is what the coordinator compares with the job's other tasks' to find a
    map far slower than the rest, so a unit is a piece of work (a chunk read, a few thousand pairs, a
    batch sent, a bounded wait on an owner), never a slice of time alone.
    """

    progress: int


class Kept(msgspec.Struct, frozen=True, array_like=True):
    """One batch of the map's kept copy, whole on disk when reported."""

    partition: int
    offset: int
    length: int


class MapResult(_Rec, frozen=True):
    records_out: int
    bytes_out: int
    kept: list[Kept]


class ReduceResult(_Rec, frozen=True):
    records_out: int
    fed: list[MapResult] = []   # one per RunReduce.feeds, in its order


class TaskError(_Rec, frozen=True):
    kind: Literal["app", "io", "invalid"]   # see messages.FailureKind
    error: str
    traceback: str = ""
    fatal: bool = False   # the process may be damaged (e.g. after a MemoryError): replace it


FromProc = Ready | Tick | MapResult | ReduceResult | TaskError

_ENCODER = msgspec.msgpack.Encoder()
_TO_PROC: msgspec.msgpack.Decoder[ToProc] = msgspec.msgpack.Decoder(ToProc)
_FROM_PROC: msgspec.msgpack.Decoder[FromProc] = msgspec.msgpack.Decoder(FromProc)


def encode_rec(rec: msgspec.Struct) -> bytes:
    return _ENCODER.encode(rec)


def decode_to_proc(frame: bytes) -> ToProc:
    """Raises msgspec.DecodeError/ValidationError on anything malformed."""
    return _TO_PROC.decode(frame)


def decode_from_proc(frame: bytes) -> FromProc:
    """Raises msgspec.DecodeError/ValidationError on anything malformed."""
    return _FROM_PROC.decode(frame)
