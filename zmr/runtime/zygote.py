"""The zygote: a single-threaded child of the worker that forks task processes on request.

A worker runs threads (zmq's, the data server, the executor) and forking a threaded process is unsafe (a
lock held by another thread at the fork stays locked in the child for good). So the worker forks this
zygote first, before any thread or zmq context exists, when it is a copy of a process that has imported
zmr and nothing more; every task process is a fork of it, ready at once (a few ms, against ~0.2 s of
CPU for a fresh interpreter). The zygote also reaps its children and reports how each ended, and kills
them on request: a pid it has not reaped yet cannot have been reused, so a kill never hits a stranger.

The worker speaks to it over two pipes, one line per request or report:
  -> `spawn <endpoint>` | `kill <pid>`        <- `spawned <pid>` | `exit <pid> <code>` (code < 0: signal)
When the worker goes (its end of the pipe closes), the zygote kills its children and exits; it and its
children also die with their parent (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable

import setproctitle

from zmr.runtime.forked import can_fork

_PR_SET_PDEATHSIG = 1
RunnerMain = Callable[[str], None]


def die_with_parent() -> None:
    """Ask the kernel for SIGKILL when the parent goes, so no child outlives a killed worker."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Zygote:
    """The worker's handle on its zygote; used by one thread at a time (the executor's)."""

    def __init__(self, worker_pid: int, to_zygote: int, from_zygote: int, pid: int,
                 popen: subprocess.Popen[bytes] | None = None) -> None:
        self.worker_pid = worker_pid
        self.pid = pid
        self._to = to_zygote
        self._from = from_zygote
        self._popen = popen
        self._buffer = b""

    @classmethod
    def start(cls) -> Zygote:
        """Fork it now if this process has one thread; else start it as a fresh interpreter."""
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        worker_pid = os.getpid()
        if can_fork():
            pid = os.fork()
            if pid == 0:
                os.close(req_w)
                os.close(rep_r)
                _zygote_child(req_r, rep_w, worker_pid)
            popen = None
        else:
            popen = subprocess.Popen([sys.executable, "-m", "zmr.runtime.zygote", str(req_r), str(rep_w),
                                      str(worker_pid)], pass_fds=(req_r, rep_w), stdin=subprocess.DEVNULL)
            pid = popen.pid
        os.close(req_r)
        os.close(rep_w)
        os.set_blocking(rep_r, False)
        return cls(worker_pid, req_w, rep_r, pid, popen)

    def fileno(self) -> int:
        """Readable when a report is waiting (for zmq.Poller)."""
        return self._from

    def spawn(self, endpoint: str) -> None:
        self._say(f"spawn {endpoint}")

    def kill(self, pid: int) -> None:
        self._say(f"kill {pid}")

    def reports(self) -> list[tuple[str, int, int]]:
        """(`spawned`, pid, 0) and (`exit`, pid, code) read so far; [] if none is waiting."""
        try:
            while chunk := os.read(self._from, 4096):
                self._buffer += chunk
        except BlockingIOError:
            pass
        except OSError:
            return []
        *lines, self._buffer = self._buffer.split(b"\n")
        out = []
        for line in lines:
            parts = line.decode().split()
            if len(parts) == 2 and parts[0] == "spawned":
                out.append(("spawned", int(parts[1]), 0))
            elif len(parts) == 3 and parts[0] == "exit":
                out.append(("exit", int(parts[1]), int(parts[2])))
        return out

    def close(self) -> None:
        """The zygote sees its pipe end, kills its children and exits; reap it."""
        for fd in (self._to, self._from):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(timeout=2)
            return
        with contextlib.suppress(ChildProcessError, OSError):
            for _ in range(200):
                if os.waitpid(self.pid, os.WNOHANG)[0]:
                    return
                select.select([], [], [], 0.01)
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)

    def _say(self, line: str) -> None:
        with contextlib.suppress(OSError):
            os.write(self._to, (line + "\n").encode())


# ---------------------------------------------------------------- the zygote process

_REAP_EVERY = 0.05   # s between looks for children that ended by themselves
_FIRST_REAP = 0.001  # s until the first look for one just killed


def _zygote_child(req: int, rep: int, worker_pid: int) -> None:
    """Never returns: serve requests until the worker closes the pipe."""
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)   # the worker decides when it ends
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        die_with_parent()
        setproctitle.setproctitle(f"zmr-task-zygote (worker {worker_pid})")
        _serve(req, rep, worker_pid)
    except BaseException:   # noqa: BLE001 - nothing here may run the worker's code after a fork
        code = 1
    finally:
        os._exit(code)


def _serve(req: int, rep: int, worker_pid: int) -> None:
    """Children are reaped every `_REAP_EVERY` s; one just killed, every ms or so at first (doubling), since
    the worker waits for its exit to run the next task or to stop."""
    children: set[int] = set()
    killed: set[int] = set()
    buffer = b""
    wait = _REAP_EVERY
    while True:
        ready, _, _ = select.select([req], [], [], wait)
        _reap(children, rep)
        killed &= children
        wait = min(wait * 2, _REAP_EVERY) if killed else _REAP_EVERY
        if not ready:
            continue
        chunk = os.read(req, 4096)
        if not chunk:
            break
        *lines, buffer = (buffer + chunk).split(b"\n")
        for line in lines:
            if (pid := _request(line.decode().split(), children, req, rep, worker_pid)) is not None:
                killed.add(pid)
                wait = _FIRST_REAP
    for pid in children:
        _kill_group(pid)
    for pid in children:
        with contextlib.suppress(OSError):
            os.waitpid(pid, 0)


def _request(words: list[str], children: set[int], req: int, rep: int, worker_pid: int) -> int | None:
    """Carry out one request; returns the pid of a child it killed."""
    if len(words) == 2 and words[0] == "spawn":
        pid = os.fork()
        if pid == 0:
            _runner_child(words[1], (req, rep), worker_pid)
        with contextlib.suppress(OSError):   # as the child does too: whichever runs first, the group exists
            os.setpgid(pid, pid)
        children.add(pid)
        _report(rep, f"spawned {pid}")
    elif len(words) == 2 and words[0] == "kill" and words[1].isdigit() and int(words[1]) in children:
        _kill_group(int(words[1]))
        return int(words[1])
    return None


def _kill_group(pid: int) -> None:
    """Kill a task process with the processes its app started (its process group): a cancelled or timed
    out task leaves nothing running behind it."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _reap(children: set[int], rep: int) -> None:
    for pid in list(children):
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done, status = pid, 0
        if done:
            children.discard(pid)
            _report(rep, f"exit {pid} {os.waitstatus_to_exitcode(status)}")


def _report(rep: int, line: str) -> None:
    with contextlib.suppress(OSError):
        os.write(rep, (line + "\n").encode())


def _runner_child(endpoint: str, fds: tuple[int, int], worker_pid: int) -> None:
    """A fresh task process: the zygote's pipes closed, then the runner's loop; never returns."""
    code = 0
    try:
        for fd in fds:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)   # its own process group, which the zygote kills whole (`_kill_group`)
        die_with_parent()
        os.environ["ZMR_WORKER_PID"] = str(worker_pid)
        setproctitle.setproctitle(f"zmr-task (worker {worker_pid})")
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        from zmr.runtime.runner import runner_main
        runner_main(endpoint)
    except BaseException:   # noqa: BLE001
        import traceback
        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":   # started as a fresh interpreter by a worker that already ran threads
    _zygote_child(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
