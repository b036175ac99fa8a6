"""Trying workers' data addresses from the coordinator, off its event loop (`CheckAddress` actions).

A worker bound to 0.0.0.0 advertises its hostname, which other machines may not resolve, or resolve to an
address it does not listen on; one behind NAT may advertise an address nobody reaches. Its peers would
then hang pushing batches to it and pulling its map output. Opening a TCP connection to the advertised
address from the coordinator's host (closed at once, before any ZeroMQ greeting) catches that when the
worker registers. It is the coordinator's view, which stands for the peers': they are meant to reach the
coordinator and one another alike.
"""

from __future__ import annotations

import queue
import socket
from concurrent.futures import ThreadPoolExecutor

from zmr.core.events import AddressChecked

__all__ = ["AddressProbe", "reach_problem"]

_THREADS = 4


def reach_problem(endpoint: str, timeout: float) -> str:
    """Why a TCP connection to a ZeroMQ endpoint cannot be opened from here, or ''. Only tcp:// is tried."""
    transport, _, rest = endpoint.partition("://")
    if transport != "tcp":
        return ""
    host, _, port = rest.rpartition(":")
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return ""
    except socket.gaierror as exc:
        return f"cannot resolve {host!r}: {exc.strerror or exc}"
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except (OSError, ValueError) as exc:
        return str(getattr(exc, "strerror", None) or exc)


class AddressProbe:
    """Runs the checks in a few threads; `results()` hands their answers to the event loop."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._pool = ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="zmr-probe")
        self._done: queue.SimpleQueue[AddressChecked] = queue.SimpleQueue()

    def check(self, worker_id: str, data_addr: str) -> None:
        self._pool.submit(self._run, worker_id, data_addr)

    def _run(self, worker_id: str, data_addr: str) -> None:
        self._done.put(AddressChecked(worker_id, data_addr, reach_problem(data_addr, self._timeout)))

    def results(self) -> list[AddressChecked]:
        found = []
        while True:
            try:
                found.append(self._done.get_nowait())
            except queue.Empty:
                return found

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
