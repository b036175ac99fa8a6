"""The coordinator SIGKILLed and started again on the same state directory (`--state-dir`) and address.

Workers keep running and reconnect by themselves; the restarted coordinator replays its journal, the
workers register again and report what they hold. Committed work they still hold is reused, not run
again; queued, running and finished jobs are all still there; job ids go on where they stopped; a client
waiting for a job rides through the restart. A torn last journal record is dropped with a
`journal_damaged` warning; a journal damaged before its end stops the coordinator, and is kept, unless
the operator passes `--recover-damaged-journal`; a state directory serves one coordinator at a time.

Every process here is started by hand (a coordinator at a fixed loopback port, so that the restarted one
binds the same address) and stopped by the `restart_cluster` fixture, whatever the test did to it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zmr.client import Client
from zmr.errors import JobFailed
from zmr.protocol import journal as j
from zmr.protocol import messages as m

from .conftest import (
    APPS,
    PROBE_APP,
    REPO,
    SeqOracle,
    ZmrLauncher,
    await_hold,
    clean_env,
    output_lines,
    probe_args,
    probe_counts,
    read_markers,
    read_output,
    release_hold,
    wait_until,
    without_probes,
)
from .peers import events, log_records, start_process, zmr_command

pytestmark = pytest.mark.e2e

# Every process gets these. Quick liveness (1 s), so workers notice a dead coordinator fast; a lease TTL,
# recovery grace and task timeout far above the restart time (a held reduce makes no progress on purpose);
# no backup attempts, which would add attempts of their own.
SETTINGS = {
    "ZMR_COORDINATOR_HEARTBEAT_INTERVAL": "0.2",
    "ZMR_COORDINATOR_HEARTBEAT_LIVENESS": "5",
    "ZMR_COORDINATOR_LEASE_TTL": "30",
    "ZMR_COORDINATOR_RECOVERY_GRACE": "20",
    "ZMR_COORDINATOR_TASK_TIMEOUT": "60",
    "ZMR_SPECULATION_ENABLED": "false",
}
ONE_MAP_PER_BOOK = 1 << 30
SMALL_BOOK = "pg-metamorphosis.txt"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RestartCluster:
    """A coordinator on a fixed loopback address with a state directory, and workers, all started by hand.

    Each coordinator life logs (JSON) to its own file, `coordinator-<n>.log`.
    """

    def __init__(self, base: Path) -> None:
        self.base = base
        self.state_dir = base / "state"
        self.logs = base / "logs"
        self.logs.mkdir(parents=True)
        self.address = f"tcp://127.0.0.1:{_free_port()}"
        self.coordinators: list[subprocess.Popen[bytes]] = []
        self.workers: list[subprocess.Popen[bytes]] = []
        self.client = Client(self.address, timeout=5.0)
        self.settings = dict(SETTINGS)   # the environment of every process started from now on

    # ------------------------------------------------------------ processes

    def _start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        tmpdir = self.base / "tmp" / name
        tmpdir.mkdir(parents=True)
        cmd = zmr_command(*args, "--log-format", "json", "--exit-with-parent", str(os.getpid()))
        return start_process(cmd, self.logs / f"{name}.log", tmpdir, env={**self.settings, **(env or {})})

    def coordinator_log(self) -> Path:
        """The log of the latest coordinator life."""
        return self.logs / f"coordinator-{len(self.coordinators) - 1}.log"

    def start_coordinator(self, use_env: bool = False, *flags: str) -> subprocess.Popen[bytes]:
        """Start a coordinator life on the state directory (`--state-dir`, or ZMR_COORDINATOR_STATE_DIR)."""
        name = f"coordinator-{len(self.coordinators)}"
        args = ["coord", "--bind", self.address, *flags]
        env = {"ZMR_COORDINATOR_STATE_DIR": str(self.state_dir)} if use_env else None
        if not use_env:
            args += ["--state-dir", str(self.state_dir)]
        proc = self._start(name, args, env)
        self.coordinators.append(proc)
        log = self.logs / f"{name}.log"
        wait_until(lambda: events(log, "coordinator_started") or proc.poll() is not None, 30,
                   what="the coordinator to start")
        assert proc.poll() is None, f"the coordinator exited with {proc.returncode}:\n{log.read_text()}"
        return proc

    def kill_coordinator(self) -> None:
        """SIGKILL the running coordinator: no chance to write or tidy anything."""
        proc = self.coordinators[-1]
        assert proc.poll() is None, "the coordinator died before the test killed it"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def restart_coordinator(self, use_env: bool = False) -> subprocess.Popen[bytes]:
        self.kill_coordinator()
        return self.start_coordinator(use_env)

    def start_workers(self, n: int) -> None:
        for _ in range(n):
            name = f"worker-{len(self.workers)}"
            self.workers.append(self._start(name, ["worker", "--coordinator", self.address]))
        wait_until(lambda: len(self.live_workers()) >= len(self.workers), 30, what=f"{n} workers to register")

    def live_workers(self) -> dict[str, str]:
        """worker id -> state of every worker that is registered with the current coordinator life."""
        return {w.worker_id: w.state for w in self.client.status().workers if w.state in ("idle", "busy")}

    def await_workers_back(self, ids: set[str], timeout: float = 30) -> None:
        """Until every worker in `ids` has registered again with the restarted coordinator (same ids)."""
        wait_until(lambda: ids <= set(self.live_workers()), timeout,
                   what=f"workers {sorted(ids)} to register again")

    def stop(self) -> None:
        try:
            self.client.close()
        finally:
            procs = [*self.workers, *self.coordinators]
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
            deadline = time.monotonic() + 10
            for proc in procs:
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:   # its own session: its group is it and anything it started
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()

    # ------------------------------------------------------------ views

    def job(self, job_id: str) -> m.JobInfo:
        return self.client.job(job_id)

    def wait(self, job_id: str, timeout: float = 90) -> m.JobInfo:
        """The job's end, once it succeeded; a failed job fails the test with what the processes logged."""
        try:
            return self.client.wait(job_id, timeout=timeout, patience=30)
        except JobFailed as exc:
            pytest.fail(f"{exc}\n{self.logs_text()}")

    def logs_text(self, lines: int = 40) -> str:
        """The last lines of every process's log, for failure messages."""
        return "\n".join(f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-lines:])
                         for p in sorted(self.logs.iterdir()))


@pytest.fixture
def restart_cluster(tmp_path: Path) -> Iterator[RestartCluster]:
    c = RestartCluster(tmp_path / "cluster")
    try:
        yield c
    finally:
        c.stop()


def _tasks(info: m.JobInfo, kind: str | None = None, state: str | None = None) -> dict[int, m.TaskInfo]:
    return {t.index: t for t in info.tasks if (kind is None or t.kind == kind) and (state is None or t.state == state)}


def _reruns(before: dict[int, m.TaskInfo], after: m.JobInfo, kind: str) -> dict[str, tuple[Any, ...]]:
    """Tasks committed in `before` whose attempts or worker changed by `after`."""
    now = _tasks(after, kind)
    return {f"{kind}-{i}": (t.attempts, t.worker, now[i].attempts, now[i].worker) for i, t in before.items()
            if (now[i].attempts, now[i].worker, now[i].state) != (t.attempts, t.worker, "done")}


def _journal_records(state_dir: Path) -> j.Parsed:
    return j.parse((state_dir / "journal").read_bytes())


# ------------------------------------------------------------------ running jobs


def test_killed_in_the_map_phase_the_job_completes_and_committed_maps_are_not_run_again(
        library: Path, tmp_path: Path, restart_cluster: RestartCluster, seq_oracle: SeqOracle) -> None:
    c = restart_cluster
    c.start_coordinator()
    c.start_workers(3)
    workers = set(c.live_workers())
    markers, out = tmp_path / "markers", tmp_path / "out"
    markers.mkdir()
    n_reduce = 3
    job = c.client.submit(str(PROBE_APP), [str(library)], str(out), n_reduce=n_reduce,
                          args=probe_args(markers, probe_r=n_reduce, map_sleep=0.3), split_size=150_000)

    def mid_map() -> m.JobInfo | None:
        info = c.job(job)
        running = _tasks(info, "map", "running")
        return info if 3 <= info.maps_done <= info.maps_total - 6 and running else None

    before = wait_until(mid_map, 60, interval=0.02, what="some maps to commit while others run")
    c.restart_coordinator()
    committed = _tasks(before, "map", "done")
    assert committed and all(t.attempts == 1 for t in committed.values()), before.tasks

    recovered = c.job(job)   # the restarted coordinator knows the job and its committed maps at once
    assert recovered.state == "running", recovered
    assert set(_tasks(recovered, "map", "done")) >= set(committed), recovered.tasks
    c.await_workers_back(workers)

    final = c.wait(job)
    lines = read_output(out, n_reduce)
    assert probe_counts(lines) == {r: final.maps_total for r in range(n_reduce)}   # each map counted once
    assert without_probes(lines) == seq_oracle(APPS / "wc.py", [library])
    assert set(c.live_workers()) == workers, "a worker was lost"
    assert _reruns(committed, c.job(job), "map") == {}, "maps committed before the restart ran again"
    log = c.coordinator_log()
    assert events(log, "recovered"), c.logs_text()
    assert {e["worker"] for e in events(log, "worker_back")} == workers


@pytest.mark.parametrize("release", ["after_restart", "during_outage"])
def test_killed_in_the_reduce_phase_the_job_completes_and_committed_reduces_are_not_run_again(
        release: str, library: Path, tmp_path: Path, restart_cluster: RestartCluster,
        seq_oracle: SeqOracle) -> None:
    """All maps done, reduces 1 and 2 committed, the reduce of partition 0 held in the app (probe hold=0).

    `during_outage`: the held reduce finishes while no coordinator runs, so its ReduceDone goes nowhere;
    the worker asks again when it registers with the new coordinator. Either way its attempt is the one
    that commits: the worker still runs it, so the restarted coordinator re-adopts it.
    """
    c = restart_cluster
    c.start_coordinator()
    c.start_workers(3)
    workers = set(c.live_workers())
    markers, out = tmp_path / "markers", tmp_path / "out"
    markers.mkdir()
    n_reduce = 3
    job = c.client.submit(str(PROBE_APP), [str(library)], str(out), n_reduce=n_reduce,
                          args=probe_args(markers, probe_r=n_reduce, hold=0), split_size=ONE_MAP_PER_BOOK)
    try:
        await_hold(markers, 0)
        before = wait_until(lambda: (info := c.job(job)).reduces_done == n_reduce - 1 and info, 60,
                            what="the other reduces to commit")
        assert before.maps_done == before.maps_total and before.state == "running", before
        reduces = _tasks(before, "reduce")
        assert reduces[0].state == "running" and {reduces[1].state, reduces[2].state} == {"done"}, before.tasks
        c.kill_coordinator()
        if release == "during_outage":
            release_hold(markers, 0)
            wait_until(lambda: all(r["end"] is not None for r in read_markers(markers) if r["kind"] == "reduce"),
                       30, what="the held reduce to finish")
        c.start_coordinator()
        c.await_workers_back(workers)
    finally:
        release_hold(markers, 0)
    final = c.wait(job)
    lines = read_output(out, n_reduce)
    assert probe_counts(lines) == {r: final.maps_total for r in range(n_reduce)}
    assert without_probes(lines) == seq_oracle(APPS / "wc.py", [library])
    after = c.job(job)
    assert set(c.live_workers()) == workers, "a worker was lost"
    assert _reruns(_tasks(before, "map"), after, "map") == {}, "maps ran again"
    assert _reruns(_tasks(before, "reduce", "done"), after, "reduce") == {}, "committed reduces ran again"
    # the held attempt was re-adopted and committed: no second attempt of reduce 0
    assert (_tasks(after, "reduce")[0].attempts, _tasks(after, "reduce")[0].worker) == (1, reduces[0].worker), \
        after.tasks
    assert len([r for r in read_markers(markers) if r["kind"] == "reduce" and r["partition"] == 0]) == 1


def test_a_worker_that_finished_its_task_while_the_coordinator_was_down_works_on_after_the_restart(
        library: Path, tmp_path: Path, restart_cluster: RestartCluster, seq_oracle: SeqOracle) -> None:
    """One worker; its map ends while no coordinator runs, so its MapDone and the TaskRequest after it wait
    in its outbox. The new coordinator is started as soon as the worker gives up its connection, so it is
    up when the worker connects afresh and registers (with no running task), and then the outbox goes out.

    The worker must get one task at a time again and the job must complete. (A worker and its coordinator
    that disagree on which task it runs lose every attempt: few worker losses are allowed here, so that
    fails the job quickly instead of after minutes.)
    """
    c = restart_cluster
    c.settings["ZMR_RETRY_MAX_WORKER_LOSSES"] = "3"
    c.start_coordinator()
    c.start_workers(1)
    markers, out = tmp_path / "markers", tmp_path / "out"
    markers.mkdir()
    job = c.client.submit(str(PROBE_APP), [str(library)], str(out), n_reduce=2,
                          args=probe_args(markers, probe_r=2, map_sleep=0.5), split_size=ONE_MAP_PER_BOOK)
    before = wait_until(lambda: (info := c.job(job)).maps_done >= 1 and _tasks(info, "map", "running") and info,
                        60, interval=0.02, what="a map to run after one committed")
    worker_log = c.logs / "worker-0.log"
    lost = len(events(worker_log, "coordinator_lost"))
    c.kill_coordinator()
    wait_until(lambda: all(r["end"] is not None for r in read_markers(markers))
               and len(events(worker_log, "coordinator_lost")) > lost, 30, interval=0.01,
               what="the running map to end and the worker to drop its connection")
    c.start_coordinator()
    final = c.wait(job, timeout=60)
    lines = read_output(out, 2)
    assert probe_counts(lines) == {0: final.maps_total, 1: final.maps_total}
    assert without_probes(lines) == seq_oracle(APPS / "wc.py", [library])
    assert _reruns(_tasks(before, "map", "done"), c.job(job), "map") == {}
    # at most one attempt wasted on the stale TaskRequest, not one per task from then on
    wasted = events(c.coordinator_log(), "attempt_lost")
    assert len(wasted) <= 1, f"{len(wasted)} attempts lost after the restart:\n{wasted}"


def test_a_client_waiting_with_submit_wait_rides_through_a_restart(
        library: Path, tmp_path: Path, restart_cluster: RestartCluster, zmr_cli: ZmrLauncher,
        seq_oracle: SeqOracle) -> None:
    c = restart_cluster
    c.start_coordinator()
    c.start_workers(2)
    out = tmp_path / "out"
    proc, tmpdir = zmr_cli.spawn("submit", "--coordinator", c.address, "--app", PROBE_APP, "--input", library,
                                 "--output", out, "--n-reduce", "2", "--arg", "map_sleep=0.2", "--wait")
    wait_until(lambda: (s := c.client.status()).jobs and s.jobs[0].maps_done >= 2, 60,
               what="the submitted job to commit maps")
    c.kill_coordinator()
    time.sleep(1.5)   # the client is left without a coordinator for a while
    c.start_coordinator()
    result = zmr_cli.finish(proc, tmpdir, timeout=90)
    assert result.returncode == 0, f"{result}\n{c.logs_text()}"
    assert result.stdout.startswith("job-0001\n"), str(result)
    assert "job-0001 succeeded" in result.stdout, str(result)
    assert read_output(out, 2) == seq_oracle(APPS / "wc.py", [library])


# ------------------------------------------------------------------ queued and finished jobs


def test_queued_jobs_survive_a_restart_run_afterwards_and_job_ids_are_not_reused(
        library: Path, tmp_path: Path, restart_cluster: RestartCluster, run_zmr, seq_oracle: SeqOracle) -> None:
    """No worker at all: three jobs stay queued through the restart, then run once workers come."""
    c = restart_cluster
    c.start_coordinator()
    book = library / SMALL_BOOK
    outs = [tmp_path / f"out{i}" for i in range(4)]
    ids = [c.client.submit(str(APPS / "wc.py"), [str(book)], str(out), n_reduce=2) for out in outs[:3]]
    assert ids == ["job-0001", "job-0002", "job-0003"]
    assert [(i.job_id, i.state) for i in c.client.status().jobs] == [(i, "queued") for i in ids]

    c.restart_coordinator()
    assert [(i.job_id, i.state) for i in c.client.status().jobs] == [(i, "queued") for i in ids]
    shown = run_zmr("status", "--coordinator", c.address, timeout=30)
    assert shown.returncode == 0, str(shown)
    for job_id in ids:
        assert any(line.split()[:1] == [job_id] and "queued" in line.split() for line in shown.stdout.splitlines()), \
            shown.stdout
    fresh = c.client.submit(str(APPS / "wc.py"), [str(book)], str(outs[3]), n_reduce=2)
    assert fresh == "job-0004", "the restarted coordinator reused a job id"

    c.start_workers(2)
    reference = seq_oracle(APPS / "wc.py", [book])
    for job_id, out in zip([*ids, fresh], outs, strict=True):
        info = c.wait(job_id)
        assert info.state == "succeeded"
        assert read_output(out, 2) == reference, job_id


def test_a_finished_jobs_status_survives_restarts(library: Path, tmp_path: Path, restart_cluster: RestartCluster,
                                                  run_zmr, seq_oracle: SeqOracle) -> None:
    """Two restarts: the first replays the job's own records, the second the compacted snapshot the first
    wrote (an ended job is kept as its final status). The second takes its state dir from the environment."""
    c = restart_cluster
    c.start_coordinator()
    c.start_workers(1)
    book = library / SMALL_BOOK
    out = tmp_path / "out"
    job = c.client.submit(str(APPS / "wc.py"), [str(book)], str(out), n_reduce=2)
    done = c.wait(job)
    assert done.state == "succeeded" and done.records_out > 0

    def summary(info: m.JobInfo) -> tuple[Any, ...]:
        return (info.job_id, info.state, info.records_out, info.maps_done, info.maps_total, info.reduces_done,
                info.reduces_total, info.output_dir, info.error, info.finished)

    for use_env in (False, True):
        c.restart_coordinator(use_env=use_env)
        assert summary(c.job(job)) == summary(done)
        assert [(t.kind, t.index, t.state, t.attempts) for t in c.job(job).tasks] == [
            (t.kind, t.index, t.state, t.attempts) for t in done.tasks]
        assert [(i.job_id, i.state, i.records_out) for i in c.client.status().jobs] == [
            (job, "succeeded", done.records_out)]
    shown = run_zmr("status", job, "--coordinator", c.address, timeout=30)
    assert shown.returncode == 0, str(shown)
    assert any(line.split()[:1] == [job] and "succeeded" in line.split() for line in shown.stdout.splitlines()), \
        shown.stdout
    assert read_output(out, 2) == seq_oracle(APPS / "wc.py", [book])   # the restarts left the output alone
    next_job = c.client.submit(str(APPS / "wc.py"), [str(book)], str(tmp_path / "out2"), n_reduce=1)
    assert next_job == "job-0002"
    assert c.wait(next_job).state == "succeeded"


# ------------------------------------------------------------------ the journal and its directory


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_last_journal_record_is_reported_and_the_intact_ones_recovered(
        damage: str, library: Path, tmp_path: Path, restart_cluster: RestartCluster,
        seq_oracle: SeqOracle) -> None:
    c = restart_cluster
    c.start_coordinator()
    book = library / SMALL_BOOK
    outs = [tmp_path / f"out{i}" for i in range(3)]
    ids = [c.client.submit(str(APPS / "wc.py"), [str(book)], str(out), n_reduce=2) for out in outs]
    c.kill_coordinator()

    path = c.state_dir / "journal"
    parsed = _journal_records(c.state_dir)
    assert parsed.problem == "", parsed.problem
    last = parsed.records[-1]
    assert isinstance(last, j.JobSubmitted) and last.job_id == ids[-1], last
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        del data[-5:]                     # a torn write: the record's tail never reached the file
    else:
        data[-10] ^= 0xFF                 # one byte of the last record's body changed: its crc32 fails
    path.write_bytes(bytes(data))

    c.start_coordinator()
    log = c.coordinator_log()
    damaged = events(log, "journal_damaged")
    assert len(damaged) == 1, log.read_text()
    assert damaged[0]["level"] == "warning" and damaged[0]["kept_records"] == len(parsed.records) - 1, damaged
    assert [(i.job_id, i.state) for i in c.client.status().jobs] == [(i, "queued") for i in ids[:2]]
    assert _journal_records(c.state_dir).problem == "", "the damaged tail was not dropped from the journal"

    c.start_workers(1)
    reference = seq_oracle(APPS / "wc.py", [book])
    for job_id, out in zip(ids[:2], outs[:2], strict=True):
        assert c.wait(job_id).state == "succeeded"
        assert read_output(out, 2) == reference
    c.restart_coordinator()
    assert not events(c.coordinator_log(), "journal_damaged"), "the journal is still damaged after a restart"
    assert [(i.job_id, i.state) for i in c.client.status().jobs] == [(i, "succeeded") for i in ids[:2]]


def _files(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    """name -> (inode, mtime in ns, bytes) of every file: rewritten output shows up in one of them."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.iterdir())}


def _zmr_coord(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the `zmr-coord` entry point to its end (it is expected to refuse to start)."""
    env = {**clean_env(), "PYTHONPATH": str(REPO)}
    return subprocess.run(zmr_command(*args, entry_point="zmr-coord"), cwd=REPO, env=env, text=True,
                          capture_output=True, timeout=60, stdin=subprocess.DEVNULL)


def test_a_journal_damaged_before_its_end_stops_the_coordinator_and_is_kept(
        tmp_path: Path, restart_cluster: RestartCluster) -> None:
    """One byte changed in the record that started a finished job. `zmr-coord` exits 1 with a one-line
    `zmr: ...` naming the file and the offset, leaving the file as it was; with --recover-damaged-journal
    it starts from the records before the damage, keeps the file aside, and does not run the job again:
    its `_SUCCESS` is found, so not one output file is rewritten."""
    c = restart_cluster
    c.start_coordinator()
    c.start_workers(1)
    book = tmp_path / "in" / "book.txt"
    book.parent.mkdir()
    book.write_text("the quick brown fox\njumps over the lazy dog\nthe end\n" * 50)
    out = tmp_path / "out"
    job = c.client.submit(str(APPS / "wc.py"), [str(book)], str(out), n_reduce=2)
    assert c.wait(job).state == "succeeded"
    c.kill_coordinator()
    written = _files(out)
    assert sorted(written) == ["_SUCCESS", "mr-out-0", "mr-out-1"], written

    path = c.state_dir / "journal"
    data = path.read_bytes()
    records = _journal_records(c.state_dir).records
    at = next(i for i, r in enumerate(records) if isinstance(r, j.JobStarted))
    offset = sum(len(j.frame(r)) for r in records[:at])
    damaged = bytearray(data)
    damaged[offset + 12] ^= 0x55
    path.write_bytes(bytes(damaged))

    refused = _zmr_coord("--bind", f"tcp://127.0.0.1:{_free_port()}", "--state-dir", c.state_dir)
    assert refused.returncode == 1, refused
    assert "Traceback" not in refused.stderr, refused.stderr
    [message] = [line for line in refused.stderr.splitlines() if line.startswith("zmr: ")]
    assert f"the journal {path} is damaged at byte {offset}" in message, refused.stderr
    assert "--recover-damaged-journal" in message
    assert path.read_bytes() == bytes(damaged), "the refused journal was changed"
    assert sorted(p.name for p in c.state_dir.iterdir()) == ["journal", "lock"]

    c.start_coordinator(False, "--recover-damaged-journal")
    [event] = events(c.coordinator_log(), "journal_damaged")
    assert (event["level"], event["offset"], event["kept_records"], event["torn"]) == ("warning", offset, at, False)
    aside = Path(event["copy"])
    assert aside.parent == c.state_dir and aside.name.startswith("journal.damaged-") and aside.read_bytes() == damaged
    assert events(c.coordinator_log(), "job_found_committed", job=job), c.logs_text()
    info = c.job(job)
    assert info.state == "succeeded", info
    assert _journal_records(c.state_dir).problem == ""
    c.restart_coordinator()   # the rewritten journal, without the flag: nothing damaged any more
    assert not events(c.coordinator_log(), "journal_damaged")
    assert c.job(job).state == "succeeded"
    assert _files(out) == written, "committed output was rewritten"


def test_two_coordinators_cannot_share_a_state_dir(library: Path, tmp_path: Path, restart_cluster: RestartCluster,
                                                   run_zmr) -> None:
    """The second one (on another address, its state dir given as a config key) exits at once, saying why,
    and leaves the first one and its journal alone."""
    c = restart_cluster
    c.start_coordinator()
    job = c.client.submit(str(APPS / "wc.py"), [str(library / SMALL_BOOK)], str(tmp_path / "out"), n_reduce=2)
    journal = (c.state_dir / "journal").read_bytes()
    other = f"tcp://127.0.0.1:{_free_port()}"
    second = run_zmr("coord", "--bind", other, "--set", f"coordinator.state_dir={c.state_dir}", timeout=30)
    assert second.returncode != 0, str(second)
    assert "in use by another coordinator" in second.stderr, str(second)
    assert "Traceback" not in second.stderr, str(second)
    assert (c.state_dir / "journal").read_bytes() == journal
    assert c.coordinators[-1].poll() is None, "the first coordinator died"
    assert [(i.job_id, i.state) for i in c.client.status().jobs] == [(job, "queued")]
    assert not [r for r in log_records(c.coordinator_log()) if r.get("level") in ("error", "critical")]


def test_killed_while_step_two_of_three_runs_a_multi_step_job_completes_without_running_step_one_again(
        library: Path, tmp_path: Path, restart_cluster: RestartCluster, seq_oracle: SeqOracle) -> None:
    """Step 1's reduces all committed (feeding step 2), step 2's reduces held in the app: the restarted
    coordinator replays every step job, the workers bring back what they hold, and step 1 runs no task
    again."""
    c = restart_cluster
    c.start_coordinator()
    c.start_workers(3)
    workers = set(c.live_workers())
    hold, out = tmp_path / "hold", tmp_path / "out"
    hold.mkdir()
    steps3 = REPO / "tests" / "e2e" / "apps" / "steps3.py"
    job = c.client.submit(str(steps3), [str(library)], str(out), n_reduce=3, args=[f"hold={hold}"])
    wait_until(lambda: list(hold.glob("held-*.json")), 60, what="a reduce of step 2 to hold")
    first = c.job(job).steps[0].job_id
    before = c.job(first)
    assert before.reduces_done == before.reduces_total == 3
    c.restart_coordinator()
    recovered = c.job(job)
    assert recovered.state == "running" and [s.name for s in recovered.steps] == ["count", "lengths", "table"]
    c.await_workers_back(workers)
    (hold / "release").touch()
    final = c.wait(job)
    assert final.state == "succeeded"
    assert sorted(output_lines(out / "mr-out-0")) == seq_oracle(steps3, [library])   # its rows, ordered by length
    assert _reruns(_tasks(before, "reduce"), c.job(first), "reduce") == {}, "step 1 ran again"
    assert _reruns(_tasks(before, "map"), c.job(first), "map") == {}, "step 1 ran again"
