"""Which `zmr cluster up` runs a config file: one pid file per config, so `zmr cluster down CONFIG` (from
any shell of the same user on the same machine) finds the launcher and stops it, and with it every
worker it started here and over SSH.

The file is named after the config's real path and the user, in /tmp; a file whose process is gone
(a launcher killed with SIGKILL) is stale and taken over.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from zmr.errors import ClusterError

__all__ = ["holding", "running", "stop"]


def _path(config: str) -> Path:
    """In /tmp whatever TMPDIR says, so every shell of the user finds it (the user's id is in the name)."""
    digest = hashlib.sha256(os.path.realpath(config).encode()).hexdigest()[:16]
    folder = Path("/tmp") if os.path.isdir("/tmp") else Path(tempfile.gettempdir())
    return folder / f"zmr-cluster-{os.getuid()}-{digest}.pid"


def running(config: str) -> int | None:
    """The pid of the live `zmr cluster up` of `config`, or None."""
    try:
        pid = int(_path(config).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    """Is `pid` a process of ours that has not ended (a zombie has)?"""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):   # gone, or someone else's: not ours to name
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True   # no /proc here: kill(0) is all there is to go by
    return stat.rpartition(")")[2].split()[0] != "Z"


@contextlib.contextmanager
def holding(config: str) -> Iterator[None]:
    """Record this process as the cluster of `config` while the block runs. Raises ClusterError if a live
    one is recorded already."""
    if (pid := running(config)) is not None:
        raise ClusterError(f"a cluster of {config} is running already (pid {pid}); "
                           f"`zmr cluster down {config}` stops it")
    path = _path(config)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(f"{os.getpid()}\n")
    tmp.replace(path)
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            if int(path.read_text().strip()) == os.getpid():
                path.unlink()


def stop(config: str, timeout: float = 60.0) -> int:
    """Stop the cluster of `config` (SIGTERM to its launcher, which stops every worker) and wait for it to
    end; returns its pid. Raises ClusterError if none runs or it does not end within `timeout`."""
    pid = running(config)
    if pid is None:
        raise ClusterError(f"no cluster of {config} is running on this machine")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return pid
        time.sleep(0.1)
    raise ClusterError(f"the cluster of {config} (pid {pid}) did not stop within {timeout:g} s")
