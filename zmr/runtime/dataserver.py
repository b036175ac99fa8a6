"""A worker's data socket: receives pushed batches as an owner and serves pulls of its kept map output.

It runs in its own thread so an owner keeps receiving while its executor runs a map task. Whatever a
peer sends, the thread logs it once per peer and keeps serving.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import zmq

from zmr.errors import ProtocolError
from zmr.protocol.codec import data_decoder, encode
from zmr.protocol.messages import AttemptId, Batch, BatchAck, PullEnd, PullMaps, StreamEnd, runs_filter
from zmr.runtime import transport
from zmr.runtime.security import WORKER, Curve
from zmr.runtime.stopflag import StopFlag
from zmr.runtime.stores import MapOutputStore, ReceiveStore


class DataServer(threading.Thread):
    """Owns the worker's data ROUTER socket; nothing else touches it."""

    def __init__(self, ctx: zmq.Context[Any], bind: str, max_bytes: int, received: ReceiveStore,
                 kept: MapOutputStore, log: Any, curve: Curve | None = None, check_role: bool = False,
                 advertise: str = "") -> None:
        """`advertise`: the address peers reach this socket at, if not the bound one (`worker.advertise`)."""
        super().__init__(name="zmr-data", daemon=True)
        self._sock = transport.router(ctx, bind, max_bytes, curve)
        self._check_role = check_role
        self._sock.setsockopt(zmq.SNDTIMEO, 10_000)
        self.address = transport.advertised_address(self._sock, advertise)
        self._decoder = data_decoder(max_bytes)
        self._received = received
        self._kept = kept
        self._log = log
        self._halt = StopFlag()
        self._bad_peers: set[bytes] = set()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        try:
            poller = zmq.Poller()
            poller.register(self._sock, zmq.POLLIN)
            poller.register(self._halt, zmq.POLLIN)
            while not self._halt.is_set():
                if self._sock in dict(poller.poll(1000)):
                    self._serve_ready()
        finally:
            self._sock.close(linger=0)

    def _serve_ready(self) -> None:
        while self._sock.poll(0, zmq.POLLIN):
            try:
                if self._check_role:   # fail closed: only peers the ZAP handler named workers
                    peer, role, _, msg, payload = transport.recv_router_role(self._sock, self._decoder)
                    if role != WORKER:
                        raise ProtocolError(f"{type(msg).__name__} from a peer in role {role or 'none'!r}",
                                            peer=peer)
                else:
                    peer, msg, payload = transport.recv_router(self._sock, self._decoder, copy=False)
            except ProtocolError as exc:
                self._bad_message(exc.peer, exc)
                continue
            try:
                self._handle(peer, msg, payload)
            except OSError as exc:
                self._log.error("data_store_failed", error=str(exc))

    def _handle(self, peer: bytes, msg: Any, payload: Any) -> None:
        if isinstance(msg, Batch | StreamEnd) and msg.source.kind != "map":
            self._bad_message(peer, ProtocolError(f"{type(msg).__name__} of {msg.source.label}, not a map attempt"))
        elif isinstance(msg, Batch):
            s = msg.source
            self._received.add_batch(s.job_id, s.task, s.number, msg.partition, msg.seq, payload, time.time())
            ack = BatchAck(source=s, partition=msg.partition, seq=msg.seq, nbytes=len(payload))
            transport.send(self._sock, encode(ack), peer)
        elif isinstance(msg, StreamEnd):
            s = msg.source
            self._received.add_end(s.job_id, s.task, s.number, msg.counts)
        elif isinstance(msg, PullMaps):
            self._serve_pull(peer, msg)
        else:
            self._bad_message(peer, ProtocolError(f"unexpected {type(msg).__name__} on the data socket"))

    def _serve_pull(self, peer: bytes, req: PullMaps) -> None:
        """Every finished map attempt kept here among the asked maps (with `received`: every complete
        stream of the partition pushed here), its batches, then one PullEnd."""
        served: list[tuple[int, int, int]] = []
        if req.received:
            found = self._received.complete_streams(req.job_id, req.partition, runs_filter(req.runs))
            read = self._received.read_stream
        else:
            found = self._kept.finished(req.job_id, runs_filter(req.runs))
            read = self._kept.batches
        for task, number in found:
            batches = read(req.job_id, task, number, req.partition)
            if batches is None:
                continue   # the partition is committed (released): nobody reads it any more
            source = AttemptId(job_id=req.job_id, kind="map", task=task, number=number)
            for seq, payload in enumerate(batches):
                header = Batch(source=source, partition=req.partition, seq=seq, n_records=0)
                try:
                    self._sock.send_multipart([peer, *encode(header, payload)])
                except zmq.ZMQError:
                    return  # the puller is gone or stuck; it times out and reports missing data
            served.append((task, number, len(batches)))
        transport.send(self._sock, encode(PullEnd(job_id=req.job_id, partition=req.partition, served=served)), peer)

    def _bad_message(self, peer: bytes, exc: ProtocolError) -> None:
        if peer not in self._bad_peers:
            self._bad_peers.add(peer)
            self._log.warning("bad_data_message", peer=peer.hex(), error=str(exc))
