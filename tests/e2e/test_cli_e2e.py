"""`zmr run` and `zmr cluster up` as a user runs them: exit codes, messages, and no process left behind."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from .conftest import (
    APPS,
    FAST_FLAGS,
    PROBE_APP,
    REPO,
    TEST_APPS,
    SeqOracle,
    ZmrLauncher,
    await_hold,
    children_of,
    clean_env,
    leftovers_of,
    live_workers,
    mentioning,
    probe_args,
    read_markers,
    read_output,
    release_hold,
    wait_until,
)

pytestmark = pytest.mark.e2e


def _run(app: Path, inputs: list[Path | str], out: Path, n_reduce: int = 3, workers: int = 2,
         *extra: str) -> list[str]:
    return ["run", "--app", str(app), "--input", *map(str, inputs), "--output", str(out),
            "--n-reduce", str(n_reduce), "--workers", str(workers), *FAST_FLAGS, *extra]


def _no_cluster_was_started(tmpdir: Path) -> None:
    """LocalCluster makes its scratch directory (zmr-local-*) in TMPDIR before it starts anything."""
    assert list(tmpdir.iterdir()) == [], list(tmpdir.iterdir())


# ------------------------------------------------------------------ success, failure, Ctrl-C


def test_run_success_leaves_no_process_and_no_scratch(library: Path, tmp_path: Path, run_zmr,
                                                      seq_oracle: SeqOracle) -> None:
    out = tmp_path / "out"
    result = run_zmr(*_run(APPS / "wc.py", [library], out))
    assert result.returncode == 0, str(result)
    assert result.leftovers == []
    assert read_output(out, 3) == seq_oracle(APPS / "wc.py", [library])
    assert list(result.tmpdir.iterdir()) == [], "zmr run left scratch files (work dirs or logs) after success"


def test_run_keep_logs_keeps_them_after_a_success_too(library: Path, tmp_path: Path, run_zmr) -> None:
    out = tmp_path / "out"
    result = run_zmr(*_run(APPS / "wc.py", [library], out, 2, 2, "--keep-logs"))
    assert result.returncode == 0, str(result)
    found = re.search(r"cluster logs are in (\S+)", result.stderr)
    assert found, str(result)
    logs = Path(found.group(1))
    assert (logs / "coordinator.log").stat().st_size > 0 and len(list(logs.glob("worker-*.log"))) == 2
    assert "job_succeeded" in (logs / "coordinator.log").read_text()
    assert result.leftovers == [] and logs.is_relative_to(result.tmpdir)   # in its TMPDIR: no other run reaps it


@pytest.mark.parametrize("limit", [["--set", "retry.max_attempts=2"], ["--max-attempts", "2"]])
def test_run_with_a_failing_app_reports_the_traceback_and_leaves_no_process(library: Path, tmp_path: Path,
                                                                            run_zmr, limit: list[str]) -> None:
    out = tmp_path / "out"
    result = run_zmr(*_run(TEST_APPS / "fail_reduce.py", [library], out, 3, 2, *limit, "--set", "retry.base=0.05"))
    assert result.returncode not in (0, 130), str(result)
    assert "job failed" in result.stderr and "failed 2 times" in result.stderr, str(result)
    assert "zmr-e2e-reduce-boom" in result.stderr, str(result)          # the app's error ...
    assert "Traceback (most recent call last)" in result.stderr         # ... with its traceback,
    assert "fail_reduce.py" in result.stderr and "_explode" in result.stderr   # into the app's code
    assert result.leftovers == []
    # the failed job left no output, not even partial or temporary files, nor the directory made for it
    assert not out.exists(), sorted(p.name for p in out.iterdir())
    # the logs are kept and their place is printed
    found = re.search(r"cluster logs are in (\S+)", result.stderr)
    assert found, str(result)
    assert (Path(found.group(1)) / "coordinator.log").is_file()


@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGINT, 130, "interrupted"),
                                                   (signal.SIGTERM, 143, "terminated")])
def test_run_interrupted_or_terminated_stops_its_cluster_and_leaves_no_process(
        library: Path, tmp_path: Path, zmr_cli: ZmrLauncher, sig: signal.Signals, code: int, word: str) -> None:
    markers, out = tmp_path / "markers", tmp_path / "out"
    markers.mkdir()
    args = _run(PROBE_APP, [library], out, 2, 2)
    for arg in probe_args(markers, map_sleep=1.0):
        args += ["--arg", arg]
    proc, tmpdir = zmr_cli.spawn(*args, sigint_default=True)
    wait_until(lambda: read_markers(markers) or proc.poll() is not None, 30, what="the first map task to start")
    assert proc.poll() is None, "zmr run ended before it could be interrupted"
    assert children_of(proc.pid), "the cluster's processes should be running now"
    os.kill(proc.pid, sig)
    result = zmr_cli.finish(proc, tmpdir, timeout=30)
    assert result.returncode == code, str(result)
    assert f"zmr: {word}; cluster stopped" in result.stderr, str(result)
    assert result.leftovers == []
    assert not out.exists(), "the interrupted run left the output directory it made"
    found = re.search(r"its logs are in (\S+)", result.stderr)
    assert found, str(result)
    worker_logs = "".join(p.read_text() for p in Path(found.group(1)).glob("worker-*.log"))
    assert "task_cancelled" in worker_logs, "a stopping worker cancels the map it runs, not waits it out"


def _probe_run(markers: Path, out: Path, library: Path, **options: object) -> list[str]:
    """A `zmr run` of the probe app (which leaves a marker as each map starts)."""
    args = _run(PROBE_APP, [library], out, 2, 2)
    for arg in probe_args(markers, **options):
        args += ["--arg", arg]
    return args


def test_the_next_run_reaps_what_a_killed_run_left_and_never_touches_a_live_one(
        library: Path, tmp_path: Path, zmr_cli: ZmrLauncher, seq_oracle: SeqOracle) -> None:
    """A SIGKILLed `zmr run` cannot remove its zmr-local-* directory nor the output directory it made."""
    shared = tmp_path / "tmp"   # one TMPDIR for every run here, as on one host
    shared.mkdir()
    env = {"TMPDIR": str(shared)}
    (tmp_path / "live-markers").mkdir()
    (tmp_path / "dead-markers").mkdir()
    live, _ = zmr_cli.spawn(*_probe_run(tmp_path / "live-markers", tmp_path / "live-out", library,
                                        probe_r=2, hold=0), "--set", "speculation.enabled=false", env=env)
    await_hold(tmp_path / "live-markers", 0)   # its reduce of partition 0 waits until released below (no backup)
    live_scratch = set(shared.glob("zmr-local-*"))
    assert live.poll() is None and len(live_scratch) == 1, live_scratch

    dead_out = tmp_path / "dead-out"
    dead, _ = zmr_cli.spawn(*_probe_run(tmp_path / "dead-markers", dead_out, library, map_sleep=1.0), env=env)
    wait_until(lambda: read_markers(tmp_path / "dead-markers") or dead.poll() is not None, 60,
               what="the doomed run's first map")
    assert dead.poll() is None, "the run ended before it could be killed"
    dead_scratch = set(shared.glob("zmr-local-*")) - live_scratch
    assert len(dead_scratch) == 1 and dead_out.is_dir()
    dead.send_signal(signal.SIGKILL)
    dead.wait(timeout=10)
    wait_until(lambda: not children_of(dead.pid) and not mentioning(str(dead_out)), 30,
               what="the killed run's cluster to exit by itself")
    assert all(d.exists() for d in dead_scratch) and dead_out.exists(), "nothing to reap: the test shows nothing"

    out = tmp_path / "out"
    result = zmr_cli.run(*_run(APPS / "wc.py", [library], out), env=env)
    assert result.returncode == 0, str(result)
    assert read_output(out, 3) == seq_oracle(APPS / "wc.py", [library])
    assert not any(d.exists() for d in dead_scratch), "the killed run's scratch directory was not reaped"
    assert not dead_out.exists(), "the killed run's unfinished output directory was not reaped"
    assert all(d.exists() for d in live_scratch), "a live run's scratch directory was removed"
    assert live.poll() is None, "the live run should still be running"

    release_hold(tmp_path / "live-markers", 0)
    finished = zmr_cli.finish(live, shared, timeout=120)
    assert finished.returncode == 0, str(finished)
    assert (tmp_path / "live-out" / "_SUCCESS").exists()
    assert list(shared.iterdir()) == [], list(shared.iterdir())


def test_the_logs_a_failed_run_keeps_are_not_reaped_by_the_next_run(library: Path, tmp_path: Path,
                                                                      run_zmr) -> None:
    shared = tmp_path / "tmp"
    shared.mkdir()
    env = {"TMPDIR": str(shared)}
    failed = run_zmr(*_run(TEST_APPS / "fail_reduce.py", [library], tmp_path / "failed", 3, 2,
                           "--set", "retry.max_attempts=1"), env=env)
    assert failed.returncode == 1, str(failed)
    kept = list(shared.glob("zmr-local-*"))
    assert len(kept) == 1 and (kept[0] / "logs" / "coordinator.log").is_file(), kept
    ok = run_zmr(*_run(APPS / "wc.py", [library], tmp_path / "out"), env=env)
    assert ok.returncode == 0, str(ok)
    assert list(shared.glob("zmr-local-*")) == kept and (kept[0] / "logs" / "coordinator.log").is_file()


def test_a_cluster_that_fails_to_start_says_why_and_its_logs_outlive_the_next_run(library: Path, tmp_path: Path,
                                                                                  run_zmr) -> None:
    shared = tmp_path / "tmp"
    shared.mkdir()
    env = {"TMPDIR": str(shared)}
    config = tmp_path / "cluster.toml"
    config.write_text("[cluster]\nworkers = 1\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"tcp://127.0.0.1:{taken.getsockname()[1]}"
        failed = run_zmr("cluster", "up", str(config), "--set", f"coordinator.bind={address}",
                         "--set", "coordinator.state_dir=", "--no-dashboard", env=env)
    assert failed.returncode == 1, str(failed)
    # the reason is in the message, not only in the log it names
    found = re.fullmatch(rf"zmr: the coordinator exited at start: cannot bind {re.escape(address)}.*; see (\S+)\n",
                         failed.stderr)
    assert found, str(failed)
    log = Path(found.group(1))
    assert log.is_file() and log.is_relative_to(shared) and failed.leftovers == []
    ok = run_zmr(*_run(APPS / "wc.py", [library], tmp_path / "out"), env=env)
    assert ok.returncode == 0, str(ok)
    assert log.is_file(), "the next run reaped the logs the error pointed to"


def test_log_flags_reach_the_processes_zmr_run_starts(library: Path, tmp_path: Path, run_zmr) -> None:
    result = run_zmr(*_run(APPS / "wc.py", [library], tmp_path / "out", 2, 2, "--keep-logs", "--log-format", "json",
                           "--log-level", "debug"))
    assert result.returncode == 0, str(result)
    found = re.search(r"cluster logs are in (\S+)", result.stderr)
    assert found, str(result)
    logs = sorted(Path(found.group(1)).glob("*.log"))
    assert [log.name for log in logs] == ["coordinator.log", "worker-0.log", "worker-1.log"], logs
    for log in logs:
        records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        assert records and any(r["level"] == "debug" for r in records), log


def test_seq_reports_an_app_error_with_the_apps_traceback_and_leaves_no_folder(library: Path, tmp_path: Path,
                                                                               run_zmr) -> None:
    out = tmp_path / "out"
    result = run_zmr("seq", "--app", str(TEST_APPS / "fail_reduce.py"), "--input", str(library), "--output",
                     str(out))
    assert result.returncode == 1, str(result)
    assert result.stderr.startswith("Traceback (most recent call last):"), str(result)
    assert "fail_reduce.py" in result.stderr and "_explode" in result.stderr, str(result)
    assert "zmr/seq.py" not in result.stderr and "zmr/cli.py" not in result.stderr, "zmr's own frames shown"
    assert result.stderr.splitlines()[-1].startswith("zmr: seq failed: "), str(result)
    assert "zmr-e2e-reduce-boom" in result.stderr.splitlines()[-1]
    assert not out.exists()


@pytest.mark.parametrize("role", ["coord", "worker"])
def test_a_server_whose_address_is_taken_exits_at_once_with_a_clear_error(role: str,
                                                                         zmr_cli: ZmrLauncher) -> None:
    """Before, a coordinator whose bind failed hung in the context's term() with the failed socket open."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"tcp://127.0.0.1:{taken.getsockname()[1]}"
        args = (["coord", "--bind", address] if role == "coord" else
                ["worker", "--coordinator", "tcp://127.0.0.1:9", "--data-bind", address])
        proc, tmpdir = zmr_cli.spawn(*args)
        result = zmr_cli.finish(proc, tmpdir, timeout=20)
    assert result.returncode == 1, str(result)
    assert f"zmr: cannot bind {'the data endpoint ' if role == 'worker' else ''}{address}" in result.stderr, \
        str(result)
    assert "Traceback" not in result.stderr
    assert result.leftovers == []
    assert list(tmpdir.iterdir()) == [], "a work directory was left behind"


# ------------------------------------------------------------------ bad input


BAD_APP_NO_REDUCE = textwrap.dedent("""
    def map(filename, contents):
        yield filename, "1"
""")


@pytest.mark.parametrize(("case", "message"), [
    ("missing-input", r"input '.*no-such-book\.txt' does not exist"),
    ("empty-input-dir", r"holds no \(non-hidden\) files"),
    ("missing-app", r"app file '.*no_such_app\.py' does not exist"),
    ("app-raises-on-import", r"failed to import:(.|\n)*Traceback(.|\n)*bad_import\.py(.|\n)*zmr-e2e-import-boom"),
    ("app-without-reduce", r"`reduce` is missing"),
    ("arg-for-an-app-without-args", r"app '.*wc\.py' takes no arguments .*so --arg 'x' would be ignored"),
    ("py-file-missing", r"--py-files: '.*nowhere\.py' does not exist"),
    ("max-attempts-zero", r"--max-attempts must be at least 1, got 0"),
    ("output-is-a-file", r"output path .*out exists and is not a directory"),
])
def test_bad_job_is_refused_before_any_cluster_starts(case: str, message: str, library: Path, tmp_path: Path,
                                                      run_zmr) -> None:
    app, inputs = APPS / "wc.py", [library]
    if case == "missing-input":
        inputs = [library, tmp_path / "no-such-book.txt"]
    elif case == "empty-input-dir":
        (tmp_path / "empty").mkdir()
        inputs = [tmp_path / "empty"]
    elif case == "missing-app":
        app = tmp_path / "no_such_app.py"
    elif case == "app-raises-on-import":
        app = TEST_APPS / "bad_import.py"
    elif case == "app-without-reduce":
        app = tmp_path / "no_reduce.py"
        app.write_text(BAD_APP_NO_REDUCE)
    extra = {"arg-for-an-app-without-args": ["--arg", "x"],
             "py-file-missing": ["--py-files", str(tmp_path / "nowhere.py")],
             "max-attempts-zero": ["--max-attempts", "0"]}.get(case, [])
    out = tmp_path / "out"
    if case == "output-is-a-file":
        out.write_text("a file\n")
    result = run_zmr(*_run(app, inputs, out, 3, 2, *extra))
    assert result.returncode == 1, str(result)
    assert re.search(message, result.stderr), str(result)
    assert result.stderr.startswith("zmr: "), "expected a one-line zmr error, not a crash"
    assert result.leftovers == []
    _no_cluster_was_started(result.tmpdir)
    assert not out.exists() or out.read_text() == "a file\n"


def test_n_reduce_below_one_is_refused(library: Path, tmp_path: Path, run_zmr) -> None:
    result = run_zmr(*_run(APPS / "wc.py", [library], tmp_path / "out", 0))
    assert result.returncode == 1, str(result)
    assert re.search(r"n_reduce must be (>= 1|at least 1)", result.stderr), str(result)
    assert result.leftovers == []
    _no_cluster_was_started(result.tmpdir)
    assert not (tmp_path / "out").exists()


def test_existing_output_is_refused_unless_overwrite(library: Path, tmp_path: Path, run_zmr,
                                                     seq_oracle: SeqOracle) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "mr-out-0").write_text("old 1\n")
    (out / "mr-out-99").write_text("stale 1\n")
    refused = run_zmr(*_run(APPS / "wc.py", [library], out))
    assert refused.returncode == 1, str(refused)
    assert "already holds output" in refused.stderr and "--overwrite" in refused.stderr, str(refused)
    assert refused.leftovers == []
    _no_cluster_was_started(refused.tmpdir)
    assert (out / "mr-out-0").read_text() == "old 1\n" and (out / "mr-out-99").read_text() == "stale 1\n"

    done = run_zmr(*_run(APPS / "wc.py", [library], out, 3, 2, "--overwrite"))
    assert done.returncode == 0, str(done)
    assert done.leftovers == []
    assert read_output(out, 3) == seq_oracle(APPS / "wc.py", [library])   # mr-out-99 is gone too


def test_existing_success_marker_alone_is_refused(library: Path, tmp_path: Path, run_zmr) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "_SUCCESS").write_text("")
    refused = run_zmr(*_run(APPS / "wc.py", [library], out))
    assert refused.returncode == 1, str(refused)
    assert "already holds output" in refused.stderr, str(refused)
    assert refused.leftovers == []
    _no_cluster_was_started(refused.tmpdir)


# ------------------------------------------------------------------ zmr cluster up


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Lines(threading.Thread):
    """Collects a pipe's lines as they come."""

    def __init__(self, stream) -> None:  # type: ignore[no-untyped-def]  # any text stream
        super().__init__(daemon=True)
        self.stream = stream
        self.lines: list[str] = []

    def run(self) -> None:
        for line in self.stream:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)


def test_cluster_up_starts_from_a_folder_that_holds_a_folder_named_zmr(tmp_path: Path) -> None:
    """Its processes are started as `python -m zmr`: the working directory must not come first on their
    import path, or the folder a checkout was cloned into would be imported as the package."""
    console = Path(sys.executable).with_name("zmr")
    if not console.exists():
        pytest.skip("the zmr console script is not installed beside this python")
    (tmp_path / "wd" / "zmr").mkdir(parents=True)
    (tmp_path / "tmp").mkdir()
    config = tmp_path / "cluster.toml"
    config.write_text(f"[cluster]\nworkers = 1\n\n[coordinator]\nbind = \"tcp://127.0.0.1:{_free_port()}\"\n"
                      "dashboard = \"\"\n")
    proc = subprocess.Popen([str(console), "cluster", "up", str(config)], cwd=tmp_path / "wd",
                            env=clean_env(tmp_path / "tmp"), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _started(proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


def _started(proc: subprocess.Popen[str]) -> _Lines:
    """`zmr cluster up`'s output as it comes, once it says its coordinator is up (failing if it exits)."""
    stdout = _Lines(proc.stdout)
    stdout.start()
    wait_until(lambda: "coordinator at" in stdout.text or proc.poll() is not None, 30, what="zmr cluster up to start")
    assert proc.poll() is None, f"cluster up exited: {proc.stderr.read() if proc.stderr else ''}"
    return stdout


def test_cluster_up_serves_jobs_restarts_a_dead_worker_and_stops_on_sigterm(
        library: Path, tmp_path: Path, zmr_cli: ZmrLauncher, run_zmr, seq_oracle: SeqOracle) -> None:
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    proc, tmpdir = zmr_cli.spawn("cluster", "up", REPO / "configs" / "local.toml", "--workers", "2",
                                 "--set", f"coordinator.bind={address}", "--set", f"worker.coordinator={address}",
                                 *FAST_FLAGS)
    try:
        stdout = _started(proc)
        assert f"coordinator at {address}" in stdout.text, stdout.text
        assert len(children_of(proc.pid)) == 3           # a coordinator and two workers

        out = tmp_path / "out"
        submitted = run_zmr("submit", "--coordinator", address, "--app", APPS / "wc.py", "--input", library,
                            "--output", out, "--n-reduce", "3", "--wait")
        assert submitted.returncode == 0, str(submitted)
        assert re.match(r"job-\d+\n", submitted.stdout), submitted.stdout
        assert read_output(out, 3) == seq_oracle(APPS / "wc.py", [library])

        # a worker that dies is replaced
        worker = next(p for p in children_of(proc.pid) if " worker " in f" {p.cmdline} ")
        os.kill(worker.pid, signal.SIGKILL)
        wait_until(lambda: len([p for p in children_of(proc.pid) if " worker " in f" {p.cmdline} "]) == 2
                   and worker.pid not in {p.pid for p in children_of(proc.pid)}, 20, what="a replacement worker")
        status = run_zmr("status", "--coordinator", address)
        assert status.returncode == 0, str(status)
        job_id = submitted.stdout.splitlines()[0]
        as_json = run_zmr("status", job_id, "--json", "--coordinator", address)
        assert as_json.returncode == 0, str(as_json)
        doc = json.loads(as_json.stdout)
        assert doc["version"] == 1 and [(j["job_id"], j["state"]) for j in doc["jobs"]] == [(job_id, "succeeded")]
        assert doc["jobs"][0]["output_dir"] == str(out) and doc["jobs"][0]["tasks"] == []
        overall = json.loads(run_zmr("status", "--json", "--coordinator", address).stdout)
        assert len(overall["workers"]) >= 2 and all(w["data_addr"].startswith("tcp://") for w in overall["workers"])

        # cancelling a job that has ended says so, and fails
        late = run_zmr("cancel", job_id, "--coordinator", address)
        assert late.returncode == 1 and f"job {job_id} had already succeeded: nothing to cancel" in late.stderr, \
            str(late)
        assert read_output(out, 3) == seq_oracle(APPS / "wc.py", [library])

        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stdout.join(timeout=5)
    assert proc.returncode == 0
    assert "stopped" in stdout.text
    assert leftovers_of(proc.pid, tmpdir) == []
    # nothing listens on the port any more (SO_REUSEADDR: connections in TIME_WAIT do not count)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()


# ------------------------------------------------------------------ zmr-coord and zmr-worker on their own


def _registered_workers(address: str) -> int:
    """Workers registered with the coordinator at `address`; 0 while it is not up yet."""
    from zmr.client import Client

    with Client(address, timeout=5) as client:
        return live_workers(client)


def _stop(proc: subprocess.Popen[str], timeout: float = 15) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=timeout)


def test_worker_started_before_its_coordinator_joins_and_runs_a_job(library: Path, tmp_path: Path,
                                                                   zmr_cli: ZmrLauncher, run_zmr,
                                                                   seq_oracle: SeqOracle) -> None:
    address = f"tcp://127.0.0.1:{_free_port()}"
    worker, worker_tmp = zmr_cli.spawn("worker", "--coordinator", address, *FAST_FLAGS)
    time.sleep(0.5)   # the worker is up and finds nobody
    coord, _ = zmr_cli.spawn("coord", "--bind", address, *FAST_FLAGS)
    wait_until(lambda: _registered_workers(address) == 1, 30, what="the worker to register")
    out = tmp_path / "out"
    done = run_zmr("submit", "--coordinator", address, "--app", APPS / "wc.py", "--input", library,
                   "--output", out, "--n-reduce", "2", "--wait")
    assert done.returncode == 0, str(done)
    assert read_output(out, 2) == seq_oracle(APPS / "wc.py", [library])
    _stop(worker)
    assert _stop(coord) == 0
    assert mentioning(str(worker_tmp)) == []


def test_worker_stops_cleanly_on_sigterm_and_removes_its_work_dir(zmr_cli: ZmrLauncher) -> None:
    address = f"tcp://127.0.0.1:{_free_port()}"
    coord, _ = zmr_cli.spawn("coord", "--bind", address, *FAST_FLAGS)
    worker, worker_tmp = zmr_cli.spawn("worker", "--coordinator", address, *FAST_FLAGS)
    try:
        wait_until(lambda: _registered_workers(address) == 1, 30, what="the worker to register")
        assert [p.name for p in worker_tmp.iterdir()] != [], "the worker should make its work dir in TMPDIR"
        code = _stop(worker)
        stderr = worker.stderr.read() if worker.stderr else ""
    finally:
        _stop(coord)
    assert "Traceback" not in stderr, stderr
    assert code == 0
    assert list(worker_tmp.iterdir()) == [], "the worker left its work dir behind"


def test_a_coordinator_address_without_its_transport_is_one_line_and_nothing_listening_is_said_soon(
        run_zmr) -> None:
    bare = run_zmr("status", "--coordinator", "127.0.0.1:5555")
    assert bare.returncode == 1 and "Traceback" not in bare.stderr, str(bare)
    assert bare.stderr.strip().splitlines() == [
        "zmr: the coordinator address must be a ZeroMQ endpoint like 'tcp://host:port', got '127.0.0.1:5555' "
        "(did you mean 'tcp://127.0.0.1:5555'?)"]
    address = f"tcp://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    nobody = run_zmr("status", "--coordinator", address)
    assert nobody.returncode == 1 and time.monotonic() - started < 6, str(nobody)
    assert f"nothing accepted a connection at {address} within 2 s: is a coordinator running there?" in nobody.stderr
