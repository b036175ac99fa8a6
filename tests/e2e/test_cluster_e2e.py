"""A shared local cluster: several jobs at once, `zmr status` and `zmr cancel`."""

from __future__ import annotations

import contextlib
import re
import socket
import tempfile
from pathlib import Path
from typing import Any

import pytest

from zmr.errors import ClusterError, JobFailed
from zmr.local import LocalCluster

from .conftest import (
    APPS,
    GREP_PATTERN,
    PROBE_APP,
    Cluster,
    SeqOracle,
    probe_args,
    read_markers,
    read_output,
    wait_until,
)

pytestmark = pytest.mark.e2e


# ------------------------------------------------------------------ several jobs


def test_several_jobs_submitted_at_once_all_complete_correctly(library: Path, big_input: Path, tmp_path: Path,
                                                               cluster, seq_oracle: SeqOracle) -> None:
    c: Cluster = cluster(3)
    assert c.client is not None
    jobs = {  # name: (app, args, inputs, n_reduce, split_size)
        "wc": ("wc", [], [library], 3, 64 << 20),
        "indexer": ("indexer", [], [library], 7, 64 << 20),
        "grep": ("grep", [GREP_PATTERN], [big_input], 5, 500_000),
        "invert": ("invert", [], [library], 2, 300_000),
        "wc-one-reduce": ("wc", [], [big_input], 1, 400_000),
    }
    ids = {}
    for name, (app, args, inputs, n_reduce, split_size) in jobs.items():
        ids[name] = c.client.submit(str(APPS / f"{app}.py"), [str(i) for i in inputs], str(tmp_path / name),
                                    n_reduce=n_reduce, args=args, split_size=split_size)
    assert len(set(ids.values())) == len(jobs)
    # a second job may not write into the directory of one that is still running
    with pytest.raises(ClusterError, match="in use by a running job"):
        c.client.submit(str(APPS / "wc.py"), [str(library)], str(tmp_path / "wc-one-reduce"), n_reduce=2)
    for job in ids.values():
        c.client.wait(job, timeout=120)
    for name, (app, args, inputs, n_reduce, _) in jobs.items():
        assert read_output(tmp_path / name, n_reduce) == seq_oracle(APPS / f"{app}.py", inputs, args), name
    states = {j.job_id: j.state for j in c.client.status().jobs}
    assert all(states[job] == "succeeded" for job in ids.values()), states


# ------------------------------------------------------------------ zmr status and zmr cancel


def test_status_shows_jobs_workers_and_per_task_and_partition_times(library: Path, tmp_path: Path, cluster,
                                                                    run_zmr) -> None:
    c: Cluster = cluster(2)
    assert c.client is not None
    markers = tmp_path / "markers"
    markers.mkdir()
    job = c.client.submit(str(PROBE_APP), [str(library)], str(tmp_path / "out"), n_reduce=3,
                          args=probe_args(markers, map_sleep=0.3))
    wait_until(lambda: read_markers(markers), 30, what="a map task to start")
    running = run_zmr("status", "--coordinator", c.address)
    assert running.returncode == 0, str(running)
    assert re.search(rf"^{job}\s+\S+\s+running\s", running.stdout, re.M), running.stdout
    assert re.search(r"^w-\S+\s+tcp://127\.0\.0\.1:\d+\s+busy\s.*\b" + job + r"/map-\d+", running.stdout, re.M), \
        running.stdout
    c.client.wait(job, timeout=60)

    overview = run_zmr("status", "--coordinator", c.address)
    assert overview.returncode == 0, str(overview)
    lines = overview.stdout.splitlines()
    assert re.match(r"JOB\s+APP\s+STATE\s+MAPS\s+REDUCES\s+SHUFFLED\s+ELAPSED", lines[0]), overview.stdout
    assert re.search(rf"^{job}\s+\S+\s+succeeded\s+8/8\s+3/3\s", overview.stdout, re.M), overview.stdout
    assert re.search(r"^WORKER\s+ADDRESS\s+STATE\s+HEARTBEAT\s+TASK", overview.stdout, re.M), overview.stdout
    worker_rows = re.findall(r"^w-\S+\s+tcp://127\.0\.0\.1:\d+\s+idle\s+[\d.]+s ago", overview.stdout, re.M)
    assert len(worker_rows) == 2, overview.stdout

    brief = run_zmr("status", job, "--coordinator", c.address)   # the job alone: small whatever its size
    assert brief.returncode == 0, str(brief)
    assert f"job {job}: succeeded" in brief.stdout and f"zmr status {job} --tasks" in brief.stdout, brief.stdout
    assert not re.search(r"^(TASK|PARTITION|WORKER)\s", brief.stdout, re.M), brief.stdout
    detail = run_zmr("status", job, "--tasks", "--coordinator", c.address)
    assert detail.returncode == 0, str(detail)
    text = detail.stdout
    assert re.search(r"^TASK\s+STATE\s+ATTEMPTS\s+STARTED\s+FINISHED\s+WORKER", text, re.M), text
    time_ = r"[+-]\d+\.\d{3}s"
    for kind, n in (("map", 8), ("reduce", 3)):
        for i in range(n):
            assert re.search(rf"^{kind}-{i}\s+done\s+1\s+{time_}\s+{time_}", text, re.M), f"{kind}-{i}:\n{text}"
    assert re.search(r"^PARTITION\s+BYTES IN\s+BATCHES\s+FIRST BATCH\s+LAST BATCH\s+OWNER", text, re.M), text
    for p in range(3):
        row = rf"^{p}\s+[\d.]+ [KM]?B\s+\d+\s+{time_}\s+{time_}\s+w-\S+"
        assert re.search(row, text, re.M), f"partition {p}:\n{text}"
    # the same facts through the API: every partition got batches, first no later than last
    # (counts may lag: see test_partition_stats_are_final_once_the_job_has_ended)
    info = c.client.job(job)
    assert sorted(p.partition for p in info.partitions) == [0, 1, 2]
    for p in info.partitions:
        assert p.batches_in >= 1 and p.first_batch is not None and p.last_batch is not None
        assert p.first_batch <= p.last_batch

    unknown = run_zmr("status", "job-9999", "--coordinator", c.address)
    assert unknown.returncode != 0 and "no job job-9999" in unknown.stderr, str(unknown)


def test_status_names_the_worker_of_every_finished_task(library: Path, tmp_path: Path, cluster) -> None:
    c: Cluster = cluster(2)
    assert c.client is not None
    job = c.client.submit(str(APPS / "wc.py"), [str(library)], str(tmp_path / "out"), n_reduce=3)
    c.client.wait(job, timeout=60)
    workers = {w.worker_id for w in c.client.status().workers}
    assert {(t.kind, t.index): t.worker in workers for t in c.client.job(job).tasks} == {
        (t.kind, t.index): True for t in c.client.job(job).tasks}


def test_partition_stats_are_final_once_the_job_has_ended(library: Path, tmp_path: Path, cluster) -> None:
    """Heartbeats every 3 s and a sub-second job: whatever a final status shows must be the whole story."""
    c: Cluster = cluster(2, coordinator__heartbeat_interval="3")
    assert c.client is not None
    job = c.client.submit(str(APPS / "wc.py"), [str(library)], str(tmp_path / "out"), n_reduce=2)
    c.client.wait(job, timeout=60)
    info = c.client.job(job)
    # each of the 8 maps sends its (small) output for a partition as one batch
    assert [(p.partition, p.batches_in) for p in info.partitions] == [(0, 8), (1, 8)]


def test_cancel_stops_a_job_removes_its_output_and_the_cluster_goes_on(library: Path, tmp_path: Path, cluster,
                                                                       run_zmr, seq_oracle: SeqOracle) -> None:
    c: Cluster = cluster(2)
    assert c.client is not None
    markers, out = tmp_path / "markers", tmp_path / "out"
    markers.mkdir()
    job = c.client.submit(str(PROBE_APP), [str(library)], str(out), n_reduce=2,
                          args=probe_args(markers, map_sleep=1.0))
    wait_until(lambda: read_markers(markers), 30, what="a map task to start")
    cancelled = run_zmr("cancel", job, "--coordinator", c.address)
    assert cancelled.returncode == 0, str(cancelled)
    assert cancelled.stdout.split() == [job, "cancelled"]
    with pytest.raises(JobFailed, match=f"^job {job} was cancelled: cancelled by a client$") as ended:
        c.client.wait(job, timeout=10)
    assert ended.value.state == "cancelled"
    assert c.client.job(job).state == "cancelled"
    again = run_zmr("cancel", job, "--coordinator", c.address)   # it is not cancelled twice
    assert again.returncode == 1 and f"job {job} had already been cancelled: nothing to cancel" in again.stderr, \
        str(again)
    # no output, and not the output directory the coordinator made for the job
    wait_until(lambda: not out.exists(), 10, what="the cancelled job's output directory to go")
    # the workers are free for the next job
    wait_until(lambda: all(w.state == "idle" for w in c.client.status().workers), 15,  # type: ignore[union-attr]  # up
               what="the workers to drop the cancelled tasks")
    job2 = c.client.submit(str(APPS / "wc.py"), [str(library)], str(tmp_path / "out2"), n_reduce=2)
    c.client.wait(job2, timeout=60)
    assert read_output(tmp_path / "out2", 2) == seq_oracle(APPS / "wc.py", [library])
    assert not any(out.glob("mr-out-*")), "the cancelled job wrote output after all"


# ------------------------------------------------------------------ scratch


@pytest.mark.parametrize("fails", [False, True])
def test_a_cluster_given_a_log_dir_leaves_its_logs_there_and_nothing_else(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch,
                                                                         fails: bool) -> None:
    scratch_base, logs = tmp_path / "tmp", tmp_path / "logs"
    scratch_base.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch_base))
    with pytest.raises(RuntimeError) if fails else contextlib.nullcontext():
        with LocalCluster(1, log_dir=str(logs)) as local:
            assert list(scratch_base.iterdir()), "the cluster's scratch directory is in TMPDIR"
            if fails:
                raise RuntimeError("the block failed")
    assert local.coordinator is not None and local.coordinator.poll() is not None
    assert all(w.poll() is not None for w in local.workers)
    assert list(scratch_base.iterdir()) == [], "scratch left behind"
    assert sorted(p.name for p in logs.iterdir()) == ["coordinator.log", "worker-0.log"]


def test_a_worker_that_fails_to_start_does_not_leave_the_ones_before_it_running(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started = []
    real_start = LocalCluster.start_worker

    def start_worker(self: LocalCluster, index: int) -> Any:
        if index == 1:
            raise ClusterError("worker 1 cannot start")
        started.append(real_start(self, index))
        return started[-1]

    monkeypatch.setattr(LocalCluster, "start_worker", start_worker)
    local = LocalCluster(2, log_dir=str(tmp_path / "logs"))
    with pytest.raises(ClusterError, match="worker 1 cannot start"):
        local.start()
    assert len(started) == 1
    assert started[0].poll() is not None, "worker 0 was left running"
    assert local.coordinator is not None and local.coordinator.poll() is not None
    local.cleanup()


def test_a_picked_port_taken_by_another_process_is_tried_again_on_another(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import zmr.local as local_module

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    picks = [taken.getsockname()[1]]
    real_pick = local_module._free_loopback_port

    def pick() -> int:
        picks.append(real_pick())
        return picks.pop(0)

    monkeypatch.setattr(local_module, "_free_loopback_port", pick)
    try:
        with LocalCluster(1, log_dir=str(tmp_path / "logs")) as local:
            assert local.address != f"tcp://127.0.0.1:{taken.getsockname()[1]}"
            assert [w.poll() for w in local.workers] == [None], "the cluster came up on the second port"
    finally:
        taken.close()


# ------------------------------------------------------------------ advertised addresses


def test_a_worker_whose_data_address_cannot_be_reached_is_refused_and_shown_unreachable(
        library: Path, tmp_path: Path, cluster, run_zmr, seq_oracle: SeqOracle) -> None:
    """A worker that advertises an address nothing listens at (a typo in worker.advertise, say) is refused
    when it registers, exits saying why, and `zmr status` shows it unreachable; jobs run on the others."""
    c: Cluster = cluster(2)
    assert c.client is not None
    with socket.socket() as probe:   # a port that refuses connections: bound, never listening
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
        bad = run_zmr("worker", "--coordinator", c.local.address, "--set", f"worker.advertise=tcp://127.0.0.1:{closed}",
                      timeout=60)
    assert bad.returncode == 0, bad.stderr   # it stopped, as told
    assert "rejected" in bad.stderr and f"tcp://127.0.0.1:{closed} cannot be reached" in bad.stderr
    [refused] = [w for w in c.client.status().workers if w.data_addr == f"tcp://127.0.0.1:{closed}"]
    assert refused.state == "unreachable"
    status = run_zmr("status", "--coordinator", c.local.address)
    assert re.search(rf"{refused.worker_id}\s.*unreachable", status.stdout), status.stdout
    out = tmp_path / "out"
    job = c.client.submit(str(APPS / "wc.py"), [str(library)], str(out), n_reduce=2)
    assert c.client.wait(job, timeout=120).state == "succeeded"
    assert read_output(out, 2) == seq_oracle(APPS / "wc.py", [library])
