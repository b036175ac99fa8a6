"""Hand-made peers for the hostile end-to-end tests: raw TCP, ZMTP greetings, DEALERs with a chosen
identity and keys, a fake worker, and readers for the JSON logs of a cluster's processes.

Every peer here is something a real zmr process never is: it speaks only as much of the protocol as a
test needs, so the servers' handling of strangers, garbage and misuse can be watched from outside.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import zmq

from zmr.errors import ProtocolError
from zmr.protocol import messages as m
from zmr.protocol.codec import Decoder, encode

from .conftest import REPO, clean_env

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


# ------------------------------------------------------------------ raw TCP


def host_port(endpoint: str) -> tuple[str, int]:
    """`tcp://127.0.0.1:5555` -> ("127.0.0.1", 5555)."""
    host, _, port = endpoint.partition("://")[2].rpartition(":")
    return host.strip("[]"), int(port)


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def zmtp_greeting(endpoint: str, timeout: float = 5.0) -> bytes:
    """The server's 64-byte ZMTP 3 greeting, read after sending the start of ours.

    We send signature and version first and the rest (mechanism NULL, as-server 0, filler) only after
    reading the server's whole greeting: a server that sees a mechanism it does not speak closes the
    connection, possibly before its own greeting has been flushed.
    """
    signature = b"\xff" + b"\x00" * 8 + b"\x7f"
    rest = b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31
    with socket.create_connection(host_port(endpoint), timeout=timeout) as sock:
        sock.sendall(signature + bytes([3, 0]))
        greeting = _recv_exactly(sock, 64)
        try:
            sock.sendall(rest)
        except OSError:
            pass
    assert len(greeting) == 64, f"short ZMTP greeting from {endpoint}: {greeting!r}"
    assert greeting[0] == 0xFF and greeting[9] == 0x7F, f"not a ZMTP signature: {greeting[:10]!r}"
    assert greeting[10] == 3, f"not ZMTP 3.x: version {greeting[10]}.{greeting[11]}"
    return greeting


def zmtp_mechanism(endpoint: str) -> str:
    """The security mechanism a ZeroMQ server announces in its greeting: NULL, PLAIN or CURVE."""
    return zmtp_greeting(endpoint)[12:32].rstrip(b"\x00").decode("ascii")


def send_raw(endpoint: str, data: bytes, timeout: float = 5.0) -> None:
    """Connect a plain TCP socket, write `data` (as much as the server takes), close."""
    try:
        with socket.create_connection(host_port(endpoint), timeout=timeout) as sock:
            sock.sendall(data)
            sock.settimeout(0.2)
            try:
                sock.recv(4096)
            except (TimeoutError, OSError):
                pass
    except OSError:
        pass   # the server hung up on us mid-write: that is its right


# ------------------------------------------------------------------ ZeroMQ peers


class Peer:
    """A DEALER with a known routing id (so its log lines can be found) and optional CURVE keys."""

    def __init__(self, endpoint: str, identity: bytes | None = None,
                 curve: tuple[bytes, bytes, bytes] | None = None, max_bytes: int = -1) -> None:
        """`curve`: (public key, secret key, server public key), all z85."""
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, max_bytes)
        if identity is not None:
            assert identity and identity[0] != 0, "a routing id must not start with a zero byte"
            self.sock.setsockopt(zmq.ROUTING_ID, identity)
        if curve is not None:
            public, secret, server = curve
            self.sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
            self.sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
            self.sock.setsockopt(zmq.CURVE_SERVERKEY, server)
        self.identity = identity
        self.sock.connect(endpoint)

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()

    def send(self, frames: Sequence[bytes]) -> None:
        self.sock.send_multipart(list(frames))

    def send_msg(self, msg: msgspec.Struct, payload: bytes | None = None) -> None:
        self.send(encode(msg, payload))

    def replies(self, timeout: float, until: type | None = None) -> list[Any]:
        """Every message that arrives within `timeout` (decoded when possible, else the raw frames);
        returns early once a message of type `until` arrived."""
        got: list[Any] = []
        deadline = time.monotonic() + timeout
        decoder = Decoder(m.FromCoordinator | m.DataMessage, 1 << 30)
        while (remaining := deadline - time.monotonic()) > 0:
            if not self.sock.poll(int(remaining * 1000) + 1, zmq.POLLIN):
                break
            frames = self.sock.recv_multipart()
            try:
                msg = decoder.decode(frames)[0]
            except ProtocolError:
                msg = frames
            got.append(msg)
            if until is not None and isinstance(msg, until):
                break
        return got

    @property
    def hex(self) -> str:
        """How the servers' logs name this peer."""
        assert self.identity is not None
        return self.identity.hex()


class FakeWorker(Peer):
    """Registers like a worker and never asks for a task. Its data address accepts connections (the
    coordinator tries it) but serves nothing."""

    def __init__(self, endpoint: str, worker_id: str, identity: bytes | None = None,
                 curve: tuple[bytes, bytes, bytes] | None = None) -> None:
        super().__init__(endpoint, identity, curve)
        self.worker_id = worker_id
        self.received: list[Any] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.data_addr = f"tcp://127.0.0.1:{self._listener.getsockname()[1]}"

    def close(self) -> None:
        self._listener.close()
        super().close()

    def register(self, timeout: float = 5.0) -> bool:
        """Send Register; True once Welcome came back."""
        self.send_msg(m.Register(worker_id=self.worker_id, data_addr=self.data_addr, python=PYTHON,
                                 pid=os.getpid(), host="fake"))
        got = self.replies(timeout, until=m.Welcome)
        self.received += got
        return any(isinstance(r, m.Welcome) for r in got)

    def beat(self) -> None:
        self.send_msg(m.Heartbeat(worker_id=self.worker_id))

    def drain(self, timeout: float = 0.05) -> list[Any]:
        got = self.replies(timeout)
        self.received += got
        return got


# ------------------------------------------------------------------ logs


def log_records(path: Path) -> list[dict[str, Any]]:
    """The JSON log records of one process (lines that are not JSON are skipped)."""
    records = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def events(path: Path, event: str, **fields: Any) -> list[dict[str, Any]]:
    """Log records of `event` whose fields have the given values."""
    return [r for r in log_records(path) if r.get("event") == event
            and all(r.get(k) == v for k, v in fields.items())]


# ------------------------------------------------------------------ processes started by hand


def zmr_command(*args: str | Path, entry_point: str | None = None) -> list[str]:
    """`python -m zmr ARGS`, or `python <venv>/bin/<entry_point> ARGS` (e.g. zmr-coord) if it is installed."""
    if entry_point is not None:
        script = Path(sys.executable).parent / entry_point
        if script.exists():
            return [sys.executable, str(script), *map(str, args)]
        command = {"zmr-coord": "coord", "zmr-worker": "worker"}[entry_point]
        return [sys.executable, "-m", "zmr", command, *map(str, args)]
    return [sys.executable, "-m", "zmr", *map(str, args)]


def start_process(cmd: Sequence[str], log: Path, tmpdir: Path | None = None, preexec_fn: Any = None,
                  env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a zmr process in the repo with its own session; stdout and stderr go to `log`.

    The repo goes first on PYTHONPATH, so an entry-point script runs this checkout's zmr.
    """
    base = clean_env(tmpdir)
    base["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [base.get("PYTHONPATH")])])
    with open(log, "ab") as out:
        return subprocess.Popen(list(cmd), cwd=REPO, env={**base, **(env or {})}, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=out, start_new_session=True, preexec_fn=preexec_fn)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """SIGTERM, then SIGKILL if it does not exit within `timeout`; returns the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def wait_for_event(path: Path, event: str, timeout: float, proc: subprocess.Popen[bytes] | None = None,
                   **fields: Any) -> list[dict[str, Any]]:
    """Until `event` appears in the log (or the process exits); returns the matching records."""
    deadline = time.monotonic() + timeout
    while True:
        found = events(path, event, **fields)
        if found or time.monotonic() > deadline or (proc is not None and proc.poll() is not None):
            return found
        time.sleep(0.05)


def peak_rss_kib(pids: Sequence[int]) -> dict[int, int]:
    """VmHWM (peak resident set, KiB) of each live process, and of its live children, by pid."""
    peaks: dict[int, int] = {}
    for pid in [*pids, *children(pids)]:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks[pid] = int(line.split()[1])
        except OSError:
            pass
    return peaks


def children(pids: Sequence[int]) -> Iterator[int]:
    wanted = set(pids)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) in wanted:
                yield int(entry.name)
