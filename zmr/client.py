"""The Python API to a running cluster: submit, status, wait, cancel.

Requests go over one DEALER with a timeout; a request that times out closes the socket and opens a
fresh one (the ZeroMQ guide's Lazy Pirate), so a late reply can never be mistaken for the next one.
The socket's handshakes are watched: a coordinator that refuses this client's key answers nothing, and
that is said at once (`AuthenticationFailed`) instead of after a timeout as "no answer".
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType, TracebackType
from typing import Any, get_args

import zmq

from zmr import pyfiles, storage
from zmr.apps import App, app_of, ship_app
from zmr.config import CoordinatorConfig, endpoint_problem
from zmr.core.batches import Value
from zmr.core.specs import (
    DEFAULT_N_REDUCE,
    SpecLimits,
    app_problem,
    map_tasks_problem,
    max_attempts_problem,
    n_reduce_problem,
)
from zmr.core.splits import DEFAULT_SPLIT_SIZE, plan_splits
from zmr.errors import AuthenticationFailed, ClusterError, JobFailed, JobSpecError, NoAnswer, ProtocolError, ZmrError
from zmr.inputs import expand_inputs
from zmr.output_formats import OUTPUT_FORMATS, check_available, read_results
from zmr.protocol import messages as m
from zmr.protocol.codec import encode, message_size, peer_decoder
from zmr.protocol.output_names import output_name
from zmr.runtime import outputs, transport
from zmr.runtime.security import Keyring
from zmr.steps import ignored_args_problem, is_multi_step, plan_steps

DEFAULT_COORDINATOR = "tcp://127.0.0.1:5555"
_MAX_REPLY_BYTES = 256 << 20
_CONNECT_GRACE = 2.0   # seconds without any connection to the coordinator's address before saying so
_DEFAULT_LIMITS = SpecLimits()
_DEFAULT_MAX_MESSAGE_BYTES = CoordinatorConfig().max_message_bytes


def build_spec(app: App | str | ModuleType, inputs: Sequence[str], output: str, n_reduce: int, args: Sequence[str] = (),
               split_size: int = DEFAULT_SPLIT_SIZE, overwrite: bool = False, workers: int | None = None,
               limits: SpecLimits = _DEFAULT_LIMITS, max_attempts: int = 0,
               output_format: m.OutputFormat | None = None, py_files: Sequence[str] = (),
               compression: m.JobCompression = "") -> m.JobSpec:
    """Check everything that can be checked here, so a bad job fails before it is queued and the user
    hears why without a round trip; the coordinator checks again with its own `limits`. Cheap checks come
    first: a huge `n_reduce` is refused before the app is loaded, too many files before any is opened.
    `workers`: how many workers will run it, when known (see `plan_splits`)."""
    _refuse(n_reduce_problem(n_reduce, limits) or max_attempts_problem(max_attempts))
    if compression not in ("", *get_args(m.Compression)):
        raise JobSpecError(f"compression must be one of {', '.join(get_args(m.Compression))}, got {compression!r}")
    if output_format is not None and output_format not in OUTPUT_FORMATS:
        raise JobSpecError(f"output format must be one of {', '.join(OUTPUT_FORMATS)}, got {output_format!r}")
    shipped = pyfiles.pack(py_files)   # first: a missing one is why an app that imports it cannot load
    with pyfiles.on_path(py_files):
        loaded = app_of(app)
        blob = ship_app(loaded)
    fmt: m.OutputFormat = output_format or loaded.output_format or "text"   # type: ignore[assignment]
    check_available(fmt)   # here: workers of a cluster may lack it too, but then they say so
    planned = plan_steps(loaded, args, n_reduce) if is_multi_step(loaded) else []   # a broken graph fails here
    for step in planned:
        _refuse(f"step {step.name!r}: {problem}" if (problem := n_reduce_problem(step.n_reduce, limits)) else "")
    _refuse(ignored_args_problem(loaded, args, planned))
    _refuse(app_problem(len(blob) + sum(map(len, shipped)), limits))
    files = expand_inputs(inputs, limits, text=not loaded.input.binary)
    _refuse(outputs.overlap_problem(inputs, (f.path for f in files), output))
    codecs = {f.path: f.codec for f in files}
    splits = [m.InputSplit(name=s.name, path=s.path, start=s.start, end=s.end, codec=codecs[s.path])
              for s in plan_splits(files, split_size, workers=workers)]
    _refuse(map_tasks_problem(len(splits), limits))
    name = _display_name(app if isinstance(app, str) else loaded.name)
    output_dir = output if storage.is_url(output) else os.path.abspath(output)
    return m.JobSpec(app_name=name, app_blob=blob, splits=splits, output_dir=output_dir,
                     n_reduce=n_reduce, args=list(args), overwrite=overwrite, max_attempts=max_attempts,
                     output_format=fmt, py_files=shipped, compression=compression,
                     steps=[m.StepPlan(name=step.name, n_reduce=step.n_reduce, inputs=list(step.inputs),
                                       has_map=step.has_map, has_reduce=step.has_reduce) for step in planned])


def _refuse(problem: str) -> None:
    if problem:
        raise JobSpecError(problem)


class Client:
    """A connection to a coordinator. Use as a context manager, or call `close()`."""

    def __init__(self, coordinator: str = DEFAULT_COORDINATOR, timeout: float = 10.0, keys_dir: str = "",
                 max_message_bytes: int = _DEFAULT_MAX_MESSAGE_BYTES, limits: SpecLimits = _DEFAULT_LIMITS) -> None:
        """`keys_dir`: the cluster's key directory when it runs with CURVE (the client key pair is used).
        `max_message_bytes` (coordinator.max_message_bytes) and `limits` (job.max_*): the cluster's
        bounds as this client knows them, checked before anything is sent."""
        if problem := endpoint_problem(coordinator, connect=True):
            raise ClusterError(f"the coordinator address {problem}")
        self.coordinator = coordinator
        self._inproc = coordinator.startswith("inproc://")   # no connection events to watch for
        self.timeout = timeout
        self.max_message_bytes = max_message_bytes
        self.limits = limits
        self._curve = None
        if keys_dir:
            keyring = Keyring.load(keys_dir)
            self._curve = keyring.client_of("client", keyring.coordinator_public)
        self._ctx: zmq.Context[Any] = zmq.Context()
        self._sock: zmq.Socket[Any] | None = None
        self._watch: transport.HandshakeWatch | None = None
        self._decoder = peer_decoder(_MAX_REPLY_BYTES, limit_name="")

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._drop_socket()
        self._ctx.term()

    def _drop_socket(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None

    # ------------------------------------------------------------ API

    def submit(self, app: App | str | ModuleType, inputs: Sequence[str], output: str, n_reduce: int = DEFAULT_N_REDUCE,
               args: Sequence[str] = (), split_size: int = DEFAULT_SPLIT_SIZE, overwrite: bool = False,
               max_attempts: int = 0, output_format: m.OutputFormat | None = None, py_files: Sequence[str] = (),
               compression: m.JobCompression = "") -> str:
        """Queue a job; returns its id. Raises JobSpecError/AppError before anything is sent.
        `max_attempts`: failed attempts of one task that fail the job (0: the cluster's retry.max_attempts);
        `output_format`: text, jsonl, csv, parquet or raw (see `zmr.output_formats`; None: the app's
        OUTPUT_FORMAT, else text); `py_files`: files, folders
        and archives of code to put on the workers' sys.path for this job (see `zmr.pyfiles`);
        `compression`: of this job's shuffle, none, lz4, zstd or auto ("": the cluster's shuffle.compression)."""
        return self.submit_spec(build_spec(app, inputs, output, n_reduce, args, split_size, overwrite,
                                           limits=self.limits, max_attempts=max_attempts,
                                           output_format=output_format, py_files=py_files, compression=compression))

    def submit_spec(self, spec: m.JobSpec) -> str:
        """Queue a job built by `build_spec`; returns its id."""
        frames = encode(m.SubmitJob(spec=spec))
        if (size := _size(frames)) > self.max_message_bytes:
            raise JobSpecError(
                f"the job's submit message is {size:,} bytes, over the limit of {self.max_message_bytes:,} "
                f"(coordinator.max_message_bytes): its app is {len(spec.app_blob):,} bytes and it has "
                f"{len(spec.splits):,} map tasks; send a smaller app or fewer input files, or raise "
                "coordinator.max_message_bytes in the config of the client, the coordinator and the workers")
        reply = self._send_request(frames)
        if isinstance(reply, m.JobAccepted):
            return reply.job_id
        raise ClusterError(_error_text(reply))

    def status(self, job_id: str | None = None, tasks: bool = False) -> m.StatusReply:
        """Every job in brief and the workers; or one job, with its task and partition tables and
        timeline only if `tasks` (they grow with the job)."""
        reply = self._request(m.StatusRequest(job_id=job_id, tasks=tasks))
        if isinstance(reply, m.StatusReply):
            return reply
        raise ClusterError(_error_text(reply))

    def job(self, job_id: str, tasks: bool = True) -> m.JobInfo:
        """One job's status, by default in full (tasks, partitions, timeline)."""
        return self.status(job_id, tasks).jobs[0]

    def cancel(self, job_id: str) -> m.JobInfo:
        reply = self._request(m.CancelJob(job_id=job_id))
        if isinstance(reply, m.StatusReply) and reply.jobs:
            return reply.jobs[0]
        raise ClusterError(_error_text(reply))

    def results(self, job_id: str) -> Iterator[tuple[str, Value | None]]:
        """The committed output of a job that succeeded, as (key, value) pairs, partition by partition (keys
        sorted within each). Values keep their types with the jsonl output format and are str otherwise.
        Reads the output directory, so it must be reachable from here as the coordinator named it."""
        info = self.job(job_id, tasks=False)
        if info.state != "succeeded":
            raise ClusterError(f"job {job_id} has {info.state}" + (" (it has not ended)" if info.state in (
                "queued", "running") else ": it has no results"))
        return _results(info)

    def wait(self, job_id: str, poll: float = 0.2, timeout: float | None = None,
             on_progress: Callable[[m.JobInfo], None] | None = None, patience: float = 120.0) -> m.JobInfo:
        """Block until the job ends; returns its final state or raises JobFailed with the reason.

        The end is heard as soon as the coordinator sees it; `on_progress` gets the running job's summary
        about every `poll` seconds. Rides through a coordinator restart: unanswered requests are retried
        until the coordinator has been silent for `patience` seconds (a restarted one recovers the job from
        its journal).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        silent_since: float | None = None
        hold = min(max(poll, 0.0), self.timeout / 2, m.MAX_WAIT_SECONDS)
        while True:
            try:
                info = self._wait_once(job_id, hold)
                if info.state == "succeeded":
                    info = self.job(job_id)   # with its task list and timeline; may meet a restart too
                silent_since = None
            except NoAnswer:
                now = time.monotonic()
                silent_since = silent_since or now
                if now - silent_since > patience or (deadline is not None and now > deadline):
                    raise
                time.sleep(poll)
                continue
            if on_progress is not None:
                on_progress(info)
            if info.state == "succeeded":
                return info
            if info.state in ("failed", "cancelled"):
                raise JobFailed(job_id, info.error or info.state, info.state)
            if deadline is not None and time.monotonic() > deadline:
                raise ClusterError(f"job {job_id} did not finish within {timeout} s")

    def _wait_once(self, job_id: str, hold: float) -> m.JobInfo:
        """The job's summary once it has ended, or after about `hold` seconds: the coordinator holds the
        answer, so the end is heard at once and a running job costs one request per `hold`."""
        reply = self._request(m.WaitJob(job_id=job_id, timeout=hold))
        if isinstance(reply, m.StatusReply) and reply.jobs:
            return reply.jobs[0]
        raise ClusterError(_error_text(reply))

    # ------------------------------------------------------------ transport

    def _request(self, msg: m.ClientToCoord) -> m.FromCoordinator:
        frames = encode(msg)
        if (size := _size(frames)) > self.max_message_bytes:   # the coordinator would drop it unanswered
            raise ZmrError(f"a {type(msg).__name__} of {size:,} bytes is over the limit of "
                           f"{self.max_message_bytes:,} (coordinator.max_message_bytes)")
        return self._send_request(frames)

    def _send_request(self, frames: list[Any]) -> m.FromCoordinator:
        sock, watch = self._socket()
        sock.send_multipart(frames)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(watch.monitor, zmq.POLLIN)
        deadline = time.monotonic() + self.timeout
        # a socket never connected gets a shorter say: nothing listening there is told in seconds
        connect_by = None if watch.connected or self._inproc else time.monotonic() + _CONNECT_GRACE
        while (remaining := deadline - time.monotonic()) > 0:
            if connect_by is not None and time.monotonic() >= connect_by:
                watch.poll()
                if not watch.connected:
                    self._drop_socket()
                    raise NoAnswer(f"nothing accepted a connection at {self.coordinator} within {_CONNECT_GRACE:g} s: "
                                   "is a coordinator running there? (start one with `zmr cluster up` or "
                                   "`zmr-coord --bind ADDR`, or name its address with --coordinator)")
                connect_by = None
            wait = remaining if connect_by is None else min(remaining, max(0.0, connect_by - time.monotonic()))
            ready = dict(poller.poll(int(wait * 1000) + 1))
            if watch.monitor in ready and watch.poll() and watch.refused:
                self._drop_socket()
                raise AuthenticationFailed(f"{watch.failure} (coordinator {self.coordinator})")
            if sock not in ready:
                continue
            try:
                reply, _ = transport.recv_dealer(sock, self._decoder)
            except ProtocolError:
                continue
            if isinstance(reply, m.JobAccepted | m.ErrorReply | m.StatusReply):
                return reply
        why = watch.poll()
        self._drop_socket()
        raise NoAnswer(f"no answer from the coordinator at {self.coordinator} within {self.timeout} s"
                       + (f": {why}" if why else ""))

    def _socket(self) -> tuple[zmq.Socket[Any], transport.HandshakeWatch]:
        if self._sock is None or self._watch is None:
            # queue the request until the coordinator is there
            self._sock, self._watch = transport.watched_dealer(self._ctx, self.coordinator, _MAX_REPLY_BYTES,
                                                               "client", immediate=False, curve=self._curve)
        return self._sock, self._watch


def _results(info: m.JobInfo) -> Iterator[tuple[str, Value | None]]:
    for r in range(info.reduces_total):
        yield from read_results(storage.join(info.output_dir, output_name(r)), info.output_format)


def _size(frames: list[Any]) -> int:
    return message_size(frames)


def _display_name(spec: str) -> str:
    """`apps/wc.py` -> `wc`; a module name stays as it is."""
    return os.path.splitext(os.path.basename(spec))[0] if spec.endswith(".py") else spec


def _error_text(reply: m.FromCoordinator) -> str:
    return reply.message if isinstance(reply, m.ErrorReply) else f"unexpected reply {type(reply).__name__}"
