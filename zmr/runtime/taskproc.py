"""The worker's side of its task process: start it, hand it tasks, hear its progress, kill it.

Owned by the executor thread. One task process runs at a time and is kept warm across tasks, so a task
costs one message each way. Killing is the only way to stop a task: a cancelled, timed-out or superseded
attempt, or a stopping worker, kills the process, and a fresh one is asked for at once (a fork of the
zygote, ready within milliseconds), so the next task never waits for a start.
"""

from __future__ import annotations

import itertools
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import zmq

from zmr.protocol import taskproc as t
from zmr.runtime import scratch
from zmr.runtime.zygote import Zygote

_SLICE = 0.05          # seconds between looks at `stop` while a task runs
_START_TIMEOUT = 30.0  # a task process that does not say Ready by then is taken for dead
_KILL_WAIT = 2.0


class ProcessDied(Exception):
    """The task process ended without a result: killed by a signal or exited."""

    def __init__(self, code: int) -> None:
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        super().__init__(f"task process died: {how}")
        self.code = code


class Stopped(Exception):
    """`stop()` said so: the process was killed, and a fresh one is on its way."""


# A unix socket's path holds at most 107 bytes; an endpoint adds `/task-<n>.ipc` to its folder.
_MAX_CHANNEL_DIR = 80


def _channel_dir(work_dir: Path, log: Any) -> tuple[Path, bool]:
    """Where the ipc endpoints live: the work dir, unless its path is too long for a unix socket. Then a
    private (0700) `zmr-ch-*` directory in the temporary directory (or in /tmp, when that one's path is
    long too), which names this worker as its owner: a killed worker cannot remove it, so the next one
    to start on the host removes those whose owner is gone."""
    if len(str(work_dir).encode()) < _MAX_CHANNEL_DIR:
        return work_dir, False
    base = tempfile.gettempdir()
    if len(base.encode()) > _MAX_CHANNEL_DIR - 20:   # mkdtemp adds `/zmr-ch-` and 8 characters
        base = "/tmp"
    own = Path(tempfile.mkdtemp(prefix="zmr-ch-", dir=base))
    scratch.claim(own)
    scratch.reap_orphans(own.parent, "zmr-ch-*", own, log)
    return own, True


class TaskProcess:
    """One live task process at a time, replaced whenever it dies or is killed."""

    def __init__(self, ctx: zmq.Context[Any], zygote: Zygote, work_dir: Path, setup: t.ProcSetup,
                 log: Any) -> None:
        self._ctx = ctx
        self._zygote = zygote
        self._dir, self._own_dir = _channel_dir(work_dir, log)
        self._setup = setup
        self._log = log
        self._numbers = itertools.count(1)
        self._sock: zmq.Socket[Any] | None = None
        self.pid: int | None = None
        self._ready = False
        self._exits: dict[int, int] = {}
        self.jobs: dict[str, int] = {}   # job -> owners epoch this process knows
        self._start()

    # ------------------------------------------------------------ life

    def _start(self) -> None:
        """Ask for a fresh process; it connects and says Ready in its own time (off the hot path)."""
        self._dir.mkdir(parents=True, exist_ok=True)
        endpoint = f"ipc://{self._dir}/task-{next(self._numbers)}.ipc"
        sock = self._ctx.socket(zmq.PAIR)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(endpoint)
        self._sock, self.pid, self._ready, self.jobs = sock, None, False, {}
        self._zygote.spawn(endpoint)

    def replace(self) -> None:
        """Kill the current process (if any is left) and start another."""
        self._kill()
        self._start()

    def _kill(self) -> None:
        pid = self._await_pid(_KILL_WAIT) if self.pid is None else self.pid
        if pid is not None and pid not in self._exits:
            self._zygote.kill(pid)
            deadline = time.monotonic() + _KILL_WAIT
            while pid not in self._exits and time.monotonic() < deadline:
                self._read_reports(_SLICE)
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
        if pid is not None:
            self._exits.pop(pid, None)

    def close(self) -> None:
        self._kill()
        if self._own_dir:
            shutil.rmtree(self._dir, ignore_errors=True)

    def _read_reports(self, timeout: float) -> None:
        poller = zmq.Poller()
        poller.register(self._zygote.fileno(), zmq.POLLIN)
        poller.poll(int(timeout * 1000))
        for kind, pid, code in self._zygote.reports():
            if kind == "spawned" and self.pid is None:
                self.pid = pid
            elif kind == "exit":
                self._exits[pid] = code

    def _await_pid(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while self.pid is None and time.monotonic() < deadline:
            self._read_reports(_SLICE)
        return self.pid

    def _died(self) -> int | None:
        """The exit code of the current process if it has ended, else None."""
        return self._exits.get(self.pid) if self.pid is not None else None

    def ensure_ready(self, stop: Callable[[], bool]) -> None:
        """Wait for the current process's Ready and send it its setup; replace it if it died first.

        A warm process may also have died while idle, between two tasks (killed from outside, or by the
        kernel): it is replaced here, before the task is sent, so that no attempt fails for it."""
        self._read_reports(0)
        if self._died() is not None:
            self._log.warning("task_process_lost_while_idle", code=self._died())
            self.replace()
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._ready:
            assert self._sock is not None
            if stop():
                raise Stopped()
            if self._sock.poll(0):
                if isinstance(self._decode(self._sock.recv()), t.Ready):
                    try:
                        self._sock.send(t.encode_rec(self._setup), zmq.NOBLOCK)
                        self._ready = True
                    except zmq.Again:   # it died right after saying Ready
                        self.replace()
                continue
            self._read_reports(_SLICE)
            if self._died() is not None or time.monotonic() > deadline:
                self._log.warning("task_process_lost_at_start", code=self._died())
                self.replace()
                deadline = time.monotonic() + _START_TIMEOUT

    # ------------------------------------------------------------ tasks

    def send(self, rec: msgspec.Struct) -> None:
        """Never blocks: a PAIR socket whose peer is gone would block a send for good, and with it the
        executor thread (the worker then stays busy for ever). A process that cannot take a record is
        taken for dead: it is replaced and ProcessDied raised."""
        assert self._sock is not None
        try:
            self._sock.send(t.encode_rec(rec), zmq.NOBLOCK)
        except zmq.Again:
            code = self._await_exit(_KILL_WAIT)
            self.replace()
            raise ProcessDied(code if code is not None else -signal.SIGKILL) from None

    def _await_exit(self, timeout: float) -> int | None:
        """The current process's exit code once the zygote reports it, or None after `timeout`."""
        deadline = time.monotonic() + timeout
        while self._died() is None and time.monotonic() < deadline:
            self._read_reports(_SLICE)
        return self._died()

    def call(self, rec: t.RunMap | t.RunReduce, on_tick: Callable[[int], None], stop: Callable[[], bool],
             each_slice: Callable[[], None]) -> t.MapResult | t.ReduceResult | t.TaskError:
        """Run one task to its result. `stop()` true: kill the process and raise Stopped; the process
        dying raises ProcessDied. Either way a fresh process is started before this returns."""
        self.send(rec)
        assert self._sock is not None
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._zygote.fileno(), zmq.POLLIN)
        while True:
            events = dict(poller.poll(int(_SLICE * 1000)))
            if self._sock in events:
                while self._sock.poll(0):
                    reply = self._decode(self._sock.recv())
                    if isinstance(reply, t.Tick):
                        on_tick(max(1, reply.progress))
                    elif isinstance(reply, t.MapResult | t.ReduceResult | t.TaskError):
                        return reply
            if stop():
                self.replace()
                raise Stopped()
            self._read_reports(0)
            if (code := self._died()) is not None:
                self.replace()
                raise ProcessDied(code)
            each_slice()

    def _decode(self, frame: bytes) -> t.FromProc | None:
        try:
            return t.decode_from_proc(frame)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._log.error("bad_task_process_message", error=str(exc))
            return None
