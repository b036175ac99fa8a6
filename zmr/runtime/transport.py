"""ZeroMQ sockets set up the way zmr needs them, and sends that never block or vanish silently.

The rules behind each option are in design.md section 8: ROUTER_MANDATORY so a ROUTER reports an
unroutable peer instead of dropping, IMMEDIATE and reconnect backoff on DEALERs, LINGER 0, MAXMSGSIZE.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator, Sequence
from typing import Any, cast

import zmq

from zmr.errors import ProtocolError
from zmr.protocol.codec import Decoder
from zmr.runtime.security import Curve, sender_of

_ZERO_COPY_BYTES = 65536
_RECONNECT_FIRST_MS = 10
_RECONNECT_MAX_MS = 2000


@contextlib.contextmanager
def _closed_on_failure(sock: zmq.Socket[Any]) -> Iterator[None]:
    """Close `sock` if setting it up fails: an open socket would keep the context's term() waiting for ever."""
    try:
        yield
    except BaseException:
        sock.close()
        raise


def router(ctx: zmq.Context[Any], bind: str, max_bytes: int, curve: Curve | None = None,
           heartbeat: tuple[float, float] | None = None) -> zmq.Socket[Any]:
    """A ROUTER bound to `bind` that refuses frames over `max_bytes` and reports unroutable peers.

    `heartbeat` = (interval, timeout) in seconds turns on ZMTP heartbeats: libzmq pings every peer and
    drops a connection whose peer does not answer in time, so sends to it then fail as unroutable.
    """
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    with _closed_on_failure(sock):
        if curve is not None:
            curve.apply(sock)
        if heartbeat is not None:
            interval_ms, timeout_ms = int(heartbeat[0] * 1000), int(heartbeat[1] * 1000)
            sock.setsockopt(zmq.HEARTBEAT_IVL, interval_ms)
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, timeout_ms)
            sock.setsockopt(zmq.HEARTBEAT_TTL, timeout_ms)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.MAXMSGSIZE, max_bytes)
        sock.setsockopt(zmq.SNDHWM, 10000)
        sock.setsockopt(zmq.RCVHWM, 10000)
        sock.bind(bind)
    return cast("zmq.Socket[Any]", sock)


def dealer(ctx: zmq.Context[Any], connect: str, max_bytes: int, immediate: bool = True,
           curve: Curve | None = None) -> zmq.Socket[Any]:
    """A DEALER connected to `connect`, with reconnect backoff and no lingering on close.

    `immediate` (the default) drops sends while there is no connection instead of queueing them; a socket
    that must queue its first request until the peer is up passes False. Options are set before
    `connect()`: changing IMMEDIATE on a connected socket trips an assertion inside libzmq.
    """
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    with _closed_on_failure(sock):
        if curve is not None:
            curve.apply(sock)
        sock.setsockopt(zmq.IMMEDIATE, int(immediate))
        # doubling from 10 ms to 2 s: a worker that starts just before its coordinator binds (as a local
        # cluster's do) connects 10 ms later, not a whole interval later; a peer that stays down costs little
        sock.setsockopt(zmq.RECONNECT_IVL, _RECONNECT_FIRST_MS)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, _RECONNECT_MAX_MS)
        sock.setsockopt(zmq.MAXMSGSIZE, max_bytes)
        sock.setsockopt(zmq.SNDHWM, 10000)
        sock.setsockopt(zmq.RCVHWM, 10000)
        sock.connect(connect)
    return cast("zmq.Socket[Any]", sock)


def bound_address(sock: zmq.Socket[Any]) -> str:
    """The concrete endpoint a socket bound to (a `*` port resolved)."""
    endpoint = sock.getsockopt(zmq.LAST_ENDPOINT)
    return endpoint.decode() if isinstance(endpoint, bytes) else str(endpoint)


def advertised_address(sock: zmq.Socket[Any]) -> str:
    """The endpoint peers should connect to: a wildcard bind is advertised under this host's name."""
    endpoint = bound_address(sock)
    transport, _, rest = endpoint.partition("://")
    host, _, port = rest.rpartition(":")
    if host in ("0.0.0.0", "[::]", "*"):
        return f"{transport}://{socket.gethostname()}:{port}"
    return endpoint


def send(sock: zmq.Socket[Any], frames: Sequence[Any], peer: bytes | None = None) -> bool:
    """Send without blocking; False if the peer is unknown, gone or full (the caller re-plans)."""
    big = any(len(f) > _ZERO_COPY_BYTES for f in frames)  # zero-copy pays only for large buffers
    try:
        sock.send_multipart([peer, *frames] if peer is not None else list(frames), flags=zmq.NOBLOCK,
                            copy=not big)
    except (zmq.Again, zmq.error.ZMQError):
        return False
    return True


def _frames(sock: zmq.Socket[Any], copy: bool) -> list[Any]:
    """Receive a message; large frames stay zero-copy (worth it only above ~64 KiB)."""
    frames: list[Any] = sock.recv_multipart(flags=zmq.NOBLOCK, copy=copy)
    return frames if copy else [f.buffer if len(f) > _ZERO_COPY_BYTES else f.bytes for f in frames]


def recv_router(sock: zmq.Socket[Any], decoder: Decoder[Any], copy: bool = True) -> tuple[bytes, Any, Any]:
    """Receive one message on a ROUTER: (peer, record, payload). Raises ProtocolError with `.peer` set."""
    frames = _frames(sock, copy)
    peer = bytes(frames[0])
    try:
        msg, payload = decoder.decode(frames[1:])
    except ProtocolError as exc:
        exc.peer = peer  # type: ignore[attr-defined]
        raise
    return peer, msg, payload


def recv_router_role(sock: zmq.Socket[Any], decoder: Decoder[Any]) -> tuple[bytes, str, str, Any, Any]:
    """Like `recv_router`, plus the role and the public key the ZAP handler vouched for: (peer, role, key,
    record, payload), role '' if none (fail closed)."""
    frames = sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
    peer = frames[0].bytes
    try:
        role, key = sender_of(str(frames[-1].get("User-Id") or ""))
    except zmq.ZMQError:
        role, key = "", ""
    try:
        msg, payload = decoder.decode([f.buffer if len(f) > _ZERO_COPY_BYTES else f.bytes for f in frames[1:]])
    except ProtocolError as exc:
        exc.peer = peer  # type: ignore[attr-defined]
        raise
    return peer, role, key, msg, payload


def recv_dealer(sock: zmq.Socket[Any], decoder: Decoder[Any], copy: bool = True) -> tuple[Any, Any]:
    return decoder.decode(_frames(sock, copy))
