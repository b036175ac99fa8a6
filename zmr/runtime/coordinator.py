"""The coordinator process: a thin shell around the pure Scheduler.

It owns the ROUTER socket, the clock and the output directories: it turns frames into events, feeds
them to the scheduler, and carries out the actions it returns. A peer that sends garbage is logged
once and ignored; the coordinator never crashes on what a peer sends.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any, get_args

import zmq

from zmr import storage
from zmr.config import Config
from zmr.core import views
from zmr.core.scheduler import (
    Action,
    CheckAddress,
    ConnectionsAlive,
    JobFinished,
    Journal,
    Log,
    Received,
    Scheduler,
    SchedulerParams,
    Send,
    Tick,
)
from zmr.core.specs import spec_problem
from zmr.core.state import JobState
from zmr.errors import ClusterError, OversizedMessage, ProtocolError
from zmr.log import bound_logger
from zmr.protocol import journal as j
from zmr.protocol import messages as m
from zmr.protocol.codec import coordinator_decoder, encode
from zmr.runtime import outputs, security, transport
from zmr.runtime.dashboard import Answer, Dashboard, Question
from zmr.runtime.journal import JournalFile
from zmr.runtime.probe import AddressProbe
from zmr.runtime.security import Keyring, RoleAuthenticator
from zmr.runtime.stopflag import StopFlag

_MAX_REMEMBERED_BAD_PEERS = 10_000
# The socket reads frames up to this many times coordinator.max_message_bytes, so that a message over the
# limit reaches the decoder, which refuses it; then it is logged and its sender told why. A bigger frame
# makes libzmq drop the connection without a word to the application (its monitor reports a disconnect
# like any other), so what is logged and answered is bounded by this factor, and so is memory per frame.
_READ_CAP_FACTOR = 2
_DASHBOARD_PEER = b"\x00dashboard"   # what the dashboard's cancel is received from: no ROUTER identity looks so
_WARNINGS_KEPT = 100   # recent warnings and errors the dashboard shows
_PROBE_TIMEOUT = 3.0   # seconds a new worker's data address has to accept a connection from here
_ROLE_OF: dict[type, str] = {   # with CURVE on, the only role allowed to send each message
    **{t: security.CLIENT for t in get_args(m.ClientToCoord)},
    **{t: security.WORKER for t in get_args(m.WorkerToCoord)},
}


def scheduler_params(config: Config) -> SchedulerParams:
    c, r, s = config.coordinator, config.retry, config.shuffle
    return SchedulerParams(
        python=f"{sys.version_info.major}.{sys.version_info.minor}",
        heartbeat_interval=c.heartbeat_interval, heartbeat_liveness=c.heartbeat_liveness,
        task_timeout=c.task_timeout, max_attempts=r.max_attempts, retry_base=r.base, retry_cap=r.cap,
        max_worker_losses=r.max_worker_losses, push=s.mode == "push", replicate=s.replicate,
        batch_bytes=s.batch_bytes,
        window_bytes=s.window_bytes, compression=s.compression, speculation=config.speculation.enabled,
        slow_factor=config.speculation.slow_factor, min_elapsed=config.speculation.min_elapsed,
        lease_ttl=c.lease_ttl, recovery_grace=c.recovery_grace, limits=config.job.limits,
        check_addresses=c.check_worker_addresses)


def recover(journal: JournalFile, scheduler: Scheduler, now: float, recover_damaged: bool) -> list[Action]:
    """Read the journal, check the replayed jobs' output directories for `_SUCCESS`, rebuild the state.

    Raises JournalDamaged (the file left as it is) for damage before the journal's end, unless
    `recover_damaged`. Returns the actions recovery asks for; the journal file is not changed yet.
    """
    records = journal.open(recover_damaged)
    return scheduler.recover(records, now, outputs.success_markers(j.output_dirs(records)))


class Coordinator:
    """Serves until `stop()` (or until its parent dies, when started by a launcher)."""

    def __init__(self, config: Config, endpoint_file: str | None = None, parent_pid: int | None = None,
                 dashboard_file: str | None = None) -> None:
        self.config = config
        self._dashboard_file = dashboard_file
        self._dashboard: Dashboard | None = None
        self._dashboard_replies: list[m.FromCoordinator] = []
        self._warnings: deque[dict[str, Any]] = deque(maxlen=_WARNINGS_KEPT)
        self.scheduler = Scheduler(scheduler_params(config))
        self._endpoint_file = endpoint_file
        self._parent_pid = parent_pid
        self.stop_flag = StopFlag()
        self._log = bound_logger(role="coordinator")
        self._bad_peers: set[bytes] = set()
        self._made_dirs: set[str] = set()   # output directories this process created for running jobs
        self._decoder = coordinator_decoder(config.coordinator.max_message_bytes)
        self._journal: JournalFile | None = None
        self._probe = AddressProbe(_PROBE_TIMEOUT) if config.coordinator.check_worker_addresses else None

    def stop(self) -> None:
        self.stop_flag.set()

    def run(self) -> None:
        cfg, sec = self.config.coordinator, self.config.security
        security.check_bind(cfg.bind, bool(sec.keys_dir), sec.insecure, self._log)
        if cfg.state_dir:
            self._recover(cfg.state_dir)
        else:
            self._log.info("journal_off", hint="set coordinator.state_dir (--state-dir) to survive restarts")
        try:
            self._run()
        finally:
            if self._journal is not None:
                self._journal.close()

    def _recover(self, state_dir: str) -> None:
        """Replay the journal and make it whole again (a snapshot) before carrying out anything.

        The snapshot comes first: recovery's own decisions are in it, and an output step it carries
        out journals its end by appending, which must not go after a dropped torn tail.
        """
        self._journal = JournalFile(state_dir, self._log)
        actions = recover(self._journal, self.scheduler, time.time(), self.config.coordinator.recover_damaged_journal)
        self._journal.rewrite(self.scheduler.snapshot())
        self._execute(None, actions)
        self.scheduler.archive_ended()
        self._journal.rewrite(self.scheduler.snapshot())

    def _run(self) -> None:
        cfg, sec = self.config.coordinator, self.config.security
        ctx: zmq.Context[Any] = zmq.Context()
        self._auth: RoleAuthenticator | None = None
        curve = None
        if sec.keys_dir:
            keyring = Keyring.load(sec.keys_dir)
            curve = keyring.server("coordinator")
            self._auth = RoleAuthenticator(ctx, keyring.roles, {security.CLIENT, security.WORKER}, self._log)
            self._auth.start()   # before bind: a handshake without a ZAP handler would admit any key
        try:
            sock = transport.router(ctx, cfg.bind, _READ_CAP_FACTOR * cfg.max_message_bytes, curve,
                                    heartbeat=(cfg.heartbeat_interval, cfg.dead_after / 2))
        except zmq.ZMQError as exc:
            self._stop_auth()
            ctx.term()
            raise ClusterError(f"cannot bind {cfg.bind}: {exc}") from exc
        try:
            address = transport.bound_address(sock)
            self._address = address
            self._start_dashboard()
            self._log.info("coordinator_started", bind=address, pid=os.getpid())
            if self._endpoint_file:
                outputs.write_atomically(Path(self._endpoint_file), address + "\n")
            self._serve(sock)
        finally:
            sock.close(linger=0)
            if self._dashboard is not None:
                self._dashboard.stop()
            self._stop_auth()
            if self._probe is not None:
                self._probe.close()
            ctx.term()
            self._log.info("coordinator_stopped")

    def _start_dashboard(self) -> None:
        """Serve the dashboard if configured; its URL is logged, and written for a launcher to print."""
        cfg, sec = self.config.coordinator, self.config.security
        if not cfg.dashboard:
            return
        self._dashboard = Dashboard.start(cfg.dashboard, sec.keys_dir, sec.insecure, self._log)
        self._log.info("dashboard_started", url=self._dashboard.url)
        if self._dashboard_file:
            outputs.write_atomically(Path(self._dashboard_file), self._dashboard.url + "\n")

    def _stop_auth(self) -> None:
        if self._auth is not None:
            self._auth.stop()

    def _serve(self, sock: zmq.Socket[Any]) -> None:
        interval = self.config.coordinator.heartbeat_interval
        next_tick = time.monotonic() + interval
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self.stop_flag, zmq.POLLIN)
        dashboard = self._dashboard
        if dashboard is not None:
            poller.register(dashboard.bridge, zmq.POLLIN)
        while not self.stop_flag.is_set():
            timeout = max(0.0, next_tick - time.monotonic())
            events = dict(poller.poll(int(timeout * 1000) + 1))
            began = time.perf_counter()
            if self.stop_flag.fileno() in events:   # a poller names a plain fd by its number
                self.stop_flag.clear_wakeups()
            if self._probe is not None:
                for checked in self._probe.results():
                    self._execute(sock, self.scheduler.handle(checked, time.time()))
            if sock in events:
                self._drain(sock)
            if time.monotonic() >= next_tick:
                self._execute(sock, self.scheduler.handle(Tick(), time.time()))
                next_tick = time.monotonic() + interval
                if self._parent_pid is not None and os.getppid() != self._parent_pid:
                    self._log.warning("parent_gone")
                    return
                if self._auth is not None and not self._auth.is_alive():
                    raise ClusterError("the CURVE authenticator died: refusing to serve unauthenticated peers")
            if dashboard is not None:
                dashboard.loop_seconds.observe(time.perf_counter() - began)
                if dashboard.bridge.fileno() in events:
                    dashboard.bridge.serve(lambda question: self._answer(sock, question))

    def _drain(self, sock: zmq.Socket[Any]) -> None:
        for _ in range(1000):  # then let the clock tick
            if not sock.poll(0, zmq.POLLIN):
                return
            key = ""
            try:
                if self._auth is None:
                    peer, msg, _ = transport.recv_router(sock, self._decoder)
                else:
                    peer, role, key, msg, _ = transport.recv_router_role(sock, self._decoder)
                    if role != _ROLE_OF.get(type(msg)):
                        raise ProtocolError(f"{type(msg).__name__} from a peer in role {role or 'none'!r}",
                                            peer=peer)
            except ProtocolError as exc:
                self._bad_message(sock, exc.peer, exc)
                continue
            if isinstance(msg, m.SubmitJob) and (problem := self._output_problem(msg.spec)):
                transport.send(sock, encode(m.ErrorReply(message=problem)), peer)
                continue
            self._execute(sock, self.scheduler.handle(Received(peer, msg, key), time.time()))

    def _output_problem(self, spec: m.JobSpec) -> str:
        """Check the output directory of a spec the scheduler would queue and prepare it; why not, or ''.

        A spec the scheduler refuses anyway (over a limit, say) is left to it, and nothing is touched:
        nothing is listed, created or deleted before every other check has passed. The overlap check
        comes before `prepare_output_dir`, which deletes old output under `--overwrite`.
        """
        if spec_problem(spec, self.scheduler.params.limits) or self.scheduler.output_dir_busy(spec.output_dir):
            return ""
        files = (split.path for split in spec.splits)
        existed = storage.is_url(spec.output_dir) or os.path.lexists(spec.output_dir)   # no folder to remove
        problem = (outputs.files_in_output(files, spec.output_dir)
                   or outputs.prepare_output_dir(spec.output_dir, spec.overwrite))
        if not problem and not existed:
            self._made_dirs.add(spec.output_dir)   # a failed or cancelled job takes it away again
        return problem

    def _execute(self, sock: zmq.Socket[Any] | None, actions: list[Any]) -> None:
        self._write_journal(actions)
        pinged: set[bytes] = set()
        last: tuple[Any, list[Any]] | None = None   # a broadcast sends one message object to many workers
        for action in actions:
            if isinstance(action, Send) and action.peer == _DASHBOARD_PEER:
                self._dashboard_replies.append(action.msg)
            elif isinstance(action, Send) and sock is not None:
                if last is None or last[0] is not action.msg:
                    last = (action.msg, encode(action.msg))   # encoded (and compressed) once per broadcast
                if transport.send(sock, last[1], action.peer):
                    if isinstance(action.msg, m.Ping):
                        pinged.add(action.peer)
                else:
                    self._log.info("peer_unreachable", peer=action.peer.hex(), msg=type(action.msg).__name__)
            elif isinstance(action, JobFinished):
                self._finish_output(action)
            elif isinstance(action, CheckAddress) and self._probe is not None:
                self._probe.check(action.worker_id, action.data_addr)
            elif isinstance(action, Log):
                getattr(self._log, action.level)(action.event, **action.fields)
                if action.level in ("warning", "error"):
                    self._warned(action.level, action.event, action.fields)
        if pinged and sock is not None:   # a ping queued to a live connection: that worker's process is alive
            self._execute(sock, self.scheduler.handle(ConnectionsAlive(frozenset(pinged)), time.time()))

    def _write_journal(self, actions: list[Any]) -> None:
        """Make this batch's state changes durable before any of its messages goes out."""
        if self._journal is None:
            return
        records = [a.record for a in actions if isinstance(a, Journal)]
        if not records:
            return
        try:
            self._journal.append(records)
            if self._journal.wants_compaction():
                self.scheduler.archive_ended()
                self._journal.rewrite(self.scheduler.snapshot())
                self._log.info("journal_compacted", jobs=len(self.scheduler.jobs),
                               archived=len(self.scheduler.archived))
        except OSError as exc:   # acting on state that is not durable would break the restart guarantee
            raise ClusterError(f"cannot write the journal in {self._journal.dir}: {exc}") from exc

    def _finish_output(self, action: JobFinished) -> None:
        """`_SUCCESS` for a job that succeeded; for one that did not, nothing left of it: no output, and
        no output directory if this coordinator made it (unless someone else put something there)."""
        try:
            if action.state is JobState.SUCCEEDED:
                outputs.remove_temporaries(action.output_dir, action.job_id)
                marker = self.scheduler.success_marker(action.job_id)
                if marker is None:
                    raise OSError(f"job {action.job_id} is no longer known")
                outputs.write_success(action.output_dir, marker)
            else:
                outputs.remove_job_output(action.output_dir, action.job_id, action.n_reduce)
                if action.output_dir in self._made_dirs:
                    outputs.remove_abandoned(Path(action.output_dir))
        except OSError as exc:
            self._log.error("output_finish_failed", job=action.job_id, error=str(exc))
            return
        finally:
            self._made_dirs.discard(action.output_dir)
        self._write_journal(self.scheduler.output_finished(action.job_id))

    def _bad_message(self, sock: zmq.Socket[Any], peer: bytes, error: ProtocolError) -> None:
        """Log a peer's first bad message; tell the sender of an oversized one why it gets no answer."""
        if isinstance(error, OversizedMessage):   # it cost its sender more than the answer costs us
            transport.send(sock, encode(m.ErrorReply(message=str(error))), peer)
        if peer in self._bad_peers:
            return
        if len(self._bad_peers) >= _MAX_REMEMBERED_BAD_PEERS:
            self._bad_peers.clear()
        self._bad_peers.add(peer)
        self._log.warning("bad_message", peer=peer.hex(), error=str(error))
        self._warned("warning", "bad_message", {"peer": peer.hex(), "error": str(error)})

    def _warned(self, level: str, event: str, fields: dict[str, Any]) -> None:
        """Keep a warning for the dashboard (the last `_WARNINGS_KEPT` of them)."""
        if self._dashboard is not None:
            self._warnings.append({"t": time.time(), "level": level, "event": event,
                                   "fields": {k: v if isinstance(v, int | float | bool) else str(v)
                                              for k, v in fields.items()}})

    # ------------------------------------------------------------ the dashboard's questions, on the loop

    def _answer(self, sock: zmq.Socket[Any], question: Question) -> Answer:
        kind, job_id = question
        now = time.time()
        if kind == "status":
            reply = views.status(self.scheduler.book, None, now)
            assert isinstance(reply, m.StatusReply)
            return Answer.of({**views.status_document(reply), "warnings": list(self._warnings),
                              "coordinator": self._coordinator_doc()})
        if kind == "job":
            found = views.status(self.scheduler.book, job_id, now, tasks=True)
            if isinstance(found, m.ErrorReply):
                return Answer.of({"error": found.message}, 404)
            return Answer.of({**views.status_document(found), "coordinator": self._coordinator_doc()})
        if kind == "cancel":
            return self._cancel(sock, job_id, now)
        if kind == "metrics":
            return Answer.of(self._metrics(now))
        return Answer.of({"error": f"no question {kind!r}"}, 400)

    def _coordinator_doc(self) -> dict[str, Any]:
        url = self._dashboard.base_url if self._dashboard else ""
        return {"bind": self._address, "pid": os.getpid(), "dashboard": url, "can_cancel": True}

    def _cancel(self, sock: zmq.Socket[Any], job_id: str, now: float) -> Answer:
        """Cancel as `zmr cancel` does, through the scheduler; a job that ended already is a conflict."""
        before = self.scheduler.status(job_id)
        if isinstance(before, m.ErrorReply):
            return Answer.of({"error": before.message}, 404)
        if before.jobs[0].state in ("succeeded", "failed", "cancelled"):
            return Answer.of({"error": f"job {job_id} {before.jobs[0].state} already", "job_id": job_id,
                              "state": before.jobs[0].state}, 409)
        self._log.info("cancel_from_dashboard", job=job_id)
        self._dashboard_replies.clear()
        self._execute(sock, self.scheduler.handle(Received(_DASHBOARD_PEER, m.CancelJob(job_id=job_id)), now))
        replies, self._dashboard_replies = self._dashboard_replies, []
        reply = next((r for r in replies if isinstance(r, m.StatusReply | m.ErrorReply)), None)
        if not isinstance(reply, m.StatusReply):
            return Answer.of({"error": reply.message if reply else "no answer"}, 409)
        return Answer.of({"job_id": job_id, "state": reply.jobs[0].state})

    def _metrics(self, now: float) -> dict[str, Any]:
        reply = views.status(self.scheduler.book, None, now)
        assert isinstance(reply, m.StatusReply)
        jobs = Counter(j.state for j in reply.jobs)
        return {
            "jobs": {state: jobs.get(state, 0) for state in ("queued", "running", "succeeded", "failed", "cancelled")},
            "tasks": {f"{kind}/{state}": n for (kind, state), n in views.task_counts(self.scheduler.book).items()},
            "leases": {j.job_id: j.leases for j in reply.jobs if j.leases},
            "bytes_shuffled": {j.job_id: j.bytes_shuffled for j in reply.jobs if j.state in ("queued", "running")},
            "workers": dict(Counter(w.state for w in reply.workers)),
            "heartbeats": [{"worker": w.worker_id, "age": max(0.0, now - w.last_heartbeat), "rss": w.rss}
                           for w in reply.workers if w.state != "dead"],
        }
