"""The stop flag: a poll that watches it ends as soon as it is set, or as soon as a routed signal arrives."""

from __future__ import annotations

import signal
import threading
import time

import zmq

from zmr.runtime.stopflag import StopFlag


def _poll(flag: StopFlag, timeout_ms: int) -> bool:
    poller = zmq.Poller()
    poller.register(flag, zmq.POLLIN)
    return flag.fileno() in dict(poller.poll(timeout_ms))


def test_a_flag_set_from_another_thread_ends_a_poll_and_stays_readable() -> None:
    flag = StopFlag()
    assert not _poll(flag, 0) and not flag.is_set()
    threading.Timer(0.05, flag.set).start()
    started = time.monotonic()
    assert _poll(flag, 30_000), "the poll ran to its timeout"
    assert time.monotonic() - started < 20, "the poll ended when the flag was set, not at its timeout"
    flag.clear_wakeups()
    assert flag.is_set() and _poll(flag, 0), "once set, every later poll returns too"
    assert flag.wait(0)


def test_a_routed_signal_wakes_the_poll_and_a_stray_one_can_be_cleared() -> None:
    flag = StopFlag()
    stopping = threading.Event()
    old_handler = signal.signal(signal.SIGUSR1, lambda signum, frame: stopping.set())
    old_fd = signal.set_wakeup_fd(-1)
    try:
        flag.route_signals()
        signal.raise_signal(signal.SIGUSR1)
        assert stopping.is_set()
        assert _poll(flag, 0), "the signal wrote to the flag"
        assert not flag.is_set(), "a signal whose handler does not set the flag does not stop"
        flag.clear_wakeups()
        assert not _poll(flag, 0), "cleared: a poll waits again"
    finally:
        signal.set_wakeup_fd(old_fd)
        signal.signal(signal.SIGUSR1, old_handler)
