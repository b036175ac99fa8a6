"""The dashboard's HTTP server on its own: it serves while running, and `stop` ends it at once."""

from __future__ import annotations

import http.client
import socket
import threading

import pytest

from zmr.log import get_logger
from zmr.runtime.dashboard import Dashboard


def test_it_serves_and_stop_ends_it_with_a_client_still_connected() -> None:
    dash = Dashboard.start("http://127.0.0.1:0", keys_dir="", insecure=False, log=get_logger(role="test"))
    port = int(dash.base_url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/static/dashboard.css")
    answer = conn.getresponse()
    assert answer.status == 200 and answer.read()
    idle = socket.create_connection(("127.0.0.1", port), timeout=5)   # connected, never sends a request
    try:
        dash.stop()
        assert "dashboard" not in [t.name for t in threading.enumerate()], "the serving thread has ended"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        idle.close()
        conn.close()
