"""The coordinator's journal: typed records of every state change, and their checksummed on-disk framing.

A record is framed as `length (4 bytes LE) | crc32 (4 bytes LE) | msgpack body`. Reading stops at the
first frame that is short, fails its checksum or does not decode: that is a torn write from a crash (or
damage), so everything before it is trusted and nothing after it is.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import msgspec

from zmr.protocol.messages import JobInfo, JobSpec

JOURNAL_VERSION = 1
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
    job_id: str
    owners: list[str]
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


class ReduceCommitted(_Rec, frozen=True):
    job_id: str
    task: int
    attempt: int
    worker_id: str
    records_out: int
    finished: float


class JobEnded(_Rec, frozen=True):
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
    | MapUncommitted | CommitGranted | CommitRevoked | ReduceCommitted | JobEnded | OutputFinished | EndedJob
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


def parse(data: bytes) -> Parsed:
    """Every intact record from the start of `data`, up to the first torn or damaged one."""
    records: list[Record] = []
    pos = 0
    view = memoryview(data)
    while pos < len(data):
        if len(data) - pos < _HEAD.size:
            return Parsed(records, pos, f"torn record header at byte {pos}")
        length, crc = _HEAD.unpack_from(data, pos)
        body = view[pos + _HEAD.size:pos + _HEAD.size + length]
        if length > MAX_RECORD_BYTES or len(body) < length:
            return Parsed(records, pos, f"torn record at byte {pos}")
        if zlib.crc32(body) != crc:
            return Parsed(records, pos, f"checksum mismatch at byte {pos}")
        try:
            records.append(_DECODER.decode(body))
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
            return Parsed(records, pos, f"undecodable record at byte {pos}: {exc}")
        pos += _HEAD.size + length
    return Parsed(records, pos, "")
