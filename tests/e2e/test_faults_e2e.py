"""Workers killed with SIGKILL in the middle of a job: the job still completes with the reference output.

The probe app (tests/e2e/apps/probe.py) makes the check sharp: every map emits one `~probe:<r>` record
per partition, so each partition's probe value must equal the number of map tasks, whoever ran them and
however the partitions moved.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from zmr.client import Client
from zmr.protocol import messages as m

from .conftest import (
    APPS,
    PROBE_APP,
    Cluster,
    SeqOracle,
    probe_args,
    probe_counts,
    read_markers,
    read_output,
    wait_until,
    without_probes,
)

pytestmark = pytest.mark.e2e

def _pid_of(worker_id: str) -> int:
    """Worker ids are `w-<host>-<pid>-<random>`."""
    return int(worker_id.rsplit("-", 2)[1])


def _submit(c: Cluster, gutenberg: Path, out: Path, markers: Path, n_reduce: int, **options: object) -> str:
    assert c.client is not None
    return c.client.submit(str(PROBE_APP), [str(gutenberg)], str(out), n_reduce=n_reduce,
                           args=probe_args(markers, probe_r=n_reduce, **options), split_size=150_000)


def _kill_when(c: Cluster, choose: Callable[[], str]) -> str:
    """Wait until `choose` names a worker, then SIGKILL it; returns its id."""
    worker_id = wait_until(choose, 60, interval=0.01, what="the moment to kill a worker")
    pid = _pid_of(worker_id)
    assert pid in {p.pid for p in c.local.workers}
    os.kill(pid, signal.SIGKILL)
    return worker_id


def _check_complete(client: Client, job: str, out: Path, n_reduce: int, victim: str, seq_oracle: SeqOracle,
                    gutenberg: Path, word_count: list[str]) -> list[str]:
    final = client.wait(job, timeout=120)
    lines = read_output(out, n_reduce, ignore_hidden=True)
    # every map's output was counted exactly once in every partition, whoever made or moved it
    assert probe_counts(lines) == {r: final.maps_total for r in range(n_reduce)}
    assert without_probes(lines) == seq_oracle(APPS / "wc.py", [gutenberg]) == word_count
    states = {w.worker_id: w.state for w in client.status().workers}
    assert states[victim] == "dead" and sum(s != "dead" for s in states.values()) == 2, states
    return lines


def _map_phase(client: Client, job: str, n_reduce: int, want: Callable[[m.JobInfo, list[str], str], bool]
               ) -> Callable[[], str]:
    """A chooser: a worker that has committed a map, while enough maps remain and owners are known."""
    def choose() -> str:
        info = client.job(job)
        if info.state != "running" or len(info.partitions) < n_reduce or info.maps_done >= info.maps_total - 4:
            return ""
        owners = [p.owner for p in info.partitions]
        done = [t.worker for t in info.tasks if t.kind == "map" and t.state == "done"]
        for worker in dict.fromkeys(done):
            if want(info, owners, worker):
                return worker
        return ""
    return choose


def test_mapper_killed_mid_job_the_job_still_completes(gutenberg: Path, tmp_path: Path, cluster,
                                                       seq_oracle: SeqOracle, gutenberg_word_count: list[str]
                                                       ) -> None:
    """The victim owns no partition (R=2 on 3 workers), has committed maps and is running another one."""
    c: Cluster = cluster(3)
    assert c.client is not None
    client = c.client
    markers, out = tmp_path / "markers", tmp_path / "out"
    markers.mkdir()
    job = _submit(c, gutenberg, out, markers, 2, map_sleep=0.1)

    def mapper_only(info: m.JobInfo, owners: list[str], worker: str) -> bool:
        running = [t for t in info.tasks if t.kind == "map" and t.state == "running" and t.worker == worker]
        return worker not in owners and bool(running)

    victim = _kill_when(c, _map_phase(client, job, 2, mapper_only))
    _check_complete(client, job, out, 2, victim, seq_oracle, gutenberg, gutenberg_word_count)


def test_partition_owner_killed_after_maps_committed_the_job_still_completes(
        gutenberg: Path, tmp_path: Path, cluster, seq_oracle: SeqOracle, gutenberg_word_count: list[str]) -> None:
    """Kill one of 3 workers that owns partitions and has committed a map, once other workers committed some."""
    c: Cluster = cluster(3)
    assert c.client is not None
    client = c.client
    markers, out = tmp_path / "markers", tmp_path / "out"
    markers.mkdir()
    job = _submit(c, gutenberg, out, markers, 6, map_sleep=0.1)

    def owner_among_others(info: m.JobInfo, owners: list[str], worker: str) -> bool:
        committers = {t.worker for t in info.tasks if t.kind == "map" and t.state == "done"}
        return worker in owners and len(committers) >= 2

    victim = _kill_when(c, _map_phase(client, job, 6, owner_among_others))
    _check_complete(client, job, out, 6, victim, seq_oracle, gutenberg, gutenberg_word_count)


def _kill_a_running_reducer(c: Cluster, gutenberg: Path, tmp_path: Path) -> tuple[str, str, Path]:
    """Slow reduces (the probe key sleeps); SIGKILL the worker of the first reduce the app sees running."""
    markers, out = tmp_path / "markers", tmp_path / "out"
    markers.mkdir()
    job = _submit(c, gutenberg, out, markers, 6, reduce_sleep=0.8)
    pid = wait_until(lambda: next((r["pid"] for r in read_markers(markers) if r["kind"] == "reduce"), None), 60,
                     interval=0.01, what="a reduce to run")
    assert c.client is not None
    victim = next(w.worker_id for w in c.client.status().workers if _pid_of(w.worker_id) == pid)
    assert c.client.job(job).state == "running"
    os.kill(pid, signal.SIGKILL)
    return job, victim, out


def test_reducer_killed_mid_reduce_the_job_still_completes(gutenberg: Path, tmp_path: Path, cluster,
                                                           seq_oracle: SeqOracle, gutenberg_word_count: list[str]
                                                           ) -> None:
    c: Cluster = cluster(3)
    job, victim, out = _kill_a_running_reducer(c, gutenberg, tmp_path)
    assert c.client is not None
    _check_complete(c.client, job, out, 6, victim, seq_oracle, gutenberg, gutenberg_word_count)


def test_a_killed_reducer_leaves_no_temporary_file_in_the_output(gutenberg: Path, tmp_path: Path, cluster) -> None:
    c: Cluster = cluster(3)
    job, _, out = _kill_a_running_reducer(c, gutenberg, tmp_path)
    assert c.client is not None
    c.client.wait(job, timeout=120)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_barrier_mode_reducers_pull_map_output_without_retries(gutenberg: Path, tmp_path: Path, cluster,
                                                               seq_oracle: SeqOracle) -> None:
    """With shuffle.mode=barrier every reducer pulls every map's output from the mappers' kept copies."""
    c: Cluster = cluster(2, shuffle__mode="barrier")
    assert c.client is not None
    job = c.client.submit(str(APPS / "wc.py"), [str(gutenberg)], str(tmp_path / "out"), n_reduce=2)
    c.client.wait(job, timeout=15)
    assert read_output(tmp_path / "out", 2) == seq_oracle(APPS / "wc.py", [gutenberg])
    assert [t.attempts for t in c.client.job(job).tasks] == [1] * 10   # 8 maps, 2 reduces: no retries
