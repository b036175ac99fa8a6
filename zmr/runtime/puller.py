"""A reducer's fallback: pull the map output its partition still misses from the mappers' kept copies.

Runs on the executor's thread, one peer at a time: each peer is asked once (`PullMaps`) for its kept
copy of this partition of every map in the request, so a reduce that took a partition over costs one
request per peer, not one per map. Waiting is done in short slices, so that a cancelled attempt stops
at once, every batch that lands counts as the task's progress (a long pull is not a stalled task), and
word from the coordinator that a mapper was declared dead (`SourcesLost`) ends the wait for it at once.
A dead or silent peer costs at most one pull timeout; what it kept is reported missing.
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

# Why a pull from a peer got less than it should have
LOST = "declared dead by the coordinator"
SILENT = "no answer within the pull timeout"
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

    def gather(self, assign: m.AssignReduce, requests: list[m.PeerRequest], wanted: dict[int, int],
               check_cancel: Callable[[], None], progress: Callable[[], None], log: Any) -> list[int]:
        """Ask each peer for its kept output of the maps its request names; returns the maps of `wanted`
        (map -> the attempt that counts) whose output is still not complete here, in order.

        `check_cancel` raises when the attempt is cancelled; `progress` is called for every batch pulled and
        every slice spent waiting (a wait is bounded by the timeout, so it is the shuffle at work).
        """
        job_id, partition = assign.attempt.job_id, assign.attempt.task
        for request in requests:
            check_cancel()
            if not request.addr:
                continue
            why = self._pull(assign, request, wanted, check_cancel, progress)
            if why:
                log.warning("pull_failed", peer=request.addr, maps=request.expected, why=why)
        return sorted(task for task, attempt in wanted.items()
                      if not self._received.complete(job_id, partition, task, attempt))

    def _pull(self, assign: m.AssignReduce, request: m.PeerRequest, wanted: dict[int, int],
              check_cancel: Callable[[], None], progress: Callable[[], None]) -> str:
        """One peer's reply, whole: '' once its PullEnd came, otherwise why not."""
        sock = transport.dealer(self._ctx, request.addr, self._max_bytes, immediate=False, curve=self._curve)
        try:
            pull = m.PullMaps(job_id=assign.attempt.job_id, partition=assign.attempt.task, runs=request.runs,
                              received=request.received)
            transport.send(sock, encode(pull))
            reply = _Reply(self._received, assign, wanted, data_decoder(self._max_bytes))
            return reply.read(sock, request.addr, self._lost, self._timeout, check_cancel, progress)
        finally:
            sock.close(linger=0)


class _Reply:
    """One peer's answer to a PullMaps, stored as it comes: only the attempts that count, each stream
    started afresh (a pushed stream that broke off half-way is replaced, never mixed)."""

    def __init__(self, received: ReceiveStore, assign: m.AssignReduce, wanted: dict[int, int],
                 decoder: Any) -> None:
        self._received = received
        self._decoder = decoder
        self._job_id, self._partition = assign.attempt.job_id, assign.attempt.task
        self._key = assign.attempt
        self._wanted = wanted
        self._started: set[int] = set()

    def read(self, sock: zmq.Socket[Any], addr: str, lost: LostPeers, timeout: float,
             check_cancel: Callable[[], None], progress: Callable[[], None]) -> str:
        """Read until the PullEnd; the timeout counts silence, so a long reply never times out."""
        quiet_until = time.monotonic() + timeout
        while True:
            check_cancel()
            if addr in lost.of(self._key):
                return LOST
            remaining = quiet_until - time.monotonic()
            if remaining <= 0:
                return SILENT
            if not sock.poll(int(min(_SLICE, remaining) * 1000) + 1, zmq.POLLIN):
                progress()   # waiting on a peer is the shuffle at work, bounded by the timeout: not a hung app
                continue
            try:
                msg, payload = transport.recv_dealer(sock, self._decoder, copy=False)
            except ProtocolError:
                return BAD_REPLY
            quiet_until = time.monotonic() + timeout
            if isinstance(msg, m.Batch):
                self._batch(msg, payload)
                progress()
            elif isinstance(msg, m.PullEnd) and (msg.job_id, msg.partition) == (self._job_id, self._partition):
                self._end(msg)
                return ""

    def _counts(self, source: m.AttemptId) -> bool:
        """A stream of an attempt that counts, not complete here yet (started afresh on its first batch)."""
        if source.job_id != self._job_id or source.kind != "map" or self._wanted.get(source.task) != source.number:
            return False
        if source.task in self._started:
            return True
        if self._received.complete(self._job_id, self._partition, source.task, source.number):
            return False
        self._received.forget(self._job_id, self._partition, source.task, source.number)
        self._started.add(source.task)
        return True

    def _batch(self, msg: m.Batch, payload: Any) -> None:
        s = msg.source
        if msg.partition == self._partition and self._counts(s):
            self._received.add_batch(self._job_id, s.task, s.number, self._partition, msg.seq, payload, time.time())

    def _end(self, msg: m.PullEnd) -> None:
        for task, number, n_batches in msg.served:
            source = m.AttemptId(job_id=self._job_id, kind="map", task=task, number=number)
            if self._counts(source):
                self._received.set_pulled(self._job_id, task, number, self._partition, n_batches)
