"""Workers on other hosts, started over SSH by `zmr cluster up` (as `dask ssh` and Spark's start-workers do).

Each worker is one `SSH_COMMAND -tt DESTINATION -- zmr-worker ...` child of the launcher, with the
launcher's settings as `--set` flags. The pseudo-terminal ties the remote worker's life to the connection:
when the launcher stops its ssh client, or the connection drops, the remote side gets SIGHUP and the worker
stops as it does on SIGTERM; the ssh clients die with the launcher, even one killed with SIGKILL, so
no worker outlives it. A worker whose ssh exits (the worker died, the host went down, the link broke)
is started again, after a pause that doubles while it keeps failing at once.

Nothing is copied to the hosts: zmr, the key directory (`security.keys_dir`, at the same path) and any
credentials the inputs need are expected in place there.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from zmr.config import ClusterHost, Config, WorkerConfig, setting_flags
from zmr.errors import ConfigError
from zmr.local import terminate_all
from zmr.runtime.security import is_loopback
from zmr.runtime.zygote import die_with_parent

__all__ = ["RemoteWorkers", "worker_coordinator"]

_OWN_FLAGS = frozenset({"worker.coordinator", "worker.data_bind", "worker.advertise",   # set per worker
                        "coordinator.bind", "coordinator.state_dir", "coordinator.dashboard"})   # not a worker's
_FIRST_PAUSE = 1.0    # seconds before a worker that exited is started again
_LONGEST_PAUSE = 30.0
_STEADY = 60.0        # a worker that ran this long had no trouble starting: its next pause is the first


def worker_coordinator(config: Config) -> str:
    """The coordinator address remote workers connect to: `worker.coordinator` when set, else the bound
    address when it names a host. Raises ConfigError when neither does."""
    if config.worker.coordinator != WorkerConfig().coordinator:
        return config.worker.coordinator
    bind = config.coordinator.bind
    host = bind.partition("://")[2].rpartition(":")[0].strip("[]")
    if is_loopback(bind) or host in ("", "*", "0.0.0.0", "::") or bind.endswith(":*"):   # no one address
        raise ConfigError(f"workers on cluster.hosts cannot reach a coordinator bound at {bind}: set "
                          "worker.coordinator to the address they reach it at (e.g. tcp://10.0.0.1:5555)")
    return bind


@dataclass
class _Slot:
    host: ClusterHost
    number: int           # among the host's workers
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    pause: float = 0.0
    due: float = 0.0      # when it may start again

    @property
    def name(self) -> str:
        return f"{self.host.address}#{self.number}"


class RemoteWorkers:
    """Every worker of `cluster.hosts`: started, watched (`supervise`) and stopped together."""

    def __init__(self, config: Config, log_dir: Path) -> None:
        self._coordinator = worker_coordinator(config) if config.cluster.hosts else ""
        self._ssh = list(config.cluster.ssh_command)
        self._command = shlex.split(config.cluster.worker_command)
        self._flags = setting_flags(config, _OWN_FLAGS)
        self._log_dir = log_dir
        self._slots = [_Slot(host, n) for host in config.cluster.hosts for n in range(host.workers)]

    def __len__(self) -> int:
        return len(self._slots)

    def command(self, host: ClusterHost) -> list[str]:
        """The local command line that runs one worker on `host`."""
        remote = [*self._command, "--coordinator", self._coordinator, "--data-bind", host.data_bind,
                  "--set", f"worker.advertise={host.address}", *self._flags]
        return [*self._ssh, "-tt", host.destination(), "--", shlex.join(remote)]

    def start(self) -> None:
        for slot in self._slots:
            self._start(slot, time.monotonic())

    def supervise(self) -> list[str]:
        """Start again every worker whose ssh has exited, once its pause is over; what happened, to print."""
        now = time.monotonic()
        news = []
        for slot in self._slots:
            if slot.proc is not None and slot.proc.poll() is not None:
                code = slot.proc.returncode
                slot.pause = _FIRST_PAUSE if now - slot.started > _STEADY else min(
                    _LONGEST_PAUSE, max(_FIRST_PAUSE, slot.pause * 2))
                slot.proc, slot.due = None, now + slot.pause
                news.append(f"worker {slot.name} exited with {code}; starting it again in {slot.pause:g} s "
                            f"(log: {self._log(slot)})")
            if slot.proc is None and now >= slot.due:
                self._start(slot, now)
        return news

    def stop(self, grace: float = 10.0) -> None:
        """Hang up every connection (the workers stop on SIGHUP), then wait for them to close."""
        terminate_all([slot.proc for slot in self._slots if slot.proc is not None], grace)

    def _log(self, slot: _Slot) -> Path:
        return self._log_dir / f"worker-{slot.host.address}-{slot.number}.log"

    def _start(self, slot: _Slot, now: float) -> None:
        with open(self._log(slot), "ab") as log:
            slot.proc = subprocess.Popen(self.command(slot.host), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, start_new_session=True, preexec_fn=die_with_parent)
        slot.started = now
