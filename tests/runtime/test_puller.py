"""Pulling from peers: one request per peer, however many maps; a dead or silent mapper costs one wait at most."""

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


def _requests(addr: str, n_maps: int = 3) -> list[m.PeerRequest]:
    return [m.PeerRequest(addr, [(0, n_maps)], n_maps)]


def _wanted(n_maps: int = 3) -> dict[int, int]:
    return {task: 1 for task in range(n_maps)}


def _keep(kept: MapOutputStore, task: int, attempt: int, batches: dict[int, list[bytes]]) -> None:
    """A finished map attempt's kept copy, written and indexed as a worker does (partition -> batches)."""
    segments = []
    for partition, payloads in batches.items():
        path = kept.folder(JOB) / f"p{partition}.data"
        path.parent.mkdir(parents=True, exist_ok=True)
        for payload in payloads:
            with open(path, "ab") as f:
                segments.append((partition, f.tell(), len(payload)))
                f.write(payload)
    kept.add_attempt(JOB, task, attempt, segments)


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
    missing = puller.gather(ASSIGN, _requests(silent_peer), _wanted(), _no_cancel, lambda: None, log)
    assert missing == [0, 1, 2]
    assert time.monotonic() - started < 1.0   # one timeout, not three
    assert [(e, f["peer"], f["maps"], f["why"]) for e, f in log.events] == [("pull_failed", silent_peer, 3, SILENT)]


def test_a_peer_declared_dead_ends_the_wait_at_once(ctx: zmq.Context[Any], tmp_path: Path) -> None:
    """The pull timeout is long; word that the peer is dead (SourcesLost) is what ends the pull."""
    dead = _dead_address()
    puller, lost = _puller(ctx, tmp_path, timeout=30.0)
    notice = m.SourcesLost(attempt=m.AttemptId(job_id=JOB, kind="reduce", task=0, number=1), addr=dead)
    threading.Timer(0.3, lost.add, [notice]).start()
    log = Recorder()
    started = time.monotonic()
    missing = puller.gather(ASSIGN, _requests(dead), _wanted(), _no_cancel, lambda: None, log)
    assert missing == [0, 1, 2]
    assert time.monotonic() - started < 2.0
    assert [(f["peer"], f["why"]) for _, f in log.events] == [(dead, LOST)]


def test_word_about_another_attempt_or_peer_changes_nothing(
        ctx: zmq.Context[Any], tmp_path: Path, silent_peer: str) -> None:
    puller, lost = _puller(ctx, tmp_path, timeout=0.5)
    lost.add(m.SourcesLost(attempt=m.AttemptId(job_id=JOB, kind="reduce", task=0, number=2),
                           addr=silent_peer))    # a later attempt
    lost.add(m.SourcesLost(attempt=m.AttemptId(job_id=JOB, kind="reduce", task=0, number=1), addr="tcp://127.0.0.1:1"))
    log = Recorder()
    assert puller.gather(ASSIGN, _requests(silent_peer, 1), _wanted(1), _no_cancel, lambda: None, log) == [0]
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
        puller.gather(ASSIGN, _requests(silent_peer), _wanted(), check_cancel, lambda: None, Recorder())
    assert time.monotonic() - started < 2.0


def test_lost_peers_keep_a_bounded_number_of_attempts() -> None:
    lost = LostPeers(keep=2)
    attempts = [m.AttemptId(job_id=JOB, kind="reduce", task=0, number=n) for n in (1, 2, 3)]
    for attempt in attempts:
        lost.add(m.SourcesLost(attempt=attempt, addr="tcp://a:1"))
    assert [lost.of(a) for a in attempts] == [frozenset(), {"tcp://a:1"}, {"tcp://a:1"}]
    lost.forget(attempts[2])
    assert lost.of(attempts[2]) == frozenset()


def test_a_live_peer_serves_every_asked_map_it_keeps_in_one_reply_and_every_batch_counts_as_progress(
        ctx: zmq.Context[Any], tmp_path: Path) -> None:
    """Maps 0 and 1 (attempt 1) and map 2's losing attempt 2 are kept here; the reducer asks for maps 0-3
    with attempt 1 counting for each: it stores maps 0 and 1 whole, ignores map 2's other attempt, and
    finds map 3 missing (nobody kept it), all from one request."""
    kept = MapOutputStore(tmp_path / "mapper")
    kept.open_job(JOB)
    for task in (0, 1):
        _keep(kept, task, 1, {0: [b"first", b"second"], 1: [b"other partition"]})
    _keep(kept, 2, 2, {0: [b"a losing attempt"]})
    server = DataServer(ctx, "tcp://127.0.0.1:*", 1 << 20, ReceiveStore(tmp_path / "server"), kept,
                        structlog.get_logger())
    server.start()
    try:
        received = ReceiveStore(tmp_path / "reducer")
        received.open_job(JOB, 1)
        puller = Puller(ctx, received, LostPeers(), 1 << 20, 5.0)
        ticks: list[None] = []
        log = Recorder()
        missing = puller.gather(ASSIGN, _requests(server.address, 4), _wanted(4), _no_cancel,
                                lambda: ticks.append(None), log)
        assert (missing, len(ticks), log.events) == ([2, 3], 5, [])   # 5 batches of partition 0 came
        assert [received.complete(JOB, 0, task, 1) for task in range(4)] == [True, True, False, False]
        assert received.segments(JOB, 0, 2, 2) == []                   # not the attempt that counts: not kept
    finally:
        server.stop()
        server.join(timeout=5)


def test_a_data_server_serves_only_finished_attempts_among_the_asked_maps_whatever_the_runs(
        ctx: zmq.Context[Any], tmp_path: Path) -> None:
    """Runs out of order, overlapping or empty name the same maps; an attempt begun but never reported
    whole (killed half-way) is never served, nor is anything of a job not held here."""
    kept = MapOutputStore(tmp_path / "mapper")
    kept.open_job(JOB)
    _keep(kept, 0, 1, {0: [b"records"]})
    _keep(kept, 5, 1, {0: [b"more", b"records"]})
    kept.begin(JOB, 3, 1)                                              # killed before it finished
    server = DataServer(ctx, "tcp://127.0.0.1:*", 1 << 20, ReceiveStore(tmp_path / "server"), kept,
                        structlog.get_logger())
    server.start()
    sock = transport.dealer(ctx, server.address, 1 << 20, immediate=False)
    try:
        decoder = data_decoder(1 << 20)
        asks = [(JOB, [(4, 9), (0, 2), (1, 6), (7, 3)], [(0, 1, 1), (5, 1, 2)]), (JOB, [(1, 5)], []),
                ("job-9999", [(0, 9)], [])]
        for job_id, runs, served in asks:
            transport.send(sock, encode(m.PullMaps(job_id=job_id, partition=0, runs=runs)))
            replies = []
            while sock.poll(1000):
                replies.append(decoder.decode(sock.recv_multipart())[0])
                if isinstance(replies[-1], m.PullEnd):
                    break
            assert replies[-1] == m.PullEnd(job_id=job_id, partition=0, served=served), (runs, replies)
            assert len(replies) == 1 + sum(n for _, _, n in served)
    finally:
        sock.close(linger=0)
        server.stop()
        server.join(timeout=5)


def test_a_replica_serves_the_complete_streams_pushed_to_it_only_when_asked_for_received_copies(
        ctx: zmq.Context[Any], tmp_path: Path) -> None:
    """The replica was pushed maps 0 and 1 of partition 0 (as second copies: their mapper owned it), and
    map 2 only in part; its own end counts for map 0 come in two StreamEnds (as owner, then as replica),
    which add up. Asked for received copies, it serves the complete streams among the asked maps; asked
    for its kept output, it serves none of them (it ran none of those maps)."""
    replica = ReceiveStore(tmp_path / "server")
    replica.open_job(JOB, 2)
    for task in (0, 1):
        for seq, payload in enumerate([b"first", b"second"]):
            replica.add_batch(JOB, task, 1, 0, seq, payload, 0.0)
    replica.add_batch(JOB, 2, 1, 0, 0, b"half of it", 0.0)
    replica.add_end(JOB, 0, 1, {1: 0})      # owner of partition 1: no batch of map 0 there
    replica.add_end(JOB, 0, 1, {0: 2})      # replica of partition 0
    replica.add_end(JOB, 1, 1, {0: 2})
    replica.add_end(JOB, 2, 1, {0: 2})      # one of map 2's batches never came
    kept = MapOutputStore(tmp_path / "mapper")
    kept.open_job(JOB)
    server = DataServer(ctx, "tcp://127.0.0.1:*", 1 << 20, replica, kept, structlog.get_logger())
    server.start()
    try:
        for received_copies, want in ((False, [0, 1, 2]), (True, [2])):
            received = ReceiveStore(tmp_path / f"reducer-{received_copies}")
            received.open_job(JOB, 2)
            puller = Puller(ctx, received, LostPeers(), 1 << 20, 5.0)
            request = m.PeerRequest(server.address, [(0, 3)], 3, received=received_copies)
            missing = puller.gather(ASSIGN, [request], _wanted(3), _no_cancel, lambda: None, Recorder())
            assert missing == want
        assert received.path(JOB, 0).read_bytes() == b"firstsecondfirstsecond"   # maps 0 and 1, whole
    finally:
        server.stop()
        server.join(timeout=5)
