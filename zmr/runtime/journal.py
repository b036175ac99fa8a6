"""The coordinator's journal on disk: one append-only file in the state directory, locked by one coordinator.

Records are written with one `write(2)` per batch of scheduler actions, before any message of that
batch is sent, so a SIGKILLed coordinator never told anyone something its journal does not hold. (The
kernel holds the write; surviving power loss would need an fsync per batch, which is not done.)
The file is rewritten from a snapshot at start and whenever it has grown to several times its last
snapshot, so it stays proportional to the live state, not to history; a rewrite is atomic (write aside,
fsync, rename, fsync the directory). History is never rewritten by guesswork: a torn last write is
dropped with its bytes kept aside (`journal.torn-<time>`), and damage before the end stops the start
unless the operator asks to go on from the intact records (then the file is kept as `journal.damaged-<time>`).
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import Any

from zmr.errors import ClusterError, JournalDamaged
from zmr.protocol import journal as j

JOURNAL_NAME = "journal"
_MIN_COMPACT_BYTES = 16 << 20


class JournalFile:
    def __init__(self, state_dir: str | Path, log: Any) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / JOURNAL_NAME
        self._log = log
        self._lock_fd = -1
        self._fd = -1
        self._size = 0
        self._snapshot_size = 0

    def open(self, recover_damaged: bool = False) -> list[j.Record]:
        """Lock the state directory and read every intact record, never losing a byte of the file.

        A torn last write (a crash mid-append) is dropped and its bytes are kept aside. Damage before
        the end raises JournalDamaged and leaves the file as it is, unless `recover_damaged`: then the
        records before the damage are used and the whole file is kept aside, before anything rewrites it.
        """
        self._lock()
        try:
            data = self._read()
            parsed = j.parse(data)
            other_format = j.version_problem(parsed.records)
            if other_format:   # replaying records of another shape could rebuild a wrong state silently
                raise ClusterError(f"cannot replay the journal {self.path}: {other_format}. Run the zmr that "
                                   "wrote it, or give this one another coordinator.state_dir")
            if parsed.damaged and not recover_damaged:
                raise JournalDamaged(str(self.path), parsed.good_bytes, parsed.problem)
            if parsed.problem:
                self._keep_aside(data, parsed)
        except ClusterError:
            self.close()
            raise
        self._log.info("journal_read", path=str(self.path), records=len(parsed.records), bytes=parsed.good_bytes)
        return parsed.records

    def _lock(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ClusterError(f"cannot use state directory {self.dir}: {exc}") from exc
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise ClusterError(f"state directory {self.dir} is in use by another coordinator") from exc

    def _read(self) -> bytes:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return b""
        except OSError as exc:
            raise ClusterError(f"cannot read the journal {self.path}: {exc}") from exc

    def _keep_aside(self, data: bytes, parsed: j.Parsed) -> None:
        """Save what recovery drops where an operator finds it: the torn bytes, or the whole damaged file."""
        kind = "torn" if parsed.torn else "damaged"
        copy = _unused_name(self.dir, f"{JOURNAL_NAME}.{kind}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
        try:
            if parsed.torn:
                _write_atomically(copy, data[parsed.good_bytes:])
            else:
                _link_or_copy(self.path, copy, data)
        except OSError as exc:   # going on would lose those bytes at the rewrite
            raise ClusterError(f"cannot keep the {kind} part of the journal {self.path} aside "
                               f"as {copy}: {exc}") from exc
        self._log.warning("journal_damaged", path=str(self.path), offset=parsed.good_bytes, torn=parsed.torn,
                          problem=parsed.problem, kept_records=len(parsed.records),
                          dropped_bytes=len(data) - parsed.good_bytes, copy=str(copy))

    def rewrite(self, records: list[j.Record]) -> None:
        """Replace the journal with `records` atomically: a crash leaves the old file or the new one, whole."""
        data = b"".join(j.frame(r) for r in records)
        _write_atomically(self.path, data)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self._size = self._snapshot_size = len(data)

    def append(self, records: list[j.Record]) -> None:
        data = b"".join(j.frame(r) for r in records)
        _write_all(self._fd, data)
        self._size += len(data)

    def wants_compaction(self) -> bool:
        return self._size > max(_MIN_COMPACT_BYTES, 4 * self._snapshot_size)

    def close(self) -> None:
        for fd in (self._fd, self._lock_fd):
            if fd >= 0:
                os.close(fd)
        self._fd = self._lock_fd = -1


def _write_atomically(path: Path, data: bytes) -> None:
    """Write aside, fsync, rename into place, fsync the directory (so the rename itself is durable)."""
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _link_or_copy(path: Path, copy: Path, data: bytes) -> None:
    """Give the file at `path` a second name (its bytes, if the filesystem has no hard links)."""
    try:
        os.link(path, copy)
    except OSError:
        _write_atomically(copy, data)
        return
    _fsync_dir(path.parent)


def _unused_name(folder: Path, name: str) -> Path:
    path, n = folder / name, 1
    while path.exists():
        path, n = folder / f"{name}.{n}", n + 1
    return path


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
