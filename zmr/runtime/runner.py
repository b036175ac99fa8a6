"""The task process: runs a worker's app code, one task at a time, where the worker can kill it.

A map reads its split, calls the app, partitions, combines and encodes batches, appends each to the
map's kept copy and pushes it to the partition's owner with this process's own zmq context and sockets
(made after the fork): the shuffle data never passes through the worker. It reports the kept copy's
index with its result, once every byte of it is on disk, so the worker never indexes bytes of an
attempt that was killed half-way. A reduce merges the runs the worker names, calls the app's reduce and
writes the temporary output file; the worker does the rest (commit, rename, report).

Everything the app raises becomes a TaskError with its traceback. A task that hangs or runs away is the
worker's to kill; this process keeps no state worth saving.
"""

from __future__ import annotations

import os
import resource
import shutil
import socket
import sys
import time
import traceback
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import zmq

from zmr.apps import App, unship_app
from zmr.core.batches import Packer, Pairs, Value
from zmr.core.pair_columns import ColumnBuffers
from zmr.errors import AppError, InputError
from zmr.formats import map_inputs
from zmr.inputs import MAP_CHUNK_BYTES
from zmr.log import bound_logger
from zmr.output_formats import str_keys, write_columns, write_reduced
from zmr.protocol import messages as m
from zmr.protocol import taskproc as t
from zmr.runtime.gctune import reuse_large_blocks
from zmr.runtime.pusher import Pusher
from zmr.runtime.runs import Watch, grouped, merged, merged_columns, mixed_runs
from zmr.runtime.security import Curve
from zmr.steps import StepApp, plan_steps

if TYPE_CHECKING:   # numpy is imported once a map has a block of pairs to make columns of
    from zmr.core.columns import Columns

_TICK_EVERY = 0.2          # seconds between progress reports at most
# A map task's final runs are kept until the next map task has made its own (see `_keep_warm`), up to
# this many pairs, or until a reduce starts or the process has idled this many seconds.
_WARM_MAX_PAIRS = 1 << 17   # ~20-40 MB of small objects at most
_WARM_IDLE = 1.0
_MIN_BATCH_PIECE = 1 << 20


class _Job:
    """A job as this process knows it: settings, owners, and its app once loaded."""

    def __init__(self, info: t.JobInfo) -> None:
        self.info = info
        self.owners = list(info.owners)
        self.epoch = info.owners_epoch
        self.packer = Packer(info.compression)
        self._app: App | None = None
        self._step: StepApp | None = None
        self._replicas: dict[int, str | None] = {}   # partition -> its replica, at `_replicas_epoch`
        self._replicas_epoch = -1

    def replica(self, partition: int) -> str | None:
        """Where the second copy of this partition's map output goes while this worker owns it."""
        if self._replicas_epoch != self.epoch:
            self._replicas, self._replicas_epoch = {}, self.epoch
            if len(set(self.owners)) < 2:   # one owner of all: no other worker to hold a copy
                self._replicas = dict.fromkeys(range(len(self.owners)))
        if partition not in self._replicas:
            self._replicas[partition] = m.replica_owner(self.owners, partition)
        return self._replicas[partition]

    def app(self) -> App:
        """The job's app; for a step job, its step's functions as an app (see zmr.steps)."""
        if self._app is None:
            sys.path[:0] = [p for p in self.info.py_paths if p not in sys.path]   # the job's --py-files
            app = unship_app(self.info.app_blob)
            if self.info.step >= 0:
                steps = plan_steps(app, self.info.args, self.info.n_reduce)
                if self.info.step >= len(steps):
                    raise AppError(f"app {app.name!r}: steps() gave {len(steps)} steps here, not the "
                                   f"{self.info.step + 1} or more the client planned; it must give the same steps "
                                   "on every machine")
                self._step = steps[self.info.step]
                app = self._step.app
            self._app = app
        return self._app

    def step(self) -> StepApp | None:
        """A step job's step (None for a one-step job)."""
        self.app()
        return self._step

    def forget(self) -> None:
        """The job is over here: its --py-files leave sys.path, and so do the modules imported from them."""
        if not self.info.py_paths:
            return
        for path in self.info.py_paths:
            while path in sys.path:
                sys.path.remove(path)
        roots = tuple(self.info.py_paths)
        for name, module in list(sys.modules.items()):
            if str(getattr(module, "__file__", None) or "").startswith(roots):
                del sys.modules[name]


class Runner:
    """The task process's loop: one channel to the worker, one pusher to the owners."""

    def __init__(self, ctx: zmq.Context[Any], chan: zmq.Socket[Any], setup: t.ProcSetup) -> None:
        self._chan = chan
        self._setup = setup
        curve = Curve(setup.peer_public, setup.peer_secret, setup.peer_server_key) if setup.peer_public else None
        self._pusher = Pusher(ctx, 8 << 20, setup.max_message_bytes, ack_timeout=setup.ack_timeout, curve=curve)
        self._jobs: dict[str, _Job] = {}   # the latest t.JOBS_KEPT, oldest first
        self._warm: list[list[Any]] = []   # the last map's keys (or runs of pairs): see `_keep_warm`
        self._progress = 0   # units of work (chunks read, thousands of pairs, batches, waits) not yet reported
        self._last_tick = 0.0
        self._log = bound_logger(worker=setup.worker_id, pid=os.getpid())

    def serve(self) -> None:
        while True:
            self.step(_WARM_IDLE)

    def step(self, idle: float) -> None:
        """Handle one record; none within `idle` seconds: give up the warm runs (nothing to keep them for)."""
        if not self._chan.poll(int(idle * 1000)):
            self._warm = []
            return
        rec = self._recv()
        if isinstance(rec, t.RunMap | t.RunReduce):
            self._chan.send(t.encode_rec(self._run(rec)))
        elif rec is not None:
            self._note(rec)

    def _recv(self) -> t.ToProc | None:
        try:
            return t.decode_to_proc(self._chan.recv())
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._log.error("bad_channel_message", error=str(exc))
            return None

    def _note(self, rec: t.ToProc) -> None:
        """Job bookkeeping, between tasks or while a map pushes."""
        if isinstance(rec, t.JobInfo):
            before = dict(self._jobs)
            t.keep_latest(self._jobs, rec.job_id, _Job(rec))   # the worker keeps the same count
            for job_id, old in before.items():
                if self._jobs.get(job_id) is not old:   # dropped as the oldest, or sent again
                    old.forget()
        elif isinstance(rec, t.JobUpdate):
            job = self._jobs.get(rec.job_id)
            if job is not None and rec.owners_epoch > job.epoch:
                job.owners, job.epoch = list(rec.owners), rec.owners_epoch
        elif isinstance(rec, t.ForgetJob):
            if (gone := self._jobs.pop(rec.job_id, None)) is not None:
                gone.forget()

    def _drain_notes(self) -> None:
        """Take owner changes that came in while a map runs (nothing else arrives then)."""
        while self._chan.poll(0):
            rec = self._recv()
            if rec is not None and not isinstance(rec, t.RunMap | t.RunReduce):
                self._note(rec)

    def _tick(self) -> None:
        self._progress += 1
        now = time.monotonic()
        if now - self._last_tick >= _TICK_EVERY:
            self._last_tick = now
            self._chan.send(t.encode_rec(t.Tick(self._progress)))
            self._progress = 0
            self._drain_notes()

    def _run(self, rec: t.RunMap | t.RunReduce) -> t.FromProc:
        try:
            if isinstance(rec, t.RunMap):
                return self._run_map(rec)
            self._warm = []   # kept for the next map only: a reduce runs slower among them
            return self._run_reduce(rec)
        except MemoryError:
            cap = self._setup.task_memory_mb
            return t.TaskError("app", f"MemoryError: the task went over its memory cap (worker.task_memory_mb={cap})"
                               if cap else "MemoryError", traceback.format_exc(), fatal=True)
        except (AppError, InputError) as exc:   # a broken contract: the same again on any worker
            return t.TaskError("invalid", str(exc))
        except OSError as exc:   # a local input may be readable on some hosts only: say which one this is
            return t.TaskError("io", f"{type(exc).__name__} on host {socket.gethostname()}: {exc}",
                               traceback.format_exc())
        except Exception as exc:  # the app's own error, whatever it is
            return t.TaskError("app", f"{type(exc).__name__}: {exc}", traceback.format_exc())

    # ------------------------------------------------------------ map

    def _run_map(self, rec: t.RunMap) -> t.MapResult:
        job = self._jobs[rec.attempt.job_id]
        app, info = job.app(), job.info
        if app.is_batch:
            return self._run_map_batch(rec, job)
        buffers = ColumnBuffers(info.n_reduce, info.batch_bytes,
                                max(self._setup.memory_budget // 4, info.batch_bytes),
                                app.partitioner(info.args), app.combiner(info.args), app.check_partition,
                                hold_keys=_WARM_MAX_PAIRS)
        self._pusher.start_task(info.window_bytes)
        emit = _Emitter(self, rec, job)
        for contents, first_line in map_inputs(app.input, rec.split.path, rec.split.start, rec.split.end,
                                               rec.split.codec, count_lines=app.map_takes_first_line,
                                               name=rec.split.name):
            pairs = app.map_iter(rec.split.name, contents, info.args, first_line=first_line)
            for due in buffers.add_all(pairs, app.check_pair):
                if due is None:   # a tick, every few thousand pairs
                    self._tick()
                else:
                    emit.batch(*due)
            del contents, pairs
            self._tick()
        tail = buffers.drain()
        for partition, run in tail:
            emit.batch(partition, run)
        self._keep_warm([*buffers.held_keys(), *(run for _, run in tail if isinstance(run, list))])
        if info.push:
            emit.end_streams()
        return t.MapResult(buffers.records, emit.bytes_out, emit.kept)

    def _run_map_batch(self, rec: t.RunMap, job: _Job) -> t.MapResult:
        """A batch app's map: each piece's columns partitioned and sorted by array passes, one run per
        partition and piece, pushed as column chunks. A piece and its copies (columns, the ordered rows,
        their encoding) take about five times its size, so a piece of fixed-size records is at most an
        eighth of the memory budget."""
        from zmr.core.columns import split_by_partition

        app, info = job.app(), job.info
        self._warm = []
        self._pusher.start_task(info.window_bytes)
        emit = _Emitter(self, rec, job)
        records = 0
        piece = max(_MIN_BATCH_PIECE, min(MAP_CHUNK_BYTES, self._setup.memory_budget // 8))
        for contents, _ in map_inputs(app.input, rec.split.path, rec.split.start, rec.split.end, rec.split.codec,
                                      count_lines=False, batch=True, piece_bytes=piece, name=rec.split.name):
            batch, keys = app.map_columns(rec.split.name, contents, info.args)
            del contents
            parts = app.partitions_of(batch, keys, info.n_reduce, info.args)
            del keys
            for partition, run in split_by_partition(batch, parts, info.n_reduce):
                emit.payload(partition, job.packer.columns(run), len(run))
            records += len(batch)
            self._tick()
        if info.push:
            emit.end_streams()
        return t.MapResult(records, emit.bytes_out, emit.kept)

    def _keep_warm(self, held: list[list[Any]]) -> None:
        """Hold this task's last keys (the map's keys, or runs of pairs that hold them), and let the
        previous task's go only now.

        The keys lie scattered through the small-object arenas the map filled. Were they all freed at the
        end of the task, those arenas would empty and go back to the OS, and the next map would
        page-fault its way through fresh ones (on a word count: 4 to 5x the page faults, and a second of
        kernel time in 10 of CPU). Held until the next map has made its own, they keep the arenas in use,
        and the next map reuses their free space.
        """
        self._warm = held if sum(map(len, held)) <= _WARM_MAX_PAIRS else []

    # ------------------------------------------------------------ reduce

    def _run_reduce(self, rec: t.RunReduce) -> t.ReduceResult:
        job = self._jobs[rec.attempt.job_id]
        app = job.app()
        step = job.step()
        if step is not None:
            return self._run_step_reduce(rec, job, step)
        if app.reduce_fn is None:   # a batch app's pairs, written as they are, in (key, value) order
            try:
                batches = merged_columns(list(rec.runs), rec.fan_in, Path(rec.scratch), job.packer, self._tick)
                return t.ReduceResult(write_columns(rec.tmp_path, job.info.output_format, app.name, batches,
                                                    self._tick))
            finally:
                shutil.rmtree(rec.scratch, ignore_errors=True)
        reduce = app.reducer(job.info.args)
        runs, scratch = list(rec.runs), Path(rec.scratch)

        def write(groups: Iterator[tuple[Any, Iterator[Value]]]) -> int:
            if app.is_batch and job.info.output_format != "raw":
                groups = str_keys(app.name, job.info.output_format, groups)
            return write_reduced(rec.tmp_path, job.info.output_format, app.name, groups, reduce, self._tick,
                                 app.output_formatter())
        try:
            try:
                watch = Watch()   # what the merge raised, even if the app's reduce caught it
                records = write(grouped(runs, rec.fan_in, scratch, job.packer, self._tick, by_value=app.is_batch,
                                        watch=watch))
                watch.check()
            except ValueError as exc:   # runs of pairs or of other kinds further on: the file is written again
                if not mixed_runs(exc):
                    raise
                shutil.rmtree(scratch, ignore_errors=True)
                watch = Watch()
                records = write(merged(runs, rec.fan_in, scratch, job.packer, self._tick, watch))
                watch.check()
        finally:
            shutil.rmtree(rec.scratch, ignore_errors=True)
        return t.ReduceResult(records)

    def _run_step_reduce(self, rec: t.RunReduce, job: _Job, step: StepApp) -> t.ReduceResult:
        """A step job's reduce: its pairs are written as the job's output (the last step), or go through
        the map of each step that reads it, as that step's map attempt (`rec.feeds`): no file between."""
        made = [0]
        watch = Watch()   # what the merge raised, even if the step's reduce caught it
        try:
            groups = merged(list(rec.runs), rec.fan_in, Path(rec.scratch), job.packer, self._tick, watch)
            pairs = _counted(step.reduce_pairs(groups, job.info.args), made)
            if not rec.feeds:
                app = job.app()
                write_reduced(rec.tmp_path, job.info.output_format, app.name, ((k, iter((v,))) for k, v in pairs),
                              _only, self._tick, app.output_formatter())
                watch.check()
                return t.ReduceResult(made[0])
            source: Iterable[tuple[str, Value]] = list(pairs) if len(rec.feeds) > 1 else pairs
            fed = [self._feed(feed, self._jobs[feed.attempt.job_id], source) for feed in rec.feeds]
            watch.check()
        finally:
            shutil.rmtree(rec.scratch, ignore_errors=True)
        return t.ReduceResult(made[0], fed)

    def _feed(self, feed: t.Feed, reader: _Job, pairs: Iterable[tuple[str, Value]]) -> t.MapResult:
        """A later step's map over a reduce's pairs, as a map attempt of that step's job: partitioned,
        combined, kept and pushed to its owners exactly as `_run_map` does with a split's pairs."""
        step, info = reader.step(), reader.info
        if step is None:
            raise AppError(f"job {info.job_id} is fed by a step but is not a step job")
        app = step.app
        buffers = ColumnBuffers(info.n_reduce, info.batch_bytes, max(self._setup.memory_budget // 4, info.batch_bytes),
                                app.partitioner(info.args), app.combiner(info.args), app.check_partition)
        self._pusher.start_task(info.window_bytes)
        emit = _Emitter(self, feed, reader)
        for due in buffers.add_all(step.map_pairs(pairs, info.args), app.check_pair):
            if due is None:
                self._tick()
            else:
                emit.batch(*due)
        for partition, run in buffers.drain():
            emit.batch(partition, run)
        if info.push:
            emit.end_streams()
        return t.MapResult(buffers.records, emit.bytes_out, emit.kept)


def _counted(pairs: Iterable[tuple[str, Value]], made: list[int]) -> Iterator[tuple[str, Value]]:
    for pair in pairs:
        made[0] += 1
        yield pair


def _only(key: str, values: Iterator[Value]) -> Value:
    return next(values)


class _Emitter:
    """One map attempt's output: the kept copy on disk, and the pushes to owners."""

    def __init__(self, runner: Runner, rec: t.RunMap | t.Feed, job: _Job) -> None:
        self._runner = runner
        self._rec = rec
        self._job = job
        self._released = set(rec.released)
        self._seqs: dict[int, int] = {}
        self.kept: list[t.Kept] = []
        self.bytes_out = 0

    def batch(self, partition: int, run: Pairs | Columns) -> None:
        """Keep the run in the map's own copy and push it to the partition's owner."""
        packer = self._job.packer
        self.payload(partition, packer.batch(run) if isinstance(run, list) else packer.columns(run), len(run))

    def payload(self, partition: int, payload: bytes, n_records: int) -> None:
        """Keep an encoded run of `n_records` pairs in the map's own copy and push it to the partition's owner."""
        self.bytes_out += len(payload)
        if partition not in self._released:
            seq = self._seqs.get(partition, 0)
            self._seqs[partition] = seq + 1
            offset = _append(os.path.join(self._rec.kept_dir, f"p{partition}.data"), payload)
            self.kept.append(t.Kept(partition, offset, len(payload)))
            if self._job.info.push:
                self._push(partition, seq, n_records, payload)
        self._runner._tick()

    def _push(self, partition: int, seq: int, n_records: int, payload: bytes) -> None:
        job = self._job
        header = m.Batch(source=self._rec.attempt, partition=partition, seq=seq, n_records=n_records)
        addr = job.owners[partition]

        def moved() -> bool:
            self._runner._tick()   # waiting on an owner is the shuffle at work, bounded by the ack timeout
            self._runner._drain_notes()
            return job.owners[partition] != addr

        self._runner._pusher.push(addr, header, payload, give_up=moved)
        replica = self._replica(partition, addr)
        if replica:   # a copy that does not arrive is found missing: the reduce then waits for the maps
            self._runner._pusher.push(replica, header, payload, give_up=moved)

    def _replica(self, partition: int, owner: str) -> str | None:
        """The partition's replica, if this worker owns the partition itself (else the owner is the copy)."""
        own = self._runner._setup.data_addr
        if not (own and owner == own and self._job.info.replicate):
            return None
        return self._job.replica(partition)

    def end_streams(self) -> None:
        """Tell each owner how many batches this attempt sent it (their acks come back during later tasks);
        a replica hears the counts of the second copies it was sent in the same message."""
        by_owner: dict[str, dict[int, int]] = {}
        for partition, addr in enumerate(list(self._job.owners)):
            by_owner.setdefault(addr, {})[partition] = self._seqs.get(partition, 0)
        for partition, count in list(by_owner.get(self._runner._setup.data_addr, {}).items()):
            replica = self._replica(partition, self._runner._setup.data_addr)
            if replica:
                by_owner.setdefault(replica, {})[partition] = count
        for addr, owned in by_owner.items():
            end = m.StreamEnd(source=self._rec.attempt, counts=owned)
            self._runner._pusher.end(addr, end, give_up=partial(self._owner_gone, addr))

    def _owner_gone(self, addr: str) -> bool:
        self._runner._tick()   # as in `moved`: a bounded wait, not a hung app
        self._runner._drain_notes()
        return addr not in self._job.owners


def _append(path: str, payload: bytes) -> int:
    with open(path, "ab") as f:
        offset = f.tell()
        f.write(payload)
    return offset


def _cap_memory(mb: int) -> None:
    """RLIMIT_AS for this process: past it, allocations fail (MemoryError) instead of the machine swapping."""
    if mb > 0:
        limit = mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def runner_main(endpoint: str) -> None:
    """Entry point of a freshly forked task process: connect, say ready, take the setup, serve."""
    ctx: zmq.Context[Any] = zmq.Context()
    ctx.setsockopt(zmq.LINGER, 0)
    chan = ctx.socket(zmq.PAIR)
    chan.connect(endpoint)
    chan.send(t.encode_rec(t.Ready(os.getpid())))
    setup = t.decode_to_proc(chan.recv())
    if not isinstance(setup, t.ProcSetup):
        raise SystemExit(2)
    runner = Runner(ctx, chan, setup)
    reuse_large_blocks()
    _cap_memory(setup.task_memory_mb)
    runner.serve()
