"""Every port of a running cluster survives garbage, oversized messages, floods and protocol misuse.

One job runs through the whole siege: its maps wait on a gate file (tests/e2e/apps/gated.py), so the job
is certainly running while the hostile peers act; then the gate opens and the job must finish with the
sequential reference's output. Security is off here (the CURVE tests are in test_security_e2e.py): every
peer can reach every port, which is exactly when the servers' own checks matter.

What each server must do with a bad peer: log it once (`bad_message` on the coordinator,
`bad_data_message` on a data socket), however many bad messages it sends, and keep serving everyone,
that peer included.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zstandard

from zmr.protocol import messages as m
from zmr.protocol.codec import COMPRESSED_FRAME, VERSION_FRAME, encode

from .conftest import APPS, FAST, TEST_APPS, Cluster, SeqOracle, read_output, wait_until
from .peers import FakeWorker, Peer, log_records, send_raw, zmtp_greeting

pytestmark = pytest.mark.e2e

GATED_APP = TEST_APPS / "gated.py"
N_REDUCE = 3
CONTROL_LIMIT = 64 << 10     # coordinator.max_message_bytes, low so that oversize is cheap
DATA_LIMIT = 4 << 20         # worker.max_message_bytes (shuffle batches are about 1 MiB)
FLOOD = 5000
REPEAT = 3                   # each garbage peer sends its message this many times
RNG = random.Random(20240607)
GHOST_MAP = m.AttemptId(job_id="job-9999", kind="map", task=0, number=1)   # an attempt of no job


def _body(obj: Any) -> bytes:
    return msgspec.msgpack.encode(obj)


def _garbage(limit: int) -> dict[str, list[bytes]]:
    """Multipart messages a decoder must refuse, by name (the name is also the peer's routing id)."""
    status = encode(m.StatusRequest())
    return {
        "bad-version": [b"ZMR" + bytes([m.PROTOCOL_VERSION + 1]), status[1]],   # a version from the future
        "no-version": [b"", status[1]],
        "one-frame": [b"hello"],
        "five-frames": [VERSION_FRAME, status[1], b"a", b"b", b"c"],
        "unknown-tag": [VERSION_FRAME, _body(["NoSuchMessage", 1])],
        "wrong-type": [VERSION_FRAME, _body(["StatusRequest", 42])],
        "extra-field": [VERSION_FRAME, _body(["StatusRequest", None, False, "extra"])],
        "not-msgpack": [VERSION_FRAME, b"\xc1\xc1\xc1"],
        "random-body": [VERSION_FRAME, RNG.randbytes(300)],
        "stray-payload": [*status, b"a payload no message of this kind has"],
        "batch-without-payload": [VERSION_FRAME, _body(["Batch", "job-0001", 0, 1, 0, 0, 1])],
        "too-big-in-total": [VERSION_FRAME, b"\x00" * (limit // 2 + 1), b"\x00" * (limit // 2 + 1)],
        "compressed-bomb": [COMPRESSED_FRAME, zstandard.ZstdCompressor().compress(b"\x00" * (limit * 64))],
        "compressed-garbage": [COMPRESSED_FRAME, RNG.randbytes(300)],
    }


def _flood_kinds() -> list[list[bytes]]:
    """The small kinds of garbage, taken in turn by a flood."""
    return [frames for name, frames in _garbage(CONTROL_LIMIT).items() if name != "too-big-in-total"]


@dataclass
class Siege:
    job_id: str
    info: m.JobInfo
    detail: m.JobInfo
    lines: list[str]
    running_during_siege: list[bool]                  # job state checked before and after every attack
    alive_after: list[bool]                           # every cluster process, after the job
    coordinator_log: list[dict[str, Any]]
    worker_logs: list[list[dict[str, Any]]]          # of the workers as status() listed them
    served_after_garbage: dict[str, bool] = field(default_factory=dict)   # peer -> got a reply afterwards
    fake_received: list[Any] = field(default_factory=list)
    impostor_received: list[Any] = field(default_factory=list)
    stranger_received: list[Any] = field(default_factory=list)
    fake_worker_id: str = ""
    misuse_sent: int = 0
    data_replies: dict[str, list[Any]] = field(default_factory=dict)
    workers_before: list[str] = field(default_factory=list)
    leftovers_of_unknown_job: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def bad(self, peer: str, event: str = "bad_message", log: list[dict[str, Any]] | None = None) -> list[str]:
        records = self.coordinator_log if log is None else log
        return [r.get("error", "") for r in records if r.get("event") == event and r.get("peer") == peer.encode().hex()]


def _running(c: Cluster, job: str) -> bool:
    assert c.client is not None
    return c.client.job(job).state == "running"


def _served(peer: Peer) -> bool:
    """Does the coordinator still answer this peer?"""
    peer.send_msg(m.StatusRequest())
    return any(isinstance(r, m.StatusReply) for r in peer.replies(10, until=m.StatusReply))


def _attack_coordinator(c: Cluster, siege: Siege, job: str) -> None:
    # (a) random bytes on raw TCP connections, and one that starts a proper ZMTP greeting first
    for _ in range(8):
        send_raw(c.address, RNG.randbytes(RNG.randrange(1, 64 << 10)))
    send_raw(c.address, b"\xff" + RNG.randbytes(200))
    zmtp_greeting(c.address)
    # (b) garbage multipart messages, each kind from its own peer, each sent several times
    for name, frames in _garbage(CONTROL_LIMIT).items():
        with Peer(c.address, name.encode()) as peer:
            for _ in range(REPEAT):
                peer.send(frames)
            siege.served_after_garbage[name] = _served(peer)
    # (c) oversized: one frame over MAXMSGSIZE; libzmq drops the connection, the peer may come back
    with Peer(c.address, b"oversize") as peer:
        peer.send([VERSION_FRAME, b"\x00" * (CONTROL_LIMIT + 1)])
        peer.send([b"\x00" * (4 * CONTROL_LIMIT)])
        time.sleep(0.3)
        siege.served_after_garbage["oversize"] = _served(peer)
    # (d) a flood of garbage from one peer
    kinds = _flood_kinds()
    with Peer(c.address, b"flood") as peer:
        for i in range(FLOOD):
            peer.send(kinds[i % len(kinds)])
        siege.served_after_garbage["flood"] = _served(peer)


def _attack_with_misuse(c: Cluster, siege: Siege, job: str) -> None:
    """(e) well-formed messages from a peer with no business sending them."""
    assert c.client is not None
    detail = c.client.job(job)
    running = [t for t in detail.tasks if t.kind == "map" and t.state == "running"]
    assert running, detail.tasks
    victim = running[0]
    fake = FakeWorker(c.address, "w-fake-0001", b"fake-worker")
    try:
        assert fake.register(), fake.received
        reports: list[m.WorkerToCoord] = []
        for t in running:   # tasks that run on real workers: attempt numbers as the coordinator has them
            reports += [m.MapDone(worker_id=fake.worker_id,
                                  attempt=m.AttemptId(job_id=job, kind="map", task=t.index, number=t.attempts),
                                  records_out=1, bytes_out=1)] * 2    # a duplicate stale report
            reports += [m.TaskFailed(worker_id=fake.worker_id,
                                     attempt=m.AttemptId(job_id=job, kind="map", task=t.index, number=t.attempts),
                                     kind="app", error="forged failure")] * 5   # more than retry.max_attempts
        reports += [
            m.ReduceDone(worker_id=fake.worker_id, attempt=m.AttemptId(job_id=job, kind="reduce", task=0, number=1),
                         records_out=1),
            m.ReduceCommitted(worker_id=fake.worker_id,
                              attempt=m.AttemptId(job_id=job, kind="reduce", task=0, number=1)),
            m.TaskFailed(worker_id=fake.worker_id, attempt=m.AttemptId(job_id=job, kind="reduce", task=0, number=1),
                         kind="missing_data",
                         error="forged", missing_maps=[0, 1, 2]),
            m.MapDone(worker_id=fake.worker_id, attempt=GHOST_MAP,
                      records_out=1, bytes_out=1),
            m.MapDone(worker_id=fake.worker_id, attempt=m.AttemptId(job_id=job, kind="map", task=10**6, number=10**6),
                      records_out=-1, bytes_out=-1),
            m.Heartbeat(worker_id=fake.worker_id, task="forged", progress=10**9, partitions=[
                m.PartitionStat(job_id=job, partition=p, bytes_in=10**12, batches_in=10**6, first_batch=0.0,
                                last_batch=0.0) for p in range(N_REDUCE)]),
        ]
        for report in reports:
            fake.send_msg(report)
            fake.beat()
        siege.misuse_sent = len(reports) - 1   # the heartbeat is no report
        fake.drain(1.0)
        siege.fake_received = fake.received
        siege.fake_worker_id = fake.worker_id
    finally:
        fake.close()
    # someone else claims to be the worker that runs the victim's task
    with Peer(c.address, b"impostor") as impostor:
        for _ in range(3):
            forged = m.AttemptId(job_id=job, kind="map", task=victim.index, number=victim.attempts)
            impostor.send_msg(m.TaskFailed(worker_id=victim.worker, attempt=forged, kind="app",
                                           error="forged by an impostor"))
        deadline = time.monotonic() + 10
        while len(siege.impostor_received) < 3 and time.monotonic() < deadline:
            siege.impostor_received += impostor.replies(0.5)
    # a worker the coordinator never met
    with Peer(c.address, b"stranger") as stranger:
        stranger.send_msg(m.Heartbeat(worker_id="w-never-registered"))
        siege.stranger_received = stranger.replies(5.0, until=m.RegisterAgain)


def _pulled(peer: Peer) -> bool:
    """Does the data socket still answer this peer? (Its answer also proves the garbage before it arrived.)"""
    peer.send_msg(m.PullMaps(job_id=GHOST_MAP.job_id, partition=0, runs=[(0, 1)]))
    return any(isinstance(r, m.PullEnd) for r in peer.replies(10, until=m.PullEnd))


def _attack_data_socket(addr: str, index: int, siege: Siege, job: str) -> None:
    send_raw(addr, RNG.randbytes(32 << 10))
    send_raw(addr, b"\xff" + RNG.randbytes(100))
    tag = f"w{index}-"
    source = m.AttemptId(job_id=job, kind="map", task=0, number=1)
    garbage = {**_garbage(DATA_LIMIT),
               "batch-ack": encode(m.BatchAck(source=source, partition=0, seq=0, nbytes=1)),
               "pull-end": encode(m.PullEnd(job_id=job, partition=0, served=[(0, 1, 3)]))}
    for name, frames in garbage.items():
        with Peer(addr, (tag + name).encode()) as peer:
            for _ in range(REPEAT):
                peer.send(frames)
            siege.served_after_garbage[tag + name] = _pulled(peer)
    with Peer(addr, (tag + "oversize").encode()) as peer:
        peer.send([VERSION_FRAME, b"\x00" * (DATA_LIMIT + 1)])
        time.sleep(0.3)
        siege.served_after_garbage[tag + "oversize"] = _pulled(peer)
    kinds = _flood_kinds()
    with Peer(addr, (tag + "flood").encode()) as peer:
        for i in range(FLOOD):
            peer.send(kinds[i % len(kinds)])
        # well-formed, but for a job and partition that do not exist
        peer.send_msg(m.Batch(source=GHOST_MAP, partition=7, seq=0, n_records=1), b"not a batch at all")
        peer.send_msg(m.StreamEnd(source=GHOST_MAP, counts={7: 1}))
        peer.send_msg(m.PullMaps(job_id=GHOST_MAP.job_id, partition=7, runs=[(0, 1 << 30)]))
        siege.data_replies[tag] = peer.replies(10, until=m.PullEnd)


@pytest.fixture(scope="module")
def siege(library: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Siege]:
    base = tmp_path_factory.mktemp("siege")
    gate, out = base / "gate", base / "out"
    c = Cluster(2, {**FAST, "log.format": "json", "coordinator.max_message_bytes": CONTROL_LIMIT,
                    "worker.max_message_bytes": DATA_LIMIT, "coordinator.task_timeout": 60})
    try:
        c.start()
        c.wait_for_workers(2)
        client = c.client
        assert client is not None
        workers = client.status().workers
        job = client.submit(str(GATED_APP), [str(library)], str(out), n_reduce=N_REDUCE,
                            args=[f"gate={gate}", "gate_timeout=45"], split_size=400_000)
        wait_until(lambda: sum(t.state == "running" for t in client.job(job).tasks) == 2, 30,
                   what="both workers to run a map")
        running = [True]
        started = time.monotonic()
        seconds = {}
        partial = Siege(job, client.job(job), client.job(job), [], running, [], [], [],
                        workers_before=sorted(w.worker_id for w in workers))
        for name, attack in (("coordinator", lambda: _attack_coordinator(c, partial, job)),
                             ("misuse", lambda: _attack_with_misuse(c, partial, job)),
                             *((f"data-{i}", lambda w=w, i=i: _attack_data_socket(w.data_addr, i, partial, job))
                               for i, w in enumerate(workers))):
            t0 = time.monotonic()
            attack()
            seconds[name] = time.monotonic() - t0
            running.append(_running(c, job))
        seconds["total"] = time.monotonic() - started
        gate.touch()
        partial.info = client.wait(job, timeout=120)
        partial.detail = client.job(job)
        partial.lines = read_output(out, N_REDUCE)
        partial.alive_after = [p.poll() is None for p in c.processes()]
        time.sleep(0.3)   # the workers have dropped the job's files
        partial.leftovers_of_unknown_job = sorted(c.local.log_dir.parent.glob("worker-*/**/job-9999"))
        partial.coordinator_log = log_records(c.local.log_dir / "coordinator.log")
        logs = [log_records(c.local.log_dir / f"worker-{i}.log") for i in range(2)]
        by_id = {next(r["worker"] for r in records if "worker" in r): records for records in logs}
        partial.worker_logs = [by_id[w.worker_id] for w in workers]   # in the order of the attacks
        partial.seconds = seconds
        yield partial
    finally:
        c.stop()


# ------------------------------------------------------------------ the job and the processes


def test_the_job_ran_through_the_siege_and_its_output_equals_the_reference(
        siege: Siege, library: Path, seq_oracle: SeqOracle) -> None:
    assert all(siege.running_during_siege), siege.running_during_siege
    assert siege.info.state == "succeeded" and siege.detail.error == ""
    assert siege.lines == seq_oracle(APPS / "wc.py", [library])
    # no forged report counted: only the two real workers ran tasks, none of them failed
    assert {t.worker for t in siege.detail.tasks} <= set(siege.workers_before)
    assert not [r for r in siege.coordinator_log if r.get("event") == "task_failed"]
    assert all(p.bytes_in < 10**12 for p in siege.detail.partitions), siege.detail.partitions


def test_every_process_is_alive_after_the_siege(siege: Siege) -> None:
    assert siege.alive_after and all(siege.alive_after), siege.alive_after
    for records in [siege.coordinator_log, *siege.worker_logs]:
        assert not [r for r in records if r.get("level") in ("error", "critical") or "exception" in r], records[-5:]


# ------------------------------------------------------------------ the coordinator's port


@pytest.mark.parametrize("name", list(_garbage(CONTROL_LIMIT)))
def test_each_garbage_peer_is_logged_once_and_still_served(siege: Siege, name: str) -> None:
    assert len(siege.bad(name)) == 1, siege.bad(name)
    assert siege.served_after_garbage[name], f"{name} got no status reply after its garbage"


def test_the_errors_say_what_is_wrong(siege: Siege) -> None:
    errors = {name: siege.bad(name)[0] for name in _garbage(CONTROL_LIMIT)}
    assert "version" in errors["bad-version"] and "version" in errors["no-version"]
    assert "frames" in errors["one-frame"] and "frames" in errors["five-frames"]
    assert "exceeds" in errors["too-big-in-total"]
    assert "payload" in errors["stray-payload"]
    for name in ("unknown-tag", "wrong-type", "extra-field", "not-msgpack", "batch-without-payload"):
        assert "malformed" in errors[name], errors[name]


def test_an_oversized_message_costs_only_its_connection(siege: Siege) -> None:
    assert siege.served_after_garbage["oversize"]


def test_a_flood_is_logged_once(siege: Siege) -> None:
    assert len(siege.bad("flood")) == 1
    assert siege.served_after_garbage["flood"]
    # bad_message lines overall: one per garbage peer, nothing like one per message
    assert len([r for r in siege.coordinator_log if r.get("event") == "bad_message"]) < 100


# ------------------------------------------------------------------ protocol misuse


def test_reports_for_tasks_the_sender_does_not_run_are_ignored(siege: Siege) -> None:
    kinds = Counter(type(r).__name__ for r in siege.fake_received)
    assert kinds["Welcome"] == 1
    assert set(kinds) <= {"Welcome", "Ping"}, kinds   # no commit decision, no task, no job setup
    stale = [r for r in siege.coordinator_log if r.get("event") == "stale_report"
             and r.get("worker") == siege.fake_worker_id]
    assert len(stale) == siege.misuse_sent, stale


def test_an_impostor_and_an_unknown_worker_are_told_to_register(siege: Siege) -> None:
    assert [type(r) for r in siege.impostor_received] == [m.RegisterAgain] * 3
    assert [type(r) for r in siege.stranger_received] == [m.RegisterAgain]


# ------------------------------------------------------------------ the workers' data sockets


@pytest.mark.parametrize("index", [0, 1])
@pytest.mark.parametrize("name", [*_garbage(DATA_LIMIT), "batch-ack", "pull-end", "flood"])
def test_each_garbage_peer_of_a_data_socket_is_logged_once_and_still_served(siege: Siege, index: int,
                                                                          name: str) -> None:
    lines = siege.bad(f"w{index}-{name}", "bad_data_message", siege.worker_logs[index])
    assert len(lines) == 1, lines
    if name != "flood":
        assert siege.served_after_garbage[f"w{index}-{name}"], f"{name} got no pull answer after its garbage"


@pytest.mark.parametrize("index", [0, 1])
def test_an_oversized_batch_costs_only_its_connection(siege: Siege, index: int) -> None:
    assert siege.served_after_garbage[f"w{index}-oversize"]


@pytest.mark.parametrize("index", [0, 1])
def test_a_data_socket_answers_well_formed_messages_about_unknown_jobs(siege: Siege, index: int) -> None:
    replies = siege.data_replies[f"w{index}-"]
    assert replies[-1] == m.PullEnd(job_id=GHOST_MAP.job_id, partition=7, served=[]), replies


def test_batches_for_a_job_that_never_existed_are_not_kept(siege: Siege) -> None:
    assert siege.leftovers_of_unknown_job == []
