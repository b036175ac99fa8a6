"""Two workers really work at once, in both phases; no task runs twice; the shuffle overlaps the map phase.

The evidence comes from the app itself (tests/e2e/apps/probe.py): every map attempt and every probed
reduce writes a marker file with its pid and start/end times.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from zmr.protocol import messages as m

from .conftest import (
    APPS,
    FAST,
    FAST_FLAGS,
    PROBE_APP,
    Cluster,
    SeqOracle,
    Watcher,
    overlapping_pairs,
    probe_args,
    probe_counts,
    read_markers,
    read_output,
    without_probes,
)

pytestmark = pytest.mark.e2e

N_REDUCE = 4


@dataclass
class ProbeRun:
    info: m.JobInfo                   # the job's detail, right after it succeeded
    maps: list[dict[str, Any]]        # marker records of map attempts
    reduces: list[dict[str, Any]]     # marker records of reduces (one per probe key reduced)
    lines: list[str]                  # sorted output lines, read before the cluster stopped
    watcher: Watcher
    alive_after_success: list[bool]   # every cluster process, polled right after the job succeeded
    worker_pids: set[int]
    out: Path


@pytest.fixture(scope="module")
def probe_run(library: Path, tmp_path_factory: pytest.TempPathFactory) -> ProbeRun:
    """One slow-ish probe job on 2 workers: ~16 map tasks of 0.25 s, 4 reduces of 0.6 s each."""
    base = tmp_path_factory.mktemp("parallel")
    markers, out = base / "markers", base / "out"
    markers.mkdir()
    c = Cluster(2, dict(FAST))
    try:
        c.start()
        c.wait_for_workers(2)
        assert c.client is not None
        watcher = Watcher(c.processes(), out)
        watcher.start()
        try:
            job = c.client.submit(str(PROBE_APP), [str(library)], str(out), n_reduce=N_REDUCE,
                                  args=probe_args(markers, map_sleep=0.25, reduce_sleep=0.6, probe_r=N_REDUCE),
                                  split_size=200_000)
            c.client.wait(job, timeout=120)
            alive = [p.poll() is None for p in c.processes()]
            lines = read_output(out, N_REDUCE)
            info = c.client.job(job)
        finally:
            watcher.stop()
        worker_pids = {p.pid for p in c.local.workers}
    finally:
        c.stop()
    records = read_markers(markers)
    return ProbeRun(info, [r for r in records if r["kind"] == "map"], [r for r in records if r["kind"] == "reduce"],
                    lines, watcher, alive, worker_pids, out)


def test_map_tasks_run_on_both_workers_at_once(probe_run: ProbeRun) -> None:
    assert probe_run.info.maps_total > 2 * 2
    assert {r["pid"] for r in probe_run.maps} == probe_run.worker_pids
    assert overlapping_pairs(probe_run.maps), "no two map tasks ever ran at the same time on different workers"


def test_reduce_tasks_run_on_both_workers_at_once(probe_run: ProbeRun) -> None:
    assert {r["pid"] for r in probe_run.reduces} == probe_run.worker_pids
    assert overlapping_pairs(probe_run.reduces), "no two reduce tasks ever ran at the same time"


def test_each_task_runs_exactly_once_without_failures(probe_run: ProbeRun) -> None:
    info = probe_run.info
    # markers: one per map attempt started, one per reduce task (its probe key)
    assert len(probe_run.maps) == info.maps_total
    assert len(Counter((r["file"], r["first_line"]) for r in probe_run.maps)) == info.maps_total
    assert all(r["end"] is not None for r in probe_run.maps)
    assert sorted(r["partition"] for r in probe_run.reduces) == list(range(N_REDUCE))
    # the coordinator's view agrees
    assert [(t.kind, t.state, t.attempts) for t in info.tasks] == (
        [("map", "done", 1)] * info.maps_total + [("reduce", "done", 1)] * N_REDUCE)
    # and every committed map's output was counted exactly once by every reduce
    assert probe_counts(probe_run.lines) == {r: info.maps_total for r in range(N_REDUCE)}


def test_output_equals_reference(probe_run: ProbeRun, library: Path, seq_oracle: SeqOracle,
                                 library_word_count: list[str]) -> None:
    words = without_probes(probe_run.lines)
    assert words == seq_oracle(APPS / "wc.py", [library]) == library_word_count


def test_shuffle_overlaps_the_map_phase(probe_run: ProbeRun) -> None:
    """Map output reaches its owners while maps still run: a partition's first batch precedes the last map."""
    info = probe_run.info
    maps = [t for t in info.tasks if t.kind == "map"]
    assert len(maps) > 2 and all(t.started is not None and t.finished is not None for t in maps)
    last_map_finished = max(t.finished for t in maps)  # type: ignore[type-var]  # every map finished: asserted above
    last_map_started = max(t.started for t in maps)  # type: ignore[type-var]  # every map started: asserted above
    assert sorted(p.partition for p in info.partitions) == list(range(N_REDUCE))
    firsts = [p.first_batch for p in info.partitions if p.first_batch]
    assert firsts, info.partitions
    assert min(firsts) < last_map_finished
    # stronger: data was at a reducer before the last map task had even started
    assert min(firsts) < last_map_started
    assert all(p.batches_in >= 1 and p.bytes_in > 0 for p in info.partitions)


def test_no_process_exits_before_the_output_is_complete(probe_run: ProbeRun) -> None:
    assert probe_run.watcher.exits == [], "a cluster process exited while the job ran"
    assert all(probe_run.alive_after_success)
    assert probe_run.watcher.snapshots, "the watcher never saw an output file"
    for name, seen in probe_run.watcher.snapshots.items():
        assert seen == {(probe_run.out / name).read_text(encoding="utf-8")}, f"{name} was seen incomplete"
    # nothing but hidden temporary files, final outputs and _SUCCESS ever appeared
    assert all(n.startswith(".") or n.startswith("mr-out-") or n == "_SUCCESS" for n in probe_run.watcher.names)
    assert {n for n in probe_run.watcher.names if n.startswith("mr-out-")} == {f"mr-out-{r}" for r in range(N_REDUCE)}


def test_zmr_run_spreads_reduces_over_its_workers(library: Path, tmp_path: Path, run_zmr) -> None:
    """`zmr run` submits right after starting its cluster: partitions must still go to every worker."""
    markers, out = tmp_path / "markers", tmp_path / "out"
    markers.mkdir()
    args = ["run", "--app", str(PROBE_APP), "--input", str(library), "--output", str(out),
            "--n-reduce", str(N_REDUCE), "--workers", "2", *FAST_FLAGS]
    for arg in probe_args(markers, reduce_sleep=0.3, probe_r=N_REDUCE):
        args += ["--arg", arg]
    result = run_zmr(*args)
    assert result.returncode == 0, str(result)
    reduces = [r for r in read_markers(markers) if r["kind"] == "reduce"]
    assert len(reduces) == N_REDUCE
    assert len({r["pid"] for r in reduces}) == 2, "every reduce ran in the same worker process"
