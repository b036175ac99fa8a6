"""The coordinator's journal on disk: one append-only file in the state directory, locked by one coordinator.

Records are written with one `write(2)` per batch of scheduler actions, before any message of that
batch is sent, so a SIGKILLed coordinator never told anyone something its journal does not hold. (The
kernel holds the write; surviving power loss would need an fsync per batch, which is not done.)
The file is rewritten from a snapshot at start and whenever it has grown to several times its last
snapshot, so it stays proportional to the live state, not to history.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

from zmr.errors import ClusterError
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

    def open(self) -> list[j.Record]:
        """Lock the state directory and read every intact record; a torn or damaged tail is reported and dropped."""
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
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        except OSError as exc:
            raise ClusterError(f"cannot read the journal {self.path}: {exc}") from exc
        parsed = j.parse(data)
        if parsed.problem:
            self._log.warning("journal_damaged", path=str(self.path), problem=parsed.problem,
                              kept_records=len(parsed.records), dropped_bytes=len(data) - parsed.good_bytes)
        self._log.info("journal_read", path=str(self.path), records=len(parsed.records), bytes=parsed.good_bytes)
        return parsed.records

    def rewrite(self, records: list[j.Record]) -> None:
        """Replace the journal with `records` atomically (write aside, fsync, rename)."""
        data = b"".join(j.frame(r) for r in records)
        tmp = self.dir / (JOURNAL_NAME + ".new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
