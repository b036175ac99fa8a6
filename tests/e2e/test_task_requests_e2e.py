"""One TaskRequest too many: a worker that asks for work twice in a row must not be cut off from work.

A real worker sends a TaskRequest after each Welcome (if idle) and after each task; a worker whose
Welcome is slow to come registers twice (it sends Register when it connects and again at its next beat
while unwelcomed), gets two Welcomes and so asks twice. The peer here is a hand-made worker that runs
the real worker's state machine (zmr.core.worker_machine) on a job whose inputs are empty (its maps emit
nothing, so it needs no data plane): it runs its assignments in the order they come and reports each,
then asks for more.
"""

from __future__ import annotations

import os
import socket
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import pytest

from zmr.client import Client
from zmr.core.worker_events import (
    CancelAttempt,
    Connected,
    DeliverDecision,
    Heard,
    Reported,
    Say,
    StartTask,
    TaskEnded,
    TimePassed,
    WorkerAction,
    WorkerEvent,
    WorkerView,
)
from zmr.core.worker_machine import WorkerMachine, WorkerParams
from zmr.errors import NoAnswer
from zmr.protocol import messages as m
from zmr.protocol.output_names import output_name, temp_output_name

from .conftest import APPS, FAST_FLAGS, wait_until
from .peers import PYTHON, FakeWorker, start_process, stop_process, zmr_command

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(client: Client) -> bool:
    """Whether the coordinator answers yet (a client says within 2 s when nothing listens at its address)."""
    try:
        client.status()
    except NoAnswer:
        return False
    return True


@pytest.fixture
def coordinator(tmp_path: Path) -> Iterator[tuple[str, Client]]:
    """A coordinator with no worker at all, and a client of it."""
    address = f"tcp://127.0.0.1:{_free_port()}"
    proc = start_process(zmr_command("coord", "--bind", address, "--exit-with-parent", str(os.getpid()),
                                     "--set", "log.format=json", *FAST_FLAGS), tmp_path / "coordinator.log", tmp_path)
    client = Client(address, timeout=20)
    try:
        wait_until(lambda: _answers(client), 30, what="the coordinator to start")
        yield address, client
    finally:
        client.close()
        stop_process(proc)


class DutifulWorker(FakeWorker):
    """Runs what it is given, in order: a map of empty input reports no records; a reduce writes an empty
    output under its temporary name, asks to commit and renames it if allowed. Every protocol decision
    (asking for work after a Welcome and after each task, heartbeats, which commit decision counts) is
    the real worker's state machine's; only the tasks are faked."""

    def __init__(self, endpoint: str, worker_id: str, identity: bytes | None = None) -> None:
        super().__init__(endpoint, worker_id, identity)
        self.machine = WorkerMachine(WorkerParams(worker_id=worker_id, data_addr=self.data_addr,
                                                  python=PYTHON, pid=os.getpid(), host="fake"))
        self._events: deque[WorkerEvent] = deque()
        self._reduce: tuple[m.AssignReduce, Path, float] | None = None   # awaiting its commit: (task, tmp, until)

    def register(self, timeout: float = 5.0) -> bool:
        """Connect as the machine does; True once Welcome came back (the machine then asks for a task)."""
        self._feed(Connected(WorkerView()))
        got = self.replies(timeout, until=m.Welcome)
        self.received += got
        for msg in got:
            self._feed(Heard(msg))
        return any(isinstance(r, m.Welcome) for r in got)

    def serve(self, client: Client, job: str, timeout: float) -> m.JobInfo:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for msg in self.drain(0.05):
                self._feed(Heard(msg))
            self._feed(TimePassed(WorkerView()))
            if self._reduce is not None and time.monotonic() > self._reduce[2]:
                self._end_reduce(False)   # no decision in time: nothing is renamed
            info = client.job(job)
            if info.state in ("succeeded", "failed", "cancelled"):
                return info
        raise AssertionError(f"job {job} did not end within {timeout} s")

    def _feed(self, event: WorkerEvent) -> None:
        """Hand the machine an event, and the events its actions lead to, in order."""
        self._events.append(event)
        while self._events:
            for action in self.machine.handle(self._events.popleft(), time.monotonic()):
                self._carry_out(action)

    def _carry_out(self, action: WorkerAction) -> None:
        if isinstance(action, Say):
            self.send_msg(action.msg)
        elif isinstance(action, StartTask) and isinstance(action.assign, m.AssignMap):
            assign = action.assign
            done = m.MapDone(worker_id=self.worker_id, attempt=assign.attempt, records_out=0, bytes_out=0)
            self._events += [Reported(done), TaskEnded(assign.attempt)]
        elif isinstance(action, StartTask) and isinstance(action.assign, m.AssignReduce):
            self._start_reduce(action.assign)
        elif isinstance(action, DeliverDecision):
            self._end_reduce(action.decision.ok)
        elif isinstance(action, CancelAttempt) and self._reduce is not None:
            self._end_reduce(False)

    def _start_reduce(self, assign: m.AssignReduce) -> None:
        tmp = Path(assign.output_dir) / temp_output_name(assign.attempt)
        tmp.write_text("")
        self._reduce = (assign, tmp, time.monotonic() + 10)
        self._events.append(Reported(m.ReduceDone(worker_id=self.worker_id, attempt=assign.attempt, records_out=0)))

    def _end_reduce(self, ok: bool) -> None:
        assert self._reduce is not None
        assign, tmp, _ = self._reduce
        self._reduce = None
        if ok:
            os.replace(tmp, Path(assign.output_dir) / output_name(assign.attempt.task))
            self._events.append(Reported(m.ReduceCommitted(worker_id=self.worker_id, attempt=assign.attempt)))
        else:
            tmp.unlink()
        self._events.append(TaskEnded(assign.attempt))


def _empty_job(client: Client, tmp_path: Path) -> tuple[str, Path]:
    inputs = []
    for name in ("a.txt", "b.txt", "c.txt"):
        (tmp_path / name).write_bytes(b"")
        inputs.append(str(tmp_path / name))
    out = tmp_path / "out"
    return client.submit(str(APPS / "wc.py"), inputs, str(out), n_reduce=2), out


def _run(address: str, client: Client, tmp_path: Path, task_requests: int) -> tuple[m.JobInfo, Path]:
    job, out = _empty_job(client, tmp_path)   # queued: there is no worker yet
    with DutifulWorker(address, "w-dutiful-0001", b"dutiful") as worker:
        assert worker.register()   # its machine asks for a task once welcomed
        for _ in range(task_requests - 1):
            worker.send_msg(m.TaskRequest(worker_id=worker.worker_id))
        return worker.serve(client, job, timeout=30), out


def test_a_worker_that_does_its_work_completes_a_job(coordinator: tuple[str, Client], tmp_path: Path) -> None:
    """The control: the hand-made worker is good enough to run a job of empty inputs alone."""
    info, out = _run(*coordinator, tmp_path, task_requests=1)
    assert info.state == "succeeded", info.error
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", "mr-out-0", "mr-out-1"]


def test_one_task_request_too_many_does_not_cut_a_worker_off_from_work(coordinator: tuple[str, Client],
                                                                       tmp_path: Path) -> None:
    info, out = _run(*coordinator, tmp_path, task_requests=2)
    assert info.state == "succeeded", info.error
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", "mr-out-0", "mr-out-1"]
