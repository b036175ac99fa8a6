"""The coordinator's journal: typed records of every state change, and their checksummed on-disk framing.

A record is framed as `length (4 bytes LE) | crc32 (4 bytes LE) | msgpack body`. Reading stops at the
first frame that is short, fails its checksum or does not decode. Only a crash in the middle of an append
explains such a frame at the very end: then it reaches the end of the data (or all that follows it is
zero bytes, as a file extended but never written reads back) and no intact frame starts after it: that
is a *torn* tail, and the records before it are the whole truth. Anything else is *damage*: records were
written after the bad frame, so dropping it and what follows would silently rewrite history.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

import msgspec

from zmr.protocol.messages import JobInfo, JobSpec

JOURNAL_VERSION = 2
_HEAD = struct.Struct("<II")
MAX_RECORD_BYTES = 1 << 30


class _Rec(msgspec.Struct, frozen=True, tag=True, array_like=True, forbid_unknown_fields=True):
    """Base of every journal record."""


class Header(_Rec, frozen=True):
    """First record of a journal file: its format version, and the next job number to hand out."""

    version: int
    next_job: int


class WorkerJoined(_Rec, frozen=True):
    worker_id: str
    data_addr: str
    key: str = ""   # the CURVE public key it registered with (z85): after a restart only that key may claim it


class JobSubmitted(_Rec, frozen=True):
    job_id: str
    number: int
    spec: JobSpec
    submitted: float


class JobStarted(_Rec, frozen=True):
    job_id: str
    started: float
    owners: list[str]


class OwnersMoved(_Rec, frozen=True):
    """Partitions moved to new owners (worker ids), making owner epoch `epoch`."""

    job_id: str
    moves: dict[int, str]
    epoch: int


class TaskAssigned(_Rec, frozen=True):
    """Attempt numbers are never reused, across restarts too: a worker may still hold an old attempt's data."""

    job_id: str
    kind: str
    task: int
    attempt: int
    worker_id: str


class MapCommitted(_Rec, frozen=True):
    job_id: str
    task: int
    attempt: int
    worker_id: str
    records_out: int
    bytes_out: int
    finished: float


class MapUncommitted(_Rec, frozen=True):
    job_id: str
    task: int


class CommitGranted(_Rec, frozen=True):
    """A reduce attempt was allowed to rename its output into place."""

    job_id: str
    task: int
    attempt: int
    worker_id: str
    records_out: int = 0


class CommitRevoked(_Rec, frozen=True):
    """The granted attempt failed or was lost before it confirmed the rename."""

    job_id: str
    task: int


class CommitConfirmed(_Rec, frozen=True, tag="ReduceCommitted"):
    """The granted reduce attempt renamed its output into place: the reduce is done.

    (Tagged with its old name, which the journal format keeps.)"""

    job_id: str
    task: int
    attempt: int
    worker_id: str
    records_out: int
    finished: float


class ReduceReopened(_Rec, frozen=True):
    """A committed reduce of a step job must run again: the map output it fed a later step was lost
    with its worker (see JobSpec.feeds). Its partition's input is still held, so only it runs again."""

    job_id: str
    task: int


class TaskSetback(_Rec, frozen=True):
    """A task's failure counts so far (absolute, so replaying a record twice changes nothing): without
    them a restarted coordinator would forgive every failure, and a task that always fails (a map that
    never returns, say) could run for ever under a coordinator that restarts often enough."""

    job_id: str
    kind: str
    task: int
    app_failures: int
    worker_losses: int


class JobConcluded(_Rec, frozen=True, tag="JobEnded"):
    """The job reached its final state. (Tagged with its old name, which the journal format keeps.)"""

    job_id: str
    state: str
    error: str
    finished: float


class OutputFinished(_Rec, frozen=True):
    """The ended job's output step is done (`_SUCCESS` written, or partial output removed)."""

    job_id: str


class EndedJob(_Rec, frozen=True):
    """A compacted ended job: its final status is all that is kept (not its app or inputs)."""

    number: int
    info: JobInfo


Record = (
    Header | WorkerJoined | JobSubmitted | JobStarted | OwnersMoved | TaskAssigned | MapCommitted
    | MapUncommitted | CommitGranted | CommitRevoked | CommitConfirmed | ReduceReopened | TaskSetback | JobConcluded
    | OutputFinished | EndedJob
)

_ENCODER = msgspec.msgpack.Encoder()
_DECODER: msgspec.msgpack.Decoder[Record] = msgspec.msgpack.Decoder(Record)


def frame(record: Record) -> bytes:
    body = _ENCODER.encode(record)
    return _HEAD.pack(len(body), zlib.crc32(body)) + body


@dataclass(frozen=True)
class Parsed:
    records: list[Record]
    good_bytes: int      # the length of the intact prefix
    problem: str         # why reading stopped before the end, or ''
    torn: bool = False   # the problem is a torn last write (see the module docstring), not damage

    @property
    def damaged(self) -> bool:
        """Reading stopped before records that were written after the bad frame: they must not be dropped."""
        return bool(self.problem) and not self.torn


def parse(data: bytes) -> Parsed:
    """Every intact record from the start of `data`, up to the first torn or damaged one."""
    records: list[Record] = []
    pos = 0
    while pos < len(data):
        record, end, problem = _frame_at(data, pos)
        if record is None:
            return Parsed(records, pos, problem, _is_torn_tail(data, pos, end))
        records.append(record)
        pos = end
    return Parsed(records, pos, "")


def _frame_at(data: bytes, pos: int) -> tuple[Record | None, int, str]:
    """The record framed at `pos` and where its frame ends (claimed end if bad), or None and why not."""
    if len(data) - pos < _HEAD.size:
        return None, len(data) + 1, f"torn record header at byte {pos}"
    length, crc = _HEAD.unpack_from(data, pos)
    end = pos + _HEAD.size + length
    if length > MAX_RECORD_BYTES or end > len(data):
        return None, end, f"torn record at byte {pos}"
    body = memoryview(data)[pos + _HEAD.size:end]
    if zlib.crc32(body) != crc:
        return None, end, f"checksum mismatch at byte {pos}"
    try:
        return _DECODER.decode(body), end, ""
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        return None, end, f"undecodable record at byte {pos}: {exc}"


# A record's body is a msgpack array (its tag, then its fields): where a frame may start, this byte follows.
_BODY_START = re.compile(rb"[\x90-\x9f\xdc\xdd]")


def _is_torn_tail(data: bytes, pos: int, end: int) -> bool:
    """Does the bad frame at `pos` run to the end of `data`, with nothing intact written after it?"""
    reaches_end = end >= len(data) or not data[end:].strip(b"\0")
    return reaches_end and next_intact_frame(data, pos + 1) is None


def next_intact_frame(data: bytes, start: int) -> int | None:
    """The first offset at or after `start` where a whole frame passes its checksum and decodes."""
    for match in _BODY_START.finditer(data, start + _HEAD.size):
        pos = match.start() - _HEAD.size
        length, crc = _HEAD.unpack_from(data, pos)
        end = pos + _HEAD.size + length
        if length and end <= len(data) and zlib.crc32(memoryview(data)[pos + _HEAD.size:end]) == crc \
                and _frame_at(data, pos)[0] is not None:
            return pos
    return None


def version_problem(records: list[Record]) -> str:
    """Why these records must not be replayed by this zmr ('' if they may): they are of another format."""
    first = records[0] if records else None
    if isinstance(first, Header) and first.version != JOURNAL_VERSION:
        return f"it is in journal format version {first.version}, and this zmr reads version {JOURNAL_VERSION}"
    return ""


def output_dirs(records: list[Record]) -> set[str]:
    """The output directories of the jobs these records submit: what a restart checks for `_SUCCESS`."""
    return {r.spec.output_dir for r in records if isinstance(r, JobSubmitted)}
