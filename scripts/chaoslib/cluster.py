"""A cluster started by hand: one `zmr coord` and N `zmr worker` processes that the chaos run may kill.

Unlike LocalCluster, the coordinator can run with a state dir on a fixed address (so that a killed one is
started again where workers and clients look for it), workers can run inside network namespaces, and
every process gets this run's own TMPDIR, so that what zmr leaves in a temporary directory is seen apart
from anything else on the machine. Each process is told `--exit-with-parent`: none outlives the run.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from chaoslib.netns import Network
from zmr.client import Client
from zmr.errors import ZmrError


@dataclass
class Layout:
    """Where a run keeps things; everything is under `root`."""

    root: Path

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def work(self) -> Path:
        return self.root / "work"       # every worker life's work dir is a `w-*` folder in it

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"        # TMPDIR of every process of the cluster

    @property
    def out(self) -> Path:
        return self.root / "out"


def free_port(host: str) -> int:
    """A TCP port free on `host` now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class ChaosCluster:
    """The processes of the run. `workers[i]` is worker i's current life (restarted in place)."""

    layout: Layout
    n_workers: int
    overrides: Mapping[str, str]
    keys_dir: str = ""
    network: Network | None = None
    use_state_dir: bool = False
    address: str = ""
    coordinator: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    worker_pids_ever: set[int] = field(default_factory=set)
    coordinator_lives: int = 0

    def __post_init__(self) -> None:
        for folder in (self.layout.logs, self.layout.work, self.layout.tmp, self.layout.out):
            folder.mkdir(parents=True, exist_ok=True)
        host = self.network.host_address if self.network else "127.0.0.1"
        self.address = f"tcp://{host}:{free_port(host)}"

    def client(self, timeout: float = 5.0) -> Client:
        return Client(self.address, timeout=timeout, keys_dir=self.keys_dir)

    # ------------------------------------------------------------ processes

    def _flags(self) -> list[str]:
        flags = ["--exit-with-parent", str(os.getpid())]
        for key, value in self.overrides.items():
            flags += ["--set", f"{key}={value}"]
        if self.keys_dir:
            flags += ["--set", f"security.keys_dir={self.keys_dir}"]
        return flags

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ZMR_")}
        env["TMPDIR"] = str(self.layout.tmp)
        return env

    def _spawn(self, cmd: list[str], log_name: str) -> subprocess.Popen[bytes]:
        with open(self.layout.logs / log_name, "ab") as log:
            return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self._env(),
                                    start_new_session=True)

    def start(self, timeout: float = 60.0) -> None:
        self.start_coordinator()
        self.workers = []
        for i in range(self.n_workers):   # one at a time, so that `stop` finds each started one
            self.workers.append(self.start_worker(i))
        self.await_workers(timeout)

    def start_coordinator(self, timeout: float = 30.0) -> None:
        """Start a coordinator life on the run's address (and state dir); return once it has bound."""
        endpoint = self.layout.root / "coordinator.endpoint"
        endpoint.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "zmr", "coord", "--bind", self.address, "--endpoint-file", str(endpoint)]
        if self.use_state_dir:
            cmd += ["--state-dir", str(self.layout.state)]
        self.coordinator = self._spawn(cmd + self._flags(), f"coordinator-{self.coordinator_lives}.log")
        self.coordinator_lives += 1
        deadline = time.monotonic() + timeout
        while not endpoint.exists():
            if self.coordinator.poll() is not None:
                raise ZmrError(f"the coordinator exited with {self.coordinator.returncode} at start; "
                               f"see {self.layout.logs}")
            if time.monotonic() > deadline:
                raise ZmrError(f"the coordinator did not bind within {timeout} s")
            time.sleep(0.02)

    def start_worker(self, i: int) -> subprocess.Popen[bytes]:
        """Start (or restart) worker i: in its namespace when there is a network, on loopback otherwise."""
        prefix = self.network.exec_prefix(i) if self.network else []
        data_host = self.network.address(i) if self.network else "127.0.0.1"
        cmd = [*prefix, sys.executable, "-m", "zmr", "worker", "--coordinator", self.address,
               "--work-dir", str(self.layout.work), "--data-bind", f"tcp://{data_host}:*", *self._flags()]
        proc = self._spawn(cmd, f"worker-{i}.log")
        self.worker_pids_ever.add(proc.pid)
        return proc

    def await_workers(self, timeout: float) -> None:
        """Until every worker process is registered and alive at the coordinator."""
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while time.monotonic() < deadline:
                try:
                    if self.unregistered(client) == []:
                        return
                except ZmrError:
                    pass
                time.sleep(0.1)
        raise ZmrError(f"the workers did not all register within {timeout} s; see {self.layout.logs}")

    def unregistered(self, client: Client) -> list[int]:
        """Pids of live worker processes that the coordinator does not list as alive."""
        listed = {worker_pid(w.worker_id) for w in client.status().workers if w.state != "dead"}
        return [p.pid for p in self.workers if p.poll() is None and p.pid not in listed]

    def stop(self, grace: float = 10.0) -> list[str]:
        """SIGCONT then SIGTERM every process, SIGKILL those still there after `grace` seconds; returns
        those that needed the SIGKILL (a worker that does not stop when asked is stuck)."""
        procs = [p for p in [*self.workers, self.coordinator] if p is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        killed = []
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                role = "coordinator" if proc is self.coordinator else "worker"
                killed.append(f"{role} pid {proc.pid} still running {grace:g} s after SIGTERM")
                proc.kill()
                proc.wait()
        return killed


def worker_pid(worker_id: str) -> int:
    """Worker ids are `w-<host>-<pid>-<random>`."""
    try:
        return int(worker_id.rsplit("-", 2)[1])
    except (IndexError, ValueError):
        return -1
