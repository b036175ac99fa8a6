"""Pulling from peers that cannot answer: a dead or silent mapper costs one wait at most, never one per map."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import zmq

from zmr.protocol import messages as m
from zmr.protocol.codec import data_decoder, encode
from zmr.runtime import transport
from zmr.runtime.dataserver import DataServer
from zmr.runtime.puller import LOST, SILENT, LostPeers, Puller
from zmr.runtime.stores import MapOutputStore, ReceiveStore

JOB = "job-0001"


class Recorder:
    """A logger that keeps what it is told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.events.append((event, fields))


class _Cancelled(Exception):
    pass


@pytest.fixture()
def ctx() -> Iterator[zmq.Context[Any]]:
    context: zmq.Context[Any] = zmq.Context()
    yield context
    context.term()


@pytest.fixture()
def silent_peer(ctx: zmq.Context[Any]) -> Iterator[str]:
    """A live data address that takes requests and never answers (a peer frozen in place)."""
    sock = transport.router(ctx, "tcp://127.0.0.1:*", 1 << 20)
    yield transport.bound_address(sock)
    sock.close(linger=0)


def _dead_address() -> str:
    """A loopback address nobody listens on (a SIGKILLed peer's)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


ASSIGN = m.AssignReduce(attempt=m.AttemptId(job_id=JOB, kind="reduce", task=0, number=1), output_dir="/unused",
                        n_maps=3, commits_base=0, commits=[])


def _sources(addr: str, n_maps: int = 3) -> list[m.MapSource]:
    return [m.MapSource(task=i, attempt=1, addr=addr) for i in range(n_maps)]


def _puller(ctx: zmq.Context[Any], tmp_path: Path, timeout: float) -> tuple[Puller, LostPeers]:
    received = ReceiveStore(tmp_path)
    received.open_job(JOB, 1)
    lost = LostPeers()
    return Puller(ctx, received, lost, 1 << 20, timeout), lost


def _no_cancel() -> None:
    pass


def test_a_silent_peer_costs_one_timeout_and_its_other_maps_are_missing_without_asking(
        ctx: zmq.Context[Any], tmp_path: Path, silent_peer: str) -> None:
    puller, _ = _puller(ctx, tmp_path, timeout=0.5)
    log = Recorder()
    started = time.monotonic()
    missing = puller.gather(ASSIGN, _sources(silent_peer), _no_cancel, lambda: None, log)
    assert missing == [0, 1, 2]
    assert time.monotonic() - started < 1.0   # one timeout, not three
    assert [(e, f["map_task"], f["why"]) for e, f in log.events] == [("pull_failed", 0, SILENT)]


def test_a_peer_declared_dead_ends_the_wait_at_once(ctx: zmq.Context[Any], tmp_path: Path) -> None:
    """The pull timeout is long; word that the peer is dead (SourcesLost) is what ends the pull."""
    dead = _dead_address()
    puller, lost = _puller(ctx, tmp_path, timeout=30.0)
    notice = m.SourcesLost(attempt=m.AttemptId(job_id=JOB, kind="reduce", task=0, number=1), addr=dead)
    threading.Timer(0.3, lost.add, [notice]).start()
    log = Recorder()
    started = time.monotonic()
    missing = puller.gather(ASSIGN, _sources(dead), _no_cancel, lambda: None, log)
    assert missing == [0, 1, 2]
    assert time.monotonic() - started < 2.0
    assert [(f["map_task"], f["why"]) for _, f in log.events] == [(0, LOST)]


def test_word_about_another_attempt_or_peer_changes_nothing(
        ctx: zmq.Context[Any], tmp_path: Path, silent_peer: str) -> None:
    puller, lost = _puller(ctx, tmp_path, timeout=0.5)
    lost.add(m.SourcesLost(attempt=m.AttemptId(job_id=JOB, kind="reduce", task=0, number=2),
                           addr=silent_peer))    # a later attempt
    lost.add(m.SourcesLost(attempt=m.AttemptId(job_id=JOB, kind="reduce", task=0, number=1), addr="tcp://127.0.0.1:1"))
    log = Recorder()
    assert puller.gather(ASSIGN, _sources(silent_peer, 1), _no_cancel, lambda: None, log) == [0]
    assert [f["why"] for _, f in log.events] == [SILENT]


def test_a_cancelled_attempt_stops_pulling_at_once(ctx: zmq.Context[Any], tmp_path: Path,
                                                   silent_peer: str) -> None:
    puller, _ = _puller(ctx, tmp_path, timeout=30.0)
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()

    def check_cancel() -> None:
        if cancel.is_set():
            raise _Cancelled()

    started = time.monotonic()
    with pytest.raises(_Cancelled):
        puller.gather(ASSIGN, _sources(silent_peer), check_cancel, lambda: None, Recorder())
    assert time.monotonic() - started < 2.0


def test_lost_peers_keep_a_bounded_number_of_attempts() -> None:
    lost = LostPeers(keep=2)
    attempts = [m.AttemptId(job_id=JOB, kind="reduce", task=0, number=n) for n in (1, 2, 3)]
    for attempt in attempts:
        lost.add(m.SourcesLost(attempt=attempt, addr="tcp://a:1"))
    assert [lost.of(a) for a in attempts] == [frozenset(), {"tcp://a:1"}, {"tcp://a:1"}]
    lost.forget(attempts[2])
    assert lost.of(attempts[2]) == frozenset()


def test_a_live_peer_serves_its_kept_copy_and_every_batch_counts_as_progress(
        ctx: zmq.Context[Any], tmp_path: Path) -> None:
    kept = MapOutputStore(tmp_path / "mapper")
    kept.open_job(JOB)
    for task in (0, 1):
        kept.begin(JOB, task, 1)
        for payload in (b"first", b"second"):
            kept.append(JOB, task, 1, 0, payload)
    server = DataServer(ctx, "tcp://127.0.0.1:*", 1 << 20, ReceiveStore(tmp_path / "server"), kept,
                        structlog.get_logger())
    server.start()
    try:
        puller, _ = _puller(ctx, tmp_path / "reducer", timeout=5.0)
        ticks: list[None] = []
        log = Recorder()
        assert puller.gather(ASSIGN, _sources(server.address, 2), _no_cancel, lambda: ticks.append(None), log) == []
        assert (len(ticks), log.events) == (4, [])
    finally:
        server.stop()
        server.join(timeout=5)


def test_a_data_server_refuses_to_serve_a_pull_of_a_reduce_attempts_output(
        ctx: zmq.Context[Any], tmp_path: Path) -> None:
    """Only map attempts have output on the data plane: a request naming another kind is malformed."""
    kept = MapOutputStore(tmp_path / "mapper")
    kept.open_job(JOB)
    kept.begin(JOB, 0, 1)
    kept.append(JOB, 0, 1, 0, b"records")
    server = DataServer(ctx, "tcp://127.0.0.1:*", 1 << 20, ReceiveStore(tmp_path / "server"), kept,
                        structlog.get_logger())
    server.start()
    sock = transport.dealer(ctx, server.address, 1 << 20, immediate=False)
    try:
        decoder = data_decoder(1 << 20)
        for kind, answered in (("reduce", False), ("map", True)):
            source = m.AttemptId(job_id=JOB, kind=kind, task=0, number=1)   # type: ignore[arg-type]  # both kinds
            transport.send(sock, encode(m.PullRequest(source=source, partition=0)))
            replies = []
            while sock.poll(1000 if answered else 300):
                replies.append(decoder.decode(sock.recv_multipart())[0])
            assert (replies != []) is answered, (kind, replies)
        assert isinstance(replies[-1], m.PullEnd) and replies[-1].found and replies[-1].n_batches == 1
    finally:
        sock.close(linger=0)
        server.stop()
        server.join(timeout=5)
