"""A stop flag that a ZeroMQ poller can watch, so a stopping loop ends its poll at once.

A process-directed signal may land on any thread (a libzmq I/O thread, the executor), and then the main
thread's poll only returns at its timeout before Python runs the handler. With `route_signals`, the
signal itself writes to the flag's socket, waking every poll that watches the flag.
"""

from __future__ import annotations

import signal
import socket
import threading


class StopFlag:
    """Set once, never cleared: after `set()` its `fileno()` stays readable, so every poll on it returns."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._rx, self._tx = socket.socketpair()
        self._rx.setblocking(False)
        self._tx.setblocking(False)

    def set(self) -> None:
        self._event.set()
        try:
            self._tx.send(b"!")
        except OSError:
            pass   # full (already readable) or closed: the pollers are awake either way

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)

    def fileno(self) -> int:
        """The readable end, for `zmq.Poller.register(flag, zmq.POLLIN)`; the poll reports it by this number."""
        return self._rx.fileno()

    def clear_wakeups(self) -> None:
        """Drop bytes a signal wrote without stopping (a handler that did not call `set`)."""
        if not self._event.is_set():
            try:
                while self._rx.recv(4096):
                    pass
            except OSError:
                pass

    def route_signals(self) -> None:
        """Make every handled signal wake the pollers (main thread only, like `signal.signal`)."""
        signal.set_wakeup_fd(self._tx.fileno(), warn_on_full_buffer=False)
