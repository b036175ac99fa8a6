"""The map side of the streaming shuffle: push batches to partition owners within byte credit.

Each owner grants `window_bytes` of credit to this sender; a batch spends its size and the owner's
ack returns it. A sender never queues more than that to one peer, so no socket queue grows without
bound. An owner that stays silent past `ack_timeout` is given up for this task: the data is in the
mapper's kept copy, and the reducer pulls it back (push first, pull as the fallback).

A map task never waits for its last acks: once its batches are handed to the sockets it is done, and
the credit they hold comes back while the next task runs. An owner busy in a long C call (a regex
over megabytes holds the GIL) acks late, and waiting for it would idle the mapper's core.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zmq

from zmr.errors import ProtocolError
from zmr.protocol.codec import data_decoder, encode
from zmr.protocol.messages import AttemptId, Batch, BatchAck, StreamEnd
from zmr.runtime import transport
from zmr.runtime.security import Curve

AckKey = tuple[AttemptId, int, int]  # (map attempt, partition, seq)
_WAIT_SLICE = 0.2   # seconds between looks at `give_up` while waiting for credit


@dataclass
class _Peer:
    sock: zmq.Socket[Any]
    unacked: dict[AckKey, int] = field(default_factory=dict)
    in_flight: int = 0   # bytes of `unacked`
    failed: bool = False

    def sent(self, key: AckKey, size: int) -> None:
        self.unacked[key] = size
        self.in_flight += size

    def acked(self, key: AckKey) -> None:
        self.in_flight -= self.unacked.pop(key, 0)

    def forget(self) -> None:
        self.unacked.clear()
        self.in_flight = 0


class Pusher:
    """One DEALER per owner address, reused across tasks; owned by the executor thread only."""

    def __init__(self, ctx: zmq.Context[Any], window_bytes: int, max_bytes: int, ack_timeout: float,
                 curve: Curve | None = None) -> None:
        self._ctx = ctx
        self._curve = curve
        self._window = window_bytes
        self._max_bytes = max_bytes
        self._ack_timeout = ack_timeout
        self._decoder = data_decoder(max_bytes)
        self._peers: dict[str, _Peer] = {}

    def start_task(self, window_bytes: int) -> None:
        """A new map attempt: owners given up get a fresh chance; batches still unacked keep their credit."""
        self._window = window_bytes
        for peer in self._peers.values():
            if peer.failed:
                peer.failed = False
                peer.forget()
            self._take_acks(peer)

    def push(self, addr: str, header: Batch, payload: bytes,
             give_up: Callable[[], bool] = lambda: False) -> bool:
        """Send one batch to `addr` once credit allows; False if that owner is given up.

        `give_up` is asked every slice while waiting: the owner was replaced (it was declared dead) or the
        attempt was cancelled, so waiting on is pointless; the reducer pulls the batch from the kept copy.
        """
        peer = self._peer(addr)
        if peer is None:
            return False
        deadline = time.monotonic() + self._ack_timeout
        if peer.in_flight + len(payload) > self._window:
            self._take_acks(peer)
        while peer.unacked and peer.in_flight + len(payload) > self._window:
            if give_up():
                return False
            if not self._await_acks(peer, min(deadline, time.monotonic() + _WAIT_SLICE)):
                if time.monotonic() >= deadline:
                    peer.failed = True
                    return False
        if not self._send(peer, encode(header, payload), deadline, give_up):
            return False
        peer.sent((header.source, header.partition, header.seq), len(payload))
        return True

    def end(self, addr: str, msg: StreamEnd, give_up: Callable[[], bool] = lambda: False) -> None:
        peer = self._peer(addr)
        if peer is not None:
            self._send(peer, encode(msg), time.monotonic() + self._ack_timeout, give_up)

    def close(self) -> None:
        for peer in self._peers.values():
            peer.sock.close(linger=0)
        self._peers.clear()

    def _peer(self, addr: str) -> _Peer | None:
        if not addr:
            return None
        peer = self._peers.get(addr)
        if peer is None:
            peer = self._peers[addr] = _Peer(transport.dealer(self._ctx, addr, self._max_bytes, curve=self._curve))
        return None if peer.failed else peer

    def _send(self, peer: _Peer, frames: list[Any], deadline: float,
              give_up: Callable[[], bool] = lambda: False) -> bool:
        while not transport.send(peer.sock, frames):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                peer.failed = True
                return False
            if give_up():
                return False
            peer.sock.poll(int(min(remaining, _WAIT_SLICE) * 1000) + 1, zmq.POLLOUT)
        return True

    def _await_acks(self, peer: _Peer, deadline: float) -> bool:
        """Take whatever acks arrive before `deadline`; False if none came."""
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not peer.sock.poll(int(remaining * 1000), zmq.POLLIN):
            return False
        self._take_acks(peer)
        return True

    def _take_acks(self, peer: _Peer) -> None:
        """Return the credit of every ack already here, without waiting (acks must not pile up unread)."""
        while peer.sock.poll(0, zmq.POLLIN):
            try:
                msg, _ = transport.recv_dealer(peer.sock, self._decoder)
            except ProtocolError:
                continue
            if isinstance(msg, BatchAck):
                peer.acked((msg.source, msg.partition, msg.seq))
