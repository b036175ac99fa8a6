"""What goes in and out of the scheduler: events (what happened) and actions (what the shell must do).

Plain frozen values, so a test, the simulator and the coordinator shell all speak to the scheduler the
same way (docs/architecture.md section 2: events in, actions out, the clock passed in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zmr.core.state import JobState
from zmr.protocol import journal as j
from zmr.protocol import messages as m


@dataclass(frozen=True)
class Received:
    """A decoded message from the peer with ZeroMQ routing id `peer`.

    `key` is the CURVE public key (z85) the peer authenticated with, as the ZAP handler vouched for it;
    "" without CURVE. A worker id is bound to the key and the token it first registered with.
    """

    peer: bytes
    msg: m.ToCoordinator
    key: str = ""


@dataclass(frozen=True)
class Tick:
    """Time passed: check liveness, timeouts and backoffs, ping workers."""


@dataclass(frozen=True)
class ConnectionsAlive:
    """These peers' connections still pass libzmq's own heartbeats.

    libzmq answers ZMTP pings from its I/O thread, so a worker whose app holds the GIL in one long C
    call (a regex over a whole split) still proves its process alive this way, while it cannot send a
    heartbeat of its own. A dead or stopped process fails these pings and its connection is dropped.
    Whether its task makes progress is judged separately (`task_timeout`).
    """

    peers: frozenset[bytes]


@dataclass(frozen=True)
class AddressChecked:
    """What the shell found when it tried a worker's data address (`CheckAddress`): `problem` is why it
    could not connect, "" if it could."""

    worker_id: str
    data_addr: str
    problem: str


Event = Received | Tick | ConnectionsAlive | AddressChecked


@dataclass(frozen=True)
class Send:
    peer: bytes
    msg: m.FromCoordinator


@dataclass(frozen=True)
class JobFinished:
    """Write `_SUCCESS` (succeeded) or remove partial output (failed, cancelled)."""

    job_id: str
    state: JobState
    output_dir: str
    n_reduce: int


@dataclass(frozen=True)
class Log:
    event: str
    level: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class Journal:
    """A state change to make durable before any Send of the same batch of actions goes out."""

    record: j.Record


@dataclass(frozen=True)
class CheckAddress:
    """Try to connect to a worker's data address, off the event loop, and say what happened
    (`AddressChecked`): a worker its peers cannot reach must not be left to hang a shuffle."""

    worker_id: str
    data_addr: str


Action = Send | JobFinished | Log | Journal | CheckAddress
