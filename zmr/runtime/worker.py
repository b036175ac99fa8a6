"""The worker process: a thin shell around the pure WorkerMachine, an executor and a data server.

Three threads, each owning its own sockets: this control loop (the coordinator DEALER, the clock,
reconnects; every protocol decision is the machine's, see zmr.core.worker_machine), the executor
(drives one task at a time, pulls shuffle data) and the data server (receives batches as an owner,
serves pulls). App code runs in a task process the executor drives and
kills at will; task processes are forks of a zygote, itself forked before any thread or zmq context
exists here (forking a threaded process is unsafe). A worker that loses the coordinator keeps
reconnecting with backoff and registers again, saying what it still holds; the coordinator decides
what of it counts. A job's data lives only while the coordinator renews the job's lease.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import secrets
import shutil
import socket
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from zmr.config import Config
from zmr.core import native
from zmr.core.worker_events import (
    CancelAttempt,
    Connected,
    DeliverDecision,
    DeliverLocations,
    DropJob,
    DropPartitions,
    EndSession,
    ExecutorDied,
    FenceStalled,
    Garbled,
    Heard,
    JobContext,
    LogLine,
    LoopTurn,
    NoteLostSource,
    OpenJob,
    ParentGone,
    PublishJob,
    Say,
    StartTask,
    StopWorker,
    TimePassed,
    WorkerAction,
    WorkerEvent,
    WorkerView,
)
from zmr.core.worker_machine import WorkerMachine, WorkerParams
from zmr.errors import ClusterError, ProtocolError
from zmr.log import bound_logger
from zmr.protocol import messages as m
from zmr.protocol.codec import encode, peer_decoder
from zmr.runtime import procstats, scratch, security, transport
from zmr.runtime.dataserver import DataServer
from zmr.runtime.executor import Executor, ExecutorReport, ExecutorSettings, InboxItem, Stalled
from zmr.runtime.security import Curve, Keyring, RoleAuthenticator
from zmr.runtime.stopflag import StopFlag
from zmr.runtime.stores import MapOutputStore, ReceiveStore, py_files_dir
from zmr.runtime.zygote import Zygote

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


@dataclass(frozen=True)
class _Curves:
    """CURVE settings of a worker's sockets; all None when security is off."""

    data: Curve | None = None
    coordinator: Curve | None = None
    peers: Curve | None = None
    auth: RoleAuthenticator | None = None


def new_worker_id() -> str:
    """A fresh identity for every process life: nothing from an old life is trusted."""
    return f"w-{socket.gethostname()[:16]}-{os.getpid()}-{secrets.token_hex(3)}"


class WorkerProcess:
    """One worker process's control loop. `run()` returns when `stop()` is called or the parent dies."""

    def __init__(self, config: Config, parent_pid: int | None = None) -> None:
        self.config = config
        self.worker_id = new_worker_id()
        self._token = secrets.token_hex(16)   # shown to the coordinator only: it proves a re-registration ours
        self._parent_pid = parent_pid
        self._log = bound_logger(worker=self.worker_id)
        self.stop_flag = StopFlag()
        self._own_dir = not config.worker.work_dir
        # made by run(), once the worker may start: one refused at start must leave nothing behind
        self.work_dir = Path() if self._own_dir else Path(config.worker.work_dir) / self.worker_id
        self._made_dir = False
        self._curves = _Curves()
        self._jobs: dict[str, JobContext] = {}   # the executor reads; only this thread writes (whole values)
        self._reports: queue.Queue[ExecutorReport] = queue.Queue()   # from the executor's thread
        self._unsent: deque[m.WorkerToCoord] = deque()   # kept reports the socket could not take yet
        self._session_end: bool | None = None   # set by EndSession: whether the coordinator ever answered
        self.failed = False   # set when the executor died: the worker stops, and says so
        self._decoder = peer_decoder(config.coordinator.max_message_bytes)

    def stop(self) -> None:
        self.stop_flag.set()

    def run(self) -> None:
        wcfg, sec = self.config.worker, self.config.security
        security.check_bind(wcfg.data_bind, bool(sec.keys_dir), sec.insecure, self._log)   # before anything is made
        zygote = Zygote.start()   # next: a fork is sound only while this process runs one thread
        try:
            self._run(zygote)
        finally:
            zygote.close()   # a no-op if the executor or a failed start closed it already
        if self.failed:
            raise ClusterError("the worker could not run tasks (its log says why: executor_failed)")

    def _run(self, zygote: Zygote) -> None:
        wcfg = self.config.worker
        ctx: zmq.Context[Any] = zmq.Context()
        ctx.setsockopt(zmq.LINGER, 0)
        try:
            self._claim_work_dir()
            received = ReceiveStore(self.work_dir / "jobs")
            kept = MapOutputStore(self.work_dir / "jobs")
            self._curves = self._start_security(ctx)
            data = DataServer(ctx, wcfg.data_bind, wcfg.max_message_bytes, received, kept, self._log,
                              curve=self._curves.data, check_role=self._curves.auth is not None,
                              advertise=wcfg.advertise)
        except BaseException as exc:   # bad keys, a taken address: a clear error, and nothing left behind
            if self._curves.auth is not None:
                self._curves.auth.stop()
            ctx.term()
            zygote.close()
            self._cleanup()
            if isinstance(exc, zmq.ZMQError):   # as the coordinator's bind
                raise ClusterError(f"cannot bind the data endpoint {wcfg.data_bind}: {exc}") from exc
            raise
        self.data_addr = data.address
        wake_rx = ctx.socket(zmq.PAIR)
        wake_rx.bind(f"inproc://wake-{self.worker_id}")
        wake_tx = ctx.socket(zmq.PAIR)
        wake_tx.connect(f"inproc://wake-{self.worker_id}")

        def report_from_executor(report: ExecutorReport) -> None:
            """Called on the executor thread only, which therefore owns `wake_tx`."""
            self._reports.put(report)
            try:
                wake_tx.send(b"", zmq.NOBLOCK)
            except zmq.Again:
                pass  # wake-ups are already pending; the queue holds the report

        self._machine = WorkerMachine(self._params())
        self._executor = Executor(ctx, self._executor_settings(), self._jobs, received, kept, report_from_executor,
                                  log=self._log, zygote=zygote)
        self._received, self._kept = received, kept
        data.start()
        self._executor.start()
        self._log.info("worker_started", data_addr=self.data_addr, work_dir=str(self.work_dir),
                       coordinator=wcfg.coordinator,
                       kernels=native.kernels is not None)   # False: installed without a C compiler, slower
        try:
            self._loop(ctx, wake_rx)
        finally:
            self._executor.stop()
            data.stop()
            self._executor.join(timeout=2)
            data.join(timeout=2)
            wake_rx.close()
            wake_tx.close()
            if self._curves.auth is not None:
                self._curves.auth.stop()
            if not self._executor.is_alive():  # a thread stuck in a socket call keeps its sockets open
                ctx.term()
            self._cleanup()
            self._log.info("worker_stopped")

    def _params(self) -> WorkerParams:
        c = self.config.coordinator
        return WorkerParams(worker_id=self.worker_id, data_addr=self.data_addr, python=PYTHON, pid=os.getpid(),
                            host=socket.gethostname(), token=self._token, heartbeat_interval=c.heartbeat_interval,
                            heartbeat_liveness=c.heartbeat_liveness)

    def _executor_settings(self) -> ExecutorSettings:
        wcfg, c = self.config.worker, self.config.coordinator
        timeout = c.heartbeat_interval * c.heartbeat_liveness
        return ExecutorSettings(worker_id=self.worker_id, work_dir=self.work_dir,
                                memory_budget=wcfg.memory_budget_mb << 20, max_message_bytes=wcfg.max_message_bytes,
                                pull_timeout=max(5.0, timeout), commit_timeout=max(10.0, 2 * timeout),
                                task_memory_mb=wcfg.task_memory_mb, peer_curve=self._curves.peers,
                                data_addr=self.data_addr)

    def _start_security(self, ctx: zmq.Context[Any]) -> _Curves:
        """With keys: a ZAP handler admitting worker keys only, started before the data socket binds."""
        if not self.config.security.keys_dir:
            return _Curves()
        keyring = Keyring.load(self.config.security.keys_dir)
        name = keyring.worker_name(self.config.security.worker_key)
        curves = _Curves(data=keyring.data_server(name),
                         coordinator=keyring.client_of(name, keyring.coordinator_public),
                         peers=keyring.client_of(name, keyring.worker_server_key()))
        auth = RoleAuthenticator(ctx, keyring.roles, {security.WORKER}, self._log)
        auth.start()
        return dataclasses.replace(curves, auth=auth)

    def _claim_work_dir(self) -> None:
        """Make this life's scratch directory, and remove those that killed workers left beside it."""
        if self._own_dir:
            self.work_dir = Path(tempfile.mkdtemp(prefix="zmr-worker-"))
        self._made_dir = True
        scratch.claim(self.work_dir)
        pattern = "zmr-worker-*" if self._own_dir else "w-*"
        scratch.reap_orphans(self.work_dir.parent, pattern, self.work_dir, self._log)

    def _cleanup(self) -> None:
        if self._made_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    # ------------------------------------------------------------ control loop

    def _loop(self, ctx: zmq.Context[Any], wake: zmq.Socket[Any]) -> None:
        backoff = 0.1
        while not self.stop_flag.is_set():
            sock, watch = transport.watched_dealer(ctx, self.config.worker.coordinator,
                                                   self.config.coordinator.max_message_bytes, "worker",
                                                   curve=self._curves.coordinator)
            try:
                if self._session(sock, wake, watch):
                    backoff = 0.1
            finally:
                watch.close()
                sock.close(linger=0)
            if not self.stop_flag.is_set():
                self._log.warning("coordinator_lost", retry_in=round(backoff, 2))
                resume = time.monotonic() + backoff
                while not self.stop_flag.wait(min(0.1, max(0.0, resume - time.monotonic()))):
                    self._forward_reports(None)       # held until the next Register, which then knows them
                    self._feed(None, TimePassed())   # a lease runs out on time, connected or not
                    if time.monotonic() >= resume:
                        break
                backoff = min(backoff * 2, 5.0)

    def _session(self, sock: zmq.Socket[Any], wake: zmq.Socket[Any], watch: transport.HandshakeWatch) -> bool:
        """One connection's life; returns whether the coordinator ever answered."""
        said = ""
        for _ in range(10):   # IMMEDIATE: a send before the connection is up would be dropped
            self._feed(None, TimePassed())
            if sock.poll(100, zmq.POLLOUT):
                break
            said = self._say_handshake(watch, said)   # a refused key never gets a connection up
        self._session_end = None
        self._forward_reports(None)   # so the Register names what runs now, not what ran
        self._feed(sock, Connected(self._view()))
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(wake, zmq.POLLIN)
        poller.register(self.stop_flag, zmq.POLLIN)
        while not self.stop_flag.is_set() and self._session_end is None:
            if self._parent_gone():
                self._feed(sock, ParentGone())
                break
            if not self._executor.is_alive():   # it failed (and logged why): a worker that runs no task stops
                self._feed(sock, ExecutorDied())
                break
            events = dict(poller.poll(100))
            self._feed(sock, LoopTurn())   # before reading on: the machine fences a commit wait after a stall
            if self.stop_flag.fileno() in events:   # a poller names a plain fd by its number
                self.stop_flag.clear_wakeups()
            if wake in events:
                while wake.poll(0):
                    wake.recv()
            self._forward_reports(sock)
            self._flush(sock)
            said = self._say_handshake(watch, said)
            if sock in events:
                self._drain_coordinator(sock)
            # after reading what arrived: a renewal may be waiting there; a starved thread's mail counts
            now = time.monotonic()   # one reading: the view is read exactly when the machine will want it
            view = self._view() if self._machine.beat_due(now) else None
            self._feed(sock, TimePassed(view, unread=bool(sock.poll(0, zmq.POLLIN))), now)
        return bool(self._session_end)

    def _say_handshake(self, watch: transport.HandshakeWatch, said: str) -> str:
        """Log a failed handshake once per connection: a refused key is otherwise only silence."""
        failure = watch.poll()
        if failure and failure != said:
            self._log.error("authentication_failed", reason=failure, coordinator=self.config.worker.coordinator)
        return failure or said

    def _parent_gone(self) -> bool:
        return self._parent_pid is not None and os.getppid() != self._parent_pid

    def _view(self) -> WorkerView:
        """What the stores and the executor hold now, for a Register or a Heartbeat."""
        received, kept = self._received, self._kept
        held = tuple(m.Holding(job_id=job_id, maps=kept.attempts(job_id), partitions=received.partitions(job_id))
                     for job_id in sorted(received.job_ids() | kept.job_ids()))
        leases = received.lease_counts()
        for job_id, n in kept.lease_counts().items():
            leases[job_id] = leases.get(job_id, 0) + n
        return WorkerView(held=held, partitions=tuple(received.stats()),
                          leases=tuple(m.LeaseStat(job_id=j, leases=n) for j, n in sorted(leases.items())),
                          progress=self._executor.progress, rss=procstats.tree_rss(os.getpid()),
                          bytes_in=received.bytes_received, bytes_out=self._executor.bytes_out)

    def _forward_reports(self, sock: zmq.Socket[Any] | None) -> None:
        """Hand the machine what the executor reported; outside a session it holds the reports back."""
        while True:
            try:
                report = self._reports.get_nowait()
            except queue.Empty:
                return
            self._feed(sock, report)

    def _drain_coordinator(self, sock: zmq.Socket[Any]) -> None:
        while sock.poll(0, zmq.POLLIN):
            try:
                msg, _ = transport.recv_dealer(sock, self._decoder)
            except ProtocolError as exc:
                self._feed(sock, Garbled(str(exc)))
                continue
            if isinstance(msg, m.CoordToWorker):   # a client's reply here means nothing to a worker
                view = self._view() if isinstance(msg, m.RegisterAgain) else None
                self._feed(sock, Heard(msg, view))

    # ------------------------------------------------------------ carrying out the machine's actions

    def _feed(self, sock: zmq.Socket[Any] | None, event: WorkerEvent, now: float | None = None) -> None:
        for action in self._machine.handle(event, time.monotonic() if now is None else now):
            self._carry_out(sock, action)

    def _carry_out(self, sock: zmq.Socket[Any] | None, action: WorkerAction) -> None:
        if isinstance(action, Say):
            if action.keep:
                self._unsent.append(action.msg)
                self._flush(sock)
            elif sock is not None:
                transport.send(sock, encode(action.msg))
        elif isinstance(action, StartTask | DeliverDecision | DeliverLocations | FenceStalled):
            self._executor.inbox.put(_inbox_item(action))
        elif isinstance(action, CancelAttempt):
            self._executor.cancel(action.attempt)
        elif isinstance(action, NoteLostSource):
            self._executor.lost_peers.add(action.lost)
        elif isinstance(action, PublishJob | OpenJob | DropPartitions | DropJob):
            self._change_job(action)
        elif isinstance(action, StopWorker):
            self.failed = self.failed or action.failed
            self.stop_flag.set()
        elif isinstance(action, EndSession):
            self._session_end = action.answered
        elif isinstance(action, LogLine):
            getattr(self._log, action.level)(action.event, **action.fields)

    def _change_job(self, action: PublishJob | OpenJob | DropPartitions | DropJob) -> None:
        if isinstance(action, PublishJob):   # one reference write: the executor reads old or new, whole
            self._jobs[action.context.setup.job_id] = action.context
        elif isinstance(action, OpenJob):
            self._received.open_job(action.job_id, action.n_reduce)
            self._kept.open_job(action.job_id)
        elif isinstance(action, DropPartitions):
            for partition in action.partitions:
                self._received.drop_partition(action.job_id, partition)
                self._kept.drop_partition(action.job_id, partition)
        else:
            self._jobs.pop(action.job_id, None)
            self._received.drop_job(action.job_id)
            self._kept.drop_job(action.job_id)
            shutil.rmtree(py_files_dir(self.work_dir, action.job_id), ignore_errors=True)

    def _flush(self, sock: zmq.Socket[Any] | None) -> None:
        """Send the kept reports; one that cannot go now waits for the next try, and those after it too."""
        while self._unsent and sock is not None:
            if not transport.send(sock, encode(self._unsent[0])):
                return
            self._unsent.popleft()


def _inbox_item(action: StartTask | DeliverDecision | DeliverLocations | FenceStalled) -> InboxItem:
    if isinstance(action, StartTask):
        return action.assign
    if isinstance(action, DeliverDecision):
        return action.decision
    if isinstance(action, DeliverLocations):
        return action.locations
    return Stalled(action.seconds)
