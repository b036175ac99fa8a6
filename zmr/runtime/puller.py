"""A reducer's fallback: pull the map output its partition still misses from the mappers' kept copies.

Runs on the executor's thread, one source at a time, so at most one pulled stream is in flight. Waiting
is done in short slices, so that a cancelled attempt stops at once, every batch that lands counts as
the task's progress (a long pull is not a stalled task), and word from the coordinator that a mapper
was declared dead (`SourcesLost`) ends the wait for it at once. A peer that is declared dead, or that
stays silent for the whole pull timeout, is given up for the rest of the attempt: its other sources are
reported missing without asking again, so a dead mapper costs at most one timeout, never one per map.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import zmq

from zmr.errors import ProtocolError
from zmr.protocol import messages as m
from zmr.protocol.codec import data_decoder, encode
from zmr.runtime import transport
from zmr.runtime.security import Curve
from zmr.runtime.stores import ReceiveStore

_SLICE = 0.1          # seconds between looks at cancellation and lost peers while a pull waits
_KEEP_ATTEMPTS = 16   # lost-peer notes kept for attempts that never asked for them (they ended first)

# Why a pull got nothing: the first two give up on the peer for the rest of the attempt.
LOST = "declared dead by the coordinator"
SILENT = "no answer within the pull timeout"
NOT_FOUND = "the peer does not hold it"
BAD_REPLY = "the peer sent a malformed reply"


class LostPeers:
    """Data addresses the coordinator declared dead, per reduce attempt that may pull from them.

    The control thread adds (from `SourcesLost`), the executor reads and forgets; hence the lock.
    """

    def __init__(self, keep: int = _KEEP_ATTEMPTS) -> None:
        self._lock = threading.Lock()
        self._keep = keep
        self._lost: OrderedDict[m.AttemptId, set[str]] = OrderedDict()

    def add(self, msg: m.SourcesLost) -> None:
        with self._lock:
            self._lost.setdefault(msg.attempt, set()).add(msg.addr)
            while len(self._lost) > self._keep:
                self._lost.popitem(last=False)

    def of(self, key: m.AttemptId) -> frozenset[str]:
        with self._lock:
            return frozenset(self._lost.get(key, ()))

    def forget(self, key: m.AttemptId) -> None:
        with self._lock:
            self._lost.pop(key, None)


class Puller:
    """Pulls missing (map attempt, partition) streams into the receive store."""

    def __init__(self, ctx: zmq.Context[Any], received: ReceiveStore, lost: LostPeers, max_bytes: int,
                 timeout: float, curve: Curve | None = None) -> None:
        self._ctx = ctx
        self._received = received
        self._lost = lost
        self._max_bytes = max_bytes
        self._timeout = timeout
        self._curve = curve

    def gather(self, assign: m.AssignReduce, sources: list[m.MapSource], check_cancel: Callable[[], None],
               progress: Callable[[], None], log: Any) -> list[int]:
        """Pull every one of `sources` not complete here; returns the map tasks whose output could not be had.

        `check_cancel` raises when the attempt is cancelled; `progress` is called for every batch pulled and
        every slice spent waiting (a wait is bounded by the timeout, so it is the shuffle at work).
        """
        missing: list[int] = []
        given_up: set[str] = set()
        for src in sources:
            check_cancel()
            if self._received.complete(assign.attempt.job_id, assign.attempt.task, src.task, src.attempt):
                continue
            why = NOT_FOUND if not src.addr else (LOST if src.addr in given_up else "")
            if not why:
                why = self._pull(assign, src, check_cancel, progress)
                if why:
                    log.warning("pull_failed", map_task=src.task, map_attempt=src.attempt, peer=src.addr, why=why)
                if why in (LOST, SILENT):
                    given_up.add(src.addr)
            if why:
                missing.append(src.task)
        return missing

    def _pull(self, assign: m.AssignReduce, src: m.MapSource, check_cancel: Callable[[], None],
              progress: Callable[[], None]) -> str:
        """One stream, whole: '' once it is here, otherwise why not."""
        self._received.forget(assign.attempt.job_id, assign.attempt.task, src.task, src.attempt)
        sock = transport.dealer(self._ctx, src.addr, self._max_bytes, immediate=False, curve=self._curve)
        try:
            request = m.PullRequest(source=_map_attempt(assign, src), partition=assign.attempt.task)
            transport.send(sock, encode(request))
            return self._receive(sock, assign, src, check_cancel, progress)
        finally:
            sock.close(linger=0)

    def _receive(self, sock: zmq.Socket[Any], assign: m.AssignReduce, src: m.MapSource,
                 check_cancel: Callable[[], None], progress: Callable[[], None]) -> str:
        """Read the reply until its PullEnd; the timeout counts silence, so a long stream never times out."""
        decoder = data_decoder(self._max_bytes)
        key = assign.attempt
        quiet_until = time.monotonic() + self._timeout
        while True:
            check_cancel()
            if src.addr in self._lost.of(key):
                return LOST
            remaining = quiet_until - time.monotonic()
            if remaining <= 0:
                return SILENT
            if not sock.poll(int(min(_SLICE, remaining) * 1000) + 1, zmq.POLLIN):
                progress()   # waiting on a peer is the shuffle at work, bounded by the timeout: not a hung app
                continue
            try:
                msg, payload = transport.recv_dealer(sock, decoder, copy=False)
            except ProtocolError:
                return BAD_REPLY
            quiet_until = time.monotonic() + self._timeout
            done = self._take(assign, src, msg, payload, progress)
            if done is not None:
                return done

    def _take(self, assign: m.AssignReduce, src: m.MapSource, msg: Any, payload: Any,
              progress: Callable[[], None]) -> str | None:
        """Store one reply message; the pull's outcome once it ends, None while it goes on."""
        job_id, partition = assign.attempt.job_id, assign.attempt.task
        if not isinstance(msg, m.Batch | m.PullEnd) or (msg.source, msg.partition) != (
                _map_attempt(assign, src), partition):
            return None   # not this stream's: ignored, as before
        if isinstance(msg, m.Batch):
            self._received.add_batch(job_id, src.task, src.attempt, partition, msg.seq, payload, time.time())
            progress()
            return None
        if not msg.found:
            return NOT_FOUND
        self._received.set_pulled(job_id, src.task, src.attempt, partition, msg.n_batches)
        return "" if self._received.complete(job_id, partition, src.task, src.attempt) else "the stream is incomplete"


def _map_attempt(assign: m.AssignReduce, src: m.MapSource) -> m.AttemptId:
    """The committed map attempt whose output `src` locates, for the reduce `assign`."""
    return m.AttemptId(job_id=assign.attempt.job_id, kind="map", task=src.task, number=src.attempt)
