"""Workers killed with SIGKILL in the middle of a job: the job still completes with the reference output.

The probe app (tests/e2e/apps/probe.py) makes the check sharp: every map emits one `~probe:<r>` record
per partition, so each partition's probe value must equal the number of map tasks, whoever ran them and
however the partitions moved. Each victim is frozen and its job recorded just before the kill, so the
tests also check that no task ran more often than the loss made necessary (see test_kill_points_e2e.py).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from zmr.client import Client
from zmr.protocol import messages as m

from .conftest import (
    APPS,
    KILL_SETTINGS,
    PROBE_APP,
    Cluster,
    SeqOracle,
    assert_attempts,
    freeze_and_kill,
    necessary_reruns,
    probe_args,
    probe_counts,
    read_markers,
    read_output,
    release_hold,
    wait_until,
    without_probes,
    worker_id_of,
    worker_pid,
)

pytestmark = pytest.mark.e2e



def _submit(c: Cluster, library: Path, out: Path, markers: Path, n_reduce: int, **options: object) -> str:
    assert c.client is not None
    return c.client.submit(str(PROBE_APP), [str(library)], str(out), n_reduce=n_reduce,
                           args=probe_args(markers, probe_r=n_reduce, **options), split_size=150_000)


def _kill_when(c: Cluster, job: str, choose: Callable[[], str]) -> tuple[str, m.JobInfo]:
    """Wait until `choose` names a worker, then freeze, record and SIGKILL it (`freeze_and_kill`); returns
    its id and the job as it was when the worker stopped."""
    worker_id = wait_until(choose, 60, interval=0.01, what="the moment to kill a worker")
    return worker_id, freeze_and_kill(c, worker_id, job)


def _check_complete(client: Client, job: str, out: Path, n_reduce: int, victim: str, before: m.JobInfo,
                    seq_oracle: SeqOracle, library: Path, word_count: list[str]) -> list[str]:
    """The reference output, each map counted once per partition, and no attempt beyond the necessary."""
    final = client.wait(job, timeout=120)
    lines = read_output(out, n_reduce, ignore_hidden=True)
    # every map's output was counted exactly once in every partition, whoever made or moved it
    assert probe_counts(lines) == {r: final.maps_total for r in range(n_reduce)}
    assert without_probes(lines) == seq_oracle(APPS / "wc.py", [library]) == word_count
    # the job may end before the coordinator notices the victim is gone; it must notice all the same
    wait_until(lambda: {w.worker_id: w.state for w in client.status().workers}[victim] == "dead", 30,
               what=f"{victim} to be declared dead")
    states = {w.worker_id: w.state for w in client.status().workers}
    assert sum(s != "dead" for s in states.values()) == 2, states
    assert_attempts(client.job(job), necessary_reruns(before, victim))
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


def test_mapper_killed_mid_job_the_job_still_completes(library: Path, tmp_path: Path, cluster,
                                                       seq_oracle: SeqOracle, library_word_count: list[str]
                                                       ) -> None:
    """The victim owns no partition (R=2 on 3 workers), has committed maps and is running another one.

    Its committed maps' output already reached the (surviving) owners: only its running map runs again.
    """
    c: Cluster = cluster(3, **KILL_SETTINGS)
    assert c.client is not None
    client = c.client
    markers, out = tmp_path / "markers", tmp_path / "out"
    markers.mkdir()
    job = _submit(c, library, out, markers, 2, map_sleep=0.1)

    def mapper_only(info: m.JobInfo, owners: list[str], worker: str) -> bool:
        running = [t for t in info.tasks if t.kind == "map" and t.state == "running" and t.worker == worker]
        return worker not in owners and bool(running)

    victim, before = _kill_when(c, job, _map_phase(client, job, 2, mapper_only))
    _check_complete(client, job, out, 2, victim, before, seq_oracle, library, library_word_count)
    assert len(necessary_reruns(before, victim)) == 1


def test_partition_owner_killed_after_maps_committed_the_job_still_completes(
        library: Path, tmp_path: Path, cluster, seq_oracle: SeqOracle, library_word_count: list[str]) -> None:
    """Kill one of 3 workers that owns partitions and has committed a map, once other workers committed some.

    Its partitions move, so the maps it committed run again (their kept copies died with it); no other.
    """
    c: Cluster = cluster(3, **KILL_SETTINGS)
    assert c.client is not None
    client = c.client
    markers, out = tmp_path / "markers", tmp_path / "out"
    markers.mkdir()
    job = _submit(c, library, out, markers, 6, map_sleep=0.1)

    def owner_among_others(info: m.JobInfo, owners: list[str], worker: str) -> bool:
        committers = {t.worker for t in info.tasks if t.kind == "map" and t.state == "done"}
        return worker in owners and len(committers) >= 2

    victim, before = _kill_when(c, job, _map_phase(client, job, 6, owner_among_others))
    _check_complete(client, job, out, 6, victim, before, seq_oracle, library, library_word_count)
    assert any(kind == "map" for kind, _ in necessary_reruns(before, victim))


# A kill with second copies of what a mapper makes for its own partitions (`shuffle.replicate`). A map made
# again sleeps for a minute: the new owners of the victim's partitions must not wait for it.
COPIES_SETTINGS = {**KILL_SETTINGS, "shuffle__replicate": "true", "coordinator__task_timeout": "120"}
SLOW_AGAIN = 60.0


def _kill_a_running_reducer(c: Cluster, library: Path, tmp_path: Path, **options: object
                            ) -> tuple[str, str, Path, m.JobInfo]:
    """Slow reduces (the probe key sleeps); SIGKILL the worker of the first reduce the app sees running."""
    markers, out = tmp_path / "markers", tmp_path / "out"
    markers.mkdir()
    job = _submit(c, library, out, markers, 6, reduce_sleep=1.5, **options)
    pid = wait_until(lambda: next((r["pid"] for r in read_markers(markers) if r["kind"] == "reduce"), None), 60,
                     interval=0.01, what="a reduce to run")
    assert c.client is not None
    victim = worker_id_of(c.client, pid)
    assert c.client.job(job).state == "running"
    before = freeze_and_kill(c, victim, job)
    assert any(t.kind == "reduce" and t.state == "running" and t.worker == victim for t in before.tasks)
    return job, victim, out, before


def test_reducer_killed_mid_reduce_the_job_still_completes(library: Path, tmp_path: Path, cluster,
                                                           seq_oracle: SeqOracle, library_word_count: list[str]
                                                           ) -> None:
    """Its reduce runs again elsewhere, and so do the maps it committed (its partitions move); no other task."""
    c: Cluster = cluster(3, **KILL_SETTINGS)
    job, victim, out, before = _kill_a_running_reducer(c, library, tmp_path)
    assert c.client is not None
    _check_complete(c.client, job, out, 6, victim, before, seq_oracle, library, library_word_count)


def test_with_second_copies_a_reducer_killed_mid_reduce_leaves_no_wait_for_its_maps(
        library: Path, tmp_path: Path, cluster, seq_oracle: SeqOracle, library_word_count: list[str]) -> None:
    """With `shuffle.replicate` on, the maps the killed reducer committed run again (slowly), but nothing
    waits for them: the new owners of its partitions pull the second copies."""
    c: Cluster = cluster(3, **COPIES_SETTINGS)
    job, victim, out, before = _kill_a_running_reducer(c, library, tmp_path, slow_again=SLOW_AGAIN)
    assert c.client is not None
    final = c.client.wait(job, timeout=SLOW_AGAIN - 15)   # no map made again could have ended by then
    lines = read_output(out, 6, ignore_hidden=True)
    assert probe_counts(lines) == {r: final.maps_total for r in range(6)}
    assert without_probes(lines) == seq_oracle(APPS / "wc.py", [library]) == library_word_count
    owned = {p.partition for p in before.partitions if p.owner == victim}
    assert owned and any(t.kind == "map" and t.state == "done" and t.worker == victim for t in before.tasks)
    attempts = {(t.kind, t.index): t.attempts for t in c.client.job(job).tasks}
    running = [(t.kind, t.index) for t in before.tasks if t.worker == victim and t.state == "running"]
    assert running and all(attempts[task] == 2 for task in running)   # its running reduce ran again


def test_a_killed_reducer_leaves_no_temporary_file_in_the_output(library: Path, tmp_path: Path, cluster) -> None:
    c: Cluster = cluster(3, **KILL_SETTINGS)
    job, _, out, _ = _kill_a_running_reducer(c, library, tmp_path)
    assert c.client is not None
    c.client.wait(job, timeout=120)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_barrier_mode_reducers_pull_map_output_without_retries(library: Path, tmp_path: Path, cluster,
                                                               seq_oracle: SeqOracle) -> None:
    """With shuffle.mode=barrier every reducer pulls every map's output from the mappers' kept copies."""
    c: Cluster = cluster(2, shuffle__mode="barrier")
    assert c.client is not None
    job = c.client.submit(str(APPS / "wc.py"), [str(library)], str(tmp_path / "out"), n_reduce=2)
    c.client.wait(job, timeout=15)
    assert read_output(tmp_path / "out", 2) == seq_oracle(APPS / "wc.py", [library])
    assert [t.attempts for t in c.client.job(job).tasks] == [1] * 10   # 8 maps, 2 reduces: no retries


# Long enough that a reduce waiting out `task_timeout` is unmistakable, and a dead worker is declared
# dead (after 5 s) well after another worker has started pulling from it.
LOST_SOURCE_SETTINGS = {"speculation__enabled": "false", "speculation__min_elapsed": "0.5",
                        "coordinator__heartbeat_liveness": "50", "coordinator__task_timeout": "30"}


def test_a_reduce_pulling_from_a_worker_killed_mid_reduce_carries_on_without_waiting_out_the_timeout(
        library: Path, tmp_path: Path, cluster, seq_oracle: SeqOracle, library_word_count: list[str]) -> None:
    """R=4 on 3 workers: partition 0's reduce holds, so its owner A stays busy with partition 3 queued.
    The victim is SIGKILLed in its own reduce; the third worker finishes its reduce and takes over
    partition 3 from busy A, pulling every map's output from the mappers' kept copies, the victim's too.

    The victim's kept copies are gone: once the coordinator declares it dead, that reduce must give up
    on them at once and run again after the victim's maps, not wait for every pull to time out until
    `coordinator.task_timeout` (30 s) cancels it. The job ends well within the timeout.
    """
    c: Cluster = cluster(3, **LOST_SOURCE_SETTINGS)
    assert c.client is not None
    client = c.client
    markers, out = tmp_path / "markers", tmp_path / "out"
    markers.mkdir()
    started = time.monotonic()
    job = _submit(c, library, out, markers, 4, reduce_sleep=1.5, hold=0)

    def owner_of_0() -> str:
        info = client.job(job)
        return next((p.owner for p in info.partitions if p.partition == 0), "") if (
            len(info.partitions) == 4 and info.maps_done == info.maps_total) else ""

    holder = worker_pid(wait_until(owner_of_0, 60, interval=0.01, what="every partition's owner to report"))
    try:
        victim_pid = wait_until(lambda: next((r["pid"] for r in read_markers(markers)
                                              if r["kind"] == "reduce" and r["pid"] != holder), None),
                                60, interval=0.005, what="a reduce on another worker than partition 0's owner")
        victim = worker_id_of(client, victim_pid)
        os.kill(victim_pid, signal.SIGKILL)

        def thief() -> str:
            info = client.job(job)
            [reduce3] = [t for t in info.tasks if (t.kind, t.index) == ("reduce", 3)]
            return reduce3.worker if reduce3.state == "running" and worker_pid(reduce3.worker) != holder else ""

        taker = wait_until(thief, 30, interval=0.01, what="partition 3 to move off its busy owner")
        states = {w.worker_id: w.state for w in client.status().workers}
        assert taker != victim and states[victim] != "dead", "the take-over must come before the victim's death"
    finally:
        release_hold(markers, 0)
    final = client.wait(job, timeout=120)
    elapsed = time.monotonic() - started
    assert final.state == "succeeded", final.error
    lines = read_output(out, 4, ignore_hidden=True)
    assert probe_counts(lines) == {r: final.maps_total for r in range(4)}
    assert without_probes(lines) == seq_oracle(APPS / "wc.py", [library]) == library_word_count
    assert elapsed < 20, f"the job took {elapsed:.1f} s: a reduce waited for a dead worker's map output"
    attempts = {(t.kind, t.index): t.attempts for t in client.job(job).tasks}
    assert max(attempts.values()) <= 2, attempts   # no map made a third time
    assert json.loads((markers / "held-0").read_text())["pid"] == holder
