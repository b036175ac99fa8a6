"""A worker's intermediate data on disk: what it received as an owner, and the map output it keeps.

Both are append-only files with an in-memory index, shared between the data thread (which receives
pushes and serves pulls) and the executor thread (which writes map output and reads reduce input),
so every index access holds the store's lock.

Data exists only under a lease. A job's data can be stored only once the job is opened (its lease
granted); each partition is one file per store, which is one lease, deleted as soon as that
partition's reduce commits; everything of a job lives under `root/<job>/` and goes in one go when
the job ends or its lease expires.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from zmr.protocol.messages import PartitionStat

Segment = tuple[int, int]  # (offset, length) in a file


def _safe_name(job_id: str) -> str:
    """A job id as a single path component; ids come from the network, so never trust them as paths."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in job_id)[:64] or "_"


def py_files_dir(work_dir: Path, job_id: str) -> Path:
    """Where a worker keeps a job's --py-files archives; removed with the job."""
    return work_dir / "pyfiles" / _safe_name(job_id)


def _append(path: Path, payload: bytes | memoryview) -> int:
    with open(path, "ab") as f:
        offset = f.tell()
        f.write(payload)
    return offset


def _read(path: Path, segment: Segment) -> bytes:
    with open(path, "rb") as f:
        f.seek(segment[0])
        return f.read(segment[1])


@dataclass
class _Partition:
    path: Path
    received: dict[tuple[int, int], dict[int, Segment]] = field(default_factory=dict)  # (map, attempt) -> seq
    bytes_in: int = 0
    first: float = 0.0
    last: float = 0.0


@dataclass
class _JobReceipts:
    folder: Path
    n_partitions: int
    parts: dict[int, _Partition] = field(default_factory=dict)
    ends: dict[tuple[int, int], dict[int, int]] = field(default_factory=dict)   # (map, attempt) -> counts
    pulled: dict[tuple[int, int, int], int] = field(default_factory=dict)      # (map, attempt, p) -> count
    released: set[int] = field(default_factory=set)

    def partition(self, p: int) -> _Partition:
        part = self.parts.get(p)
        if part is None:
            if p in self.released:
                raise OSError(f"partition {p} is committed and released")
            self.folder.mkdir(parents=True, exist_ok=True)
            part = self.parts[p] = _Partition(self.folder / f"p{p}.data")
        return part


def _in_order(part: _Partition, map_task: int, attempt: int) -> list[Segment]:
    """Where the batches of one (map, attempt) stream of a partition lie, by sequence number."""
    seqs = part.received.get((map_task, attempt), {})
    return [seqs[s] for s in sorted(seqs)]


def _stat(job_id: str, partition: int, part: _Partition) -> PartitionStat:
    return PartitionStat(job_id=job_id, partition=partition, bytes_in=part.bytes_in,
                         batches_in=sum(len(s) for s in part.received.values()),
                         first_batch=part.first, last_batch=part.last)


class _JobFiles(Protocol):
    parts: Any       # partition -> a record with the `path` of its file
    released: set[int]


J = TypeVar("J", bound=_JobFiles)


class _LeasedFiles(Generic[J]):
    """What both stores share: a lock, the open jobs, and the lease bookkeeping of their partition files."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._lock = threading.Lock()
        self._jobs: dict[str, J] = {}

    def job_ids(self) -> set[str]:
        with self._lock:
            return set(self._jobs)

    def lease_counts(self) -> dict[str, int]:
        """Partition files held per job: one lease each."""
        with self._lock:
            return {job_id: len(job.parts) for job_id, job in self._jobs.items() if job.parts}

    def drop_partition(self, job_id: str, partition: int) -> None:
        """The partition is committed: its file is garbage, and later data for it is refused."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return
            job.released.add(partition)
            part = job.parts.pop(partition, None)
            self._forget_partition(job, partition)
        if part is not None:
            part.path.unlink(missing_ok=True)

    def drop_job(self, job_id: str) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)
        shutil.rmtree(self._root / _safe_name(job_id), ignore_errors=True)

    def _forget_partition(self, job: J, partition: int) -> None:
        """Called under the lock when a partition is released: drop any other state of it."""


class ReceiveStore(_LeasedFiles[_JobReceipts]):
    """Batches pushed (or pulled) to this worker, per (job, partition, map task, attempt)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self._arrived = threading.Condition(self._lock)
        self._arrivals = 0   # batches and stream ends stored so far, of any job
        self.bytes_received = 0   # payload bytes of every batch stored, of any job, for the worker's heartbeat

    def await_streams(self, job_id: str, partition: int, sources: list[tuple[int, int]],
                      settle: float, limit: float) -> None:
        """Wait while the pushed streams of `sources` (map task, attempt) are still coming in.

        Returns once all are complete, once nothing arrived for `settle` s, or after `limit` s: a map
        reports done as soon as its batches are on the wire, so the last ones may land just after.
        """
        deadline = time.monotonic() + limit
        with self._arrived:
            while not all(self._complete(job_id, partition, task, attempt) for task, attempt in sources):
                seen = self._arrivals
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._arrived.wait(min(settle, remaining))
                if self._arrivals == seen:
                    return

    def _arrival(self) -> None:
        """Called under the lock whenever a batch or a stream end is stored."""
        self._arrivals += 1
        self._arrived.notify_all()

    def open_job(self, job_id: str, n_partitions: int) -> None:
        """From now on, batches of this job's partitions are stored here (until it is dropped)."""
        with self._lock:
            if job_id not in self._jobs:
                self._jobs[job_id] = _JobReceipts(self._root / _safe_name(job_id) / "recv", n_partitions)

    def add_batch(self, job_id: str, map_task: int, attempt: int, partition: int, seq: int,
                  payload: bytes | memoryview, now: float) -> bool:
        """Store a batch once; False if the job is not open here or the batch is a duplicate."""
        with self._lock:
            job = self._job(job_id)
            if job is None or partition in job.released or not 0 <= partition < job.n_partitions:
                return False
            part = job.partition(partition)
            seqs = part.received.setdefault((map_task, attempt), {})
            if seq in seqs:
                return False
            seqs[seq] = (_append(part.path, payload), len(payload))
            part.bytes_in += len(payload)
            self.bytes_received += len(payload)
            part.first = part.first or now
            part.last = now
            self._arrival()
            return True

    def add_end(self, job_id: str, map_task: int, attempt: int, counts: dict[int, int]) -> None:
        """A map attempt's end-of-stream: batch counts (zeros too) for the partitions this worker owned, or
        holds the second copy of. Counts of one attempt never change, so a later end only adds to them."""
        with self._lock:
            job = self._job(job_id)
            if job is not None:
                job.ends.setdefault((map_task, attempt), {}).update(counts)
                self._arrival()

    def set_pulled(self, job_id: str, map_task: int, attempt: int, partition: int, count: int) -> None:
        """A pull says how many batches one partition of a map attempt has."""
        with self._lock:
            job = self._job(job_id)
            if job is not None:
                job.pulled[(map_task, attempt, partition)] = count

    def complete(self, job_id: str, partition: int, map_task: int, attempt: int) -> bool:
        """Has every batch of this map attempt for this partition arrived?"""
        with self._lock:
            return self._complete(job_id, partition, map_task, attempt)

    def _complete(self, job_id: str, partition: int, map_task: int, attempt: int) -> bool:
        job = self._jobs.get(job_id)
        if job is None:
            return False
        expected = job.pulled.get((map_task, attempt, partition))
        if expected is None:
            counts = job.ends.get((map_task, attempt), {})
            if partition not in counts:
                return False  # this worker did not own the partition when the map ended: pull it
            expected = counts[partition]
        part = job.parts.get(partition)
        have = len(part.received.get((map_task, attempt), {})) if part else 0
        return have == expected

    def complete_streams(self, job_id: str, partition: int, wanted: Callable[[int], bool]) -> list[tuple[int, int]]:
        """The (map, attempt) streams of a partition whose every batch arrived here, among the maps `wanted`
        accepts, in order: the ones a replica may serve (see `zmr.protocol.messages.replica_owner`)."""
        with self._lock:
            job = self._jobs.get(job_id)
            part = job.parts.get(partition) if job else None
            if part is None:
                return []
            return sorted(key for key in part.received
                          if wanted(key[0]) and self._complete(job_id, partition, *key))

    def read_stream(self, job_id: str, map_task: int, attempt: int, partition: int) -> list[bytes] | None:
        """A stream's batches in order; None once the partition is released (or the job gone)."""
        with self._lock:
            part = self._part(job_id, partition)
            if part is None:
                return None
            segments, path = _in_order(part, map_task, attempt), part.path
        return [_read(path, seg) for seg in segments]

    def segments(self, job_id: str, partition: int, map_task: int, attempt: int) -> list[Segment]:
        with self._lock:
            part = self._part(job_id, partition)
            return _in_order(part, map_task, attempt) if part else []

    def _part(self, job_id: str, partition: int) -> _Partition | None:
        job = self._jobs.get(job_id)
        return job.parts.get(partition) if job else None

    def path(self, job_id: str, partition: int) -> Path:
        """The file holding a partition's batches (created empty if nothing arrived)."""
        with self._lock:
            job = self._job(job_id)
            if job is None:
                raise OSError(f"job {job_id} has ended on this worker")
            part = job.partition(partition)
            part.path.touch()
            return part.path

    def scratch(self, job_id: str, partition: int, attempt: int) -> Path:
        """Where a reduce attempt may spill merged runs; removed with the job at the latest."""
        return self._root / _safe_name(job_id) / "merge" / f"p{partition}-a{attempt}"

    def staging(self, job_id: str) -> Path:
        """Where reduce attempts write output bound for an object store before uploading it; removed with
        the job at the latest."""
        return self._root / _safe_name(job_id) / "staged"

    def forget(self, job_id: str, partition: int, map_task: int, attempt: int) -> None:
        """Drop a partial stream before pulling it whole again."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                if partition in job.parts:
                    job.parts[partition].received.pop((map_task, attempt), None)
                job.pulled.pop((map_task, attempt, partition), None)

    def stats(self) -> list[PartitionStat]:
        """What arrived so far for every partition held here (for heartbeats)."""
        with self._lock:
            return [_stat(job_id, p, part) for job_id, job in self._jobs.items() for p, part in job.parts.items()]

    def stat(self, job_id: str, partition: int) -> PartitionStat:
        """What arrived for one partition (pushed or pulled)."""
        with self._lock:
            job = self._jobs.get(job_id)
            part = job.parts.get(partition) if job else None
            return _stat(job_id, partition, part or _Partition(Path()))

    def partitions(self, job_id: str) -> list[int]:
        with self._lock:
            job = self._jobs.get(job_id)
            return sorted(job.parts) if job else []

    def _forget_partition(self, job: _JobReceipts, partition: int) -> None:
        for key in [k for k in job.pulled if k[2] == partition]:
            del job.pulled[key]

    def _job(self, job_id: str) -> _JobReceipts | None:
        """The job's receipts; None unless the job is open here."""
        return self._jobs.get(job_id)


@dataclass
class _KeptPartition:
    path: Path
    index: dict[tuple[int, int], list[Segment]] = field(default_factory=dict)   # (map, attempt) -> batches


@dataclass
class _KeptJob:
    folder: Path
    attempts: set[tuple[int, int]] = field(default_factory=set)     # (map, attempt) run here
    finished: set[tuple[int, int]] = field(default_factory=set)     # ... and reported whole: these are served
    parts: dict[int, _KeptPartition] = field(default_factory=dict)
    released: set[int] = field(default_factory=set)


class MapOutputStore(_LeasedFiles[_KeptJob]):
    """The mapper's own copy of every batch it pushed, so a new owner can pull it back.

    One file per (job, partition) holds that partition's batches of every map attempt run here, so a
    committed partition's copies are deleted in one unlink.
    """

    def open_job(self, job_id: str) -> None:
        with self._lock:
            if job_id not in self._jobs:
                self._jobs[job_id] = _KeptJob(self._root / _safe_name(job_id) / "maps")

    def begin(self, job_id: str, map_task: int, attempt: int) -> None:
        """A map attempt starts here; it is held (possibly empty) from now on."""
        with self._lock:
            self._open(job_id).attempts.add((map_task, attempt))

    def append(self, job_id: str, map_task: int, attempt: int, partition: int, payload: bytes) -> int | None:
        """Keep a batch; returns its sequence number within (map attempt, partition).

        None: that partition is committed already, so nobody will ever read the batch (a map that runs
        again after losing its output still makes it, for the partitions not yet reduced).
        """
        with self._lock:
            job = self._open(job_id)
            part = job.parts.get(partition)
            if part is None:
                if partition in job.released:
                    return None
                job.folder.mkdir(parents=True, exist_ok=True)
                part = job.parts[partition] = _KeptPartition(job.folder / f"p{partition}.data")
            job.attempts.add((map_task, attempt))
            runs = part.index.setdefault((map_task, attempt), [])
            runs.append((_append(part.path, payload), len(payload)))
            return len(runs) - 1

    def folder(self, job_id: str) -> Path:
        """Where a job's kept copies live (its task process appends to `p<partition>.data` there)."""
        with self._lock:
            return self._open(job_id).folder

    def released(self, job_id: str) -> list[int]:
        with self._lock:
            job = self._jobs.get(job_id)
            return sorted(job.released) if job else []

    def add_attempt(self, job_id: str, map_task: int, attempt: int, segments: list[tuple[int, int, int]]) -> None:
        """Index a finished map attempt's kept batches, (partition, offset, length) in order, all at once.

        Written by the task process, they are indexed only when it reports them whole: bytes of an attempt
        that was killed half-way are never served (they stay unindexed in the file until it goes)."""
        with self._lock:
            job = self._open(job_id)
            job.attempts.add((map_task, attempt))
            job.finished.add((map_task, attempt))
            for partition, offset, length in segments:
                if partition in job.released:
                    continue
                part = job.parts.get(partition)
                if part is None:
                    part = job.parts[partition] = _KeptPartition(job.folder / f"p{partition}.data")
                part.index.setdefault((map_task, attempt), []).append((offset, length))

    def counts(self, job_id: str, map_task: int, attempt: int) -> dict[int, int]:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return {}
            return {p: len(part.index[(map_task, attempt)]) for p, part in job.parts.items()
                    if (map_task, attempt) in part.index}

    def batches(self, job_id: str, map_task: int, attempt: int, partition: int) -> list[bytes] | None:
        """All kept batches of one partition in order, or None if this attempt is not held here."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or (map_task, attempt) not in job.attempts or partition in job.released:
                return None
            part = job.parts.get(partition)
            if part is None:
                return []
            segments = list(part.index.get((map_task, attempt), []))
            path = part.path
        return [_read(path, seg) for seg in segments]

    def finished(self, job_id: str, wanted: Callable[[int], bool]) -> list[tuple[int, int]]:
        """The finished map attempts kept here whose map `wanted` accepts, in order (none: job not here)."""
        with self._lock:
            job = self._jobs.get(job_id)
            return sorted(key for key in job.finished if wanted(key[0])) if job else []

    def attempts(self, job_id: str) -> list[tuple[int, int]]:
        with self._lock:
            job = self._jobs.get(job_id)
            return sorted(job.attempts) if job else []

    def _open(self, job_id: str) -> _KeptJob:
        job = self._jobs.get(job_id)
        if job is None:
            raise OSError(f"job {job_id} holds no lease on this worker")
        return job
