"""Run one command and measure it: wall time, exit code, and peak RSS of every process in its tree.

The sampler polls the child's process tree (psutil if importable, else /proc) every `interval`
seconds and keeps, per process, the largest RSS seen, and the largest sum over the tree at one
sample. A process that lives shorter than one interval may be missed; intervals of 0.1-0.2 s catch
every process of the engines measured here (they live for the whole run).

It also measures how busy the machine was with *other* work during the run: the CPU time all
processes used (/proc/stat) minus the CPU time of the measured tree, in cores. Anything much above 0
means the figures were taken on a shared, loaded machine.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

try:
    import psutil
except ImportError:  # pragma: no cover - the bench extra installs it
    psutil = None

MB = 1_000_000


@dataclass
class ProcPeak:
    """One process of the tree: what it was and the most memory it held."""

    pid: int
    label: str       # role, made unique within the run: "mp-child", "mp-child#2"...
    peak_rss: int = 0
    role: str = ""
    serves: int = 0  # a zmr task process or task zygote: the pid of the worker it runs tasks for


@dataclass
class Measurement:
    """The outcome of one measured command."""

    argv: list[str]
    wall: float
    returncode: int
    log: str
    procs: dict[int, ProcPeak] = field(default_factory=dict)
    peak_sum: int = 0
    samples: int = 0
    cpu_ours: float = 0.0        # CPU seconds used by the measured tree (as sampled)
    cpu_machine: float = 0.0     # CPU seconds used by every process on the machine meanwhile
    cpu_tree: float = 0.0        # CPU seconds (user + system) of every process of the tree, exactly: the
                                 # waited-for descendants' rusage (a process nobody waits for is left out)

    @property
    def other_load(self) -> float:
        """Cores' worth of CPU used by processes outside the measured tree during the run."""
        return max(0.0, self.cpu_machine - self.cpu_ours) / self.wall if self.wall > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def peak_of(self, prefix: str) -> list[ProcPeak]:
        """The processes whose label starts with `prefix` (e.g. "zmr-worker")."""
        return [p for p in self.procs.values() if p.label.startswith(prefix)]

    def max_proc(self) -> ProcPeak | None:
        return max(self.procs.values(), key=lambda p: p.peak_rss, default=None)

    def tail(self, n: int = 15) -> str:
        try:
            lines = Path(self.log).read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])


def run_measured(argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None,
                 cwd: str | None = None, interval: float = 0.1, timeout: float | None = None) -> Measurement:
    """Run `argv` to completion (stdout and stderr to `log`), sampling its process tree's memory."""
    log.parent.mkdir(parents=True, exist_ok=True)
    result = Measurement(argv=list(argv), wall=0.0, returncode=-1, log=str(log))
    with open(log, "wb") as out:
        busy_before = _machine_busy()
        children_before = _children_cpu()
        started = time.perf_counter()
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=dict(env) if env is not None else None, cwd=cwd)
        sampler = _Sampler(proc.pid, result, interval)
        sampler.start()
        try:
            result.returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_tree(proc.pid)
            proc.kill()
            result.returncode = proc.wait()
            out.write(f"\nbench: killed after {timeout} s\n".encode())
        finally:
            result.wall = time.perf_counter() - started
            sampler.stop()
            result.cpu_machine = _machine_busy() - busy_before
            result.cpu_ours = sum(sampler.cpu.values())
            result.cpu_tree = _children_cpu() - children_before
    return result


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wait_until_quiet(max_load: float, max_wait: float, probe: float = 1.0) -> float:
    """Wait (up to `max_wait` s) until the machine uses less than `max_load` cores; returns the last load."""
    deadline = time.monotonic() + max_wait
    while True:
        before = _machine_busy()
        time.sleep(probe)
        load = (_machine_busy() - before) / probe
        if load < max_load or time.monotonic() >= deadline:
            return load


def _machine_busy() -> float:
    """CPU seconds spent not idle, all cores together, since boot (first line of /proc/stat)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class _Sampler(threading.Thread):
    def __init__(self, root: int, into: Measurement, interval: float) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self._root = root
        self._into = into
        self._interval = interval
        self._halt = threading.Event()
        self.cpu: dict[int, float] = {}

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self._interval)

    def sample(self) -> None:
        tree = _tree_rss(self._root)
        if not tree:
            return
        self._into.samples += 1
        self._into.peak_sum = max(self._into.peak_sum, sum(t[1] for t in tree))
        for pid, rss, cmdline, cpu in tree:
            self.cpu[pid] = max(self.cpu.get(pid, 0.0), cpu)
            peak = self._into.procs.get(pid)
            if not cmdline and peak is not None:
                role = peak.role   # an exiting process shows no command line: it keeps the role it had
            else:
                role = label_of(cmdline, pid == self._root)
            if peak is None:
                peak = self._into.procs[pid] = ProcPeak(pid, self._unique(role), role=role,
                                                        serves=serves_worker(cmdline))
            elif peak.role != role:  # a launcher script that exec'd the real program (Spark's java)
                peak.role, peak.label = role, self._unique(role)
            peak.peak_rss = max(peak.peak_rss, rss)


    def _unique(self, label: str) -> str:
        """`label`, or `label#2`, `label#3`... when several processes share a role."""
        taken = {p.label for p in self._into.procs.values()}
        n = 1
        while (name := label if n == 1 else f"{label}#{n}") in taken:
            n += 1
        return name


def serves_worker(cmdline: Sequence[str]) -> int:
    """The worker pid a zmr task process (or task zygote) names in its title, `zmr-task (worker PID)`; else 0."""
    found = re.match(r"zmr-task(?:-zygote)? \(worker (\d+)\)", " ".join(cmdline))
    return int(found.group(1)) if found else 0


def label_of(cmdline: Sequence[str], is_root: bool) -> str:
    """A short role name for a process, from its command line."""
    text = " ".join(cmdline)
    if "-m zmr coord" in text or "zmr-coord" in text:
        return "zmr-coordinator"
    if "-m zmr worker" in text or "zmr-worker" in text:
        index = re.search(r"/worker-(\d+)", text)
        return f"zmr-worker-{index.group(1)}" if index else "zmr-worker"
    if "org.apache.spark.launcher.Main" in text:
        return "spark-launcher"
    if cmdline and os.path.basename(cmdline[0]).startswith("java"):
        return "jvm"
    if "pyspark.daemon" in text or "pyspark.worker" in text:
        return "spark-python"
    if "resource_tracker" in text:
        return "mp-tracker"
    if "multiprocessing" in text or "forkserver" in text:
        return "mp-child"
    if is_root:
        return "main"
    module = cmdline[cmdline.index("-m") + 1] if "-m" in cmdline[:-1] else ""
    return f"child:{module or os.path.basename(cmdline[0]) if cmdline else '?'}"


Proc = tuple[int, int, list[str], float]  # pid, rss bytes, cmdline, CPU seconds (user + system)


def _tree_rss(root: int) -> list[Proc]:
    """(pid, rss, cmdline, cpu) for `root` and all its descendants alive now."""
    if psutil is not None:
        return _tree_psutil(root)
    return _tree_proc(root)


def _tree_psutil(root: int) -> list[Proc]:
    try:
        top = psutil.Process(root)
        procs = [top, *top.children(recursive=True)]
    except psutil.Error:
        return []
    found = []
    for p in procs:
        try:
            with p.oneshot():
                cpu = p.cpu_times()
                found.append((p.pid, p.memory_info().rss, p.cmdline(), cpu.user + cpu.system))
        except psutil.Error:
            continue
    return found


def _tree_proc(root: int) -> list[Proc]:
    """The same from /proc: parent and CPU from /proc/PID/stat, RSS from /proc/PID/statm."""
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                parent[int(entry)] = int(stat[1])
                cpu[int(entry)] = (int(stat[11]) + int(stat[12])) / tick
            except (OSError, IndexError, ValueError):
                continue
    wanted, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        kids = [c for c, p in parent.items() if p == pid]
        wanted.update(kids)
        frontier.extend(kids)
    page = os.sysconf("SC_PAGE_SIZE")
    found = []
    for pid in wanted:
        try:
            rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
            cmdline = [a for a in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
                       if a]
        except (OSError, IndexError, ValueError):
            continue
        if len(cmdline) == 1 and " " in cmdline[0]:   # retitled (setproctitle): split as psutil does
            cmdline = cmdline[0].split(" ")
        found.append((pid, rss, cmdline, cpu.get(pid, 0.0)))
    return found


def _kill_tree(root: int) -> None:
    """Kill the descendants of `root` (a run that timed out); `root` itself is killed by the caller."""
    for pid, *_ in _tree_rss(root):
        if pid != root:
            try:
                os.kill(pid, 9)
            except OSError:
                pass
