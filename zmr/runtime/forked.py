"""Start a zmr command as a fork of this process: no new interpreter, no second import of zmr.

An exec'd coordinator or worker spends about 0.15 s of CPU starting Python and importing zmr, and
`zmr run` starts N+1 of them on the same cores at once, before the job can begin. A fork of a launcher
that has imported zmr already is ready at once. Forking is sound only while the launcher runs a single
thread (a lock another thread held at the fork would stay locked in the child for good), so
`can_fork` checks that at the moment of the fork, and the launcher execs otherwise.

The child is retitled to the exec'd command's line (`... -m zmr worker ...`), which `ps`, `pgrep -f` and
`top` show as usual; /proc/PID/cmdline holds it as one space-separated string, as for any retitled
process (psutil reads it whole or split, depending on its version).
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence

import setproctitle


def can_fork() -> bool:
    """Whether this process may fork now: POSIX, and exactly one thread (C threads count too)."""
    if not hasattr(os, "fork"):
        return False
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:   # no /proc: thread count unknown, so not safe to assume
        return False


class ForkedProcess:
    """A forked child, driven like the `subprocess.Popen` parts a launcher uses."""

    def __init__(self, pid: int, args: Sequence[str]) -> None:
        self.pid = pid
        self.args = list(args)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:   # reaped elsewhere: its status is gone
                self.returncode = -1
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.001
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            time.sleep(delay)
            delay = min(delay * 2, 0.02)
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def fork_command(run: Callable[[Sequence[str]], int], argv: Sequence[str], title: Sequence[str],
                 log_path: str) -> ForkedProcess:
    """Fork a child that runs `run(argv)` in its own session, with stdin from /dev/null and stdout and
    stderr appended to `log_path`, shown by `ps` as `title`; it exits with what `run` returns."""
    sys.stdout.flush()
    sys.stderr.flush()
    gc.freeze()   # the child's collector then never walks (and so never copies) the launcher's objects
    try:
        pid = os.fork()
    except BaseException:
        gc.unfreeze()
        raise
    if pid:
        gc.unfreeze()
        return ForkedProcess(pid, title)
    code = 1
    try:
        os.setsid()
        _redirect(log_path)
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        setproctitle.setproctitle(" ".join(title))
        code = run(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)   # never back into the launcher's code, its atexit hooks or finally blocks


def _redirect(log_path: str) -> None:
    """stdin from /dev/null, stdout and stderr to the log, and no other descriptor of the launcher's kept
    open (as an exec'd child with close_fds would have it): a pipe the launcher writes to must see its
    end when the launcher exits, not when the cluster does."""
    null = os.open(os.devnull, os.O_RDONLY)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
