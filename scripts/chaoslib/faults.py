"""The fault injectors, one thread: each enabled kind strikes every ~N seconds (jittered), and a fault
that lasts (a stopped worker, a cut link) is undone after a few seconds. The same thread supervises:
it restarts every worker that has exited, as `zmr cluster up` does, and the coordinator when it is gone.

Kinds: worker-kill (SIGKILL a worker), worker-stop (SIGSTOP a worker, SIGCONT 2-5 s later), task-kill
(SIGKILL the task process of a busy worker; never one running a job meant to hang, whose failure must
come from the task timeout), coord-kill (SIGKILL the coordinator, start it again on its state dir),
net-cut (set a worker namespace's link down for 2-6 s).
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from chaoslib import procs
from chaoslib.cluster import ChaosCluster, worker_pid
from zmr.client import Client
from zmr.errors import ZmrError

INJECTED = ("worker-kill", "worker-stop", "task-kill", "coord-kill", "net-cut")
# A task process that dies fails that attempt as the app's failure would, and retry.max_attempts (4) of
# them fail the job. A long task (one waiting on a stopped owner, say) is the likeliest victim of every
# kill, so each task is killed at most this often: a job that fails is then zmr's doing, not the run's.
KILLS_PER_TASK = 2
STOP_SECONDS = (2.0, 5.0)
CUT_SECONDS = (2.0, 6.0)


@dataclass
class Undo:
    """A lasting fault to end at `due`: SIGCONT a pid, or restore a worker's link."""

    due: float
    kind: str
    target: int


class Chaos(threading.Thread):
    """Injects faults of the kinds in `every` (kind -> mean seconds between two) until `calm()`."""

    def __init__(self, cluster: ChaosCluster, every: dict[str, float], rng: random.Random,
                 protected_jobs: Callable[[], set[str]], log: Callable[[str], None],
                 record: Callable[[str], None] = lambda line: None) -> None:
        """`log` is for people (rare events); `record` gets one line per fault, for the fault log."""
        super().__init__(daemon=True, name="chaos")
        self.cluster = cluster
        self.every = every
        self.rng = rng
        self.protected_jobs = protected_jobs
        self.log = log
        self.record = record
        self._task_kills: Counter[str] = Counter()   # task label (job/kind-index) -> kills of its processes
        self.faults: Counter[str] = Counter()
        self.restarts: Counter[str] = Counter()
        self.coordinator_crashes = 0   # exits the run did not cause
        self.errors: list[str] = []
        self._undo: list[Undo] = []
        self._next = {kind: self._after(kind) for kind in every}
        self._injecting = threading.Event()
        self._injecting.set()
        self._halt = threading.Event()
        self._lock = threading.Lock()   # the cluster's process table, shared with `calm`
        self._client: Client | None = None

    def _after(self, kind: str) -> float:
        return time.monotonic() + self.rng.uniform(0.5, 1.5) * self.every[kind]

    # ------------------------------------------------------------ the loop

    def run(self) -> None:
        self._client = self.cluster.client(timeout=2.0)
        try:
            while not self._halt.is_set():
                with self._lock:
                    self._undo_due(time.monotonic())
                    self._supervise()
                    if self._injecting.is_set():
                        self._inject_due()
                self._halt.wait(0.05)
        finally:
            self._client.close()

    @property
    def injecting(self) -> bool:
        return self._injecting.is_set()

    def stop_injecting(self) -> None:
        """No new fault from now on (lasting ones end at their time; supervising goes on)."""
        self._injecting.clear()

    def calm(self, timeout: float = 60.0) -> None:
        """No more faults: undo the lasting ones now, then keep supervising until every worker is back
        (registered and alive) or `timeout` passes."""
        self._injecting.clear()
        with self._lock:
            self._undo_due(float("inf"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                self._supervise()
                if all(p.poll() is None for p in self.cluster.workers):
                    break
            time.sleep(0.1)

    def halt(self) -> None:
        self._halt.set()
        self.join(timeout=30)

    def _inject_due(self) -> None:
        now = time.monotonic()
        for kind, due in self._next.items():
            if now >= due:
                try:
                    if getattr(self, "_" + kind.replace("-", "_"))():
                        self.faults[kind] += 1
                except (OSError, RuntimeError, ZmrError) as exc:
                    self.errors.append(f"{kind}: {exc}")
                    self.log(f"could not inject {kind}: {exc}")
                self._next[kind] = self._after(kind)

    def _undo_due(self, now: float) -> None:
        for undo in [u for u in self._undo if u.due <= now]:
            self._undo.remove(undo)
            if undo.kind == "worker-stop":
                procs.signal_quietly(undo.target, signal.SIGCONT)
            elif undo.kind == "net-cut" and self.cluster.network is not None:
                self.cluster.network.restore(undo.target)

    def _supervise(self) -> None:
        """Restart every worker that has exited, and the coordinator if it is gone."""
        coordinator = self.cluster.coordinator
        if coordinator is not None and coordinator.poll() is not None:
            self.coordinator_crashes += 1
            self.log(f"the coordinator exited by itself ({coordinator.returncode}): starting it again")
            self._restart_coordinator()
        for i, proc in enumerate(self.cluster.workers):
            if proc.poll() is not None:
                self.cluster.workers[i] = self.cluster.start_worker(i)
                self.restarts["worker"] += 1

    def _restart_coordinator(self) -> None:
        self.cluster.start_coordinator()
        self.restarts["coordinator"] += 1

    # ------------------------------------------------------------ victims

    def _held(self, kind: str) -> set[int]:
        return {u.target for u in self._undo if u.kind == kind}

    def _live_workers(self) -> list[tuple[int, int]]:
        """(index, pid) of workers running now and neither stopped nor cut off."""
        stopped, cut = self._held("worker-stop"), self._held("net-cut")
        return [(i, p.pid) for i, p in enumerate(self.cluster.workers)
                if p.poll() is None and p.pid not in stopped and i not in cut]

    # ------------------------------------------------------------ the faults

    def _worker_kill(self) -> bool:
        victims = self._live_workers()
        if not victims:
            return False
        i, pid = self.rng.choice(victims)
        self.record(f"worker-kill: worker {i} (pid {pid})")
        return procs.signal_quietly(pid, signal.SIGKILL)

    def _worker_stop(self) -> bool:
        victims = self._live_workers()
        if not victims:
            return False
        i, pid = self.rng.choice(victims)
        if not procs.signal_quietly(pid, signal.SIGSTOP):
            return False
        seconds = self.rng.uniform(*STOP_SECONDS)
        self._undo.append(Undo(time.monotonic() + seconds, "worker-stop", pid))
        self.record(f"worker-stop: worker {i} (pid {pid}) for {seconds:.1f} s")
        return True

    def _task_kill(self) -> bool:
        """SIGKILL the task process of a worker that the coordinator says is busy on a job that may be
        hit (a task process that dies fails that attempt as the app's failure would)."""
        assert self._client is not None
        try:
            status = self._client.status()
        except ZmrError:
            return False   # the coordinator is down: try again next time
        live = {pid for _, pid in self._live_workers()}
        protected = self.protected_jobs()
        busy = [(worker_pid(w.worker_id), w.task) for w in status.workers if w.state == "busy" and w.task
                and w.task.split("/")[0] not in protected and worker_pid(w.worker_id) in live
                and self._task_kills[w.task] < KILLS_PER_TASK]
        victims = [(t, label) for pid, label in busy for t in procs.task_processes(pid)]
        if not victims:
            return False
        pid, label = self.rng.choice(victims)
        if not procs.signal_quietly(pid, signal.SIGKILL):
            return False
        self._task_kills[label] += 1
        self.record(f"task-kill: task process {pid} running {label}")
        return True

    def _coord_kill(self) -> bool:
        coordinator = self.cluster.coordinator
        if coordinator is None or coordinator.poll() is not None:
            return False
        coordinator.kill()
        coordinator.wait(timeout=10)
        down = self.rng.uniform(0.2, 2.0)   # down for a moment, as a crashed machine would be
        self.record(f"coord-kill: pid {coordinator.pid}, down {down:.1f} s")
        time.sleep(down)
        self._restart_coordinator()
        return True

    def _net_cut(self) -> bool:
        network = self.cluster.network
        victims = self._live_workers()
        if network is None or not victims:
            return False
        i, _ = self.rng.choice(victims)
        network.cut(i)
        seconds = self.rng.uniform(*CUT_SECONDS)
        self._undo.append(Undo(time.monotonic() + seconds, "net-cut", i))
        self.record(f"net-cut: worker {i} for {seconds:.1f} s")
        return True
