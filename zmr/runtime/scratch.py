"""Scratch directories of workers and launchers, and the reaping of those a killed process left behind.

A worker deletes its data when a lease ends and its whole directory when it exits; a SIGKILLed worker
can do neither, nor can a SIGKILLed `zmr run` remove its `zmr-local-*` directory. So each directory
names its owner (pid and host), and the next process of the same kind starting on the same host
removes the sibling directories whose owner process is gone. A directory kept on purpose (the logs of
a failed run) is `release`d: with no owner named, it is never reaped.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

OWNER_FILE = "owner"


def claim(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / OWNER_FILE).write_text(f"{os.getpid()} {socket.gethostname()}\n")


def release(directory: Path) -> None:
    """Name no owner any more: the directory is kept on purpose and no one reaps it."""
    (directory / OWNER_FILE).unlink(missing_ok=True)


def reap_orphans(parent: Path, pattern: str, own: Path, log: Any,
                 before: Callable[[Path], None] | None = None) -> list[Path]:
    """Remove `parent/pattern` directories (other than `own`) whose owner died on this host; `before`
    is called with each first (to tidy what the dead owner made elsewhere)."""
    reaped = []
    for candidate in parent.glob(pattern):
        if candidate == own or not candidate.is_dir() or not _orphaned(candidate):
            continue
        if before is not None:
            before(candidate)
        shutil.rmtree(candidate, ignore_errors=True)
        log.info("orphan_scratch_removed", path=str(candidate))
        reaped.append(candidate)
    return reaped


def _orphaned(directory: Path) -> bool:
    try:
        pid_text, host = (directory / OWNER_FILE).read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return False   # not ours, or being created: leave it
    if host != socket.gethostname() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False   # alive, another user's
    return False
