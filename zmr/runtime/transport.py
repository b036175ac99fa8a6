"""ZeroMQ sockets set up the way zmr needs them, and sends that never block or vanish silently.

The rules behind each option are in docs/architecture.md section 9 (ZeroMQ rules): ROUTER_MANDATORY
so a ROUTER reports an unroutable peer instead of dropping, IMMEDIATE and reconnect backoff on DEALERs,
LINGER 0, MAXMSGSIZE.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator, Sequence
from typing import Any, cast

import zmq
from zmq.utils.monitor import recv_monitor_message

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
    sock = _unconnected_dealer(ctx, max_bytes, immediate, curve)
    with _closed_on_failure(sock):
        sock.connect(connect)
    return sock


def watched_dealer(ctx: zmq.Context[Any], connect: str, max_bytes: int, who: str, immediate: bool = True,
                   curve: Curve | None = None) -> tuple[zmq.Socket[Any], HandshakeWatch]:
    """A `dealer` to the coordinator whose handshakes are watched from before the first one starts."""
    sock = _unconnected_dealer(ctx, max_bytes, immediate, curve)
    with _closed_on_failure(sock):
        watch = HandshakeWatch(sock, "the coordinator", who, curve is not None)
        try:
            sock.connect(connect)
        except BaseException:
            watch.close()
            raise
    return sock, watch


def _unconnected_dealer(ctx: zmq.Context[Any], max_bytes: int, immediate: bool,
                        curve: Curve | None) -> zmq.Socket[Any]:
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
    return cast("zmq.Socket[Any]", sock)


def bound_address(sock: zmq.Socket[Any]) -> str:
    """The concrete endpoint a socket bound to (a `*` port resolved)."""
    endpoint = sock.getsockopt(zmq.LAST_ENDPOINT)
    return endpoint.decode() if isinstance(endpoint, bytes) else str(endpoint)


def advertised_address(sock: zmq.Socket[Any], advertise: str = "") -> str:
    """The endpoint peers should connect to. `advertise` (`worker.advertise`) overrides the bound one: a
    whole endpoint as it is, a host with the bound port. Else a wildcard bind is advertised under this
    host's name."""
    endpoint = bound_address(sock)
    transport, _, rest = endpoint.partition("://")
    host, _, port = rest.rpartition(":")
    if "://" in advertise:
        return advertise
    if advertise:
        bare = advertise.strip("[]")
        return f"{transport}://{f'[{bare}]' if ':' in bare else bare}:{port}"   # an IPv6 address in brackets
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
        exc.peer = peer
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
        exc.peer = peer
        raise
    return peer, role, key, msg, payload


def recv_dealer(sock: zmq.Socket[Any], decoder: Decoder[Any], copy: bool = True) -> tuple[Any, Any]:
    return decoder.decode(_frames(sock, copy))


_WATCHED = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH | \
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_CONNECTED


class HandshakeWatch:
    """What the handshakes of a connecting socket say, from libzmq's socket monitor.

    A server whose ZAP handler refuses a key answers nothing at all at the application level, so
    without this a refused peer sees only silence. libzmq (4.3 and later) reports it to the monitor:
    HANDSHAKE_FAILED_AUTH when the server refused our key, NO_DETAIL when the CURVE handshake broke
    (e.g. we hold the wrong server key), PROTOCOL when one side speaks CURVE and the other does not.
    """

    def __init__(self, sock: zmq.Socket[Any], server: str, who: str, curve: bool) -> None:
        """`server` and `who` name both ends in the messages ("the coordinator", "client"); call before
        `connect`, so that no handshake goes unseen."""
        self._sock = sock
        self.monitor: zmq.Socket[Any] = sock.get_monitor_socket(_WATCHED)
        self._server, self._who, self._curve = server, who, curve
        self.refused = False   # the server refused our key: definite, retrying cannot help
        self.failure = ""      # what the latest failed handshake says ("" once one succeeded)
        self.connected = False   # a connection was made (to something listening there) at least once

    def poll(self) -> str:
        """Read the events so far; returns `failure`."""
        while self.monitor.poll(0):
            try:
                event = recv_monitor_message(self.monitor, zmq.NOBLOCK)
            except (zmq.ZMQError, ValueError, IndexError):
                continue
            self._note(int(event["event"]), int(event["value"]))
        return self.failure

    def _note(self, event: int, value: int) -> None:
        if event == zmq.EVENT_CONNECTED:
            self.connected = True
        elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self.refused, self.failure = False, ""
        elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            self.refused = True
            self.failure = (f"authentication failed: {self._server} refused this {self._who}'s key "
                            f"(ZAP status {value}); is its public key listed in the cluster's key directory?")
        elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            self.failure = (f"authentication failed: {self._server} " + (
                "does not speak CURVE: set security.keys_dir on both sides, or on neither" if self._curve else
                "requires CURVE keys: set security.keys_dir (see `zmr keys init`)"))
        elif not self.failure:   # a mismatch's first try is often reported without detail: keep the best
            self.failure = (f"authentication failed: the CURVE handshake with {self._server} broke; is "
                            "coordinator.key its public key?" if self._curve else
                            f"the handshake with {self._server} failed (does it require CURVE keys?)")

    def close(self) -> None:
        """Before the socket closes: a monitor left running keeps the context from terminating."""
        with contextlib.suppress(zmq.ZMQError):
            self._sock.disable_monitor()
        self.monitor.close(linger=0)
