"""A worker's compute slot: drives one map or reduce task at a time, from its own thread.

The control thread hands it assignments (and commit decisions, cancels' wake-ups, stall fences) through
`inbox`; it answers through `report`, with the reports and "task ended" events that the worker's state
machine turns into protocol messages. App code runs in the worker's task process (see taskproc and
runner), which this thread drives: anything the app raises becomes a TaskFailed report with its
traceback, and a hung, cancelled or runaway task is ended by killing that process, never by waiting
for the app. This thread keeps the protocol parts: awaiting pushed streams,
pulling missing data, awaiting the commit decision, renaming output, and reporting.
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
from structlog.typing import FilteringBoundLogger

from zmr import storage
from zmr.core.worker_events import JobContext, Report, Reported, TaskEnded
from zmr.errors import AppError
from zmr.protocol import messages as m
from zmr.protocol import taskproc as t
from zmr.protocol.output_names import output_name, temp_output_name
from zmr.runtime import object_outputs
from zmr.runtime.puller import LostPeers, Puller
from zmr.runtime.runs import Run
from zmr.runtime.security import Curve
from zmr.runtime.stores import MapOutputStore, ReceiveStore, py_files_dir
from zmr.runtime.taskproc import ProcessDied, Stopped, TaskProcess
from zmr.runtime.zygote import Zygote

# A reduce first lets pushed streams that are still on the wire land: it waits while batches keep
# arriving (each within _STREAM_SETTLE s of the last), at most _STREAM_WAIT_LIMIT s, then pulls the rest.
_STREAM_SETTLE = 0.25
_STREAM_WAIT_LIMIT = 2.0


class Cancelled(Exception):
    """The coordinator cancelled the running attempt."""


@dataclass(frozen=True)
class Stalled:
    """Put in the inbox when the worker stood still (frozen, or starved of CPU) while a reduce awaited
    its commit decision: a grant read after that may be one the coordinator has given up on since,
    having taken the worker for dead and committed another attempt, so it must not be acted on."""

    seconds: float


@dataclass(frozen=True)
class Wake:
    """Put in the inbox when the running attempt is cancelled: wakes a reduce awaiting its commit."""


@dataclass(frozen=True)
class Quit:
    """Put in the inbox when the executor stops: wakes the thread, which then ends."""


InboxItem = m.AssignMap | m.AssignReduce | m.CommitDecision | m.MapLocations | Stalled | Wake | Quit
ExecutorReport = Reported | TaskEnded


@dataclass(frozen=True)
class ExecutorSettings:
    """How the executor runs tasks; the worker makes it from its config."""

    worker_id: str
    work_dir: Path
    memory_budget: int             # bytes a task may buffer before it spills
    max_message_bytes: int
    pull_timeout: float            # a silent peer is given up after this many seconds
    commit_timeout: float          # no commit decision within this: the reduce's output is not renamed
    task_memory_mb: int = 0        # the task process's address-space cap (0: none)
    peer_curve: Curve | None = None
    data_addr: str = ""            # where this worker serves data (a mapper replicates what it owns itself)


class _StaleGrant(Exception):
    pass


class _TaskFailed(Exception):
    """The task process reported the app's (or its files') error."""

    def __init__(self, error: t.TaskError) -> None:
        super().__init__(error.error)
        self.error = error


class MissingData(Exception):
    def __init__(self, maps: list[int]) -> None:
        super().__init__(f"map output unavailable for map tasks {maps[:10]}")
        self.maps = maps


class _NoAnswer(Exception):
    """The coordinator did not answer a question this attempt needs answered."""


class Executor(threading.Thread):
    """Drives tasks; owns the task process's channel and the pulling sockets."""

    def __init__(self, ctx: zmq.Context[Any], settings: ExecutorSettings, jobs: Mapping[str, JobContext],
                 received: ReceiveStore, kept: MapOutputStore, report: Callable[[ExecutorReport], None],
                 log: FilteringBoundLogger, zygote: Zygote) -> None:
        """`jobs` is read, never written, here: the control thread replaces a job's (immutable) context."""
        super().__init__(name="zmr-executor", daemon=True)
        self.inbox: queue.Queue[InboxItem] = queue.Queue()
        self.current: m.AttemptId | None = None
        self.progress = 0
        self.bytes_out = 0   # shuffle bytes the map attempts run here produced, for the worker's heartbeat
        self._ctx = ctx
        self._worker_id = settings.worker_id
        self._jobs = jobs
        self._received = received
        self._kept = kept
        self._report = report
        self._memory_budget = settings.memory_budget
        self._fan_in = max(16, min(512, settings.memory_budget >> 20))   # runs merged at once: ~1 MiB each
        self._max_bytes = settings.max_message_bytes
        self._pull_timeout = settings.pull_timeout
        self._commit_timeout = settings.commit_timeout
        self._log = log
        self._cancel = threading.Event()
        self._stopping = threading.Event()
        self._peer_curve = settings.peer_curve
        self._zygote = zygote
        self._work_dir = settings.work_dir
        self._task_memory_mb = settings.task_memory_mb
        self._data_addr = settings.data_addr
        self._proc: TaskProcess | None = None   # made on this thread: it owns the channel socket
        self.lost_peers = LostPeers()   # filled by the control thread from SourcesLost
        self._puller = Puller(ctx, received, self.lost_peers, settings.max_message_bytes, settings.pull_timeout,
                              settings.peer_curve)

    # ------------------------------------------------------------ control-thread side

    def cancel(self, attempt: m.AttemptId) -> None:
        if self.current == attempt:
            self._cancel.set()
            self.inbox.put(Wake())  # wakes a reduce waiting for its commit decision

    def stop(self) -> None:
        """End the thread soon: the running task is cancelled (its task process killed) within a
        fraction of a second, as the coordinator cancels one, and no later task starts."""
        self._stopping.set()
        self.inbox.put(Quit())

    # ------------------------------------------------------------ thread

    def run(self) -> None:
        try:
            self._task_process()   # asked for now, so the first task finds it ready
            while not self._stopping.is_set():   # also seen when a cancelled task took the "stop" item
                item = self.inbox.get()
                if isinstance(item, Quit):
                    return
                if isinstance(item, m.AssignMap | m.AssignReduce):
                    self._run_task(item)
        except Exception:   # a worker that cannot run tasks must not go on taking them: the worker sees this end
            self._log.exception("executor_failed")
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        """Kill the task process and end the zygote (on the thread that drove them)."""
        if self._proc is not None:
            self._proc.close()
            self._proc = None
        self._zygote.close()

    def _task_process(self) -> TaskProcess:
        if self._proc is None:
            self._proc = TaskProcess(self._ctx, self._zygote, self._work_dir, self._proc_setup(), self._log)
        return self._proc

    def _proc_setup(self) -> t.ProcSetup:
        curve = self._peer_curve
        return t.ProcSetup(worker_id=self._worker_id, max_message_bytes=self._max_bytes,
                           ack_timeout=self._pull_timeout, memory_budget=self._memory_budget,
                           task_memory_mb=self._task_memory_mb,
                           peer_public=curve.public if curve else b"", peer_secret=curve.secret if curve else b"",
                           peer_server_key=(curve.server_key or b"") if curve else b"",
                           data_addr=self._data_addr)

    def _run_task(self, assign: m.AssignMap | m.AssignReduce) -> None:
        attempt = assign.attempt
        self.current = attempt
        self._cancel.clear()
        self.progress = 0   # counted per attempt: its pace is progress over the time since it began
        log = self._log.bind(**attempt.log_fields())
        log.debug("task_started")
        wall, cpu = time.monotonic(), time.thread_time()
        try:
            if isinstance(assign, m.AssignMap):
                self._run_map(assign)
            else:
                self._run_reduce(assign, log)
            log.debug("task_finished", wall_s=round(time.monotonic() - wall, 3),
                      cpu_s=round(time.thread_time() - cpu, 3))
        except (Cancelled, Stopped):
            log.info("task_cancelled")
        except ProcessDied as exc:
            cap = f" (worker.task_memory_mb={self._task_memory_mb})" if self._task_memory_mb else ""
            self._fail(assign, "app", f"{exc}{cap}", "")
        except MissingData as exc:
            self._fail(assign, "missing_data", str(exc), "", exc.maps)
        except _NoAnswer as exc:
            self._fail(assign, "internal", str(exc), "")
        except AppError as exc:   # the app cannot be unpacked here
            self._fail(assign, "invalid", str(exc), "")
        except _TaskFailed as exc:
            if exc.error.kind == "io" and (attempt.job_id not in self._jobs or self._cancelled()):
                log.info("task_dropped", why=exc.error.error)   # its job (or attempt) ended here meanwhile
            else:
                self._fail(assign, exc.error.kind, exc.error.error, exc.error.traceback)
        except OSError as exc:
            if attempt.job_id not in self._jobs or self._cancelled():
                log.info("task_dropped", why=str(exc))   # its job (or attempt) ended here meanwhile
            else:
                self._fail(assign, "io", f"{type(exc).__name__}: {exc}", traceback.format_exc())
        except Exception as exc:  # this thread's own bug: the attempt fails, the worker goes on
            self._fail(assign, "internal", f"{type(exc).__name__}: {exc}", traceback.format_exc())
        finally:
            self.current = None
            self.lost_peers.forget(attempt)
            self._report(TaskEnded(attempt))

    def _fail(self, assign: m.AssignMap | m.AssignReduce, kind: m.FailureKind, error: str, tb: str,
              missing: list[int] | None = None) -> None:
        self._log.warning("task_failed", **assign.attempt.log_fields(), kind=kind, error=error)
        self._tell(m.TaskFailed(worker_id=self._worker_id, attempt=assign.attempt, kind=kind, error=error,
                                traceback=tb, missing_maps=missing or []))

    def _tell(self, msg: Report) -> None:
        self._report(Reported(msg))

    def _cancelled(self) -> bool:
        return self._cancel.is_set() or self._stopping.is_set()

    def _check_cancel(self) -> None:
        if self._cancelled():
            raise Cancelled()

    def _context(self, job_id: str) -> JobContext:
        ctx = self._jobs.get(job_id)
        if ctx is None:
            raise Cancelled()  # the job ended before its task started
        return ctx

    # ------------------------------------------------------------ map

    def _run_map(self, assign: m.AssignMap) -> None:
        job = self._context(assign.attempt.job_id)
        kept_dir = self._kept.folder(assign.attempt.job_id)
        kept_dir.mkdir(parents=True, exist_ok=True)
        run = t.RunMap(attempt=assign.attempt, split=assign.split, kept_dir=str(kept_dir),
                       released=self._kept.released(assign.attempt.job_id))
        result = self._call(run, job)
        if not isinstance(result, t.MapResult):
            raise TypeError(f"a map answered {type(result).__name__}")
        self._check_cancel()
        self._kept.add_attempt(assign.attempt.job_id, assign.attempt.task, assign.attempt.number,
                               [(k.partition, k.offset, k.length) for k in result.kept])
        self.bytes_out += result.bytes_out
        self._tell(m.MapDone(worker_id=self._worker_id, attempt=assign.attempt, records_out=result.records_out,
                             bytes_out=result.bytes_out))

    def _call(self, run: t.RunMap | t.RunReduce, job: JobContext,
              readers: Sequence[JobContext] = ()) -> t.MapResult | t.ReduceResult:
        """Run a task in the task process; its errors raise _TaskFailed, a cancel kills it. `readers`:
        the step jobs a step job's reduce feeds, whose owners it pushes to."""
        proc = self._task_process()
        proc.ensure_ready(self._cancelled)
        for each in (*readers, job):
            self._sync_job(proc, each)

        def sync() -> None:   # owners may move while the task runs: each slice sends the latest context
            for each in (*readers, job):
                self._sync_job(proc, self._jobs.get(each.setup.job_id, each))

        result = proc.call(run, self._tick, self._cancelled, sync)
        if isinstance(result, t.TaskError):
            if result.fatal:
                proc.replace()
            raise _TaskFailed(result)
        return result

    def _py_paths(self, setup: m.JobSetup) -> list[str]:
        """The job's --py-files archives on this worker's disk (written once; the worker removes them with
        the job), for its task process to put on sys.path."""
        if not setup.py_files:
            return []
        folder = py_files_dir(self._work_dir, setup.job_id)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, archive in enumerate(setup.py_files):
            path = folder / f"{i}.zip"
            if not path.exists():
                tmp = folder / f".{i}.zip.tmp"
                tmp.write_bytes(archive)
                tmp.replace(path)
            paths.append(str(path))
        return paths

    def _sync_job(self, proc: TaskProcess, job: JobContext) -> None:
        """The task process learns a job before its first task, and every owner change after."""
        setup = job.setup
        known = proc.jobs.get(setup.job_id)
        if known is None:
            proc.send(t.JobInfo(job_id=setup.job_id, app_blob=setup.app_blob, args=setup.args,
                                n_reduce=setup.n_reduce, push=setup.push, batch_bytes=setup.batch_bytes,
                                window_bytes=setup.window_bytes, owners=list(job.owners),
                                owners_epoch=job.owners_epoch, compression=setup.compression,
                                output_format=setup.output_format, py_paths=self._py_paths(setup),
                                replicate=setup.replicate, step=setup.step))
            t.keep_latest(proc.jobs, setup.job_id, job.owners_epoch)   # as the process does: it may drop one
        elif job.owners_epoch > known:
            proc.send(t.JobUpdate(job_id=setup.job_id, owners=list(job.owners), owners_epoch=job.owners_epoch))
            proc.jobs[setup.job_id] = job.owners_epoch

    # ------------------------------------------------------------ reduce

    def _run_reduce(self, assign: m.AssignReduce, log: FilteringBoundLogger) -> None:
        job = self._context(assign.attempt.job_id)
        inputs = {task: job.committed(task) for task in range(assign.n_maps)}   # map task -> attempt that counts
        if job.setup.push:
            self._received.await_streams(assign.attempt.job_id, assign.attempt.task, list(inputs.items()),
                                         settle=_STREAM_SETTLE, limit=_STREAM_WAIT_LIMIT)
        self._gather(assign, inputs, log)
        if job.setup.feeds:
            self._run_feeding_reduce(assign, job, inputs, log)
            return
        remote = storage.is_url(assign.output_dir)   # an object store: staged, then copied on commit
        out_dir = self._received.staging(assign.attempt.job_id) if remote else Path(assign.output_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = out_dir / temp_output_name(assign.attempt)
        staged = ""
        try:
            records = self._write_reduce(assign, inputs, tmp)
            if remote:
                staged = object_outputs.stage(tmp, assign.output_dir, assign.attempt)
            done = m.ReduceDone(worker_id=self._worker_id, attempt=assign.attempt, records_out=records,
                                received=self._received.stat(assign.attempt.job_id, assign.attempt.task))
            self._tell(done)
            try:
                granted = self._await_commit(assign)
            except _StaleGrant as exc:
                self._fail(assign, "internal", str(exc), "")   # the coordinator runs it again if still wanted
                return
            if not granted:
                log.info("commit_refused")
                return
            if staged:
                object_outputs.commit(staged, assign.output_dir, assign.attempt.task)
                staged = ""
            else:
                os.replace(tmp, out_dir / output_name(assign.attempt.task))
        finally:
            tmp.unlink(missing_ok=True)
            if staged:
                self._discard(staged, assign.output_dir, log)
        self._tell(m.ReduceCommitted(worker_id=self._worker_id, attempt=assign.attempt))

    def _run_feeding_reduce(self, assign: m.AssignReduce, job: JobContext, inputs: dict[int, int],
                            log: FilteringBoundLogger) -> None:
        """A step job's reduce whose output is later steps' input: it writes no file. Its pairs go through
        each reading step's map as that step's map attempt (same task index as the feeding map, same
        number), kept here and pushed to that step's owners; only if the coordinator grants the commit
        does that output count (the grant commits those maps too)."""
        partition, number = assign.attempt.task, assign.attempt.number
        readers = [self._context(link.job_id) for link in job.setup.feeds]
        feeds = []
        for link in job.setup.feeds:
            folder = self._kept.folder(link.job_id)
            folder.mkdir(parents=True, exist_ok=True)
            feeds.append(t.Feed(attempt=m.AttemptId(job_id=link.job_id, kind="map", task=link.first + partition,
                                                    number=number),
                                kept_dir=str(folder), released=self._kept.released(link.job_id)))
        scratch = self._received.scratch(assign.attempt.job_id, partition, number)
        run = t.RunReduce(attempt=assign.attempt, runs=self._runs(assign, inputs), tmp_path="", scratch=str(scratch),
                          fan_in=self._fan_in, feeds=feeds)
        try:
            result = self._call(run, job, readers)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if not isinstance(result, t.ReduceResult) or len(result.fed) != len(feeds):
            raise TypeError(f"a feeding reduce answered {type(result).__name__}")
        self._check_cancel()
        for feed, made in zip(feeds, result.fed, strict=True):
            self._kept.add_attempt(feed.attempt.job_id, feed.attempt.task, number,
                                   [(k.partition, k.offset, k.length) for k in made.kept])
            self.bytes_out += made.bytes_out
        self._tell(m.ReduceDone(worker_id=self._worker_id, attempt=assign.attempt, records_out=result.records_out,
                                received=self._received.stat(assign.attempt.job_id, partition)))
        try:
            granted = self._await_commit(assign)
        except _StaleGrant as exc:
            self._fail(assign, "internal", str(exc), "")
            return
        if not granted:
            log.info("commit_refused")
            return
        self._tell(m.ReduceCommitted(worker_id=self._worker_id, attempt=assign.attempt, fed=[
            m.FedMap(job_id=feed.attempt.job_id, task=feed.attempt.task, records_out=made.records_out,
                     bytes_out=made.bytes_out) for feed, made in zip(feeds, result.fed, strict=True)]))

    @staticmethod
    def _discard(staged: str, output_dir: str, log: FilteringBoundLogger) -> None:
        """Delete an attempt's staged output that was never committed; the job's end deletes what this misses."""
        try:
            object_outputs.discard(staged, output_dir)
        except OSError as exc:
            log.info("staged_output_left", key=staged, error=str(exc))

    def _write_reduce(self, assign: m.AssignReduce, inputs: dict[int, int], tmp: Path) -> int:
        scratch = self._received.scratch(assign.attempt.job_id, assign.attempt.task, assign.attempt.number)
        run = t.RunReduce(attempt=assign.attempt, runs=self._runs(assign, inputs), tmp_path=str(tmp),
                          scratch=str(scratch), fan_in=self._fan_in)
        try:
            result = self._call(run, self._context(assign.attempt.job_id))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)   # the task process may have died mid-merge
        if not isinstance(result, t.ReduceResult):
            raise TypeError(f"a reduce answered {type(result).__name__}")
        return result.records_out

    def _runs(self, assign: m.AssignReduce, inputs: dict[int, int]) -> list[Run]:
        """Every batch of the committed map attempts, as runs in this partition's file."""
        job_id, partition = assign.attempt.job_id, assign.attempt.task
        path = str(self._received.path(job_id, partition))
        return [(path, offset, length)
                for task, attempt in inputs.items()
                for offset, length in self._received.segments(job_id, partition, task, attempt)]

    def _await_commit(self, assign: m.AssignReduce) -> bool:
        """Only the attempt the coordinator accepts renames its output; no answer means no commit."""
        deadline = time.monotonic() + self._commit_timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                item = self.inbox.get(timeout=remaining)
            except queue.Empty:
                break
            self._check_cancel()
            if isinstance(item, Stalled):
                raise _StaleGrant(f"the worker stood still for {item.seconds:.1f} s while this attempt awaited "
                                  "its commit; a grant read now may be stale, so the attempt gives up")
            if isinstance(item, m.CommitDecision) and item.attempt == assign.attempt:
                return item.ok
        return False

    def _gather(self, assign: m.AssignReduce, inputs: dict[int, int], log: FilteringBoundLogger) -> None:
        """Make sure every committed map's output for this partition is here: ask where what is not here
        is kept, and pull it. `inputs` learns the attempts the answer names (a map may have run again)."""
        job_id, partition = assign.attempt.job_id, assign.attempt.task
        lacking = [task for task, attempt in inputs.items()
                   if not self._received.complete(job_id, partition, task, attempt)]
        if not lacking:
            return
        runs = m.coarse_runs(lacking)
        self._tell(m.LocateMaps(worker_id=self._worker_id, attempt=assign.attempt, runs=runs))
        located = self._await_locations(assign)
        wanted = {task: located.commits.get(task, inputs[task]) for task in lacking}
        inputs.update(wanted)
        nowhere = {task for task in located.nowhere if task in wanted} | {
            task for task, attempt in wanted.items() if not attempt}
        wanted = {task: attempt for task, attempt in wanted.items() if task not in nowhere}
        missing = self._puller.gather(assign, m.peer_requests(located, runs), wanted, self._check_cancel,
                                      self._tick, log)
        if missing or nowhere:
            raise MissingData(sorted(nowhere.union(missing)))

    def _await_locations(self, assign: m.AssignReduce) -> m.MapLocations:
        """The coordinator's answer to this attempt's LocateMaps; no answer in time fails the attempt."""
        deadline = time.monotonic() + self._commit_timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                item = self.inbox.get(timeout=remaining)
            except queue.Empty:
                break
            self._check_cancel()
            if isinstance(item, m.MapLocations) and item.attempt == assign.attempt:
                return item
        raise _NoAnswer(f"no answer from the coordinator to LocateMaps within {self._commit_timeout:g} s")

    def _tick(self, units: int = 1) -> None:
        """The running attempt moved on by `units` of work: heartbeats carry the attempt's count, so the
        coordinator sees it is not stalled, and how fast it goes."""
        self.progress += units
