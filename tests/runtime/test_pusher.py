"""The pusher over real loopback sockets: byte credit per owner, kept across map tasks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from zmr.protocol.codec import data_decoder, encode
from zmr.protocol.messages import AttemptId, Batch, BatchAck
from zmr.runtime import transport
from zmr.runtime.pusher import Pusher

KIB = 1024
MAX = 1 << 20


@pytest.fixture()
def ctx() -> Iterator[zmq.Context[Any]]:
    context: zmq.Context[Any] = zmq.Context()
    context.setsockopt(zmq.LINGER, 0)
    yield context
    context.term()


@pytest.fixture()
def owner(ctx: zmq.Context[Any]) -> Iterator[zmq.Socket[Any]]:
    sock = transport.router(ctx, "tcp://127.0.0.1:*", MAX)
    yield sock
    sock.close(linger=0)


def _header(seq: int, task: int = 0) -> Batch:
    source = AttemptId(job_id="job-0001", kind="map", task=task, number=1)
    return Batch(source=source, partition=0, seq=seq, n_records=1)


def _receive(owner: zmq.Socket[Any], n: int, timeout: float = 5.0) -> list[tuple[bytes, Batch]]:
    decoder = data_decoder(MAX)
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n and owner.poll(int(max(0.0, deadline - time.monotonic()) * 1000)):
        peer, msg, _ = transport.recv_router(owner, decoder)
        got.append((peer, msg))
    return got


def _ack(owner: zmq.Socket[Any], peer: bytes, batch: Batch) -> None:
    ack = BatchAck(source=batch.source, partition=batch.partition, seq=batch.seq, nbytes=KIB)
    transport.send(owner, encode(ack), peer)


def test_a_task_ends_without_waiting_for_acks_and_its_credit_carries_over(
        ctx: zmq.Context[Any], owner: zmq.Socket[Any]) -> None:
    addr = transport.bound_address(owner)
    pusher = Pusher(ctx, 3 * KIB, MAX, ack_timeout=1.0)
    try:
        pusher.start_task(3 * KIB)
        started = time.monotonic()
        assert all(pusher.push(addr, _header(seq), b"x" * KIB) for seq in range(3))
        assert time.monotonic() - started < 0.5, "pushes within the window never wait"
        sent = _receive(owner, 3)
        assert [msg.seq for _, msg in sent] == [0, 1, 2]

        # the next task: the three unacked batches still hold the whole window, so a fourth waits ...
        pusher.start_task(3 * KIB)
        started = time.monotonic()
        assert not pusher.push(addr, _header(0, task=1), b"y" * KIB, give_up=lambda: time.monotonic() - started > 0.3)
        assert time.monotonic() - started >= 0.3
        # ... until the owner's acks return the credit
        for peer, msg in sent:
            _ack(owner, peer, msg)
        time.sleep(0.1)
        pusher.start_task(3 * KIB)   # takes the acks that arrived while nothing was pushed
        started = time.monotonic()
        assert all(pusher.push(addr, _header(seq, task=2), b"z" * KIB) for seq in range(3))
        assert time.monotonic() - started < 0.5
        assert [msg.source.task for _, msg in _receive(owner, 3)] == [2, 2, 2]
    finally:
        pusher.close()


def test_an_owner_that_never_acks_is_given_up_after_the_timeout_then_tried_again(
        ctx: zmq.Context[Any], owner: zmq.Socket[Any]) -> None:
    addr = transport.bound_address(owner)
    pusher = Pusher(ctx, KIB, MAX, ack_timeout=0.3)
    try:
        pusher.start_task(KIB)
        assert pusher.push(addr, _header(0), b"x" * KIB)
        started = time.monotonic()
        assert not pusher.push(addr, _header(1), b"x" * KIB), "no credit came back within ack_timeout"
        assert 0.25 <= time.monotonic() - started < 2.0
        assert not pusher.push(addr, _header(2), b"x" * KIB), "given up for the rest of this task"
        pusher.start_task(KIB)   # a new task gives the owner a fresh chance, with its credit back
        assert pusher.push(addr, _header(0, task=1), b"x" * KIB)
        assert [msg.seq for _, msg in _receive(owner, 2)] == [0, 0]
    finally:
        pusher.close()
