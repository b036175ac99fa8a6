"""Shared fixtures for the end-to-end tests: real coordinator and worker processes on loopback.

Every process a test starts is stopped by the fixture that started it, even when the test fails:
`zmr ...` command lines through `run_zmr`/`spawn_zmr`, in-process clusters through `cluster`. Processes
are found again by what their command line says: the launcher passes `--exit-with-parent <pid>` to each
child, and each `zmr` command run here gets its own TMPDIR, which appears in its children's work dirs.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from zmr.client import Client
from zmr.core.partition import partition_of
from zmr.local import LocalCluster
from zmr.protocol import messages as m

REPO = Path(__file__).resolve().parents[2]
APPS = REPO / "apps"
TEST_APPS = Path(__file__).resolve().parent / "apps"
PROBE_APP = TEST_APPS / "probe.py"
# Kill tests: no backup attempts (they would add attempts of their own); a frozen worker is declared dead
# only long after `freeze_and_kill` has recorded what it did.
KILL_SETTINGS = {"speculation__enabled": "false", "coordinator__heartbeat_liveness": "20"}
CRASH_APP = TEST_APPS / "crash.py"
PROBE_PREFIX = "~probe:"

FAST = {"coordinator.heartbeat_interval": "0.1",   # quicker liveness, ticks and shutdown
        "coordinator.dashboard": "http://127.0.0.1:0"}   # a free port: no warning that 8787 is taken
FAST_FLAGS = [flag for key, value in FAST.items() for flag in ("--set", f"{key}={value}")]
GREP_PATTERN = "Holmes|Watson|Huck"


# ------------------------------------------------------------------ data


@pytest.fixture(scope="session")
def big_input(library: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All the books in one file (about 3.3 MB), so `--split-size-mb 1` cuts it into several map tasks."""
    path = tmp_path_factory.mktemp("big") / "all-books.txt"
    with open(path, "wb") as out:
        for book in sorted(library.glob("*.txt")):
            out.write(book.read_bytes())
    assert path.stat().st_size > 3 << 20
    return path


def independent_word_count(paths: Sequence[Path]) -> list[str]:
    """`word count` lines, sorted: words are maximal runs of str.isalpha characters, computed plainly."""
    counts: Counter[str] = Counter()
    for path in paths:
        text = path.read_bytes().decode("utf-8", errors="replace")
        counts.update("".join(run) for alpha, run in itertools.groupby(text, str.isalpha) if alpha)
    return sorted(f"{word} {n}" for word, n in counts.items())


@pytest.fixture(scope="session")
def library_word_count(library: Path) -> list[str]:
    return independent_word_count(sorted(library.glob("*.txt")))


SeqOracle = Callable[..., list[str]]


@pytest.fixture(scope="session")
def seq_oracle(tmp_path_factory: pytest.TempPathFactory) -> SeqOracle:
    """`seq(app, inputs, args=())`: the sorted lines of `zmr seq`'s mr-out-0, each computed once a session."""
    cache: dict[tuple[str, tuple[str, ...], tuple[str, ...]], list[str]] = {}
    counter = itertools.count()

    def seq(app: str | Path, inputs: Sequence[str | Path], args: Sequence[str] = ()) -> list[str]:
        key = (str(app), tuple(str(i) for i in inputs), tuple(args))
        if key not in cache:
            out = tmp_path_factory.mktemp("seq") / f"out{next(counter)}"
            cmd = [sys.executable, "-m", "zmr", "seq", "--app", str(app), "--input", *key[1], "--output", str(out)]
            for arg in args:
                cmd += ["--arg", arg]
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, env=clean_env())
            assert proc.returncode == 0, f"zmr seq failed:\n{proc.stderr}"
            cache[key] = sorted(output_lines(out / "mr-out-0"))
        return list(cache[key])

    return seq


# ------------------------------------------------------------------ output checks


def output_lines(path: Path) -> list[str]:
    """An output file's lines, split at "\n" only, as zmr writes them: values may hold U+2028, \x0c or \r,
    which `str.splitlines` or universal-newline reading would also split at or change."""
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    return text.removesuffix("\n").split("\n") if text else []


def read_output(outdir: Path, n_reduce: int, *, check_partitioning: bool = True,
                ignore_hidden: bool = False) -> list[str]:
    """Sorted lines of all mr-out-*, after checking the directory holds exactly the job's files.

    No temporary file may be left, and none may match mr-out-*; _SUCCESS must be there; keys are sorted
    within each file (as the README promises). With the default
    partitioner every key must sit in mr-out-<stable_hash(key) % n_reduce> (probe keys: see probe.py).
    `ignore_hidden` leaves hidden files out of the check (tests that look at leftovers separately).
    """
    names = sorted(p.name for p in outdir.iterdir() if not (ignore_hidden and p.name.startswith(".")))
    assert names == sorted([f"mr-out-{r}" for r in range(n_reduce)] + ["_SUCCESS"]), names
    lines: list[str] = []
    for r in range(n_reduce):
        part = output_lines(outdir / f"mr-out-{r}")
        keys = [line.split(" ", 1)[0] for line in part]
        assert keys == sorted(keys), f"keys are not sorted within mr-out-{r}"
        if check_partitioning:
            wrong = [key for key in keys if _partition(key, n_reduce) != r]
            assert not wrong, f"mr-out-{r} holds keys of other partitions: {wrong[:5]}"
        lines += part
    return sorted(lines)


def _partition(key: str, n_reduce: int) -> int:
    """Where a key belongs: the stable hash, or partition r for the probe app's `~probe:<r>`."""
    if key.startswith(PROBE_PREFIX):
        return int(key[len(PROBE_PREFIX):]) % n_reduce
    return partition_of(key, n_reduce)


def without_probes(lines: Sequence[str]) -> list[str]:
    return [line for line in lines if not line.startswith(PROBE_PREFIX)]


def probe_counts(lines: Sequence[str]) -> dict[int, int]:
    """partition -> value of its probe key (the number of committed map tasks that emitted it)."""
    found = {}
    for line in lines:
        if line.startswith(PROBE_PREFIX):
            key, value = line.split(" ", 1)
            found[int(key[len(PROBE_PREFIX):])] = int(value.split("@")[0])   # `count@pid` with tag=1
    return found


def await_hold(markers: Path, partition: int, timeout: float = 60) -> dict[str, Any]:
    """The probe app's `held-<partition>` record, once the reduce of that partition holds (option hold)."""
    path = markers / f"held-{partition}"
    found: dict[str, Any] = wait_until(lambda: path.exists() and json.loads(path.read_text()), timeout,
                                       what=f"the reduce of partition {partition} to hold")
    return found


def release_hold(markers: Path, partition: int) -> None:
    (markers / f"release-{partition}").touch()


def probe_args(markers: Path | None = None, **options: Any) -> list[str]:
    args = [f"markers={markers}"] if markers is not None else []
    return args + [f"{key}={value}" for key, value in options.items()]


def read_markers(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def overlapping_pairs(records: Sequence[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Pairs of finished intervals from different processes that were running at the same time."""
    done = [r for r in records if r["end"] is not None]
    return [(a, b) for a, b in itertools.combinations(done, 2)
            if a["pid"] != b["pid"] and max(a["start"], b["start"]) < min(a["end"], b["end"])]


# ------------------------------------------------------------------ processes


def clean_env(tmpdir: Path | None = None) -> dict[str, str]:
    """The environment for a zmr command: no ZMR_* settings from outside, its own TMPDIR if given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZMR_")}
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    return env


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    args: tuple[str, ...]

    @property
    def cmdline(self) -> str:
        return " ".join(self.args)


_ENTRY_POINTS = ("zmr", "zmr-coord", "zmr-worker")


def _is_zmr(args: Sequence[str]) -> bool:
    """`python -m zmr ...`, or an entry-point script run directly or through its interpreter."""
    if any(a == "-m" and b == "zmr" for a, b in itertools.pairwise(args)):
        return True
    return any(Path(a).name in _ENTRY_POINTS for a in args[:2])


def _split_cmdline(raw: bytes) -> list[bytes]:
    """A /proc cmdline's arguments; a retitled process (setproctitle, as forked cluster processes are)
    has them in one space-separated string, which is split as psutil splits it."""
    args = [a for a in raw.split(b"\0") if a]
    return args[0].split(b" ") if len(args) == 1 and b" " in args[0] else args


def zmr_processes() -> list[ProcInfo]:
    """Every live (non-zombie) zmr process on this machine, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state = stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else "?"
        args = tuple(a.decode(errors="replace") for a in _split_cmdline(raw))
        if state != "Z" and args and _is_zmr(args):
            found.append(ProcInfo(int(entry.name), args))
    return found


def children_of(launcher_pid: int) -> list[ProcInfo]:
    """zmr processes started by the launcher with that pid (it passes `--exit-with-parent <pid>`)."""
    return [p for p in zmr_processes()
            if any(a == "--exit-with-parent" and b == str(launcher_pid) for a, b in itertools.pairwise(p.args))]


def mentioning(text: str) -> list[ProcInfo]:
    return [p for p in zmr_processes() if text in p.cmdline]


def kill_all(procs: Sequence[ProcInfo]) -> None:
    for p in procs:
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def live_workers(client: Any) -> int:
    """Workers registered and alive, as `client` hears them; 0 while its coordinator is not up yet (a client
    says within 2 s when nothing listens at its address)."""
    from zmr.errors import NoAnswer

    try:
        return sum(w.state != "dead" for w in client.status().workers)
    except NoAnswer:
        return 0


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.05, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


@dataclass
class ZmrResult:
    args: list[str]
    pid: int
    returncode: int
    stdout: str
    stderr: str
    tmpdir: Path
    leftovers: list[ProcInfo]   # zmr processes of this command still alive right after it exited

    def __str__(self) -> str:
        return (f"zmr {' '.join(self.args)} -> {self.returncode}\n--- stdout\n{self.stdout}\n"
                f"--- stderr\n{self.stderr}")


def leftovers_of(pid: int, tmpdir: Path) -> list[ProcInfo]:
    seen = {p.pid: p for p in children_of(pid) + mentioning(str(tmpdir))}
    return list(seen.values())


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass
class ZmrLauncher:
    """Starts `python -m zmr ...` commands in the repo, each with its own TMPDIR; kills what is left."""

    base: Path
    started: list[tuple[subprocess.Popen[str], Path]] = field(default_factory=list)
    _n: itertools.count[int] = field(default_factory=itertools.count)

    def spawn(self, *args: str | Path, env: dict[str, str] | None = None,
              sigint_default: bool = False) -> tuple[subprocess.Popen[str], Path]:
        """Start `zmr ARGS...`; `env` adds variables (e.g. ZMR_*) to its clean environment.

        `sigint_default`: give the command the default SIGINT disposition even if this pytest ignores
        SIGINT (as a background job of a non-interactive shell does, and children inherit it).
        """
        tmpdir = self.base / f"tmp{next(self._n)}"
        tmpdir.mkdir(parents=True)
        proc = subprocess.Popen([sys.executable, "-m", "zmr", *map(str, args)], cwd=REPO,
                                env={**clean_env(tmpdir), **(env or {})},
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True,
                                preexec_fn=_default_sigint if sigint_default else None)
        self.started.append((proc, tmpdir))
        return proc, tmpdir

    def finish(self, proc: subprocess.Popen[str], tmpdir: Path, timeout: float) -> ZmrResult:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            kill_all(leftovers_of(proc.pid, tmpdir))
            pytest.fail(f"zmr {' '.join(map(str, proc.args[3:]))} did not finish within {timeout} s\n"
                        f"--- stdout\n{out}\n--- stderr\n{err}")
        return ZmrResult([str(a) for a in proc.args[3:]], proc.pid, proc.returncode, out, err, tmpdir,
                         leftovers_of(proc.pid, tmpdir))

    def run(self, *args: str | Path, timeout: float = 90.0, env: dict[str, str] | None = None) -> ZmrResult:
        proc, tmpdir = self.spawn(*args, env=env)
        return self.finish(proc, tmpdir, timeout)

    def cleanup(self) -> None:
        for proc, tmpdir in self.started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
            kill_all(leftovers_of(proc.pid, tmpdir))


@pytest.fixture
def zmr_cli(tmp_path: Path) -> Iterator[ZmrLauncher]:
    launcher = ZmrLauncher(tmp_path / "zmr-cli")
    try:
        yield launcher
    finally:
        launcher.cleanup()


@pytest.fixture
def run_zmr(zmr_cli: ZmrLauncher) -> Callable[..., ZmrResult]:
    """`run_zmr(*args, timeout=90, env=None)`: run one zmr command to its end; fails the test on timeout."""
    return zmr_cli.run


# ------------------------------------------------------------------ in-process clusters


LIVE_CLUSTER_PIDS: set[int] = set()   # processes of clusters a fixture still runs (module-scoped ones)


class Cluster:
    """A started LocalCluster plus a connected Client; every process it ever started is tracked."""

    def __init__(self, workers: int, overrides: dict[str, Any]) -> None:
        self.local = LocalCluster(workers, overrides=overrides)
        self.client: Client | None = None
        self._seen: list[subprocess.Popen[bytes]] = []

    def start(self) -> Cluster:
        self.local.start()
        self.client = Client(self.local.address, timeout=20.0)
        self.track()
        return self

    @property
    def address(self) -> str:
        return self.local.address

    def track(self) -> None:
        for proc in [self.local.coordinator, *self.local.workers]:
            if proc is not None and all(proc is not seen for seen in self._seen):
                self._seen.append(proc)
                LIVE_CLUSTER_PIDS.add(proc.pid)

    def processes(self) -> list[subprocess.Popen[bytes]]:
        self.track()
        return list(self._seen)

    def wait_for_workers(self, n: int, timeout: float = 30.0) -> None:
        """Until n workers are registered and alive, so the next job spreads its partitions over all."""
        assert self.client is not None
        client = self.client
        wait_until(lambda: sum(w.state != "dead" for w in client.status().workers) >= n, timeout,
                   what=f"{n} workers to register")

    def stop(self) -> None:
        try:
            if self.client is not None:
                self.client.close()
        finally:
            self.track()
            self.local.stop(grace=5.0)
            for proc in self._seen:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                LIVE_CLUSTER_PIDS.discard(proc.pid)
            self.local.cleanup()


@pytest.fixture
def cluster() -> Iterator[Callable[..., Cluster]]:
    """`cluster(workers, **overrides)`: a started local cluster (heartbeats every 0.1 s unless overridden)."""
    made: list[Cluster] = []

    def make(workers: int, wait: bool = True, **overrides: Any) -> Cluster:
        c = Cluster(workers, {**FAST, **{k.replace("__", "."): v for k, v in overrides.items()}})
        made.append(c)
        c.start()
        if wait:
            c.wait_for_workers(workers)
        return c

    try:
        yield make
    finally:
        for c in made:
            c.stop()


@pytest.fixture(autouse=True)
def no_stray_cluster_processes() -> Iterator[None]:
    """After each test: no zmr process started by this pytest process may be left; kill any and fail."""
    yield
    stray = [p for p in children_of(os.getpid()) if p.pid not in LIVE_CLUSTER_PIDS]
    if stray:
        kill_all(stray)
        pytest.fail(f"zmr processes left behind: {[p.cmdline for p in stray]}")


class Watcher(threading.Thread):
    """Samples a cluster's processes and an output directory while a job runs.

    Records every process exit (with the time) and every name seen in the output directory; for each
    mr-out-* seen, the content it had then, to compare with the final content (atomic renames).
    """

    def __init__(self, procs: Sequence[subprocess.Popen[bytes]], outdir: Path, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.procs = list(procs)
        self.outdir = outdir
        self.interval = interval
        self.exits: list[tuple[int, int | None, float]] = []
        self.names: set[str] = set()
        self.snapshots: dict[str, set[str]] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self._sample()
            self._halt.wait(self.interval)

    def stop(self) -> None:
        """Stop sampling, after one last sample: what the job left is always seen."""
        self._halt.set()
        self.join(timeout=5)
        self._sample()

    def _sample(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None and all(pid != proc.pid for pid, _, _ in self.exits):
                self.exits.append((proc.pid, proc.returncode, time.time()))
        try:
            names = [p.name for p in self.outdir.iterdir()]
        except FileNotFoundError:
            names = []
        for name in names:
            self.names.add(name)
            if re.fullmatch(r"mr-out-\d+", name):
                try:
                    text = (self.outdir / name).read_text(encoding="utf-8")
                except FileNotFoundError:
                    continue
                self.snapshots.setdefault(name, set()).add(text)


# ------------------------------------------------------------------ known engine bugs


class KnownBug(AssertionError):
    """The check that shows a known engine bug. Mark its test `xfail(strict=True, raises=KnownBug)`, so
    that only this check failing counts as the expected failure; any other failure (the scenario was not
    reached) still fails the test."""


def check_known_bug(condition: object, message: str) -> None:
    if not condition:
        raise KnownBug(message)


# ------------------------------------------------------------------ killing workers


def worker_pid(worker_id: str) -> int:
    """Worker ids are `w-<host>-<pid>-<random>`."""
    return int(worker_id.rsplit("-", 2)[1])


def worker_id_of(client: Client, pid: int) -> str:
    return next(w.worker_id for w in client.status().workers if worker_pid(w.worker_id) == pid)


def _victim_view(info: m.JobInfo, worker_id: str) -> list[tuple[str, int, str]]:
    return sorted((t.kind, t.index, t.state) for t in info.tasks if t.worker == worker_id)


def freeze_and_kill(c: Cluster, worker_id: str, job: str, settle: float = 0.2) -> m.JobInfo:
    """SIGSTOP the worker, wait until what it reported before has landed, record the job, then SIGKILL it.

    The record is the job as the coordinator saw it when the worker stopped: which tasks it was running
    and which map output it had committed. Use a heartbeat liveness long enough (a few seconds) that the
    coordinator does not declare the frozen worker dead before the record is taken.
    """
    assert c.client is not None
    client = c.client
    pid = worker_pid(worker_id)
    assert pid in {p.pid for p in c.local.workers}, f"{worker_id} is not one of the cluster's workers"
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(settle)
        before = client.job(job)
        while True:   # until two looks in a row agree on the frozen worker's tasks
            time.sleep(settle)
            now = client.job(job)
            if _victim_view(now, worker_id) == _victim_view(before, worker_id):
                break
            before = now
        assert worker_id in {w.worker_id for w in client.status().workers if w.state != "dead"}, \
            "the frozen worker was declared dead before its last reports were recorded: raise the liveness"
    finally:
        os.kill(pid, signal.SIGKILL)
    return now


def necessary_reruns(before: m.JobInfo, victim: str) -> set[tuple[str, int]]:
    """The tasks that must run again after `victim` dies, given the job just before it died.

    Its running task; and, if it owned a partition whose reduce had not committed (so that partition moves
    and its new owner needs every map's output), the maps it had committed: their kept output died with it.
    Map output it only pushed to surviving owners is never made again, nor is any committed reduce.
    """
    assert len(before.partitions) == before.reduces_total, "partition owners are not all known yet"
    states = {(t.kind, t.index): t.state for t in before.tasks}
    running = {(t.kind, t.index) for t in before.tasks if t.worker == victim and t.state in ("running", "committing")}
    owns_open = any(p.owner == victim and states[("reduce", p.partition)] != "done" for p in before.partitions)
    kept = {(t.kind, t.index) for t in before.tasks if t.kind == "map" and t.worker == victim and t.state == "done"}
    return running | (kept if owns_open else set())


def assert_attempts(info: m.JobInfo, reruns: set[tuple[str, int]]) -> None:
    """Every task in `reruns` ran exactly twice, every other task exactly once."""
    wrong = {f"{t.kind}-{t.index}": t.attempts for t in info.tasks
             if t.attempts != (2 if (t.kind, t.index) in reruns else 1)}
    assert not wrong, (f"attempts beyond what the failure made necessary: {wrong}; "
                       f"expected two attempts for {sorted(reruns)} and one for every other task")


class Supervisor(threading.Thread):
    """Restarts every worker of a cluster that exits (as `zmr cluster up` does), until stopped.

    Use as a context manager around the job, so it is stopped before the cluster is.
    """

    def __init__(self, c: Cluster, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.cluster = c
        self.interval = interval
        self.exits: list[tuple[int, int, int | None]] = []   # (worker index, pid, exit code)
        self._halt = threading.Event()

    @property
    def restarts(self) -> int:
        return len(self.exits)

    def run(self) -> None:
        local = self.cluster.local
        while not self._halt.is_set():
            for i, proc in enumerate(list(local.workers)):
                if proc.poll() is not None and not self._halt.is_set():
                    self.exits.append((i, proc.pid, proc.returncode))
                    local.workers[i] = local.start_worker(i)
                    self.cluster.track()
            self._halt.wait(self.interval)

    def __enter__(self) -> Supervisor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        self.join(timeout=10)
