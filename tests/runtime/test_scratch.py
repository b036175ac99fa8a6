"""Scratch directories of killed workers and launchers are reaped on this host, and nothing else."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from zmr.runtime import outputs, scratch


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


def _dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)


def test_a_released_directory_is_kept_and_a_reaped_one_is_tidied_first(tmp_path: Path) -> None:
    """A failed run keeps its logs on purpose (released); a killed run's output is tidied before its scratch goes."""
    own = tmp_path / "zmr-local-own"
    scratch.claim(own)
    kept = _owned(tmp_path / "zmr-local-kept", _dead_pid())
    scratch.release(kept)
    killed = _owned(tmp_path / "zmr-local-killed", _dead_pid())
    tidied: list[Path] = []
    assert scratch.reap_orphans(tmp_path, "zmr-local-*", own, _Log(), before=tidied.append) == [killed]
    assert tidied == [killed] and kept.exists() and not killed.exists()


def test_an_abandoned_output_directory_goes_only_if_it_holds_nothing_but_unfinished_job_output(
        tmp_path: Path) -> None:
    def folder(name: str, *files: str) -> Path:
        path = tmp_path / name
        path.mkdir()
        for f in files:
            (path / f).write_text("x")
        return path

    empty = folder("empty")
    partial = folder("partial", "mr-out-0", ".mr-out-1.job-0001.a1.tmp", "._SUCCESS.ab12.tmp")
    succeeded = folder("succeeded", "mr-out-0", "_SUCCESS")
    shared = folder("shared", "mr-out-0", "notes.txt")
    assert outputs.remove_abandoned(empty) and not empty.exists()
    assert outputs.remove_abandoned(partial) and not partial.exists()
    assert not outputs.remove_abandoned(succeeded) and sorted(p.name for p in succeeded.iterdir()) == [
        "_SUCCESS", "mr-out-0"]
    assert not outputs.remove_abandoned(shared) and len(list(shared.iterdir())) == 2
    assert not outputs.remove_abandoned(tmp_path / "never-made")


def test_a_killed_worker_s_task_channel_directory_is_reaped_by_the_next_one(
        tmp_path: Path, monkeypatch: Any, request: pytest.FixtureRequest) -> None:
    """With a work dir too long for a unix socket path, the task channel lives in `zmr-ch-*` under the
    temporary directory; a SIGKILLed worker cannot remove it, so the next worker on the host does."""
    from zmr.runtime import taskproc

    tmp = Path(tempfile.mkdtemp(prefix="zt-", dir="/tmp"))   # short: the channel's folder is made here
    request.addfinalizer(lambda: shutil.rmtree(tmp, ignore_errors=True))
    monkeypatch.setattr("tempfile.tempdir", str(tmp))
    killed = _owned(tmp / "zmr-ch-killed", _dead_pid())
    alive = _owned(tmp / "zmr-ch-alive", os.getppid())
    folder, own = taskproc._channel_dir(tmp_path / ("long" * 30), _Log())
    assert own and folder.parent == tmp and folder.name.startswith("zmr-ch-")
    assert not killed.exists() and alive.exists()
    assert (folder / scratch.OWNER_FILE).read_text().split()[0] == str(os.getpid())
