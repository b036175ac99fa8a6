"""A fast discrete-event simulation of one job on a large cluster: the real scheduler, lean workers.

`zmr.testing.SimCluster` plays every worker with the real `WorkerMachine` and checks every step: right
for tests, too slow for 1,000 workers. Here each worker is a few fields and a handful of handlers that
speak the same control protocol (register, ask for tasks, run them, report, beat, obey cancels, job ends,
commit decisions and `RegisterAgain`), on a simulated clock: a heap of timed events. The scheduler is the
real `zmr.core.scheduler.Scheduler`, fed exactly what the coordinator shell feeds it (`Received`, a `Tick`
every heartbeat interval followed by `ConnectionsAlive` for the pinged live workers), and everything it
says is carried out as the shell does: every message both ways goes through the real codec (encoded by
the sender, decoded by the receiver), every journal record through the journal's real framing, and the
journal is compacted by the runtime's rule. So the bytes counted are real bytes and the CPU measured
around `Scheduler.handle` is the scheduler's own.

Cost model (all randomness from `seed`; task work is drawn per task, the same for every run of a seed):

- A map takes a lognormal time of mean `map_mean` s and shape `map_sigma`; a reduce takes a lognormal
  base (`reduce_mean`, `reduce_sigma`) plus the time to pull what was not pushed to it.
- A fraction `stragglers` of attempts (drawn per attempt) runs `straggler_factor` times slower.
- Each map writes `map_output_mb` MB, spread evenly over the partitions. Pushed data is modelled as at
  its owner when the map commits; pulled data costs bytes / (`bandwidth_mbps` megabits per second),
  pulled from one holder at a time as the worker's puller does. A reduce attempt pulls all it can before
  it fails for what it cannot get (the maps of a holder that died before or during its turn, say),
  and what it got stays on its worker for the partition's next attempt there, as the ReceiveStore keeps it.
- Deaths: `deaths_per_min` percent of the live workers die per simulated minute (a Poisson process,
  its rate redrawn whenever the number of live workers changes). A dead worker falls silent and its
  kept map output is gone. With `replace_after` > 0 a new worker (a new id and address) joins that
  many seconds after each death.
- Control messages arrive at once (no network latency); heartbeats carry the task progress counter
  (`PACE` a second of work done at full speed: a straggler's moves `straggler_factor` times slower, as
  a real task's counts of records do) but no partition or lease statistics.

What a reduce attempt finds pushed to it is decided in one place, `Simulation.reduce_inputs`, and what it
can pull once the coordinator says where its missing input is kept in another, `Simulation.pull_plan`.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import math
import random
import sys
import time
import tracemalloc
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from zmr.core.scheduler import (
    Action,
    ConnectionsAlive,
    Event,
    JobFinished,
    Journal,
    Log,
    Received,
    Scheduler,
    SchedulerParams,
    Send,
    Tick,
)
from zmr.protocol import codec
from zmr.protocol import journal as jr
from zmr.protocol import messages as m
from zmr.testing import PYTHON, check_invariants

__all__ = ["CostModel", "Result", "SimConfig", "Simulation", "SimulationRefused", "compare_run", "format_result",
           "simulate"]

# The runtime's compaction rule (zmr.runtime.journal.JournalFile.wants_compaction, which this floor may not
# import): rewrite the journal from a snapshot once it has grown past 16 MiB and four times its last snapshot.
COMPACT_MIN_BYTES = 16 << 20
COMPACT_GROWTH = 4
MAX_MESSAGE_BYTES = 1 << 30    # decoders here bound nothing: the sizes are what is measured
MISSING_DATA_DELAY = 0.1       # how long a reducer takes to find that some input is nowhere to be had
LOCATE_TIMEOUT = 10.0          # a reduce gives up on an unanswered LocateMaps after this (the commit timeout)
PACE = 100.0                   # progress a task reports per second of work at full speed (a straggler: less)
RECENT_MAPS = 32               # MapDone reports a worker offers again when it registers (as WorkerParams)
CLIENT = b"client"

Assignment = m.AssignMap | m.AssignReduce
# owner table index each committed map pushed by (None: none known) -> its map tasks: see reduce_inputs
PushGroups = dict[int | None, list[int]]


# ---------------------------------------------------------------- settings


class SimulationRefused(ValueError):
    """The settings, or the scheduler, refuse the simulated job: it could never start or end."""


@dataclass(frozen=True)
class CostModel:
    """How long tasks take and how much they move; see the module docstring."""

    map_mean: float = 4.0
    map_sigma: float = 0.5
    reduce_mean: float = 4.0
    reduce_sigma: float = 0.5
    stragglers: float = 0.0
    straggler_factor: float = 5.0
    map_output_mb: float = 64.0
    bandwidth_mbps: float = 1000.0

    def __post_init__(self) -> None:
        if not 0 <= self.stragglers <= 1:
            raise SimulationRefused(f"stragglers is a fraction of attempts, from 0 to 1, got {self.stragglers}")
        for name in ("map_mean", "reduce_mean", "straggler_factor", "bandwidth_mbps"):
            if getattr(self, name) <= 0:
                raise SimulationRefused(f"{name} must be above 0, got {getattr(self, name)}")
        for name in ("map_sigma", "reduce_sigma", "map_output_mb"):
            if getattr(self, name) < 0:
                raise SimulationRefused(f"{name} must not be negative, got {getattr(self, name)}")

    def pull_seconds(self, n_pieces: int, partitions: int) -> float:
        """Time to pull `n_pieces` map outputs' shares of one partition."""
        piece_bytes = self.map_output_mb * 1e6 / max(1, partitions)
        return n_pieces * piece_bytes * 8 / (self.bandwidth_mbps * 1e6)


@dataclass(frozen=True)
class SimConfig:
    workers: int = 20
    maps: int = 400
    partitions: int = 40
    seed: int = 1
    deaths_per_min: float = 0.0
    replace_after: float = 10.0
    restart_at: float | None = None     # restart the coordinator once this fraction of maps has committed
    memory: bool = True                 # tracemalloc the coordinator's allocations
    check_every: int = 0                # run check_invariants every this many events (0: never)
    heartbeat_interval: float = 0.5
    task_timeout: float = 10.0
    speculation: bool = True
    replicate: bool = False             # second copies of the output a mapper makes for the partitions it owns
    max_sim_seconds: float = 1e6        # give up (the job did not end) after this much simulated time
    max_wall_seconds: float = math.inf  # ... or after this much real time: the measures so far are reported
    progress_every: float = 0.0         # print a progress line to stderr every this many wall seconds (0: never)

    def __post_init__(self) -> None:
        """SimulationRefused for settings no job or cluster can have (the job would never start or end)."""
        for name in ("workers", "maps", "partitions"):
            if getattr(self, name) < 1:
                raise SimulationRefused(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("deaths_per_min", "replace_after"):
            if getattr(self, name) < 0:
                raise SimulationRefused(f"{name} must not be negative, got {getattr(self, name)}")
        if self.restart_at is not None and not 0 < self.restart_at <= 1:
            raise SimulationRefused(f"restart_at is the fraction of the maps committed, above 0 and at most 1, got "
                                    f"{self.restart_at}")


def lognormal(rng: random.Random, mean: float, sigma: float) -> float:
    """A lognormal draw with the given mean (not median) and shape."""
    return rng.lognormvariate(math.log(mean) - sigma * sigma / 2, sigma) if sigma > 0 else mean


# ---------------------------------------------------------------- the simulated worker


@dataclass(slots=True, eq=False)
class SimWorker:
    """One worker process: only what its protocol and the cost model need."""

    id: str
    peer: bytes
    addr: str
    alive: bool = True
    registered: bool = False
    registered_at: float = -math.inf
    running: m.AttemptId | None = None
    generation: int = 0             # bumped when an attempt starts or ends: stale completions are dropped
    queued: deque[Assignment] = field(default_factory=deque)
    awaiting: m.ReduceDone | None = None
    progress: int = 0
    pace: float = 0.0               # progress per second of the running attempt (PACE, or less if slow)
    started: float = 0.0            # ... since when
    missing: list[int] = field(default_factory=list)         # the running reduce cannot get these maps
    pulls: dict[str, int] = field(default_factory=dict)   # the running reduce pulls this many maps from addr ...
    copies: dict[str, list[int]] = field(default_factory=dict)   # ... and these maps' second copies from addr ...
    asked: list[tuple[int, int]] = field(default_factory=list)   # ... of these, located thus (LocateMaps) ...
    lacking: frozenset[int] = frozenset()                         # ... though it lacks only these
    located: dict[int, int] = field(default_factory=dict)        # ... the attempts that count (table + answer)
    pull_end: float = 0.0
    pulled_by: dict[str, float] = field(default_factory=dict)   # ... each holder's share here by then (in turn)
    owners: dict[str, tuple[int, int]] = field(default_factory=dict)   # job -> (epoch, owner table index)
    # job -> (coordinator life, version, table): which attempt of each map counts, as m.AssignReduce says
    commits: dict[str, tuple[int, int, dict[int, int]]] = field(default_factory=dict)
    locating: bool = False          # the running reduce asked where its missing input is kept
    kept: dict[str, set[tuple[int, int]]] = field(default_factory=dict)           # job -> (map, attempt)
    # (job, partition) -> the commit table of a reduce attempt that failed here, and the maps it could not
    # get: everything else it had (pushed or pulled) is still here for the next attempt, as in a ReceiveStore
    fetched: dict[tuple[str, int], tuple[dict[int, int], frozenset[int]]] = field(default_factory=dict)
    table: dict[int, int] = field(default_factory=dict)   # the running reduce's commit table
    recent: deque[m.MapDone] = field(default_factory=lambda: deque(maxlen=RECENT_MAPS))


@dataclass(frozen=True)
class ReduceInputs:
    """Where a reduce attempt's input comes from: maps it cannot get, and maps it pulls, by address.
    (Before the coordinator answers a LocateMaps: `missing` are the maps not pushed here, to ask about.)"""

    missing: list[int]
    pulls: dict[str, int]
    copies: dict[str, list[int]] = field(default_factory=dict)   # maps whose second copy it pulls, by address

    @property
    def pulled(self) -> int:
        return sum(self.pulls.values()) + sum(map(len, self.copies.values()))


# ---------------------------------------------------------------- results


@dataclass
class Result:
    """Everything measured in one run (see `format_result` for what each figure means)."""

    config: dict[str, Any]
    cost_model: dict[str, Any]
    job_state: str = ""
    succeeded: bool = False
    tasks: int = 0
    events: int = 0
    scheduler_cpu_s: float = 0.0
    codec_cpu_s: float = 0.0
    snapshot_cpu_s: float = 0.0
    check_cpu_s: float = 0.0
    gc_in_scheduler_cpu_s: float = 0.0   # the cyclic collector, run while the scheduler handled an event
    gc_elsewhere_cpu_s: float = 0.0
    process_cpu_s: float = 0.0
    wall_s: float = 0.0
    bytes_to_coordinator: int = 0
    bytes_from_coordinator: int = 0
    messages: dict[str, dict[str, int]] = field(default_factory=dict)   # type -> count, bytes
    journal_bytes: int = 0           # appended over the run (compactions' rewrites not included)
    journal_records: int = 0
    journal_file_bytes: int = 0      # the file at the end
    compactions: int = 0
    job_time_s: float = 0.0
    ideal_time_s: float = 0.0
    baseline_time_s: float | None = None
    memory_bytes: dict[str, int] = field(default_factory=dict)   # snapshot point -> traced bytes
    restart: dict[str, Any] | None = None
    deaths: int = 0
    replacements: int = 0
    attempts: int = 0
    reruns: int = 0                  # attempts beyond each task's first (of the tasks that were started)
    backups: int = 0
    missing_data_failures: int = 0
    timeouts: int = 0
    commits: dict[int, int] = field(default_factory=dict)   # partition -> renames of its output
    invariant_checks: int = 0

    @property
    def events_per_s(self) -> float:
        return self.events / self.scheduler_cpu_s if self.scheduler_cpu_s else 0.0

    @property
    def simulator_cpu_s(self) -> float:
        """CPU spent outside the scheduler, the codec, snapshots and invariant checks: the simulator's own."""
        spent = self.scheduler_cpu_s + self.codec_cpu_s + self.snapshot_cpu_s + self.check_cpu_s
        return max(0.0, self.process_cpu_s - spent)

    def to_json(self) -> dict[str, Any]:
        tasks = max(1, self.tasks)
        control = self.bytes_to_coordinator + self.bytes_from_coordinator
        peak = max(self.memory_bytes.values()) if self.memory_bytes else None
        return {
            "config": self.config, "cost_model": self.cost_model,
            "job_state": self.job_state, "succeeded": self.succeeded, "tasks": self.tasks,
            "events": self.events, "scheduler_cpu_s": self.scheduler_cpu_s, "events_per_s": self.events_per_s,
            "scheduler_us_per_task": self.scheduler_cpu_s * 1e6 / tasks,
            "codec_cpu_s": self.codec_cpu_s, "snapshot_cpu_s": self.snapshot_cpu_s, "check_cpu_s": self.check_cpu_s,
            "gc_cpu_s": {"in_scheduler": self.gc_in_scheduler_cpu_s, "elsewhere": self.gc_elsewhere_cpu_s},
            "simulator_cpu_s": self.simulator_cpu_s, "process_cpu_s": self.process_cpu_s, "wall_s": self.wall_s,
            "control_bytes": {"to_coordinator": self.bytes_to_coordinator,
                              "from_coordinator": self.bytes_from_coordinator,
                              "per_task": control / tasks, "by_type": self.messages},
            "journal": {"bytes": self.journal_bytes, "records": self.journal_records,
                        "bytes_per_task": self.journal_bytes / tasks, "file_bytes": self.journal_file_bytes,
                        "compactions": self.compactions},
            "job_time_s": self.job_time_s, "ideal_time_s": self.ideal_time_s,
            "job_over_ideal": self.job_time_s / self.ideal_time_s if self.ideal_time_s else None,
            "baseline_time_s": self.baseline_time_s,
            "job_over_baseline": (self.job_time_s / self.baseline_time_s if self.baseline_time_s else None),
            "memory": {"points": self.memory_bytes, "peak_bytes": peak,
                       "peak_per_task_bytes": peak / tasks if peak is not None else None},
            "restart": self.restart,
            "counts": {"deaths": self.deaths, "replacements": self.replacements, "attempts": self.attempts,
                       "reruns": self.reruns, "backups": self.backups,
                       "missing_data_failures": self.missing_data_failures, "timeouts": self.timeouts},
            "partitions_committed": len(self.commits),
            "partitions_committed_once": (len(self.commits) == self.config["partitions"]
                                          and all(n == 1 for n in self.commits.values())),
            "invariant_checks": self.invariant_checks,
        }


# ---------------------------------------------------------------- the simulation

_TICK, _BEAT, _DONE, _DEATH, _JOIN = range(5)


class Simulation:
    """One job from submission to its end; `run()` returns what was measured."""

    def __init__(self, config: SimConfig, cost: CostModel) -> None:
        self.config, self.cost = config, cost
        self.params = SchedulerParams(python=PYTHON, heartbeat_interval=config.heartbeat_interval,
                                      task_timeout=config.task_timeout, speculation=config.speculation,
                                      replicate=config.replicate)
        self.result = Result(config=asdict(config), cost_model=asdict(cost),
                             tasks=config.maps + config.partitions)
        self.now = 0.0
        self._heap: list[tuple[float, int, int, Any, int]] = []
        self._seq = itertools.count()
        work = random.Random(config.seed)   # task work: the same for every run of a seed
        self.map_work = [lognormal(work, cost.map_mean, cost.map_sigma) for _ in range(config.maps)]
        self.reduce_work = [lognormal(work, cost.reduce_mean, cost.reduce_sigma) for _ in range(config.partitions)]
        self.result.ideal_time_s = (sum(self.map_work) + sum(self.reduce_work)) / config.workers
        self._chance = random.Random(config.seed * 7919 + 1)     # stragglers, deaths, beat phases
        self.workers: dict[str, SimWorker] = {}
        self._by_peer: dict[bytes, SimWorker] = {}
        self._by_addr: dict[str, SimWorker] = {}
        self._live: list[SimWorker] = []
        self._live_at: dict[str, int] = {}
        self._names = itertools.count(1)
        self._death_gen = 0
        # (map, attempt) -> the owner table it pushed by, and the address of its mapper (one job)
        self.pushed: dict[tuple[int, int], int] = {}
        self.mapper: dict[tuple[int, int], str] = {}
        self._in_scheduler = False
        self._gc_started = 0.0
        self._last_sent: tuple[m.FromCoordinator, list[Any], m.FromCoordinator | None] | None = None
        self._life = 0   # the coordinator's restarts: a commit log is numbered within one life
        # (life, version) of a commit table -> the committed maps grouped by owner table (see reduce_inputs)
        self._push_groups: dict[tuple[int, int], PushGroups] = {}
        self._tables: list[tuple[str, ...]] = []           # every owner table workers heard, shared
        self._table_at: dict[tuple[str, int], int] = {}    # (job, epoch) -> its table
        self._ints = list(range(max(config.maps, config.partitions) + 1))   # see _canonical
        self.journal = bytearray()
        self._snapshot_size = 0
        self._to_worker = codec.peer_decoder(MAX_MESSAGE_BYTES)
        self._to_coord = codec.coordinator_decoder(MAX_MESSAGE_BYTES)
        self._messages: dict[str, list[int]] = {}
        self.scheduler = Scheduler(self.params)
        self.job_id = ""
        self.ended = False
        self._submitted_at = 0.0
        self._restarted = False
        self._memory_points: list[tuple[str, Callable[[], bool]]] = []

    # ------------------------------------------------------------ the run

    def run(self) -> Result:
        wall, cpu = time.perf_counter(), time.process_time()
        if self.config.memory:
            tracemalloc.start()
        gc.callbacks.append(self._on_gc)
        try:
            self._start()
            self._loop()
            self._snap_memory("end")
        finally:
            gc.callbacks.remove(self._on_gc)
            if self.config.memory:
                tracemalloc.stop()
        self._finish_result()
        self.result.wall_s = time.perf_counter() - wall
        self.result.process_cpu_s = time.process_time() - cpu
        return self.result

    def _start(self) -> None:
        half, maps = max(1, self.config.maps // 2), self.config.maps
        self._memory_points = [("half_maps", lambda: self._maps_done() >= half),
                               ("all_maps", lambda: self._maps_done() >= maps)]
        for _ in range(self.config.workers):
            self._join()
        self._submit()
        self._push(self.config.heartbeat_interval, _TICK)
        self._schedule_death()

    def _loop(self) -> None:
        heap, handlers = self._heap, self._HANDLERS
        limit = self.config.max_sim_seconds
        started = last_report = time.perf_counter()
        for count in itertools.count():
            if not heap or self.ended:
                return
            when, _, kind, who, gen = heapq.heappop(heap)
            if when > limit:
                return
            self.now = when
            handlers[kind](self, who, gen)
            self._after_event()
            if count % 1024 == 0:
                wall = time.perf_counter()
                if wall - started > self.config.max_wall_seconds:
                    return
                if self.config.progress_every and wall - last_report >= self.config.progress_every:
                    last_report = wall
                    self._report_progress(wall - started)

    def _report_progress(self, wall: float) -> None:
        job = self.scheduler.jobs.get(self.job_id)
        reduces = job.reduces_done if job is not None else 0
        print(f"[{wall:7.1f} s] sim {self.now:8.1f} s  maps {self._maps_done():,}/{self.config.maps:,}  "
              f"reduces {reduces:,}/{self.config.partitions:,}  events {self.result.events:,}  "
              f"scheduler CPU {self.result.scheduler_cpu_s:.1f} s  codec CPU {self.result.codec_cpu_s:.1f} s",
              file=sys.stderr, flush=True)

    def _after_event(self) -> None:
        """Points in the job's life where something is measured or done: memory, the restart."""
        while self._memory_points and self._memory_points[0][1]():
            self._snap_memory(self._memory_points.pop(0)[0])
        at = self.config.restart_at
        if at is not None and not self._restarted and self._maps_done() >= at * self.config.maps:
            self._restart()

    def _maps_done(self) -> int:
        job = self.scheduler.jobs.get(self.job_id)
        return job.maps_done if job is not None else 0

    def _push(self, when: float, kind: int, who: Any = None, gen: int = 0) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), kind, who, gen))

    # ------------------------------------------------------------ timed events

    def _on_tick(self, who: Any, gen: int) -> None:
        pinged: set[bytes] = set()
        self._pump(Tick(), pinged)
        if pinged:
            self._pump(ConnectionsAlive(frozenset(pinged)))
        self._push(self.now + self.config.heartbeat_interval, _TICK)

    def _on_beat(self, worker: SimWorker, gen: int) -> None:
        if not worker.alive:
            return
        if worker.running is not None:
            worker.progress = int((self.now - worker.started) * worker.pace)
        if worker.registered:
            label = worker.running.label if worker.running is not None else ""
            self._say(worker, m.Heartbeat(worker_id=worker.id, task=label, progress=worker.progress))
        else:
            self._say(worker, self._register_msg(worker))
        self._push(self.now + self.config.heartbeat_interval, _BEAT, worker)

    def _on_done(self, worker: SimWorker, gen: int) -> None:
        attempt = worker.running
        if not worker.alive or gen != worker.generation or attempt is None:
            return
        if attempt.kind == "map":
            self._finish_map(worker, attempt)
        elif worker.locating:
            failed = m.TaskFailed(worker_id=worker.id, attempt=attempt, kind="internal",
                                  error="no answer from the coordinator to LocateMaps")
            self._say_all(worker, [failed, *self._end_task(worker)])
        elif worker.missing:
            worker.fetched[(attempt.job_id, attempt.task)] = (worker.table, frozenset(worker.missing))
            failed = m.TaskFailed(worker_id=worker.id, attempt=attempt, kind="missing_data",
                                  error=f"no output of {len(worker.missing)} maps", missing_maps=sorted(worker.missing))
            self._say_all(worker, [failed, *self._end_task(worker)])
        else:
            worker.awaiting = m.ReduceDone(worker_id=worker.id, attempt=attempt, records_out=1)
            self._say(worker, worker.awaiting)

    def _finish_map(self, worker: SimWorker, attempt: m.AttemptId) -> None:
        job = attempt.job_id
        worker.kept.setdefault(job, set()).add((attempt.task, attempt.number))
        table = worker.owners.get(job)
        if table is not None:
            self.pushed[(attempt.task, attempt.number)] = table[1]
        self.mapper[(attempt.task, attempt.number)] = worker.addr
        bytes_out = int(self.cost.map_output_mb * 1e6)
        done = m.MapDone(worker_id=worker.id, attempt=attempt, records_out=1000, bytes_out=bytes_out)
        worker.recent.append(done)
        self._say_all(worker, [done, *self._end_task(worker)])

    def _on_death(self, who: Any, gen: int) -> None:
        if gen != self._death_gen or not self._live:
            return
        victim = self._live[self._chance.randrange(len(self._live))]
        victim.alive = False   # what it kept is gone (pull_plan asks `alive`), but SourcesLost still names it
        self._drop_live(victim)
        self.result.deaths += 1
        if self.config.replace_after > 0:
            self._push(self.now + self.config.replace_after, _JOIN)
        self._schedule_death()

    def _on_join(self, who: Any, gen: int) -> None:
        self.result.replacements += 1
        self._join()
        self._schedule_death()

    _HANDLERS: dict[int, Callable[[Simulation, Any, int], None]] = {
        _TICK: _on_tick, _BEAT: _on_beat, _DONE: _on_done, _DEATH: _on_death, _JOIN: _on_join,
    }

    def _schedule_death(self) -> None:
        """Draw the next death for the current number of live workers (earlier draws no longer count)."""
        self._death_gen += 1
        rate = self.config.deaths_per_min / 100 * len(self._live) / 60
        if rate > 0:
            self._push(self.now + self._chance.expovariate(rate), _DEATH, None, self._death_gen)

    def _join(self) -> None:
        n = next(self._names)
        wid = f"w{n:05d}"
        worker = SimWorker(wid, f"peer-{wid}".encode(), f"tcp://{wid}.sim:7000")
        self.workers[wid] = self._by_peer[worker.peer] = self._by_addr[worker.addr] = worker
        self._live_at[wid] = len(self._live)
        self._live.append(worker)
        self._push(self.now + self._chance.uniform(0, self.config.heartbeat_interval), _BEAT, worker)
        self._say(worker, self._register_msg(worker))

    def _drop_live(self, worker: SimWorker) -> None:
        at = self._live_at.pop(worker.id)
        last = self._live.pop()
        if last is not worker:
            self._live[at] = last
            self._live_at[last.id] = at

    def _submit(self) -> None:
        splits = [m.InputSplit(f"in-{i}", f"/in/{i}", 0, 1 << 26) for i in range(self.config.maps)]
        spec = m.JobSpec(app_name="sim", app_blob=b"\0" * 1024, splits=splits, output_dir="/out/sim",
                         n_reduce=self.config.partitions)
        self._submitted_at = self.now
        self._pump(self._wire_to_coordinator(CLIENT, m.SubmitJob(spec=spec)))

    # ------------------------------------------------------------ what a worker does on a message

    def _hear(self, worker: SimWorker, msg: m.FromCoordinator) -> list[m.WorkerToCoord]:
        handler = self._MESSAGES.get(type(msg))
        return handler(self, worker, msg) if handler is not None else []   # Ping, ReleasePartitions: not modelled

    def _on_welcome(self, worker: SimWorker, msg: m.Welcome) -> list[m.WorkerToCoord]:
        if worker.registered:
            return []
        worker.registered = True
        if worker.awaiting is not None:   # its ReduceDone may have gone to a coordinator that died
            return [worker.awaiting]
        if worker.running is None and not worker.queued:
            return [m.TaskRequest(worker_id=worker.id)]
        return []

    def _on_register_again(self, worker: SimWorker, msg: m.RegisterAgain) -> list[m.WorkerToCoord]:
        worker.registered = False
        if self.now - worker.registered_at < self.config.heartbeat_interval:
            return []   # once per interval, as the worker machine does
        return [self._register_msg(worker)]

    def _on_reject(self, worker: SimWorker, msg: m.Reject) -> list[m.WorkerToCoord]:
        raise RuntimeError(f"worker {worker.id} rejected: {msg.reason}")

    def _on_job_setup(self, worker: SimWorker, msg: m.JobSetup) -> list[m.WorkerToCoord]:
        known = worker.owners.get(msg.job_id)
        if known is None or msg.owners_epoch > known[0]:
            index = self._table_at.get((msg.job_id, msg.owners_epoch))
            if index is None:   # one broadcast: decoded into a table once, shared by every worker
                index = self._new_table(msg.job_id, msg.owners_epoch, m.owner_table(msg))
            worker.owners[msg.job_id] = (msg.owners_epoch, index)
        return []

    def _on_owners(self, worker: SimWorker, msg: m.OwnersUpdate) -> list[m.WorkerToCoord]:
        """Moves apply on top of the epoch they were made from; a worker that missed one asks again."""
        known = worker.owners.get(msg.job_id)
        if known is None or msg.owners_epoch <= known[0]:
            return []
        if msg.base_epoch > known[0]:
            return [m.SetupRequest(worker_id=worker.id, job_id=msg.job_id)]
        index = self._table_at.get((msg.job_id, msg.owners_epoch))
        if index is None:
            owners = list(self._tables[known[1]])
            for partition, addr in msg.moves.items():
                if 0 <= partition < len(owners):
                    owners[partition] = addr
            index = self._new_table(msg.job_id, msg.owners_epoch, owners)
        worker.owners[msg.job_id] = (msg.owners_epoch, index)
        return []

    def owner_table(self, job_id: str, epoch: int, owners: list[str]) -> int:
        """The shared table of this job's owners at `epoch` (made once: every worker hears the same)."""
        index = self._table_at.get((job_id, epoch))
        return index if index is not None else self._new_table(job_id, epoch, owners)

    def _new_table(self, job_id: str, epoch: int, owners: Sequence[str]) -> int:
        """Workers share one copy of each owner table (1,000 copies of 10,000 names would not fit), made
        of the simulation's own address strings, so that tracemalloc does not book it to the coordinator."""
        by_addr = self._by_addr
        table = tuple(by_addr[a].addr if a in by_addr else "" for a in owners)
        self._table_at[(job_id, epoch)] = len(self._tables)
        self._tables.append(table)
        return len(self._tables) - 1

    def _on_assign(self, worker: SimWorker, msg: Assignment) -> list[m.WorkerToCoord]:
        if isinstance(msg, m.AssignReduce) and not self._learn_commits(worker, msg):
            failed = m.TaskFailed(worker_id=worker.id, attempt=msg.attempt, kind="internal",
                                  error="the commit table here is out of step")
            idle = worker.running is None and not worker.queued
            return [failed, *([m.TaskRequest(worker_id=worker.id, finished=msg.attempt)] if idle else [])]
        if worker.running is None:
            return self._start_task(worker, msg)
        worker.queued.append(msg)
        return []

    def _learn_commits(self, worker: SimWorker, msg: m.AssignReduce) -> bool:
        """Apply the commit-table changes a reduce assignment carries, as the worker machine does."""
        job_id = msg.attempt.job_id
        life, version, table = worker.commits.get(job_id, (self._life, 0, {}))
        if msg.commits_base == 0:
            life, table = self._life, {}
        elif msg.commits_base != version:
            return False
        else:
            table = dict(table)
        ints = self._ints
        for task, attempt in msg.commits:
            table[ints[task]] = attempt
        worker.commits[job_id] = (life, msg.commits_base + len(msg.commits), table)
        return True

    def _on_locations(self, worker: SimWorker, msg: m.MapLocations) -> list[m.WorkerToCoord]:
        """The coordinator says where the maps the reduce lacks are kept: pull them (or miss them)."""
        if worker.running != msg.attempt or not worker.locating:
            return []
        worker.located = {**worker.table, **msg.commits}   # the attempt of each map that counts, now
        inputs = self.pull_plan(msg.attempt.job_id, msg, worker.asked, worker.lacking, worker.located,
                                msg.attempt.task)
        worker.locating, worker.generation = False, worker.generation + 1   # the LocateMaps timeout is moot
        self._run_reduce(worker, worker.running, inputs)
        return []

    def _on_decision(self, worker: SimWorker, msg: m.CommitDecision) -> list[m.WorkerToCoord]:
        if worker.awaiting is None or worker.awaiting.attempt != msg.attempt:
            return []
        worker.awaiting = None
        if not msg.ok:
            return self._end_task(worker)
        partition = msg.attempt.task
        worker.fetched.pop((msg.attempt.job_id, partition), None)
        self.result.commits[partition] = self.result.commits.get(partition, 0) + 1
        return [m.ReduceCommitted(worker_id=worker.id, attempt=msg.attempt), *self._end_task(worker)]

    def _on_cancel(self, worker: SimWorker, msg: m.CancelTask) -> list[m.WorkerToCoord]:
        return self._end_task(worker) if worker.running == msg.attempt else []

    def _on_job_ended(self, worker: SimWorker, msg: m.JobEnded) -> list[m.WorkerToCoord]:
        worker.owners.pop(msg.job_id, None)
        worker.commits.pop(msg.job_id, None)
        worker.kept.pop(msg.job_id, None)
        worker.fetched.clear()
        running = worker.running
        return self._end_task(worker) if running is not None and running.job_id == msg.job_id else []

    def _on_sources_lost(self, worker: SimWorker, msg: m.SourcesLost) -> list[m.WorkerToCoord]:
        """A reduce still to pull from the dead peer, or pulling from it now, gives up on its maps but pulls
        the rest, then fails with missing data; what it pulled stays here for its next attempt (see reduce_inputs)."""
        count = worker.pulls.pop(msg.addr, None)
        copied = worker.copies.pop(msg.addr, [])
        if worker.running != msg.attempt or worker.awaiting is not None or not (count or copied) \
                or self.now >= worker.pulled_by.get(msg.addr, worker.pull_end):
            return []   # (its turn is over: what it kept of this partition is here already)
        lost = self._held_by(self._by_addr.get(msg.addr), msg.attempt.job_id, worker.asked, worker.located,
                             worker.lacking) if count else []
        worker.missing = [*worker.missing, *lost, *copied]
        worker.generation += 1   # no reduce work: it ends when the other pulls do
        self._push(worker.pull_end, _DONE, worker, worker.generation)
        return []

    _MESSAGES: dict[type, Callable[..., list[m.WorkerToCoord]]] = {
        m.Welcome: _on_welcome, m.RegisterAgain: _on_register_again, m.Reject: _on_reject,
        m.JobSetup: _on_job_setup, m.OwnersUpdate: _on_owners, m.AssignMap: _on_assign,
        m.AssignReduce: _on_assign, m.MapLocations: _on_locations, m.CommitDecision: _on_decision,
        m.CancelTask: _on_cancel, m.JobEnded: _on_job_ended, m.SourcesLost: _on_sources_lost,
    }

    def _register_msg(self, worker: SimWorker) -> m.Register:
        worker.registered_at = self.now
        held = [m.Holding(job_id=job, maps=sorted(worker.kept.get(job, ())))
                for job in sorted(set(worker.owners) | set(worker.kept))]
        return m.Register(worker_id=worker.id, data_addr=worker.addr, python=PYTHON, pid=1, host="sim",
                          holdings=held, running=worker.running, finished_maps=list(worker.recent))

    # ------------------------------------------------------------ running tasks

    def _start_task(self, worker: SimWorker, assign: Assignment) -> list[m.WorkerToCoord]:
        """Run an attempt; a reduce missing pushed input first asks where it is kept (what it says)."""
        attempt = self._canonical(assign.attempt)
        worker.running, worker.generation = attempt, worker.generation + 1
        worker.missing, worker.pulls, worker.copies, worker.locating = [], {}, {}, False
        worker.started, worker.pace = self.now, PACE
        if isinstance(assign, m.AssignMap):
            slow = self._slowdown()
            worker.pace = PACE / slow
            self._push(self.now + self.map_work[attempt.task] * slow, _DONE, worker, worker.generation)
            return []
        inputs = self.reduce_inputs(worker, assign)
        if not inputs.missing:
            self._run_reduce(worker, attempt, inputs)
            return []
        worker.locating, worker.asked = True, m.coarse_runs(inputs.missing)
        worker.lacking = frozenset(inputs.missing)
        self._push(self.now + LOCATE_TIMEOUT, _DONE, worker, worker.generation)
        return [m.LocateMaps(worker_id=worker.id, attempt=attempt, runs=worker.asked)]

    def _slowdown(self) -> float:
        return self.cost.straggler_factor if self._chance.random() < self.cost.stragglers else 1.0

    def _run_reduce(self, worker: SimWorker, attempt: m.AttemptId, inputs: ReduceInputs) -> None:
        worker.missing, worker.pulls, worker.copies = inputs.missing, inputs.pulls, inputs.copies
        pull = self.cost.pull_seconds(inputs.pulled, self.config.partitions)
        worker.pull_end = self.now + pull
        worker.pulled_by = self._pull_ends(inputs)
        slow = self._slowdown()
        worker.pace = PACE / slow
        # as the executor: it pulls what is to be had, then fails if anything was not
        duration = max(MISSING_DATA_DELAY, pull) if inputs.missing else pull + self.reduce_work[attempt.task] * slow
        self._push(self.now + duration, _DONE, worker, worker.generation)

    def _pull_ends(self, inputs: ReduceInputs) -> dict[str, float]:
        """When the pull from each holder is over: as `Puller.gather`, one holder at a time, in the order
        the coordinator's answer lists them (`m.peer_requests`: second copies first), so that a holder
        declared dead after its turn took nothing from this attempt."""
        ends: dict[str, float] = {}
        at, partitions = self.now, self.config.partitions
        for addr, count in [*((a, len(tasks)) for a, tasks in inputs.copies.items()), *inputs.pulls.items()]:
            at += self.cost.pull_seconds(count, partitions)
            ends[addr] = at
        return ends

    def _canonical(self, attempt: m.AttemptId) -> m.AttemptId:
        """The attempt rebuilt of the simulation's own objects: what a worker keeps must not be booked to
        the coordinator by tracemalloc (whose allocation site of a decoded message is zmr/protocol)."""
        job_id = self.job_id if attempt.job_id == self.job_id else attempt.job_id
        kind: m.TaskKind = "map" if attempt.kind == "map" else "reduce"
        return m.AttemptId(job_id, kind, self._ints[attempt.task], attempt.number)

    def reduce_inputs(self, worker: SimWorker, assign: m.AssignReduce) -> ReduceInputs:
        """Which committed map outputs were pushed to the reduce attempt `assign` on `worker`; the rest are
        `missing`, for the worker to ask the coordinator about (LocateMaps).

        Which attempt of each map counts is the worker's commit table (attempt 1 unless it says otherwise,
        built from the changes each AssignReduce carries). That attempt's output is here if this
        partition's owner, as the mapper knew it (JobSetup / OwnersUpdate) when the map finished, is this
        worker's address (a worker that comes back is a new worker with a new address, so "has not
        restarted since" holds by construction).

        Cost: the committed maps are grouped by the owner table each pushed by, once per distinct commit
        table (the reduces of a phase mostly share one), so a reduce costs a test per owner table, not a
        Python step per map.
        """
        job_id, partition = assign.attempt.job_id, assign.attempt.task
        life, version, table = worker.commits.get(job_id, (self._life, 0, {}))
        groups = self._push_groups.get((life, version))
        if groups is None:
            groups = {}
            pushed, ints = self.pushed, self._ints
            for task in range(assign.n_maps):
                groups.setdefault(pushed.get((task, table.get(task, 1))), []).append(ints[task])
            self._push_groups[(life, version)] = groups
        missing: list[int] = []
        for index, tasks in groups.items():
            owners = self._tables[index] if index is not None else ()
            if not (partition < len(owners) and owners[partition] == worker.addr):
                missing += tasks
        worker.table = table
        fetched = worker.fetched.get((job_id, partition))
        if fetched is not None and missing:   # an earlier attempt here got all but these (of the attempts it knew)
            old, not_got = fetched
            changed = {k for k in old.keys() | table.keys() if old.get(k, 1) != table.get(k, 1)}
            missing = sorted(set(missing) & (not_got | changed))
        return ReduceInputs(sorted(missing), {})

    def pull_plan(self, job_id: str, located: m.MapLocations, asked: list[tuple[int, int]],
                  lacking: frozenset[int], attempts: dict[int, int], partition: int) -> ReduceInputs:
        """What a reduce pulls of what the coordinator located: from each live holder, all it keeps of the
        asked maps (as many as the answer says, some of them here already: `asked` is coarse); the lacking
        maps of a dead holder, and those kept nowhere, are missing. In the common case a count per holder,
        not a Python step per map. `attempts`: the attempt of each map that counts (1 if not named).
        A request for second copies (a dead mapper's, few) gets those the replica was pushed, map by map."""
        missing = set(lacking.intersection(located.nowhere))
        missing.update(t for t, a in located.commits.items() if not a and t in lacking)
        pulls: dict[str, int] = {}
        copies: dict[str, list[int]] = {}
        for request in m.peer_requests(located, asked):
            holder = self._by_addr.get(request.addr)
            if request.received:
                named = [t for t in m.from_runs(request.runs, len(self.map_work)) if t in lacking]
                got = [t for t in named if self._copied_to(holder, partition, t, attempts.get(t, 1))]
                if got and holder is not None:
                    copies.setdefault(holder.addr, []).extend(got)
                missing.update(set(named).difference(got))
            elif holder is not None and holder.alive:
                pulls[holder.addr] = pulls.get(holder.addr, 0) + request.expected
            else:
                missing.update(self._held_by(holder, job_id, request.runs, attempts, lacking))
        return ReduceInputs(sorted(missing), pulls, copies)

    def _copied_to(self, holder: SimWorker | None, partition: int, task: int, attempt: int) -> bool:
        """Was the second copy of that map attempt's output for `partition` pushed to `holder` (alive), as
        `m.replica_owner` of the owner table it pushed by, its mapper owning the partition then?"""
        index = self.pushed.get((task, attempt))
        if holder is None or not holder.alive or index is None or not self.params.replicate:
            return False
        table = self._tables[index]
        return table[partition] == self.mapper.get((task, attempt)) and m.replica_owner(table, partition) == holder.addr

    def _held_by(self, holder: SimWorker | None, job_id: str, runs: list[tuple[int, int]],
                 commits: dict[int, int], lacking: frozenset[int]) -> list[int]:
        """The lacking maps among `runs` whose attempt that counts (`commits`, else 1) `holder` kept (dead or
        not)."""
        if holder is None:
            return []
        asked, ints = m.runs_filter(runs), self._ints
        return [ints[task] for task, attempt in holder.kept.get(job_id, ())
                if task in lacking and asked(task) and commits.get(task, 1) == attempt]

    def _end_task(self, worker: SimWorker) -> list[m.WorkerToCoord]:
        """The running attempt is over (done, failed or cancelled): ask for work, start what waited."""
        attempt = worker.running
        if attempt is None:
            return []
        worker.running, worker.generation, worker.awaiting = None, worker.generation + 1, None
        worker.missing, worker.pulls, worker.copies, worker.locating = [], {}, {}, False
        said: list[m.WorkerToCoord] = [m.TaskRequest(worker_id=worker.id, finished=attempt)]
        if worker.queued:
            said += self._start_task(worker, worker.queued.popleft())
        return said

    # ------------------------------------------------------------ delivery, as the shells do it

    def _say(self, worker: SimWorker, msg: m.WorkerToCoord) -> None:
        self._pump(self._wire_to_coordinator(worker.peer, msg))

    def _say_all(self, worker: SimWorker, msgs: list[m.WorkerToCoord]) -> None:
        """Each message in turn, with everything that follows it played out before the next."""
        for msg in msgs:
            if worker.alive:
                self._say(worker, msg)

    def _pump(self, first: Event, pinged: set[bytes] | None = None) -> None:
        """Handle an event and, in order, everything the workers say in reply."""
        queue: deque[Event] = deque([first])
        self._last_sent = None
        while queue:
            event = queue.popleft()
            actions = self._handle(event)
            self._write_journal(actions)
            for action in actions:
                if isinstance(action, Send):
                    queue.extend(self._deliver(action.peer, action.msg, pinged))
                elif isinstance(action, Log):
                    self._note(action)
                elif isinstance(action, JobFinished):
                    self._job_finished(action)
        # nothing decoded outlives its batch (tracemalloc would book it to zmr/protocol)
        self._last_sent = None

    def _handle(self, event: Event) -> list[Action]:
        start = time.process_time()
        self._in_scheduler = True
        actions = self.scheduler.handle(event, self.now)
        self._in_scheduler = False
        self.result.scheduler_cpu_s += time.process_time() - start
        self.result.events += 1
        every = self.config.check_every
        if every and self.result.events % every == 0:
            start = time.process_time()
            check_invariants(self.scheduler)
            self.result.invariant_checks += 1
            self.result.check_cpu_s += time.process_time() - start
        return actions

    def _deliver(self, peer: bytes, msg: m.FromCoordinator, pinged: set[bytes] | None) -> list[Received]:
        worker = self._by_peer.get(peer)
        heard = self._wire_to_peer(msg, decode=worker is None or worker.alive)
        if peer == CLIENT and isinstance(heard, m.ErrorReply):   # the job was refused: it would never end
            raise SimulationRefused(f"the scheduler refused the job: {heard.message}")
        if worker is None or not worker.alive or heard is None:
            return []   # a client's reply, or a dead worker's connection: nobody reads it
        if pinged is not None and isinstance(heard, m.Ping):
            pinged.add(peer)
        replies = self._hear(worker, heard)
        return [self._wire_to_coordinator(worker.peer, reply) for reply in replies if worker.alive]

    def _wire_to_coordinator(self, peer: bytes, msg: m.ToCoordinator) -> Received:
        start = time.process_time()
        frames = codec.encode(msg)
        decoded, _ = self._to_coord.decode(frames)
        self.result.codec_cpu_s += time.process_time() - start
        size = len(frames[0]) + len(frames[1])
        self.result.bytes_to_coordinator += size
        self._count(type(msg).__name__, size)
        return Received(peer, decoded)

    def _wire_to_peer(self, msg: m.FromCoordinator, decode: bool) -> m.FromCoordinator | None:
        """Encode and decode what the coordinator sends; its bytes are counted on every send.

        The scheduler sends one message object to many workers when it broadcasts (an owner move, a
        release): that object is encoded and decoded once per batch of actions and its bytes counted
        for every worker, so CPU here is one copy's, not the shell's per-send encoding.
        """
        last = self._last_sent
        if last is not None and last[0] is msg and (last[2] is not None or not decode):
            frames, decoded = last[1], last[2]
        else:
            start = time.process_time()
            frames = codec.encode(msg)
            decoded = self._to_worker.decode(frames)[0] if decode else None
            self.result.codec_cpu_s += time.process_time() - start
            self._last_sent = (msg, frames, decoded)
        size = len(frames[0]) + len(frames[1])
        self.result.bytes_from_coordinator += size
        self._count(type(msg).__name__, size)
        return decoded

    def _count(self, name: str, size: int) -> None:
        counted = self._messages.get(name)
        if counted is None:
            counted = self._messages[name] = [0, 0]
        counted[0] += 1
        counted[1] += size

    def _note(self, log: Log) -> None:
        event = log.event
        if event == "task_assigned":
            self.result.attempts += 1
        elif event == "backup_attempt":
            self.result.backups += 1
        elif event == "task_failed" and log.fields.get("kind") == "missing_data":
            self.result.missing_data_failures += 1
        elif event == "attempt_lost" and log.fields.get("why") == "no progress within the task timeout":
            self.result.timeouts += 1
        elif event == "job_submitted":
            self.job_id = str(log.fields["job"])

    def _job_finished(self, action: JobFinished) -> None:
        """The shell finishes the output (here: nothing to write), then journals that it did."""
        self._write_journal(self.scheduler.output_finished(action.job_id))
        if action.job_id == self.job_id:
            self.ended = True
            self.result.job_state = action.state.value
            self.result.succeeded = action.state.value == "succeeded"
            self.result.job_time_s = self.now - self._submitted_at

    # ------------------------------------------------------------ the journal

    def _write_journal(self, actions: list[Action]) -> None:
        """Frame this batch's records and append them; compact by the runtime's rule."""
        records = [a.record for a in actions if isinstance(a, Journal)]
        if not records:
            return
        data = b"".join(jr.frame(r) for r in records)
        self.journal += data
        self.result.journal_bytes += len(data)
        self.result.journal_records += len(records)
        if len(self.journal) > max(COMPACT_MIN_BYTES, COMPACT_GROWTH * self._snapshot_size):
            self._compact()

    def _compact(self) -> None:
        start = time.process_time()
        self.scheduler.archive_ended()
        self.journal = bytearray(b"".join(jr.frame(r) for r in self.scheduler.snapshot()))
        self._snapshot_size = len(self.journal)
        self.result.snapshot_cpu_s += time.process_time() - start
        self.result.compactions += 1

    def _restart(self) -> None:
        """The coordinator dies and starts again from its journal's bytes, as `zmr-coord --state-dir` does.

        The journal is as the runtime left it (compacted only when its rule said so). Replay = parse the
        framed bytes, `Scheduler.recover`, then the snapshot the runtime writes at start. Workers keep
        their connections: the next thing each says is answered with RegisterAgain, and it registers again
        with what it holds and runs.
        """
        self._restarted = True
        data = bytes(self.journal)
        start, cpu = time.perf_counter(), time.process_time()
        parsed = jr.parse(data)
        if parsed.problem:
            raise RuntimeError(f"journal unreadable at restart: {parsed.problem}")
        self.scheduler = Scheduler(self.params)
        self._life += 1
        actions = self.scheduler.recover(parsed.records, self.now)
        self.scheduler.archive_ended()
        self.journal = bytearray(b"".join(jr.frame(r) for r in self.scheduler.snapshot()))
        self._snapshot_size = len(self.journal)
        replay_s, replay_cpu = time.perf_counter() - start, time.process_time() - cpu
        self.result.snapshot_cpu_s += replay_cpu
        self.result.restart = {"at_fraction": self.config.restart_at, "at_sim_s": self.now,
                               "maps_done": self._maps_done(), "journal_bytes": len(data),
                               "journal_records": len(parsed.records), "compaction": "runtime rule",
                               "compactions_before": self.result.compactions, "replay_s": replay_s,
                               "replay_cpu_s": replay_cpu, "snapshot_bytes": self._snapshot_size}
        self._write_journal(actions)
        for action in actions:
            if isinstance(action, JobFinished):
                self._job_finished(action)

    # ------------------------------------------------------------ measures

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        """Book the cyclic collector's time: inside `handle` it is part of the scheduler CPU measured."""
        if phase == "start":
            self._gc_started = time.process_time()
            return
        spent = time.process_time() - self._gc_started
        if self._in_scheduler:
            self.result.gc_in_scheduler_cpu_s += spent
        else:
            self.result.gc_elsewhere_cpu_s += spent

    def _snap_memory(self, point: str) -> None:
        if not self.config.memory or point in self.result.memory_bytes:
            return
        snapshot = tracemalloc.take_snapshot().filter_traces([
            tracemalloc.Filter(True, "*/zmr/core/*"), tracemalloc.Filter(True, "*/zmr/protocol/*")])
        self.result.memory_bytes[point] = sum(stat.size for stat in snapshot.statistics("filename"))

    def _finish_result(self) -> None:
        self.result.messages = {name: {"count": c, "bytes": b} for name, (c, b) in
                                sorted(self._messages.items(), key=lambda kv: -kv[1][1])}
        self.result.journal_file_bytes = len(self.journal)
        job = self.scheduler.jobs.get(self.job_id)
        if job is not None:
            self.result.reruns = sum(max(0, t.attempts_made - 1) for t in job.maps + job.reduces)
        if not self.ended:
            self.result.job_state = job.state.value if job is not None else "unknown"
            self.result.job_time_s = self.now - self._submitted_at


# ---------------------------------------------------------------- entry points


def simulate(config: SimConfig, cost: CostModel) -> Result:
    return Simulation(config, cost).run()


def compare_run(config: SimConfig, cost: CostModel) -> Result:
    """Run, then the same seed with no deaths and no stragglers (and no restart) as the baseline."""
    result = simulate(config, cost)
    calm = SimConfig(**{**asdict(config), "deaths_per_min": 0.0, "restart_at": None, "memory": False,
                        "check_every": 0})
    baseline = simulate(calm, CostModel(**{**asdict(cost), "stragglers": 0.0}))
    result.baseline_time_s = baseline.job_time_s
    return result


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{n:,.0f} B"
        n /= 1024
    return f"{n:,.1f} GiB"


def format_result(result: Result, top: int = 8) -> str:
    """The measures as a table of `name  value` lines."""
    data = result.to_json()
    c = data["config"]
    rows: list[tuple[str, str]] = [
        ("cluster", f"{c['workers']} workers, {c['maps']} maps, {c['partitions']} partitions, seed {c['seed']}"),
        ("job", f"{data['job_state']} in {data['job_time_s']:.1f} s simulated"),
        ("ideal (work / workers)", f"{data['ideal_time_s']:.1f} s   job/ideal = {data['job_over_ideal']:.2f}"),
    ]
    if data["baseline_time_s"] is not None:
        rows.append(("baseline (no deaths, no stragglers)",
                     f"{data['baseline_time_s']:.1f} s   job/baseline = {data['job_over_baseline']:.2f}"))
    rows += [
        ("scheduler events", f"{data['events']:,}"),
        ("scheduler CPU", f"{data['scheduler_cpu_s']:.2f} s   {data['events_per_s']:,.0f} events/s   "
                          f"{data['scheduler_us_per_task']:,.1f} us/task"),
        ("codec CPU (both sides)", f"{data['codec_cpu_s']:.2f} s"),
        ("snapshots + replay CPU", f"{data['snapshot_cpu_s']:.2f} s"),
        ("cyclic GC CPU", f"{data['gc_cpu_s']['in_scheduler']:.2f} s inside the scheduler (counted above), "
                          f"{data['gc_cpu_s']['elsewhere']:.2f} s elsewhere"),
        ("invariant checks CPU", f"{data['check_cpu_s']:.2f} s ({data['invariant_checks']:,} checks)"),
        ("simulator CPU (the rest)", f"{data['simulator_cpu_s']:.2f} s"),
        ("wall", f"{data['wall_s']:.2f} s"),
        ("control bytes", f"to coordinator {_fmt_bytes(data['control_bytes']['to_coordinator'])}, from "
                          f"{_fmt_bytes(data['control_bytes']['from_coordinator'])}, "
                          f"{_fmt_bytes(data['control_bytes']['per_task'])}/task"),
    ]
    for name, counted in list(data["control_bytes"]["by_type"].items())[:top]:
        rows.append((f"  {name}", f"{counted['count']:,} msgs  {_fmt_bytes(counted['bytes'])}  "
                                  f"{_fmt_bytes(counted['bytes'] / max(1, data['tasks']))}/task"))
    j = data["journal"]
    rows.append(("journal", f"{_fmt_bytes(j['bytes'])} in {j['records']:,} records "
                            f"({_fmt_bytes(j['bytes_per_task'])}/task), {j['compactions']} compactions, "
                            f"file {_fmt_bytes(j['file_bytes'])} at the end"))
    mem = data["memory"]
    if mem["peak_bytes"] is not None:
        points = ", ".join(f"{k} {_fmt_bytes(v)}" for k, v in mem["points"].items())
        rows.append(("coordinator memory", f"{points}; peak {_fmt_bytes(mem['peak_per_task_bytes'])}/task"))
    if data["restart"] is not None:
        r = data["restart"]
        rows.append(("restart", f"at {r['maps_done']} maps done: journal {_fmt_bytes(r['journal_bytes'])} in "
                                f"{r['journal_records']:,} records, replay {r['replay_s']:.3f} s"))
    k = data["counts"]
    rows.append(("counts", ", ".join(f"{name} {value:,}" for name, value in k.items())))
    rows.append(("partitions committed once", f"{data['partitions_committed_once']} "
                                              f"({data['partitions_committed']}/{c['partitions']})"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
