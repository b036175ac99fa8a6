"""An embedded cluster on this machine: one coordinator and N worker processes on loopback.

Children run in their own session so a Ctrl-C reaches only the launcher, which then stops them all;
each child also exits by itself if the launcher dies, so no process is ever left behind. A SIGKILLed
launcher cannot remove its scratch directory (`zmr-local-*`, which names it as owner) nor the output
directory it made for a job that never finished: the next launcher on the host reaps both. Given a
`fork` command runner (`zmr run` passes the command line's own), children are forks of the launcher
while it has a single thread, which saves each one an interpreter start-up (see `zmr.runtime.forked`);
otherwise they are exec'd as `python -m zmr`. The launcher sits above the runtime, beside the client it
uses to see the workers register, and is handed the command runner rather than importing `zmr.cli`,
which starts it: no import goes up a floor (docs/architecture.md section 2).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from zmr import storage
from zmr.client import Client, build_spec
from zmr.core.batches import Value
from zmr.core.specs import DEFAULT_N_REDUCE
from zmr.errors import ClusterError, JobSpecError, NoAnswer, ZmrError
from zmr.log import get_logger
from zmr.protocol.messages import JobSpec, OutputFormat
from zmr.runtime import outputs, scratch
from zmr.runtime.forked import ForkedProcess, can_fork, fork_command

Child = subprocess.Popen[bytes] | ForkedProcess
CommandRunner = Callable[[Sequence[str]], int]
"""Runs one `zmr` command line and returns its exit code, as `zmr.cli.run_command` does."""


def override_flags(overrides: Mapping[str, Any]) -> list[str]:
    """`--set section.key=value` flags that carry config overrides to a child process."""
    flags: list[str] = []
    for key, value in overrides.items():
        if value is not None:
            text = str(value).lower() if isinstance(value, bool) else str(value)
            flags += ["--set", f"{key}={text}"]
    return flags


_ANY_LOOPBACK_PORT = "tcp://127.0.0.1:*"
_PORT_TRIES = 3
_OUTPUT_FILE = "made-output"   # in the scratch directory: an output directory this launcher made


def _new_scratch() -> Path:
    """This launcher's scratch directory, after reaping those of launchers killed on this host."""
    own = Path(tempfile.mkdtemp(prefix="zmr-local-"))
    scratch.claim(own)
    scratch.reap_orphans(own.parent, "zmr-local-*", own, get_logger(role="launcher"), before=_reap_output)
    return own


def _reap_output(dead_scratch: Path) -> None:
    """The output directory a killed launcher made, if its job never finished and nothing else is there."""
    try:
        made = (dead_scratch / _OUTPUT_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return
    if made:
        outputs.remove_abandoned(Path(made))


def _free_loopback_port() -> int:
    """A loopback TCP port that is free now (the kernel's pick); the coordinator binds it next."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Backoff:
    """Sleeps of 1 ms doubling to 20 ms: a start-up that takes tens of ms is seen within a ms or two,
    and a slow one is not polled hard."""

    def __init__(self) -> None:
        self._delay = 0.001

    def __call__(self) -> None:
        time.sleep(self._delay)
        self._delay = min(self._delay * 2, 0.02)


def _import_servers() -> None:
    import zmr.runtime.coordinator
    import zmr.runtime.worker  # noqa: F401


def terminate_all(procs: Sequence[Child], grace: float) -> None:
    """SIGTERM every process still running, then wait for them all; one still there after `grace` seconds
    is killed."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class LocalCluster:
    """Start with `with LocalCluster(2) as cluster:`; `cluster.address` is the coordinator's endpoint."""

    def __init__(self, workers: int, config_path: str | None = None, overrides: Mapping[str, Any] | None = None,
                 bind: str | None = None, log_dir: str | None = None, keys_dir: str = "",
                 fork: CommandRunner | None = None, keep_logs: bool = False) -> None:
        """`workers` 0: the coordinator alone, for workers started elsewhere (`zmr.remote`).
        `bind` None: a free loopback port, picked here. `keys_dir` lets the launcher itself talk to a
        cluster that runs with CURVE keys. `fork`: start children as forks of this process that run their
        command with it, when it is safe to (see the module docstring)."""
        if workers < 0:
            raise ClusterError(f"a local cluster cannot have {workers} workers")
        self.n_workers = workers
        self._config_args = (["--config", config_path] if config_path else []) + override_flags(overrides or {})
        self._scratch = _new_scratch()
        self._bind = bind
        self._logs_elsewhere = log_dir is not None
        self._keep_logs = keep_logs   # the scratch directory stays, for its logs, even after a success
        self._logs_unwanted = False
        self.log_dir = Path(log_dir) if log_dir else self._scratch / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.address = ""
        self.dashboard_url = ""   # the coordinator's dashboard, with its token ("" if it serves none)
        self._keys_dir = keys_dir
        self._fork = fork
        self.coordinator: Child | None = None
        self.workers: list[Child] = []

    def __enter__(self) -> LocalCluster:
        try:
            self.start()
        except ClusterError:   # `__exit__` is not called: keep the logs the error points to
            self._leave_scratch(failed=True)
            raise
        except BaseException:   # Ctrl-C, say: nobody is pointed to the logs, so nothing is kept
            self.cleanup()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Stop every process and remove the scratch directory, but for the logs in it when the block
        failed (unless `discard_logs` was called) or `keep_logs` was given (logs in a given `log_dir` are
        kept anyway)."""
        self.stop()
        self._leave_scratch(failed=exc_type is not None)

    def _leave_scratch(self, failed: bool) -> None:
        """Remove the scratch directory, or release it with the logs in it for the user to read: then no
        later launcher reaps it as a killed one's."""
        if (not failed and not self._keep_logs) or self._logs_elsewhere or self._logs_unwanted:
            self.cleanup()
        else:
            scratch.release(self._scratch)   # kept for its logs, on purpose: not for the next launcher to reap

    def discard_logs(self) -> None:
        """Remove the scratch directory with its logs at exit, even after an error: for an error that
        says all there is to know (a job refused before it ran), whose logs nobody is pointed to."""
        self._logs_unwanted = True

    def made_output(self, output_dir: str) -> None:
        """Say that a job's output directory does not exist yet: should this launcher be killed before the
        job ends, the next one removes the directory (unless the job succeeded or others wrote there)."""
        (self._scratch / _OUTPUT_FILE).write_text(f"{output_dir}\n", encoding="utf-8")

    def start(self) -> str:
        """Start every process and return once all workers have registered.

        The coordinator's address is known before it binds (a free port picked here, or a fixed one), so
        the workers start alongside it rather than after it: they connect once it is up, and the cluster
        is ready about one interpreter start-up sooner. Should another process take a picked port first,
        it is tried again on another one.
        """
        if self._fork is not None:
            _import_servers()   # once, here, so that no forked child imports them again
        for tries_left in reversed(range(_PORT_TRIES)):
            bind = self._bind or f"tcp://127.0.0.1:{_free_loopback_port()}"
            try:
                if bind.endswith(":*"):
                    self.address = self.start_coordinator(bind)
                    self._start_workers()
                else:
                    endpoint_file = self._spawn_coordinator(bind)
                    self.address = bind
                    self._start_workers()
                    self.address = self._await_endpoint(endpoint_file)
                self._await_workers()
                self._bind = bind   # a restarted coordinator binds the same address, so workers find it
                return self.address
            except ClusterError:
                port_taken = self._coordinator_exited()   # it quit by itself: asked before `stop` ends it
                self.stop()
                if self._bind or not tries_left or not port_taken:
                    raise
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _start_workers(self) -> None:
        """One at a time into `workers`, so that `stop` finds every one started should a later one fail."""
        self.workers = []
        for i in range(self.n_workers):
            self.workers.append(self.start_worker(i))

    def start_coordinator(self, bind: str | None = None) -> str:
        """Start (or restart) the coordinator; returns the address it bound."""
        return self._await_endpoint(self._spawn_coordinator(bind or self._bind or _ANY_LOOPBACK_PORT))

    def _spawn_coordinator(self, bind: str) -> Path:
        endpoint_file = self._scratch / "coordinator.endpoint"
        endpoint_file.unlink(missing_ok=True)
        self._dashboard_file.unlink(missing_ok=True)
        self.coordinator = self._spawn("coordinator", ["coord", "--bind", bind, "--endpoint-file", str(endpoint_file),
                                                       "--dashboard-file", str(self._dashboard_file)])
        return endpoint_file

    @property
    def _dashboard_file(self) -> Path:
        return self._scratch / "dashboard.url"

    def _coordinator_exited(self) -> bool:
        return self.coordinator is not None and self.coordinator.poll() is not None

    def start_worker(self, index: int) -> Child:
        """Start worker number `index` (also used to replace a dead one: it gets a new identity)."""
        return self._spawn(f"worker-{index}", ["worker", "--coordinator", self.address,
                                               "--work-dir", str(self._scratch / f"worker-{index}")])

    def stop(self, grace: float = 5.0) -> None:
        terminate_all([p for p in [*self.workers, self.coordinator] if p is not None], grace)
        for work_dir in self._scratch.glob("worker-*"):
            shutil.rmtree(work_dir, ignore_errors=True)

    def cleanup(self) -> None:
        """Remove the scratch directory, with the logs unless they are in a given `log_dir` (call after
        `stop()`)."""
        shutil.rmtree(self._scratch, ignore_errors=True)

    def _spawn(self, name: str, args: Sequence[str]) -> Child:
        argv = [*args, "--exit-with-parent", str(os.getpid()), *self._config_args]
        # -P: the working directory is not put first on sys.path, so a folder there named `zmr` (the
        # checkout's parent, say) is not imported in place of the package
        cmd = [sys.executable, "-P", "-m", "zmr", *argv]
        if self._fork is not None and can_fork():
            return fork_command(self._fork, argv, cmd, str(self.log_dir / f"{name}.log"))
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it from here
        try:
            return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        finally:
            log.close()

    def _await_workers(self, timeout: float = 30.0) -> None:
        """Return once every worker has registered, so a job's partitions are spread over all of them."""
        deadline = time.monotonic() + timeout
        pause = _Backoff()
        with Client(self.address, timeout=timeout, keys_dir=self._keys_dir) as client:
            while time.monotonic() < deadline:
                alive = sum(w.state != "dead" for w in client.status().workers)
                if alive >= self.n_workers:
                    return
                dead = [i for i, proc in enumerate(self.workers) if proc.poll() is not None]
                if dead:
                    log = self.log_dir / f"worker-{dead[0]}.log"
                    raise ClusterError(f"worker {dead[0]} exited at start{_reason_in(log)}; see {log}")
                pause()
        raise ClusterError(f"only {alive} of {self.n_workers} workers registered within {timeout} s; see the logs "
                           f"in {self.log_dir}")

    def _await_endpoint(self, endpoint_file: Path, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        pause = _Backoff()
        while time.monotonic() < deadline:
            if endpoint_file.exists():   # written after the dashboard's, if any
                if self._dashboard_file.exists():
                    self.dashboard_url = self._dashboard_file.read_text().strip()
                return endpoint_file.read_text().strip()
            if self.coordinator is not None and self.coordinator.poll() is not None:
                log = self.log_dir / "coordinator.log"
                raise ClusterError(f"the coordinator exited at start{_reason_in(log)}; see {log}")
            pause()
        raise ClusterError(f"the coordinator did not start within {timeout} s; see {self.log_dir / 'coordinator.log'}")


def refuse_unusable_output(spec: JobSpec) -> None:
    """A JobSpecError if the job's local output directory is not the job's to use as it stands, so that a
    launcher refuses the job before it starts a cluster for it (an output at a URL is checked at submit)."""
    if storage.is_url(spec.output_dir):
        return
    try:
        problem = outputs.local_output_problem(spec.output_dir, spec.overwrite)
    except OSError as exc:
        problem = f"cannot use output directory {spec.output_dir}: {exc}"
    if problem:
        raise JobSpecError(problem)


def submit_to(cluster: LocalCluster, client: Client, spec: JobSpec) -> str:
    """Submit `spec` to the launcher's own cluster; a refusal (the coordinator's reason is the whole story:
    the job never ran) also discards the cluster's logs, while a coordinator that does not answer keeps them."""
    try:
        return client.submit_spec(spec)
    except NoAnswer:
        raise
    except ZmrError:
        cluster.discard_logs()
        raise


def _reason_in(log: Path) -> str:
    """': <why>' from the last `zmr: <why>` line a child that exited wrote to its log, or ''."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    why = next((line[len("zmr: "):] for line in reversed(lines) if line.startswith("zmr: ")), "")
    return f": {why}" if why else ""


def run(app: Any, inputs: Sequence[str], output: str, n_reduce: int = DEFAULT_N_REDUCE, *,
        workers: int | None = None, args: Sequence[str] = (), py_files: Sequence[str] = (),
        output_format: OutputFormat = "jsonl", overwrite: bool = False, max_results: int = 1_000_000,
        timeout: float | None = None) -> list[tuple[str, Value | None]]:
    """Run one job on a local cluster of `workers` processes (default: one per core) and return its
    results, as `Client.results` reads them (with their types: the output is jsonl unless said otherwise).

    The job is checked before a cluster starts: a bad one raises JobSpecError or AppError and leaves
    nothing behind. For jobs whose results fit in memory: over `max_results` records the results stay in
    `output` and a ClusterError says so. A failed job raises JobFailed, with a note naming the folder
    where the cluster's logs are kept."""
    n = workers or os.cpu_count() or 1
    spec = build_spec(app, inputs, output, n_reduce, args, overwrite=overwrite, workers=n, py_files=py_files,
                      output_format=output_format)
    if spec.output_format == "raw":
        raise JobSpecError("raw output has no boundaries between results, so zmr.run cannot return them; "
                           "write another output format, or run the job with zmr run or Client.submit")
    refuse_unusable_output(spec)
    cluster = LocalCluster(n)
    with cluster, Client(cluster.address) as client:
        job = submit_to(cluster, client, spec)
        try:
            info = client.wait(job, timeout=timeout)
        except ZmrError as exc:   # JobFailed, or a timeout: the logs stay, and the error says where
            exc.add_note(f"the local cluster's logs are in {cluster.log_dir}")
            raise
        if info.records_out > max_results:
            cluster.discard_logs()   # it ran well: its logs say nothing the error does not
            raise ClusterError(f"job {job} wrote {info.records_out:,} results, over max_results={max_results:,}: "
                               f"they are in {info.output_dir}, mr-out-0 to mr-out-{info.reduces_total - 1}, "
                               f"written as {info.output_format}")
        return list(client.results(job))
