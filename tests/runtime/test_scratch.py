"""A worker starting up removes the scratch directories of workers killed on this host, and nothing else."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from zmr.runtime import scratch


class _Log:
    def __init__(self) -> None:
        self.events: list[str] = []

    def info(self, event: str, **fields: Any) -> None:
        self.events.append(event)


def _owned(directory: Path, pid: int, host: str | None = None) -> Path:
    directory.mkdir()
    (directory / "jobs").mkdir()
    (directory / "jobs" / "p0.data").write_bytes(b"x" * 100)
    (directory / scratch.OWNER_FILE).write_text(f"{pid} {host or socket.gethostname()}\n")
    return directory


def test_only_directories_of_dead_owners_on_this_host_are_reaped(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    own = tmp_path / "w-own"
    scratch.claim(own)
    killed = _owned(tmp_path / "w-killed", int(dead.stdout))
    alive = _owned(tmp_path / "w-alive", os.getppid())
    elsewhere = _owned(tmp_path / "w-other-host", int(dead.stdout), host="another-host")
    unowned = tmp_path / "w-unowned"
    unowned.mkdir()
    unrelated = _owned(tmp_path / "not-a-worker", int(dead.stdout))
    log = _Log()
    assert scratch.reap_orphans(tmp_path, "w-*", own, log) == [killed]
    assert not killed.exists()
    assert all(d.exists() for d in (own, alive, elsewhere, unowned, unrelated))
    assert log.events == ["orphan_scratch_removed"]
