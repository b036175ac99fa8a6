"""The worker process: a control loop talking to the coordinator, around an executor and a data server.

Three threads, each owning its own sockets: this control loop (the coordinator DEALER, heartbeats,
reconnects, leases), the executor (drives one task at a time, pulls shuffle data) and the data server
(receives batches as an owner, serves pulls). App code runs in a task process the executor drives and
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
from zmr.errors import ClusterError, ProtocolError
from zmr.log import bound_logger
from zmr.protocol import messages as m
from zmr.protocol.codec import encode, peer_decoder
from zmr.runtime import scratch, security, transport
from zmr.runtime.dataserver import DataServer
from zmr.runtime.executor import Executor, JobContext, Stalled
from zmr.runtime.security import Curve, Keyring, RoleAuthenticator
from zmr.runtime.stopflag import StopFlag
from zmr.runtime.stores import MapOutputStore, ReceiveStore
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


class Worker:
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
        self._jobs: dict[str, JobContext] = {}
        self._lease_expiry: dict[str, float] = {}   # job -> monotonic time its data must be gone by
        self._outbound: queue.Queue[m.WorkerToCoord] = queue.Queue()
        self._unsent: m.WorkerToCoord | None = None
        self._recent_maps: deque[m.MapDone] = deque(maxlen=32)   # offered again when registering
        self._registered = False
        self.failed = False   # set when the executor died: the worker stops, and says so
        self._registered_at = 0.0
        self._heartbeat_interval = config.coordinator.heartbeat_interval
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
                              curve=self._curves.data, check_role=self._curves.auth is not None)
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

        def send_from_executor(msg: m.WorkerToCoord) -> None:
            """Called on the executor thread only, which therefore owns `wake_tx`."""
            if isinstance(msg, m.MapDone):
                self._recent_maps.append(msg)
            self._outbound.put(msg)
            try:
                wake_tx.send(b"", zmq.NOBLOCK)
            except zmq.Again:
                pass  # wake-ups are already pending; the queue holds the message

        budget = wcfg.memory_budget_mb << 20
        timeout = self.config.coordinator.heartbeat_interval * self.config.coordinator.heartbeat_liveness
        self._executor = Executor(ctx, self.worker_id, self._jobs, received, kept, send_from_executor, budget,
                                  wcfg.max_message_bytes, pull_timeout=max(5.0, timeout),
                                  commit_timeout=max(10.0, 2 * timeout), log=self._log, zygote=zygote,
                                  work_dir=self.work_dir, task_memory_mb=wcfg.task_memory_mb,
                                  peer_curve=self._curves.peers)
        self._received, self._kept = received, kept
        data.start()
        self._executor.start()
        self._log.info("worker_started", data_addr=self.data_addr, work_dir=str(self.work_dir),
                       coordinator=wcfg.coordinator)
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
                    self._expire_leases()   # a lease runs out on time, connected or not
                    if time.monotonic() >= resume:
                        break
                backoff = min(backoff * 2, 5.0)

    def _session(self, sock: zmq.Socket[Any], wake: zmq.Socket[Any], watch: transport.HandshakeWatch) -> bool:
        """One connection's life; returns whether the coordinator ever answered."""
        self._registered = False
        said = ""
        for _ in range(10):   # IMMEDIATE: a send before the connection is up would be dropped
            self._expire_leases()
            if sock.poll(100, zmq.POLLOUT):
                break
            said = self._say_handshake(watch, said)   # a refused key never gets a connection up
        self._register(sock)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(wake, zmq.POLLIN)
        poller.register(self.stop_flag, zmq.POLLIN)
        liveness_timeout = self._heartbeat_interval * self.config.coordinator.heartbeat_liveness
        heard = time.monotonic()
        answered = False
        next_beat = time.monotonic() + self._heartbeat_interval   # Register went out just above
        last_turn = time.monotonic()
        while not self.stop_flag.is_set():
            if self._parent_gone():
                self.stop_flag.set()
                break
            if not self._executor.is_alive():   # it failed (and logged why): a worker that runs no task stops
                self._log.error("worker_cannot_run_tasks")
                self.failed = True
                self.stop_flag.set()
                break
            events = dict(poller.poll(100))
            turn = time.monotonic()
            if turn - last_turn > liveness_timeout / 2 and self._executor.awaiting_commit is not None:
                # fence before reading on: a grant in the socket may predate the coordinator's giving up on us
                self._log.warning("stalled_awaiting_commit", seconds=round(turn - last_turn, 1))
                self._executor.inbox.put(Stalled(turn - last_turn))
            last_turn = turn
            if self.stop_flag.fileno() in events:   # a poller names a plain fd by its number
                self.stop_flag.clear_wakeups()
            if wake in events:
                while wake.poll(0):
                    wake.recv()
            self._flush_outbound(sock)
            said = self._say_handshake(watch, said)
            if sock in events:
                heard, answered = time.monotonic(), True
                self._drain_coordinator(sock)
            self._expire_leases()   # after reading what arrived: a renewal may be waiting there
            now = time.monotonic()
            if now >= next_beat:
                if self._registered:
                    self._heartbeat(sock)
                else:
                    self._register(sock)
                next_beat = now + self._heartbeat_interval
            if now - heard > max(liveness_timeout, self._heartbeat_interval * 2):
                if sock.poll(0, zmq.POLLIN):
                    continue   # this thread was starved (an app held the GIL): what arrived meanwhile counts
                return answered
        return answered

    def _say_handshake(self, watch: transport.HandshakeWatch, said: str) -> str:
        """Log a failed handshake once per connection: a refused key is otherwise only silence."""
        failure = watch.poll()
        if failure and failure != said:
            self._log.error("authentication_failed", reason=failure, coordinator=self.config.worker.coordinator)
        return failure or said

    def _drop_job(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)
        self._lease_expiry.pop(job_id, None)
        current = self._executor.current
        if current is not None and current.job_id == job_id:
            self._executor.cancel(current)
        self._received.drop_job(job_id)
        self._kept.drop_job(job_id)

    def _held_jobs(self) -> set[str]:
        return set(self._jobs) | self._received.job_ids() | self._kept.job_ids()

    def _expire_leases(self) -> None:
        """No renewal within the TTL (the coordinator is gone, or forgot the job): delete the job's data."""
        now = time.monotonic()
        for job_id in [j for j, expiry in self._lease_expiry.items() if expiry <= now]:
            self._log.warning("lease_expired", job=job_id)
            self._drop_job(job_id)

    def _parent_gone(self) -> bool:
        return self._parent_pid is not None and os.getppid() != self._parent_pid

    def _register(self, sock: zmq.Socket[Any]) -> None:
        holdings = [m.Holding(job_id=job_id, maps=self._kept.attempts(job_id),
                              partitions=self._received.partitions(job_id))
                    for job_id in sorted(self._held_jobs())]
        msg = m.Register(worker_id=self.worker_id, data_addr=self.data_addr, python=PYTHON, pid=os.getpid(),
                         host=socket.gethostname(), holdings=holdings, running=self._executor.current,
                         finished_maps=list(self._recent_maps), token=self._token)
        transport.send(sock, encode(msg))
        self._registered_at = time.monotonic()

    def _flush_outbound(self, sock: zmq.Socket[Any]) -> None:
        """Forward the executor's reports; one that cannot go now waits for the next try, in order."""
        while True:
            if self._unsent is None:
                try:
                    self._unsent = self._outbound.get_nowait()
                except queue.Empty:
                    return
            if not transport.send(sock, encode(self._unsent)):
                return
            self._unsent = None

    def _heartbeat(self, sock: zmq.Socket[Any]) -> None:
        current = self._executor.current
        task = current.label if current else ""
        leases = self._received.lease_counts()
        for job_id, n in self._kept.lease_counts().items():
            leases[job_id] = leases.get(job_id, 0) + n
        beat = m.Heartbeat(worker_id=self.worker_id, task=task, progress=self._executor.progress,
                           partitions=self._received.stats(),
                           leases=[m.LeaseStat(job_id=j, leases=n) for j, n in sorted(leases.items())])
        transport.send(sock, encode(beat))

    def _drain_coordinator(self, sock: zmq.Socket[Any]) -> None:
        while sock.poll(0, zmq.POLLIN):
            try:
                msg, _ = transport.recv_dealer(sock, self._decoder)
            except ProtocolError as exc:
                self._log.warning("bad_coordinator_message", error=str(exc))
                continue
            self._handle(sock, msg)

    def _handle(self, sock: zmq.Socket[Any], msg: Any) -> None:
        if isinstance(msg, m.Welcome):
            if self._registered:
                return   # a duplicate: one Welcome per registration asks for one task
            self._registered = True
            self._heartbeat_interval = msg.heartbeat_interval
            self._log.info("registered")
            pending = self._executor.awaiting_commit
            if pending is not None:   # its ReduceDone may have gone to a coordinator that died: ask again
                transport.send(sock, encode(pending))
            elif not self._executor.busy:
                transport.send(sock, encode(m.TaskRequest(worker_id=self.worker_id)))
        elif isinstance(msg, m.RegisterAgain):
            self._registered = False   # e.g. a restarted coordinator: it hears what is held and decides
            if time.monotonic() - self._registered_at >= self._heartbeat_interval:
                self._register(sock)   # (once per interval: every message queued meanwhile is answered so)
        elif isinstance(msg, m.Reject):
            self._log.error("rejected", reason=msg.reason)
            self.stop_flag.set()
        elif isinstance(msg, m.JobSetup):   # grants the job's lease: its data may exist here from now on
            known = self._jobs.get(msg.job_id)
            if known is None:
                self._jobs[msg.job_id] = JobContext(msg, list(msg.owners), msg.owners_epoch)
            elif msg.owners_epoch > known.owners_epoch:   # in place: a running map holds this context
                known.owners, known.owners_epoch = list(msg.owners), msg.owners_epoch
            self._lease_expiry[msg.job_id] = time.monotonic() + msg.lease_ttl
            self._received.open_job(msg.job_id, msg.n_reduce)
            self._kept.open_job(msg.job_id)
            for partition in msg.released:
                self._received.drop_partition(msg.job_id, partition)
                self._kept.drop_partition(msg.job_id, partition)
        elif isinstance(msg, m.Ping):
            renewed = time.monotonic() + msg.lease_ttl
            for job_id in msg.jobs:
                if job_id in self._lease_expiry:
                    self._lease_expiry[job_id] = renewed
        elif isinstance(msg, m.ReleasePartitions):
            for partition in msg.partitions:
                self._received.drop_partition(msg.job_id, partition)
                self._kept.drop_partition(msg.job_id, partition)
        elif isinstance(msg, m.OwnersUpdate):
            job = self._jobs.get(msg.job_id)
            if job is not None and msg.owners_epoch > job.owners_epoch:
                job.owners, job.owners_epoch = list(msg.owners), msg.owners_epoch
        elif isinstance(msg, m.AssignMap | m.AssignReduce | m.CommitDecision):
            self._executor.inbox.put(msg)
        elif isinstance(msg, m.SourcesLost):   # a pull from that peer must not wait for its timeout
            self._executor.lost_peers.add(msg)
        elif isinstance(msg, m.CancelTask):
            self._executor.cancel(msg.attempt)
        elif isinstance(msg, m.JobEnded):
            self._drop_job(msg.job_id)
