"""A real worker process against a scripted coordinator: the shell carries out what its state machine
decides (registering, asking for work, heartbeats, registering again, a lease that lapses, a reject).

The coordinator here is a bare ROUTER driven by the test, so each message the worker sends can be
awaited and checked in order; it pings the worker (with no job) while it waits, as a coordinator does,
so the worker's session stays up.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from zmr.protocol import messages as m
from zmr.protocol.codec import coordinator_decoder, encode
from zmr.runtime import transport

from .peers import PYTHON, events, start_process, stop_process, zmr_command

pytestmark = pytest.mark.e2e
INTERVAL = 0.1


class Coordinator:
    """A ROUTER the test speaks for."""

    def __init__(self) -> None:
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind("tcp://127.0.0.1:*")
        self.address = transport.bound_address(self.sock)
        self.peer = b""
        self._decoder = coordinator_decoder(1 << 20)

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()

    def send(self, msg: m.CoordToWorker) -> None:
        self.sock.send_multipart([self.peer, *encode(msg)])

    def expect(self, kind: type, timeout: float = 10.0, skip: tuple[type, ...] = (m.Heartbeat,)) -> Any:
        """The next message of type `kind`, passing over those in `skip`; pings the worker meanwhile."""
        deadline = time.monotonic() + timeout
        last_ping = 0.0
        while time.monotonic() < deadline:
            if self.peer and time.monotonic() - last_ping > INTERVAL:
                self.send(m.Ping())
                last_ping = time.monotonic()
            if not self.sock.poll(20, zmq.POLLIN):
                continue
            peer, msg, _ = transport.recv_router(self.sock, self._decoder)
            self.peer = peer
            if isinstance(msg, kind):
                return msg
            assert isinstance(msg, skip), f"expected {kind.__name__}, got {msg}"
        raise AssertionError(f"no {kind.__name__} within {timeout} s")


@pytest.fixture
def coordinator() -> Iterator[Coordinator]:
    coord = Coordinator()
    yield coord
    coord.close()


def test_the_worker_process_speaks_the_protocol(coordinator: Coordinator, tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    proc = start_process(zmr_command("worker", "--coordinator", coordinator.address, "--work-dir", str(tmp_path),
                                     "--exit-with-parent", str(os.getpid()), "--set", "log.format=json",
                                     "--set", f"coordinator.heartbeat_interval={INTERVAL}"), log, tmp_path)
    try:
        register = coordinator.expect(m.Register, timeout=30)
        assert (register.python, register.holdings, register.running) == (PYTHON, [], None)
        assert register.token and register.pid == proc.pid

        coordinator.send(m.Welcome(worker_id=register.worker_id, heartbeat_interval=INTERVAL))
        assert coordinator.expect(m.TaskRequest, skip=(m.Register,)) == m.TaskRequest(worker_id=register.worker_id)
        beat = coordinator.expect(m.Heartbeat, skip=())
        assert (beat.worker_id, beat.task) == (register.worker_id, "")

        job = m.JobSetup(job_id="job-0001", app_blob=b"x", args=[], n_reduce=1, peers=[register.data_addr],
                         cycle=[0], moved={}, owners_epoch=1, push=True, batch_bytes=1 << 20, window_bytes=1 << 20,
                         lease_ttl=0.5)
        coordinator.send(job)   # never renewed: the pings name no job
        deadline = time.monotonic() + 10
        while not events(log, "lease_expired", job="job-0001") and time.monotonic() < deadline:
            coordinator.send(m.Ping())   # the session stays up meanwhile
            time.sleep(INTERVAL)
        assert events(log, "lease_expired", job="job-0001")
        assert not events(log, "coordinator_lost")

        coordinator.send(m.RegisterAgain())
        again = coordinator.expect(m.Register)
        assert (again.worker_id, again.token) == (register.worker_id, register.token)
        coordinator.send(m.Welcome(worker_id=register.worker_id, heartbeat_interval=INTERVAL))
        coordinator.expect(m.TaskRequest, skip=(m.Heartbeat, m.Register))

        coordinator.send(m.Reject(reason="scripted"))
        assert proc.wait(timeout=20) == 0
        assert events(log, "rejected", reason="scripted") and events(log, "worker_stopped")
    finally:
        stop_process(proc)
