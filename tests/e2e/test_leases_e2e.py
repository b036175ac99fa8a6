"""Leases: a worker keeps a job's intermediate files only while the coordinator holds a lease for them.

Each leased resource is one file under the worker's work directory, `<work-dir>/<worker id>/jobs/<job>/`:
`recv/p<r>.data` (batches it received as the owner of partition r) and `maps/p<r>.data` (its kept copy of
partition r of its map output). Whatever way a job ends (success, failure, cancellation, or the coordinator
dying for good and the lease expiring) no such file may be left, and the counts the workers report (per job
and per worker in `zmr status`, and the job's timeline in `zmr report`) must come back to zero.

The "nothing left" checks are only worth something if there was something: every test shows the leases
existed (files on disk while a job is held, or a positive peak in the job's timeline).
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import pytest

from zmr.errors import JobFailed
from zmr.protocol import messages as m

from .conftest import (
    APPS,
    PROBE_APP,
    TEST_APPS,
    Cluster,
    SeqOracle,
    probe_args,
    probe_counts,
    read_markers,
    read_output,
    wait_until,
    without_probes,
    worker_pid,
)

pytestmark = pytest.mark.e2e

N_REDUCE = 4          # 4 partitions over 3 workers: every worker owns one, so every worker gets the job
SPLIT = 300_000       # the 8 books make 14 map tasks
SETTLE = 2.0          # after a job ends: files and lease counts must be gone within this (20 heartbeats)
SLOW_BOOK = "tom_sawyer"
# Holding a job mid-map: one map sleeps in the app. No backup attempt (it would not sleep and would end the
# hold) and no task timeout while it sleeps (the task would be run again elsewhere, without sleeping).
HOLD = {"speculation__enabled": "false", "coordinator__task_timeout": "60"}
LEASE_FILE = re.compile(r"(?P<job>[^/]+)/(?P<kind>recv|maps)/p(?P<partition>\d+)\.data")   # under jobs/

FAIL_IN_MAP_APP = '''\
"""Word count whose map raises on one book, after the maps of the other books committed their output."""
from collections import Counter


def map(filename, contents):
    if "grimm" in filename:
        raise RuntimeError("zmr-e2e-map-boom in " + filename)
    for word, n in Counter(contents.split()).items():
        yield word, str(n)


def reduce(key, values):
    return str(sum(int(v) for v in values))
'''


# ------------------------------------------------------------------ helpers


def work_dirs(c: Cluster) -> dict[str, Path]:
    """worker id -> its own directory, `<work-dir>/<worker id>/` for the `--work-dir` it was started with."""
    assert c.client is not None
    ids = {worker_pid(w.worker_id): w.worker_id for w in c.client.status().workers if w.state != "dead"}
    dirs = {}
    for proc in c.local.workers:
        args = [str(a) for a in cast(Sequence[str], proc.args)]   # LocalCluster passes a list
        worker = ids[proc.pid]
        dirs[worker] = Path(args[args.index("--work-dir") + 1]) / worker
        assert dirs[worker].is_dir(), f"{worker} has no directory {dirs[worker]}"
    assert len(dirs) == c.local.n_workers, (ids, dirs)
    return dirs


def files_under(root: Path) -> list[str]:
    """Every file (not directory) below `root`, as a path relative to it."""
    return sorted(str(Path(folder, name).relative_to(root)) for folder, _, names in os.walk(root) for name in names)


def lease_files(dirs: dict[str, Path], job: str | None = None) -> dict[str, list[str]]:
    """worker id -> every file under its `jobs/` (where all job data lives), relative to `jobs/`; only the
    partition files of `job` if given."""
    found = {worker: files_under(d / "jobs") for worker, d in dirs.items()}
    if job is None:
        return found
    return {w: [n for n in names if (f := LEASE_FILE.fullmatch(n)) and f["job"] == job] for w, names in found.items()}


def leftovers(c: Cluster, job: str, dirs: dict[str, Path]) -> dict[str, object]:
    """What still remains of the job: any file under a worker's `jobs/`, and lease counts."""
    assert c.client is not None
    found: dict[str, object] = {f"files of {w}": names for w, names in lease_files(dirs).items() if names}
    reply = c.client.status(job)
    if reply.jobs[0].leases:
        found["job leases"] = reply.jobs[0].leases
    found.update({f"leases of {w.worker_id}": w.leases for w in c.client.status().workers if w.leases})
    return found


def await_clean(c: Cluster, job: str, dirs: dict[str, Path], timeout: float = SETTLE) -> float:
    """Wait until no work dir holds a file and no lease is counted; returns how long that took."""
    start = time.monotonic()
    last: dict[str, object] = {}

    def clean() -> bool:
        nonlocal last
        last = leftovers(c, job, dirs)
        return not last

    try:
        wait_until(clean, timeout, what=f"job {job} to leave nothing behind")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; still there: {last}") from None
    return time.monotonic() - start


def status_leases(run_zmr, address: str, job: str) -> tuple[int, dict[str, int]]:
    """The LEASES column of `zmr status`: the job's count and each worker's."""
    result = run_zmr("status", "--coordinator", address)
    assert result.returncode == 0, str(result)
    text = result.stdout
    assert re.search(r"^JOB\s.*\sLEASES$", text, re.M) and re.search(r"^WORKER\s.*\sLEASES$", text, re.M), text
    row = re.search(rf"^{job}\s.*\s(\d+)$", text, re.M)
    assert row is not None, text
    workers = {w: int(n) for w, n in re.findall(r"^(w-\S+)\s.*\s(\d+)$", text, re.M)}
    return int(row.group(1)), workers


def assert_timeline_ends_at_zero(c: Cluster, job: str) -> m.JobInfo:
    """The leases existed while the job ran (a positive peak) and the timeline was followed down to zero.

    The job's lease count in a status reply is live, while its timeline gets a point on the coordinator's
    next tick: wait for that one.
    """
    assert c.client is not None
    client = c.client
    info = client.job(job)

    def at_zero() -> bool:
        nonlocal info
        info = client.job(job)
        return info.timeline[-1].leases == 0

    try:
        wait_until(at_zero, SETTLE, what=f"the timeline of {job} to reach zero")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; leases sampled: {[p.leases for p in info.timeline]}") from None
    assert max(p.leases for p in info.timeline) > 0, f"no lease was ever counted for {job}: a vacuous check"
    return info


def hold_mid_map(c: Cluster, tmp_path: Path, library: Path, name: str = "held",
                 sleep: float = 30) -> tuple[str, dict[str, Path]]:
    """A probe job whose one map of SLOW_BOOK sleeps `sleep` s while every other map commits; returns once
    every other map has committed and every worker holds files of the job."""
    assert c.client is not None
    markers = tmp_path / f"{name}-markers"
    markers.mkdir()
    job = c.client.submit(str(PROBE_APP), [str(library)], str(tmp_path / f"{name}-out"), n_reduce=N_REDUCE,
                          args=probe_args(markers, probe_r=N_REDUCE, slow_once=f"{SLOW_BOOK}:{sleep}"),
                          split_size=SPLIT)
    dirs = work_dirs(c)
    client = c.client

    def held() -> bool:
        info = client.job(job)
        assert info.state == "running", info
        return (info.maps_done == info.maps_total - 1 and (markers / "slowed").exists()
                and all(lease_files(dirs, job).values()))

    wait_until(held, 60, what=f"every map of {job} but the slow one to commit")
    slow = [r for r in read_markers(markers) if r["kind"] == "map" and r["end"] is None]
    assert len(slow) == 1 and SLOW_BOOK in slow[0]["file"], slow
    return job, dirs


# ------------------------------------------------------------------ while a job runs


def test_while_a_job_is_held_mid_map_every_lease_is_one_file_on_its_worker(library: Path, tmp_path: Path,
                                                                            cluster, run_zmr) -> None:
    c: Cluster = cluster(3, **HOLD)
    assert c.client is not None
    client = c.client
    job, dirs = hold_mid_map(c, tmp_path, library)
    files = lease_files(dirs)
    # every file is a partition file of this job, in recv/ or maps/
    for worker, names in files.items():
        wrong = [n for n in names if not ((f := LEASE_FILE.fullmatch(n)) and f["job"] == job
                                          and int(f["partition"]) < N_REDUCE)]
        assert not wrong, f"{worker} holds files that are not partition files of {job}: {wrong}"
    # a worker received the batches of exactly the partitions it owns (as its heartbeats tell)
    def reported() -> m.JobInfo | None:
        info = client.job(job)
        return info if len(info.partitions) == N_REDUCE else None

    info = wait_until(reported, SETTLE, what="every partition's owner to report its batches")
    owners = {p.partition: p.owner for p in info.partitions}
    assert sorted(owners) == list(range(N_REDUCE)), info.partitions
    for worker, names in files.items():
        matches = [LEASE_FILE.fullmatch(n) for n in names if "/recv/" in n]
        assert all(matches), names
        received = sorted(int(found["partition"]) for found in matches if found)
        assert received == sorted(p for p, o in owners.items() if o == worker), (worker, names, owners)
    # what each worker reports is what it holds: one lease per file (heartbeats may lag: nothing changes now)
    counts = {w: len(names) for w, names in files.items()}
    wait_until(lambda: {w.worker_id: w.leases for w in client.status().workers} == counts, SETTLE,
               what=f"the workers' lease counts to match their files {counts}")
    assert client.job(job).leases == sum(counts.values()) > 0
    assert lease_files(dirs) == files, "files changed while the job was held"
    assert status_leases(run_zmr, c.address, job) == (sum(counts.values()), counts)


# ------------------------------------------------------------------ however a job ends, nothing is left


def test_after_a_job_succeeds_no_file_and_no_lease_is_left(library: Path, tmp_path: Path, cluster, run_zmr,
                                                           seq_oracle: SeqOracle) -> None:
    c: Cluster = cluster(3)
    assert c.client is not None
    dirs = work_dirs(c)
    out = tmp_path / "out"
    job = c.client.submit(str(APPS / "wc.py"), [str(library)], str(out), n_reduce=N_REDUCE, split_size=SPLIT)
    assert c.client.wait(job, timeout=60).state == "succeeded"
    await_clean(c, job, dirs)
    assert status_leases(run_zmr, c.address, job) == (0, {w: 0 for w in dirs})
    assert_timeline_ends_at_zero(c, job)
    assert read_output(out, N_REDUCE) == seq_oracle(APPS / "wc.py", [library])


@pytest.mark.parametrize("where", ["map", "reduce"])
def test_after_a_job_fails_no_file_and_no_lease_is_left(where: str, library: Path, tmp_path: Path,
                                                        cluster) -> None:
    """The map of one book raises (the other maps' output exists), or every reduce raises (all of it does)."""
    if where == "map":
        app = tmp_path / "fail_in_map.py"
        app.write_text(FAIL_IN_MAP_APP, encoding="utf-8")
    else:
        app = TEST_APPS / "fail_reduce.py"
    c: Cluster = cluster(3, retry__base="0.2")
    assert c.client is not None
    dirs = work_dirs(c)
    job = c.client.submit(str(app), [str(library)], str(tmp_path / "out"), n_reduce=N_REDUCE, split_size=SPLIT)
    with pytest.raises(JobFailed):
        c.client.wait(job, timeout=60)
    info = c.client.job(job)
    assert info.state == "failed" and f"zmr-e2e-{where}-boom" in info.error, info.error
    await_clean(c, job, dirs)
    assert_timeline_ends_at_zero(c, job)


def test_after_a_job_is_cancelled_mid_map_no_file_and_no_lease_is_left(library: Path, tmp_path: Path,
                                                                       cluster, run_zmr) -> None:
    c: Cluster = cluster(3, **HOLD)
    assert c.client is not None
    client = c.client
    job, dirs = hold_mid_map(c, tmp_path, library, sleep=8)
    wait_until(lambda: client.job(job).leases > 0, SETTLE, what="the held job's leases to be counted")
    cancelled = run_zmr("cancel", job, "--coordinator", c.address)
    assert cancelled.returncode == 0, str(cancelled)
    assert cancelled.stdout.split() == [job, "cancelled"]
    await_clean(c, job, dirs)
    info = assert_timeline_ends_at_zero(c, job)
    assert info.state == "cancelled" and info.maps_done == info.maps_total - 1
    # the slow map was still asleep in the app; once it wakes up and gives up, nothing may come back
    wait_until(lambda: all(not w.task for w in client.status().workers), 20, what="the slow map to stop")
    assert status_leases(run_zmr, c.address, job) == (0, {w: 0 for w in dirs})
    assert not any(lease_files(dirs).values()), lease_files(dirs)


def test_ending_one_job_drops_only_that_jobs_files_and_leases(library: Path, tmp_path: Path, cluster) -> None:
    """Two jobs held mid-map at once (each on its own sleeping worker): cancelling one (through the API)
    leaves every file and lease of the other as it was; cancelling that one too leaves nothing."""
    c: Cluster = cluster(3, **HOLD)
    assert c.client is not None
    client = c.client
    first, dirs = hold_mid_map(c, tmp_path, library, "first")
    second, _ = hold_mid_map(c, tmp_path, library, "second")
    files = {job: lease_files(dirs, job) for job in (first, second)}
    assert all(files[first].values()) and all(files[second].values())

    def counted(jobs: list[str]) -> bool:
        """Do the workers' and the jobs' lease counts match the files of `jobs` on disk?"""
        on_disk = {job: lease_files(dirs, job) for job in jobs}
        per_worker = {w: sum(len(on_disk[job][w]) for job in jobs) for w in dirs}
        return ({w.worker_id: w.leases for w in client.status().workers} == per_worker
                and all(client.job(job).leases == sum(map(len, on_disk[job].values())) for job in jobs))

    wait_until(lambda: counted([first, second]), SETTLE, what="lease counts to match the files of both jobs")
    assert client.cancel(second).state == "cancelled"
    wait_until(lambda: not any(lease_files(dirs, second).values()) and client.job(second).leases == 0, SETTLE,
               what=f"the files and leases of {second} to go")
    wait_until(lambda: counted([first]), SETTLE, what=f"lease counts to match the files of {first} alone")
    assert lease_files(dirs) == files[first], f"ending {second} touched the files of {first}"
    assert client.job(first).state == "running"
    assert client.cancel(first).state == "cancelled"
    await_clean(c, first, dirs)


# ------------------------------------------------------------------ the coordinator dies for good


def test_workers_drop_a_job_one_ttl_after_its_coordinator_was_killed_for_good(library: Path, tmp_path: Path,
                                                                             cluster) -> None:
    ttl = 3.0
    c: Cluster = cluster(3, coordinator__lease_ttl=str(ttl), coordinator__heartbeat_interval="0.2", **HOLD)
    assert c.client is not None and c.local.coordinator is not None
    job, dirs = hold_mid_map(c, tmp_path, library)
    assert c.client.status(job).jobs[0].state == "running"

    os.kill(c.local.coordinator.pid, signal.SIGKILL)
    killed = time.monotonic()
    c.local.coordinator.wait()
    assert all(lease_files(dirs, job).values()), "files disappeared as soon as the coordinator died"
    emptied: dict[str, float] = {}

    def all_empty() -> bool:
        for worker, names in lease_files(dirs).items():
            if not names:
                emptied.setdefault(worker, time.monotonic() - killed)
        return len(emptied) == len(dirs)

    # the last renewal reached each worker at most one heartbeat before the kill; the worker checks its
    # leases every 0.1 s while it tries to reconnect (1 s connect attempts with backoff in between)
    wait_until(all_empty, ttl + 4, what=f"every worker to drop {job} after its lease expired")
    assert min(emptied.values()) >= ttl - 0.5, f"data was dropped before the lease could expire: {emptied}"
    # nothing is left under jobs/ at all, and the workers go on waiting for a coordinator
    assert not any(lease_files(dirs).values()), lease_files(dirs)
    assert [p.poll() for p in c.local.workers] == [None] * len(dirs)
    for i in range(len(dirs)):
        log = (c.local.log_dir / f"worker-{i}.log").read_text(encoding="utf-8", errors="replace")
        expired = [line for line in log.splitlines() if "lease_expired" in line]
        assert expired and all(job in line for line in expired), f"worker-{i}.log:\n{log[-3000:]}"


# ------------------------------------------------------------------ the timeline


def test_lease_timeline_rises_during_map_peaks_and_falls_to_zero_as_reduces_commit(
        library: Path, tmp_path: Path, cluster, run_zmr, library_word_count: list[str]) -> None:
    """A normal job: 14 maps on 3 workers, 4 partitions.

    The coordinator samples on its ticks (every heartbeat, 0.1 s) and on each commit, from the counts the
    workers last reported in their heartbeats. So that the samples show the shape, maps sleep 0.2 s (the
    rise spans several ticks) and each reduce sleeps 0.5 s: the first reduce commits several heartbeats
    after the last map did, when every worker has reported its full count. No backups, so the peak is
    exact: every worker that ran a map keeps one file per partition, and each partition has one received file.
    """
    c: Cluster = cluster(3, speculation__enabled="false")
    assert c.client is not None
    client = c.client
    out = tmp_path / "out"
    job = client.submit(str(PROBE_APP), [str(library)], str(out), n_reduce=N_REDUCE, split_size=SPLIT,
                        args=probe_args(probe_r=N_REDUCE, map_sleep=0.2, reduce_sleep=0.5))
    client.wait(job, timeout=60)
    lines = read_output(out, N_REDUCE)
    assert without_probes(lines) == library_word_count
    # the timeline is followed after the job ended until its leases are gone
    info = assert_timeline_ends_at_zero(c, job)
    assert info.state == "succeeded" and info.leases == 0
    assert probe_counts(lines) == {r: info.maps_total for r in range(N_REDUCE)}
    assert [t.attempts for t in info.tasks] == [1] * len(info.tasks)
    timeline = info.timeline
    leases = [p.leases for p in timeline]
    table = "\n".join(f"{p.t - timeline[0].t:7.3f} {p.leases:3} {p.maps_done:3} {p.reduces_done:2}"
                      for p in timeline)
    assert [p.t for p in timeline] == sorted(p.t for p in timeline), table

    # starts at zero, before any map
    assert (timeline[0].leases, timeline[0].maps_done, timeline[0].reduces_done) == (0, 0, 0), table
    peak = max(leases)
    mappers = {t.worker for t in info.tasks if t.kind == "map"}
    assert peak == N_REDUCE * len(mappers) + N_REDUCE, f"peak {peak} with {len(mappers)} mappers:\n{table}"
    first_peak = leases.index(peak)
    last_peak = len(leases) - 1 - leases[::-1].index(peak)
    first_commit = next(i for i, p in enumerate(timeline) if p.reduces_done > 0)
    # rises (never falls) up to the peak, and already while maps still run
    assert leases[:first_peak + 1] == sorted(leases[:first_peak + 1]), table
    assert any(0 < p.leases and p.maps_done < info.maps_total for p in timeline), table
    # holds at the peak through the shuffle, reached no later than the first reduce commit
    assert leases[first_peak:last_peak + 1] == [peak] * (last_peak + 1 - first_peak), table
    assert first_peak <= first_commit, table
    # falls (never rises) from there, only as reduces commit, down to zero once all have committed
    assert leases[last_peak:] == sorted(leases[last_peak:], reverse=True), table
    assert all(p.reduces_done > 0 for p in timeline[last_peak + 1:]), table
    # ... partition by partition: before the last reduce commits (and so before the job ends), and never
    # below the files of the partitions whose reduce has not committed yet
    assert any(0 < p.leases < peak and 0 < p.reduces_done < info.reduces_total for p in timeline), table
    per_partition = len(mappers) + 1
    assert all(p.leases >= (N_REDUCE - p.reduces_done) * per_partition for p in timeline if p.reduces_done), table
    assert timeline[-1].leases == 0 and timeline[-1].reduces_done == info.reduces_total, table

    report = run_zmr("report", job, "--coordinator", c.address)
    assert report.returncode == 0, str(report)
    rows = [line.split() for line in report.stdout.splitlines() if re.match(r"\s*-?\d+\.\d{3}\s", line)]
    assert [int(r[1]) for r in rows] == leases, report.stdout
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        pytest.skip("matplotlib is not installed: the plot is not drawn (the table was checked)")
    png = tmp_path / "timeline.png"
    plotted = run_zmr("report", job, "--coordinator", c.address, "--plot", str(png))
    assert plotted.returncode == 0, str(plotted)
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    for flag, name in (("--plot", "t.png"), ("--html", "t.html")):   # a folder that is not there: one line
        nowhere = tmp_path / "no-such-folder" / name
        refused = run_zmr("report", job, "--coordinator", c.address, flag, str(nowhere))
        assert refused.returncode == 1, str(refused)
        assert refused.stderr.startswith(f"zmr: cannot write {nowhere}: No such file or directory"), str(refused)
        assert "Traceback" not in refused.stderr
