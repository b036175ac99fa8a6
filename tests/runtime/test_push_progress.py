"""A map that waits on an owner it cannot reach still reports progress: the wait is the shuffle's, bounded
by the ack timeout, not a hung app's, and the coordinator's task timeout must not take it for one.

The owner here is a TCP listener that never speaks ZMTP (as a stopped worker, or one behind a cut
link, looks to a new connection): the pusher's sends wait for a connection that never completes.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from zmr.apps import ship_app
from zmr.log import get_logger
from zmr.protocol import messages as m
from zmr.protocol import taskproc as t
from zmr.runtime.puller import LostPeers, Puller
from zmr.runtime.runner import Runner
from zmr.runtime.stores import ReceiveStore

APPS = Path(__file__).resolve().parents[2] / "apps"
JOB = "job-0001"
ACK_TIMEOUT = 2.0


@pytest.fixture()
def silent_owner() -> Iterator[str]:
    """An address that accepts TCP connections and then says nothing."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"


def test_a_map_waiting_on_an_unreachable_owner_keeps_ticking(tmp_path: Path, silent_owner: str) -> None:
    ctx: zmq.Context[Any] = zmq.Context()
    ours, theirs = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    ours.bind("inproc://chan")
    theirs.connect("inproc://chan")
    runner = Runner(ctx, theirs, t.ProcSetup(worker_id="w-1", max_message_bytes=1 << 20, ack_timeout=ACK_TIMEOUT,
                                             memory_budget=64 << 20, task_memory_mb=0))
    try:
        runner._note(t.JobInfo(job_id=JOB, app_blob=ship_app(str(APPS / "wc.py")), args=[], n_reduce=1, push=True,
                               batch_bytes=1 << 20, window_bytes=1 << 20, owners=[silent_owner], owners_epoch=1))
        path = tmp_path / "in.txt"
        path.write_text("the cat and the dog\n")
        split = m.InputSplit(name=path.name, path=str(path), start=0, end=path.stat().st_size)
        started = time.monotonic()
        done = runner._run(t.RunMap(attempt=m.AttemptId(job_id=JOB, kind="map", task=0, number=1),
                                    split=split, kept_dir=str(tmp_path)))
        waited = time.monotonic() - started
        assert isinstance(done, t.MapResult), done
        assert waited >= ACK_TIMEOUT, "the owner was never waited for: the test shows nothing"
        ticks = []
        while ours.poll(0):
            rec = t.decode_from_proc(ours.recv())
            if isinstance(rec, t.Tick):
                ticks.append(rec)
        expected = waited / 0.2   # a report every 0.2 s at most (runner._TICK_EVERY)
        assert len(ticks) >= expected / 2, f"{len(ticks)} progress reports in {waited:.1f} s of waiting"
    finally:
        runner._pusher.close()
        ours.close(linger=0)
        theirs.close(linger=0)
        ctx.term()


def test_a_reducer_pulling_from_an_unreachable_mapper_keeps_counting_progress(
        tmp_path: Path, silent_owner: str) -> None:
    """The worker's side: a pull waits up to the pull timeout for a mapper that does not answer, and the
    progress its heartbeats carry must move meanwhile."""
    ctx: zmq.Context[Any] = zmq.Context()
    puller = Puller(ctx, ReceiveStore(tmp_path / "recv"), LostPeers(), 1 << 20, ACK_TIMEOUT)
    assign = m.AssignReduce(attempt=m.AttemptId(job_id=JOB, kind="reduce", task=0, number=1),
                            output_dir=str(tmp_path / "out"), n_maps=1, commits_base=0, commits=[])
    requests = [m.PeerRequest(silent_owner, [(0, 1)], 1)]
    progress = []
    try:
        started = time.monotonic()
        assert puller.gather(assign, requests, {0: 1}, lambda: None, lambda: progress.append(1), get_logger()) == [0]
        waited = time.monotonic() - started
        assert waited >= ACK_TIMEOUT, "the mapper was never waited for: the test shows nothing"
        assert len(progress) >= waited / 0.2 / 2, f"progress moved by {len(progress)} in {waited:.1f} s"
    finally:
        ctx.term()
