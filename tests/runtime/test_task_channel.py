"""Where a worker's task-process channel lives: a unix socket path holds at most 107 bytes."""

from __future__ import annotations

import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from zmr.log import bound_logger
from zmr.runtime.taskproc import _channel_dir

ENDPOINT_TAIL = "/task-123456.ipc"


def _fits(folder: Path) -> bool:
    return len((str(folder) + ENDPOINT_TAIL).encode()) <= 107


def test_a_short_work_dir_holds_the_channel_itself(tmp_path: Path) -> None:
    folder, own = _channel_dir(Path("/tmp/w"), bound_logger())
    assert (folder, own) == (Path("/tmp/w"), False)


@pytest.mark.parametrize("long_tmpdir", [False, True])
def test_a_long_work_dir_gets_a_short_private_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      long_tmpdir: bool) -> None:
    """Deep test folders and a long TMPDIR (each test process gets its own) both happen in practice."""
    tmpdir = tmp_path / ("t" * 100) if long_tmpdir else Path("/tmp")
    tmpdir.mkdir(exist_ok=True)
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))
    folder, own = _channel_dir(tmp_path / ("w" * 120), bound_logger())
    try:
        assert own and _fits(folder), folder
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    finally:
        shutil.rmtree(folder)
