"""Worker scratch directories, and the reaping of those a killed worker left behind.

A worker deletes its data when a lease ends and its whole directory when it exits; a SIGKILLed worker
can do neither. So each directory names its owner (pid and host), and a worker starting on the same
host removes the sibling directories whose owner process is gone.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from typing import Any

OWNER_FILE = "owner"


def claim(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / OWNER_FILE).write_text(f"{os.getpid()} {socket.gethostname()}\n")


def reap_orphans(parent: Path, pattern: str, own: Path, log: Any) -> list[Path]:
    """Remove `parent/pattern` directories (other than `own`) whose owner died on this host."""
    reaped = []
    for candidate in parent.glob(pattern):
        if candidate == own or not candidate.is_dir() or not _orphaned(candidate):
            continue
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
