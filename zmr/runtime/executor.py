"""A worker's compute slot: runs one map or reduce task at a time, in its own thread.

The control thread hands it assignments through `inbox`; it answers with protocol messages through
`outbox` (the control thread forwards them to the coordinator). App code runs here, so anything the
app raises becomes a TaskFailed report with its traceback, never a crashed worker.
"""

from __future__ import annotations

import functools
import os
import queue
import shutil
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from zmr.apps import App, unship_app
from zmr.core.batches import Pairs, PartitionBuffers, encode_batch
from zmr.errors import AppError, ProtocolError
from zmr.inputs import read_chunks
from zmr.protocol import messages as m
from zmr.protocol.codec import data_decoder, encode
from zmr.runtime import transport
from zmr.runtime.pusher import Pusher
from zmr.runtime.runs import Run, merged
from zmr.runtime.security import Curve
from zmr.runtime.stores import MapOutputStore, ReceiveStore

# A reduce first lets pushed streams that are still on the wire land: it waits while batches keep
# arriving (each within _STREAM_SETTLE s of the last), at most _STREAM_WAIT_LIMIT s, then pulls the rest.
_STREAM_SETTLE = 0.25
_STREAM_WAIT_LIMIT = 2.0
_LINES_PER_WRITE = 4096
# A map task's final runs are kept until the next map task has made its own (see `_keep_warm`), up to
# this many pairs, or until a reduce starts or the executor has idled this many seconds.
_WARM_MAX_PAIRS = 1 << 17   # ~20-40 MB of small objects at most
_WARM_IDLE = 1.0


class Cancelled(Exception):
    """The coordinator cancelled the running attempt."""


@dataclass(frozen=True)
class Stalled:
    """Put in the inbox when the worker stood still (frozen, or starved of CPU) while a reduce awaited
    its commit decision: a grant read after that may be one the coordinator has given up on since,
    having taken the worker for dead and committed another attempt, so it must not be acted on."""

    seconds: float


class _StaleGrant(Exception):
    pass


class MissingData(Exception):
    def __init__(self, maps: list[int]) -> None:
        super().__init__(f"map output unavailable for map tasks {maps[:10]}")
        self.maps = maps


@dataclass
class JobContext:
    """What a worker knows of a job, from JobSetup and OwnersUpdate."""

    setup: m.JobSetup
    owners: list[str]
    owners_epoch: int
    app: App | None = None
    app_error: str = ""

    def load_app(self) -> App:
        if self.app is None and not self.app_error:
            try:
                self.app = unship_app(self.setup.app_blob)
            except AppError as exc:
                self.app_error = str(exc)
        if self.app is None:
            raise AppError(self.app_error)
        return self.app


def output_name(partition: int) -> str:
    return f"mr-out-{partition}"


def temp_output_name(partition: int, job_id: str, attempt: int) -> str:
    """Hidden and job-specific, so it never matches `mr-out-*` and never collides."""
    return f".mr-out-{partition}.{job_id}.a{attempt}.tmp"


class Executor(threading.Thread):
    """Runs tasks; owns the pusher's sockets and the pulling sockets."""

    def __init__(self, ctx: zmq.Context[Any], worker_id: str, jobs: dict[str, JobContext],
                 received: ReceiveStore, kept: MapOutputStore, send: Callable[[Any], None],
                 memory_budget: int, max_message_bytes: int, pull_timeout: float, commit_timeout: float,
                 log: Any, peer_curve: Curve | None = None) -> None:
        super().__init__(name="zmr-executor", daemon=True)
        self.inbox: queue.Queue[Any] = queue.Queue()
        self.current: tuple[str, str, int, int] | None = None
        self.progress = 0
        self.awaiting_commit: m.ReduceDone | None = None   # a finished reduce waiting for its CommitDecision
        self._ctx = ctx
        self._worker_id = worker_id
        self._jobs = jobs
        self._received = received
        self._kept = kept
        self._send = send
        self._memory_budget = memory_budget
        self._fan_in = max(16, min(512, memory_budget >> 20))   # runs merged at once: ~1 MiB of chunks each
        self._max_bytes = max_message_bytes
        self._pull_timeout = pull_timeout
        self._commit_timeout = commit_timeout
        self._log = log
        self._cancel = threading.Event()
        self._stopping = threading.Event()
        self._peer_curve = peer_curve
        self._pusher = Pusher(ctx, 8 << 20, max_message_bytes, ack_timeout=pull_timeout, curve=peer_curve)
        self._warm: list[Pairs] = []

    # ------------------------------------------------------------ control-thread side

    def cancel(self, job_id: str, kind: str, task: int, attempt: int) -> None:
        if self.current == (job_id, kind, task, attempt):
            self._cancel.set()
            self.inbox.put(None)  # wakes a reduce waiting for its commit decision

    def stop(self) -> None:
        """End the thread soon: the running task is cancelled at its next check (as the coordinator
        cancels one), so a stopping worker exits once the app's current call returns, and no later task
        starts."""
        self._stopping.set()
        self.inbox.put("stop")

    @property
    def busy(self) -> bool:
        return self.current is not None

    # ------------------------------------------------------------ thread

    def run(self) -> None:
        try:
            while not self._stopping.is_set():   # also seen when a cancelled task took the "stop" item
                try:
                    item = self.inbox.get(timeout=_WARM_IDLE)
                except queue.Empty:
                    self._warm = []   # idle: nothing to keep warm for
                    item = self.inbox.get()
                if item == "stop":
                    return
                if isinstance(item, m.AssignMap | m.AssignReduce):
                    self._run_task(item)
        finally:
            self._pusher.close()

    def _run_task(self, assign: m.AssignMap | m.AssignReduce) -> None:
        kind = "map" if isinstance(assign, m.AssignMap) else "reduce"
        self.current = (assign.job_id, kind, assign.task, assign.attempt)
        self._cancel.clear()
        self.progress += 1
        log = self._log.bind(job=assign.job_id, task=f"{kind}-{assign.task}", attempt=assign.attempt)
        log.debug("task_started")
        wall, cpu = time.monotonic(), time.thread_time()
        try:
            if isinstance(assign, m.AssignMap):
                self._run_map(assign)
            else:
                self._warm = []   # kept for the next map only: a reduce runs slower among them
                self._run_reduce(assign, log)
            log.debug("task_finished", wall_s=round(time.monotonic() - wall, 3),
                      cpu_s=round(time.thread_time() - cpu, 3))
        except Cancelled:
            log.info("task_cancelled")
        except MissingData as exc:
            self._fail(assign, "missing_data", str(exc), "", exc.maps)
        except AppError as exc:
            self._fail(assign, "app", str(exc), "")
        except OSError as exc:
            if assign.job_id not in self._jobs or self._cancelled():
                log.info("task_dropped", why=str(exc))   # its job (or attempt) ended here meanwhile
            else:
                self._fail(assign, "io", f"{type(exc).__name__}: {exc}", traceback.format_exc())
        except Exception as exc:  # the app's own error, whatever it is
            self._fail(assign, "app", f"{type(exc).__name__}: {exc}", traceback.format_exc())
        finally:
            self.current = None
            finished = m.RunningAttempt(job_id=assign.job_id, kind=kind, task=assign.task, attempt=assign.attempt)
            self._send(m.TaskRequest(worker_id=self._worker_id, finished=finished))

    def _fail(self, assign: m.AssignMap | m.AssignReduce, kind: m.FailureKind, error: str, tb: str,
              missing: list[int] | None = None) -> None:
        self._log.warning("task_failed", job=assign.job_id, task=assign.task, attempt=assign.attempt,
                          kind=kind, error=error)
        self._send(m.TaskFailed(worker_id=self._worker_id, job_id=assign.job_id, task=assign.task,
                                attempt=assign.attempt, kind=kind, error=error, traceback=tb,
                                missing_maps=missing or []))

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
        job = self._context(assign.job_id)
        self._kept.begin(assign.job_id, assign.task, assign.attempt)
        app = job.load_app()
        setup = job.setup
        args = setup.args
        buffers = PartitionBuffers(setup.n_reduce, setup.batch_bytes, max(self._memory_budget // 4,
                                   setup.batch_bytes), app.partitioner(args), app.combiner(args),
                                   app.check_partition)
        self._pusher.start_task(setup.window_bytes)
        bytes_out = 0
        for contents, first_line in read_chunks(assign.split.path, assign.split.start, assign.split.end,
                                                count_lines=app.map_takes_first_line):
            pairs = app.map_iter(assign.split.name, contents, args, first_line=first_line)
            for due in buffers.add_all(pairs, app.check_pair):
                if due is None:   # a tick, every few thousand pairs
                    self.progress += 1
                    self._check_cancel()
                else:
                    bytes_out += self._emit(assign, job, *due)
            del contents, pairs
            self.progress += 1
        tail = buffers.drain()
        for partition, run in tail:
            bytes_out += self._emit(assign, job, partition, run)
        self._keep_warm([run for _, run in tail])
        self._check_cancel()
        if setup.push:
            self._end_streams(assign, job)
        self._send(m.MapDone(worker_id=self._worker_id, job_id=assign.job_id, task=assign.task,
                             attempt=assign.attempt, records_out=buffers.records, bytes_out=bytes_out))

    def _keep_warm(self, runs: list[Pairs]) -> None:
        """Hold this task's last runs, and let the previous task's go only now.

        The pairs' keys lie scattered through the small-object arenas the map filled. Were they all freed
        at the end of the task, those arenas would empty and go back to the OS, and the next map would
        page-fault its way through fresh ones (on a word count: 5x the page faults, a tenth more CPU).
        Held until the next map has made its own, they keep the arenas in use, and the next map reuses
        their free space.
        """
        self._warm = runs if sum(map(len, runs)) <= _WARM_MAX_PAIRS else []

    def _emit(self, assign: m.AssignMap, job: JobContext, partition: int, run: Pairs) -> int:
        """Keep the run in the map's own copy and push it to the partition's owner."""
        payload = encode_batch(run)
        seq = self._kept.append(assign.job_id, assign.task, assign.attempt, partition, payload)
        if seq is not None and job.setup.push:
            header = m.Batch(job_id=assign.job_id, map_task=assign.task, attempt=assign.attempt,
                             partition=partition, seq=seq, n_records=len(run))
            addr = job.owners[partition]
            self._pusher.push(addr, header, payload,
                              give_up=lambda: self._cancelled() or job.owners[partition] != addr)
        self.progress += 1
        self._check_cancel()
        return len(payload)

    def _end_streams(self, assign: m.AssignMap, job: JobContext) -> None:
        """Tell each owner how many batches this attempt sent it (their acks come back during later tasks)."""
        counts = self._kept.counts(assign.job_id, assign.task, assign.attempt)
        owners = list(job.owners)
        by_owner: dict[str, dict[int, int]] = {}
        for partition, addr in enumerate(owners):
            by_owner.setdefault(addr, {})[partition] = counts.get(partition, 0)
        for addr, owned in by_owner.items():
            self._pusher.end(addr, m.StreamEnd(job_id=assign.job_id, map_task=assign.task,
                                               attempt=assign.attempt, counts=owned),
                             give_up=functools.partial(self._owner_gone, job, addr))

    def _owner_gone(self, job: JobContext, addr: str) -> bool:
        """Stop waiting on a peer that owns nothing any more, or once the attempt is cancelled."""
        return self._cancelled() or addr not in job.owners

    # ------------------------------------------------------------ reduce

    def _run_reduce(self, assign: m.AssignReduce, log: Any) -> None:
        job = self._context(assign.job_id)
        app = job.load_app()
        if job.setup.push:
            self._received.await_streams(assign.job_id, assign.task,
                                         [(src.task, src.attempt) for src in assign.sources if src.addr],
                                         settle=_STREAM_SETTLE, limit=_STREAM_WAIT_LIMIT)
        self._gather(assign)
        out_dir = Path(assign.output_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = out_dir / temp_output_name(assign.task, assign.job_id, assign.attempt)
        try:
            records = self._write_reduce(assign, app, job.setup.args, tmp)
            done = m.ReduceDone(worker_id=self._worker_id, job_id=assign.job_id, task=assign.task,
                                attempt=assign.attempt, records_out=records,
                                received=self._received.stat(assign.job_id, assign.task))
            self.awaiting_commit = done
            self._send(done)
            try:
                granted = self._await_commit(assign)
            except _StaleGrant as exc:
                self._fail(assign, "internal", str(exc), "")   # the coordinator runs it again if still wanted
                return
            finally:
                self.awaiting_commit = None
            if not granted:
                log.info("commit_refused")
                return
            os.replace(tmp, out_dir / output_name(assign.task))
        finally:
            tmp.unlink(missing_ok=True)
        self._send(m.ReduceCommitted(worker_id=self._worker_id, job_id=assign.job_id, task=assign.task,
                                     attempt=assign.attempt))

    def _write_reduce(self, assign: m.AssignReduce, app: App, args: list[str], tmp: Path) -> int:
        records = 0
        scratch = self._received.scratch(assign.job_id, assign.task, assign.attempt)
        try:
            reduce = app.reducer(args)
            with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as out:
                lines: list[str] = []   # written a few thousand at a time: one write call per line costs more
                for key, values in merged(self._runs(assign), self._fan_in, scratch):
                    lines.append(f"{key} {reduce(key, values)}\n")
                    if len(lines) == _LINES_PER_WRITE:
                        out.write("".join(lines))
                        lines.clear()
                        records += _LINES_PER_WRITE
                        self.progress += 1
                        self._check_cancel()
                out.write("".join(lines))
                records += len(lines)
                out.flush()
                os.fsync(out.fileno())
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return records

    def _runs(self, assign: m.AssignReduce) -> list[Run]:
        """Every batch of the committed map attempts, as runs in this partition's file."""
        path = str(self._received.path(assign.job_id, assign.task))
        return [(path, offset, length)
                for src in assign.sources
                for offset, length in self._received.segments(assign.job_id, assign.task, src.task, src.attempt)]

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
            if isinstance(item, m.CommitDecision) and (item.job_id, item.task, item.attempt) == (
                    assign.job_id, assign.task, assign.attempt):
                return item.ok
        return False

    def _gather(self, assign: m.AssignReduce) -> None:
        """Make sure every committed map's output for this partition is here; pull what is not."""
        missing = []
        for src in assign.sources:
            self._check_cancel()
            if self._received.complete(assign.job_id, assign.task, src.task, src.attempt):
                continue
            if not src.addr or not self._pull(assign, src):
                missing.append(src.task)
        if missing:
            raise MissingData(missing)

    def _pull(self, assign: m.AssignReduce, src: m.MapSource) -> bool:
        job_id, partition = assign.job_id, assign.task
        self._received.forget(job_id, partition, src.task, src.attempt)
        sock = transport.dealer(self._ctx, src.addr, self._max_bytes, immediate=False, curve=self._peer_curve)
        decoder = data_decoder(self._max_bytes)
        try:
            transport.send(sock, encode(m.PullRequest(job_id=job_id, map_task=src.task, attempt=src.attempt,
                                                      partition=partition)))
            while sock.poll(int(self._pull_timeout * 1000), zmq.POLLIN):
                try:
                    msg, payload = transport.recv_dealer(sock, decoder, copy=False)
                except ProtocolError:
                    return False
                if isinstance(msg, m.Batch) and (msg.job_id, msg.map_task, msg.attempt, msg.partition) == (
                        job_id, src.task, src.attempt, partition):
                    self._received.add_batch(job_id, src.task, src.attempt, partition, msg.seq, payload,
                                             time.time())
                elif isinstance(msg, m.PullEnd):
                    if not msg.found:
                        return False
                    self._received.set_pulled(job_id, src.task, src.attempt, partition, msg.n_batches)
                    return self._received.complete(job_id, partition, src.task, src.attempt)
            return False
        finally:
            sock.close(linger=0)
