"""One TaskRequest too many: a worker that asks for work twice in a row must not be cut off from work.

A real worker sends a TaskRequest after each Welcome (if idle) and after each task; a worker whose
Welcome is slow to come registers twice (zmr/runtime/worker.py `_session` sends Register before its loop
and again in the loop's first turn), gets two Welcomes and so asks twice. The peer here is a hand-made
worker that behaves like a real one on a job whose inputs are empty (its maps emit nothing, so it needs
no data plane): it runs its assignments in the order they come and reports each, then asks for more.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zmr.client import Client
from zmr.protocol import messages as m

from .conftest import APPS, FAST_FLAGS
from .peers import FakeWorker, start_process, stop_process, zmr_command

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def coordinator(tmp_path: Path) -> Iterator[tuple[str, Client]]:
    """A coordinator with no worker at all, and a client of it."""
    address = f"tcp://127.0.0.1:{_free_port()}"
    proc = start_process(zmr_command("coord", "--bind", address, "--exit-with-parent", str(os.getpid()),
                                     "--set", "log.format=json", *FAST_FLAGS), tmp_path / "coordinator.log", tmp_path)
    client = Client(address, timeout=20)
    try:
        client.status()
        yield address, client
    finally:
        client.close()
        stop_process(proc)


class DutifulWorker(FakeWorker):
    """Runs what it is given, in order: a map of empty input reports no records; a reduce writes an empty
    output under its temporary name, asks to commit and renames it if allowed. Then it asks for more."""

    def serve(self, client: Client, job: str, timeout: float) -> m.JobInfo:
        deadline = time.monotonic() + timeout
        inbox: list[Any] = []
        while time.monotonic() < deadline:
            self.beat()
            inbox += self.drain(0.05)
            while inbox:
                msg = inbox.pop(0)
                if isinstance(msg, m.AssignMap):
                    self.send_msg(m.MapDone(worker_id=self.worker_id, attempt=msg.attempt, records_out=0, bytes_out=0))
                    self.send_msg(m.TaskRequest(worker_id=self.worker_id))
                elif isinstance(msg, m.AssignReduce):
                    inbox += self._reduce(msg)
                    self.send_msg(m.TaskRequest(worker_id=self.worker_id))
            info = client.job(job)
            if info.state in ("succeeded", "failed", "cancelled"):
                return info
        raise AssertionError(f"job {job} did not end within {timeout} s")

    def _reduce(self, assign: m.AssignReduce) -> list[Any]:
        """Returns what arrived meanwhile that is not the commit decision."""
        out = Path(assign.output_dir)
        a = assign.attempt
        tmp = out / f".mr-out-{a.task}.{a.job_id}.a{a.number}.tmp"
        tmp.write_text("")
        self.send_msg(m.ReduceDone(worker_id=self.worker_id, attempt=assign.attempt, records_out=0))
        others: list[Any] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            self.beat()
            for msg in self.drain(0.05):
                if isinstance(msg, m.CommitDecision) and msg.attempt == a:
                    if msg.ok:
                        os.replace(tmp, out / f"mr-out-{a.task}")
                        self.send_msg(m.ReduceCommitted(worker_id=self.worker_id, attempt=assign.attempt))
                    else:
                        tmp.unlink()
                    return others
                others.append(msg)
        tmp.unlink()
        return others


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
        assert worker.register()
        for _ in range(task_requests):
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
