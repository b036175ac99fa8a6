"""The coordinator's dashboard over real HTTP: JSON status, metrics, the token rules, cancel, bad requests."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

from zmr.client import JobFailed
from zmr.local import LocalCluster

from .conftest import APPS, FAST, TEST_APPS, Cluster, wait_until

pytestmark = pytest.mark.e2e

GATED_APP = TEST_APPS / "gated.py"
FAIL_REDUCE_APP = TEST_APPS / "fail_reduce.py"


def get(url: str, token: str = "", method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one request (an HTTP error status is an answer, not an exception)."""
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def get_json(url: str, token: str = "", method: str = "GET") -> tuple[int, Any]:
    status, _, body = get(url, token, method)
    return status, json.loads(body)


def base_and_token(c: Cluster) -> tuple[str, str]:
    url = urlsplit(c.local.dashboard_url)
    assert url.query.startswith("token=")
    return f"{url.scheme}://{url.netloc}", url.query.removeprefix("token=")


def test_status_job_detail_and_metrics_follow_a_job_to_its_end(cluster: Callable[..., Cluster],
                                                                  library: Path, tmp_path: Path) -> None:
    c = cluster(2)
    base, _ = base_and_token(c)
    assert c.client is not None
    job = c.client.submit(str(APPS / "wc.py"), [str(library)], str(tmp_path / "out"), n_reduce=3)
    c.client.wait(job, timeout=60)

    status, doc = get_json(f"{base}/api/status")
    assert status == 200 and doc["version"] == 1
    (info,) = [j for j in doc["jobs"] if j["job_id"] == job]
    assert info["state"] == "succeeded" and info["maps_done"] == info["maps_total"] == 8
    assert info["attempts"] == []   # the overview is brief; the job's page has the detail
    assert len(doc["workers"]) == 2
    for worker in doc["workers"]:
        assert worker["state"] in ("idle", "busy") and worker["rss"] > 10 << 20
    assert doc["coordinator"]["bind"] == c.address

    def heartbeats_caught_up() -> list[dict[str, Any]] | None:
        workers = get_json(f"{base}/api/status")[1]["workers"]
        return workers if sum(w["bytes_out"] for w in workers) == info["bytes_shuffled"] else None

    # Workers report their shuffle bytes by heartbeat: every byte the maps produced, of which the batches
    # that crossed to the other worker arrived there (a mapper's batches for its own partitions stay local).
    workers = wait_until(heartbeats_caught_up, 10, what="the workers' heartbeats to report the shuffle")
    assert 0 < sum(w["bytes_in"] for w in workers) <= info["bytes_shuffled"]

    def drained() -> dict[str, Any] | None:
        status, detail = get_json(f"{base}/api/jobs/{job}")
        assert status == 200
        one = detail["jobs"][0]
        return one if one["timeline"][-1]["leases"] == 0 else None

    one = wait_until(drained, 30, what="the job's leases to drain to zero")
    assert max(p["leases"] for p in one["timeline"]) > 0   # they rose before they fell
    attempts = one["attempts"]
    assert sorted((a["kind"], a["task"]) for a in attempts if a["outcome"] == "ok") == sorted(
        [("map", i) for i in range(8)] + [("reduce", r) for r in range(3)])
    assert all(a["ended"] >= a["started"] and a["worker"] for a in attempts)
    assert {t["state"] for t in one["tasks"]} == {"done"} and len(one["partitions"]) == 3

    status, headers, body = get(f"{base}/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(body.decode()) for s in family.samples}
    assert samples[("zmr_jobs", (("state", "succeeded"),))] == 1
    assert samples[("zmr_workers", (("state", "idle"),))] == 2
    ages = [v for (name, _), v in samples.items() if name == "zmr_worker_heartbeat_age_seconds"]
    assert len(ages) == 2 and all(0 <= age < 5 for age in ages)
    assert samples[("zmr_scheduler_loop_seconds_count", ())] > 0


def test_cancel_needs_the_token_and_cancels_a_running_job(cluster: Callable[..., Cluster], library: Path,
                                                          tmp_path: Path) -> None:
    c = cluster(2)
    base, token = base_and_token(c)
    assert c.client is not None
    gate = tmp_path / "gate"
    job = c.client.submit(str(GATED_APP), [str(library)], str(tmp_path / "out"), n_reduce=2,
                          args=[f"gate={gate}", "gate_timeout=60"])
    wait_until(lambda: c.client and c.client.status(job).jobs[0].state == "running", 20, what="the job to run")

    assert get_json(f"{base}/api/jobs/{job}/cancel", method="POST")[0] == 401
    assert get_json(f"{base}/api/jobs/{job}/cancel", token="not-the-token", method="POST")[0] == 401
    assert c.client.status(job).jobs[0].state == "running"   # a refused cancel changed nothing

    status, doc = get_json(f"{base}/api/jobs/{job}/cancel", token=token, method="POST")
    assert (status, doc) == (200, {"job_id": job, "state": "cancelled"})
    with pytest.raises(JobFailed, match="cancelled"):
        c.client.wait(job, timeout=20)
    assert not (tmp_path / "out").exists()   # a cancelled job leaves no output, as `zmr cancel` does
    status, doc = get_json(f"{base}/api/jobs/{job}/cancel", token=token, method="POST")
    assert status == 409 and "cancelled already" in doc["error"]
    assert get_json(f"{base}/api/jobs/job-9999/cancel", token=token, method="POST")[0] == 404


def test_a_failed_job_carries_its_traceback_and_the_warnings_name_it(cluster: Callable[..., Cluster],
                                                                     library: Path, tmp_path: Path) -> None:
    c = cluster(1, retry__max_attempts="2", retry__base="0.05")
    base, _ = base_and_token(c)
    assert c.client is not None
    job = c.client.submit(str(FAIL_REDUCE_APP), [str(library)], str(tmp_path / "out"), n_reduce=1)
    with pytest.raises(JobFailed):
        c.client.wait(job, timeout=60)
    status, doc = get_json(f"{base}/api/jobs/{job}")
    assert status == 200
    info = doc["jobs"][0]
    assert info["state"] == "failed"
    assert "Traceback" in info["error"] and "zmr-e2e-reduce-boom" in info["error"]
    assert [a["outcome"] for a in info["attempts"] if a["kind"] == "reduce"] == ["failed", "failed"]
    _, overview = get_json(f"{base}/api/status")
    events = [(w["event"], w["fields"].get("job")) for w in overview["warnings"]]
    assert ("task_failed", job) in events and ("job_failed", job) in events


def test_the_page_and_its_files_are_served_with_a_strict_policy(cluster: Callable[..., Cluster]) -> None:
    c = cluster(1)
    base, token = base_and_token(c)
    status, headers, body = get(f"{base}/?token={token}")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert f"zmr_token={token}" in headers["Set-Cookie"] and "HttpOnly" in headers["Set-Cookie"]
    assert b"/static/dashboard.js" in body
    for path, kind in (("/static/dashboard.js", "text/javascript"), ("/static/dashboard.css", "text/css")):
        status, headers, body = get(base + path)
        assert status == 200 and headers["Content-Type"].startswith(kind) and len(body) > 1000
    assert get(f"{base}/static/../../etc/passwd")[0] == 404
    assert get_json(f"{base}/api/jobs/no-such-job")[0] == 404
    assert get_json(f"{base}/api/status", method="POST")[0] == 404


def test_garbage_on_the_dashboard_port_never_hurts_the_coordinator(cluster: Callable[..., Cluster],
                                                                  library: Path, tmp_path: Path) -> None:
    c = cluster(1)
    base, _ = base_and_token(c)
    url = urlsplit(base)
    assert url.hostname is not None and url.port is not None
    for junk in (b"\x00\xff" * 5000, b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n",
                 b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n", b"POST /api/jobs/x/cancel HTTP/1.1\r\n"):
        with socket.create_connection((url.hostname, url.port), timeout=5) as s:
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(5)
            try:
                s.recv(1024)
            except (TimeoutError, ConnectionResetError):
                pass
    half_open = socket.create_connection((url.hostname, url.port), timeout=5)   # a client that never finishes
    try:
        half_open.sendall(b"GET /api/status HTTP/1.1\r\n")
        started = time.monotonic()
        assert get_json(f"{base}/api/status")[0] == 200   # others are served meanwhile
        assert time.monotonic() - started < 5
        assert c.client is not None
        job = c.client.submit(str(APPS / "wc.py"), [str(library)], str(tmp_path / "out"), n_reduce=2)
        assert c.client.wait(job, timeout=60).state == "succeeded"
    finally:
        half_open.close()


def test_beyond_loopback_every_request_needs_the_token(tmp_path: Path, run_zmr: Callable[..., Any]) -> None:
    keys = tmp_path / "keys"
    made = run_zmr("keys", "init", str(keys))
    assert made.returncode == 0 and "dashboard.token" in made.stdout
    token = (keys / "dashboard.token").read_text().strip()
    assert len(token) >= 32 and (keys / "dashboard.token").stat().st_mode & 0o077 == 0
    with LocalCluster(1, overrides={**FAST, "coordinator.dashboard": "http://0.0.0.0:0",
                                    "security.keys_dir": str(keys)}, keys_dir=str(keys)) as local:
        port = urlsplit(local.dashboard_url).port
        base = f"http://127.0.0.1:{port}"
        assert local.dashboard_url.endswith(f"?token={token}")
        for path in ("/", "/api/status", "/metrics", "/static/dashboard.js", "/api/jobs/job-0001"):
            status, headers, _ = get(base + path)
            assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer"), path
        status, doc = get_json(f"{base}/api/status", token=token)
        assert status == 200 and len(doc["workers"]) == 1
        assert get(f"{base}/metrics?token={token}")[0] == 200


def test_without_a_token_a_dashboard_beyond_loopback_is_refused(run_zmr: Callable[..., Any]) -> None:
    result = run_zmr("coord", "--bind", "tcp://127.0.0.1:*", "--dashboard", "http://0.0.0.0:0", timeout=30)
    assert result.returncode != 0
    assert "refusing to serve the dashboard on http://0.0.0.0:0 without a token" in result.stderr
