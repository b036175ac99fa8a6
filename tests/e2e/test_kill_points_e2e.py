"""A worker SIGKILLed at each point of a job's life: the output is the reference, and only what the loss
made necessary runs again.

Each test freezes its victim (SIGSTOP), records the job as the coordinator sees it, then kills it
(`freeze_and_kill`), and checks the final attempts against `necessary_reruns`: the task the victim was
running, plus the maps it had committed if it owned a partition that had not committed yet. Every
other task must have run exactly once: map output already pushed to surviving owners is never made
again, and a moved partition's new owner pulls the rest from the surviving mappers' kept copies.

The points, and where each is tested (the other three are in test_faults_e2e.py):
  (a) mid-map                                  test_faults_e2e: test_mapper_killed_mid_job_...
  (b) after its maps committed, before reduce  here, a mapper owning no partition; test_faults_e2e:
                                               test_partition_owner_killed_after_maps_committed_...
  (c) owning partitions, receiving batches     here
  (d) mid-reduce                               test_faults_e2e: test_reducer_killed_mid_reduce_...
  (e) reduce output written, before its commit here
"""

from __future__ import annotations

from pathlib import Path

import pytest

from zmr.protocol import messages as m

from .conftest import (
    APPS,
    KILL_SETTINGS,
    PROBE_APP,
    Cluster,
    SeqOracle,
    Watcher,
    assert_attempts,
    await_hold,
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
)

pytestmark = pytest.mark.e2e

ONE_MAP_PER_BOOK = 1 << 30


def _start(cluster, library: Path, tmp_path: Path, n_reduce: int, **options: object
           ) -> tuple[Cluster, str, Path, Path]:
    c: Cluster = cluster(3, **KILL_SETTINGS)
    assert c.client is not None
    markers, out = tmp_path / "markers", tmp_path / "out"
    markers.mkdir()
    job = c.client.submit(str(PROBE_APP), [str(library)], str(out), n_reduce=n_reduce,
                          args=probe_args(markers, probe_r=n_reduce, **options), split_size=ONE_MAP_PER_BOOK)
    return c, job, markers, out


def _check(c: Cluster, job: str, out: Path, n_reduce: int, before: m.JobInfo, victim: str,
           library: Path, seq_oracle: SeqOracle) -> m.JobInfo:
    """The job completes with the reference output; only the necessary tasks ran again."""
    assert c.client is not None
    c.client.wait(job, timeout=120)
    final = c.client.job(job)
    lines = read_output(out, n_reduce)   # no temporary file left either
    assert probe_counts(lines) == {r: final.maps_total for r in range(n_reduce)}
    assert without_probes(lines) == seq_oracle(APPS / "wc.py", [library])
    client = c.client
    # The job may finish before the coordinator notices an idle victim is gone; it must notice all the same.
    wait_until(lambda: {w.worker_id: w.state for w in client.status().workers}[victim] == "dead", 30,
               what=f"{victim} to be declared dead")
    assert_attempts(final, necessary_reruns(before, victim))
    return final


def test_b_mapper_killed_after_its_maps_committed_while_reducers_work_nothing_runs_again(
        library: Path, tmp_path: Path, cluster, seq_oracle: SeqOracle) -> None:
    """R=2 on 3 workers: the victim owns no partition, so every map it committed was pushed to live owners."""
    c, job, _, out = _start(cluster, library, tmp_path, 2, map_sleep=0.2, reduce_sleep=1.5)
    assert c.client is not None
    client = c.client

    def idle_mapper() -> str:
        info = client.job(job)
        if info.state != "running" or info.maps_done < info.maps_total or len(info.partitions) < 2:
            return ""
        owners = {p.owner for p in info.partitions}
        mappers = {t.worker for t in info.tasks if t.kind == "map"}
        return next(iter(sorted(mappers - owners)), "")

    victim = wait_until(idle_mapper, 60, interval=0.02, what="the map phase to end")
    before = freeze_and_kill(c, victim, job)
    assert before.reduces_done < before.reduces_total and any(
        t.kind == "map" and t.worker == victim for t in before.tasks)
    _check(c, job, out, 2, before, victim, library, seq_oracle)
    assert necessary_reruns(before, victim) == set()


def test_c_owner_killed_while_receiving_batches_only_its_running_map_runs_again(
        library: Path, tmp_path: Path, cluster, seq_oracle: SeqOracle) -> None:
    """The victim runs a slow first map, so it has committed nothing while the others push it batches.

    Its partitions move; their new owners pull what the victim had received from the mappers' kept
    copies, so no map but the victim's own runs again.
    """
    c, job, markers, out = _start(cluster, library, tmp_path, 6, map_sleep=0.3, slow_once="dorian:5")
    assert c.client is not None
    client = c.client
    pid = wait_until(lambda: next((r["pid"] for r in read_markers(markers) if "dorian" in r.get("file", "")), None), 30,
                     what="the slow map to start")
    victim = worker_id_of(client, pid)

    def receiving() -> bool:
        info = client.job(job)
        others_done = sum(t.kind == "map" and t.state == "done" and t.worker != victim for t in info.tasks)
        received = sum(p.batches_in for p in info.partitions if p.owner == victim)
        return len(info.partitions) == 6 and others_done >= 2 and received >= 2

    wait_until(receiving, 30, interval=0.02, what="the victim to receive batches")
    before = freeze_and_kill(c, victim, job)
    assert before.maps_done < before.maps_total
    assert not [t for t in before.tasks if t.worker == victim and t.state == "done"]
    assert necessary_reruns(before, victim) == {("map", 1)}   # pg-dorian_gray.txt, second in sorted order
    _check(c, job, out, 6, before, victim, library, seq_oracle)


def test_e_reducer_killed_after_writing_its_output_before_the_commit(library: Path, tmp_path: Path, cluster,
                                                                     seq_oracle: SeqOracle) -> None:
    """The reduce of partition 0 blocks at its last key: its temporary file is in the output directory,
    mr-out-0 is not, and it has not reported ReduceDone. Kill its worker there: another attempt commits
    partition 0 once, the dead attempt's temporary file is removed, and mr-out-0 is never seen partial."""
    c, job, markers, out = _start(cluster, library, tmp_path, 3, hold=0)
    assert c.client is not None
    watcher = Watcher(c.processes(), out)
    watcher.start()
    try:
        held = await_hold(markers, 0)
        victim = worker_id_of(c.client, held["pid"])
        names = {p.name for p in out.iterdir()}
        assert f".mr-out-0.{job}.a1.tmp" in names and "mr-out-0" not in names, names
        # the maps can all end within one heartbeat: wait until every owner has reported its partition
        client = c.client
        wait_until(lambda: len(client.job(job).partitions) == 3, 30, what="every partition's owner to report")
        before = freeze_and_kill(c, victim, job)
        assert [(t.state, t.worker) for t in before.tasks if (t.kind, t.index) == ("reduce", 0)] == [
            ("running", victim)]
        final = _check(c, job, out, 3, before, victim, library, seq_oracle)
    finally:
        release_hold(markers, 0)
        watcher.stop()
    assert [t.attempts for t in final.tasks if (t.kind, t.index) == ("reduce", 0)] == [2]
    assert len(watcher.snapshots["mr-out-0"]) == 1, "mr-out-0 was seen with more than one content"
