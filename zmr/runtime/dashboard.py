"""The coordinator's web dashboard: a page, JSON status, Prometheus metrics and a cancel button over HTTP.

It never touches the scheduler. Its HTTP threads ask the coordinator's loop through a `DashboardBridge`
(a queue and a wake-up socket the loop polls beside its ROUTER), and the loop answers between two events with a
document it built from its own state: so the control plane is never locked or read from another thread.
Answers are cached for `_FRESH` seconds, which bounds what any number of open pages or scrapers cost the
loop to a few snapshots a second.

Security follows the control port's rules. On loopback anyone on the machine may read; beyond loopback
every request needs the token (header `Authorization: Bearer`, a `?token=` query, or the cookie a page
opened with the token gets) unless `security.insecure`. Cancelling always needs the token in the header,
which a page from another origin cannot send: no cross-site request can cancel a job.
"""

from __future__ import annotations

import hmac
import json
import queue
import re
import secrets
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from zmr.errors import ConfigError
from zmr.runtime import security

_FRESH = 0.5          # seconds an answer of the loop is served again before it is asked anew
_ASK_TIMEOUT = 5.0    # a loop busier than this answers 503 rather than hold a request thread for ever
_JOB_PATH = re.compile(r"^/api/jobs/([A-Za-z0-9_.-]{1,128})(/cancel)?$")
_STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
           "/static/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
           "/static/dashboard.css": ("dashboard.css", "text/css; charset=utf-8")}
_COOKIE = "zmr_token"
_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"}


@dataclass(frozen=True)
class Answer:
    """What the loop answers one question with: an HTTP status and a JSON body."""

    status: int
    body: bytes

    @classmethod
    def of(cls, doc: Any, status: int = 200) -> Answer:
        return cls(status, msgspec.json.encode(doc))


Question = tuple[str, str]   # ("status" | "job" | "cancel" | "metrics", job id or "")


def web_asset(name: str) -> bytes:
    """A file of the page, shipped inside the package."""
    return (resources.files("zmr") / "web" / name).read_bytes()


class _Pending:
    __slots__ = ("question", "answer", "done")

    def __init__(self, question: Question) -> None:
        self.question = question
        self.answer = Answer(500, b"{}")
        self.done = threading.Event()


class DashboardBridge:
    """Questions from HTTP threads to the coordinator's loop, with a short cache.

    The loop polls `fileno()` beside its sockets; a question wakes it with one byte on a socket pair
    and waits on its own event, so neither side ever blocks the other for longer than `_ASK_TIMEOUT`.
    """

    def __init__(self) -> None:
        self._rx, self._tx = socket.socketpair()
        self._rx.setblocking(False)
        self._tx.setblocking(False)
        self._questions: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._cache: dict[Question, tuple[float, Answer]] = {}

    def fileno(self) -> int:
        return self._rx.fileno()

    def ask(self, question: Question, cached: bool = True) -> Answer:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(question)
        if cached and hit is not None and now - hit[0] < _FRESH:
            return hit[1]
        pending = _Pending(question)
        self._questions.put(pending)
        try:
            self._tx.send(b"?")
        except OSError:
            pass   # full: the loop is awake already
        if not pending.done.wait(_ASK_TIMEOUT):
            return Answer.of({"error": "the coordinator is too busy to answer; try again"}, 503)
        with self._lock:
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[question] = (now, pending.answer)
        return pending.answer

    def serve(self, answer: Callable[[Question], Answer]) -> None:
        """On the loop's thread: answer every question waiting."""
        try:
            while self._rx.recv(4096):
                pass
        except OSError:
            pass
        while True:
            try:
                pending = self._questions.get_nowait()
            except queue.Empty:
                return
            try:
                pending.answer = answer(pending.question)
            except Exception as exc:   # a bug here must not take the coordinator down
                pending.answer = Answer.of({"error": f"the coordinator could not answer: {exc}"}, 500)
            pending.done.set()

    def close(self) -> None:
        self._rx.close()
        self._tx.close()


class _ClusterCollector(Collector):
    """Prometheus metrics from the loop's `metrics` answer, read at scrape time."""

    def __init__(self, bridge: DashboardBridge) -> None:
        self._bridge = bridge

    def collect(self) -> Iterator[Any]:
        answer = self._bridge.ask(("metrics", ""), cached=False)   # Dashboard.metrics_text caches
        if answer.status != 200:
            return
        doc = json.loads(answer.body)
        jobs = GaugeMetricFamily("zmr_jobs", "Jobs the coordinator knows, by state", labels=["state"])
        for state, n in sorted(doc["jobs"].items()):
            jobs.add_metric([state], n)
        tasks = GaugeMetricFamily("zmr_tasks", "Tasks of the jobs not ended yet, by kind and state",
                                  labels=["kind", "state"])
        for key, n in sorted(doc["tasks"].items()):
            kind, state = key.split("/")
            tasks.add_metric([kind, state], n)
        leases = GaugeMetricFamily("zmr_leases", "Leased intermediate resources live workers hold, by job",
                                   labels=["job"])
        for job, n in sorted(doc["leases"].items()):
            leases.add_metric([job], n)
        shuffled = CounterMetricFamily("zmr_bytes_shuffled", "Shuffle bytes of committed map output, by job",
                                       labels=["job"])
        for job, n in sorted(doc["bytes_shuffled"].items()):
            shuffled.add_metric([job], n)
        workers = GaugeMetricFamily("zmr_workers", "Workers by state", labels=["state"])
        for state, n in sorted(doc["workers"].items()):
            workers.add_metric([state], n)
        age = GaugeMetricFamily("zmr_worker_heartbeat_age_seconds", "Seconds since each worker was last heard",
                                labels=["worker"])
        rss = GaugeMetricFamily("zmr_worker_rss_bytes", "Resident memory of each worker and its task process",
                                labels=["worker"])
        for worker in doc["heartbeats"]:
            age.add_metric([worker["worker"]], worker["age"])
            rss.add_metric([worker["worker"]], worker["rss"])
        yield from (jobs, tasks, leases, shuffled, workers, age, rss)


class Dashboard:
    """The HTTP server (its own threads) of one coordinator; `url` is where it listens, with the token."""

    def __init__(self, address: str, bridge: DashboardBridge, token: str, reads_need_token: bool,
                 log: Any) -> None:
        self.bridge = bridge
        self.token = token
        self.reads_need_token = reads_need_token
        self.log = log
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_ClusterCollector(bridge))
        self.assets = {path: (web_asset(name), ctype) for path, (name, ctype) in _STATIC.items()}
        self._metrics_lock = threading.Lock()
        self._metrics: tuple[float, bytes] = (float("-inf"), b"")
        self.loop_seconds = Histogram(
            "zmr_scheduler_loop_seconds", "Time the coordinator's loop spends on one batch of events",
            registry=self.registry, buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5))
        host, port = _host_port(address)
        self._server = _bind(host, port, log)
        self._server.dashboard = self   # type: ignore[attr-defined]
        bound_port = self._server.server_address[1]
        self.base_url = f"http://{_url_host(host)}:{bound_port}"
        self.url = f"{self.base_url}/?token={token}"
        self._server.timeout = 0   # handle_request never waits: `_serve` calls it once a client is there
        self._wake, self._waker = socket.socketpair()
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name="dashboard", daemon=True)

    def _serve(self) -> None:
        """The server's loop, as `serve_forever`, but woken by `stop` at once: serve_forever looks for a
        shutdown only every poll interval, and a coordinator's exit would wait for it."""
        with selectors.DefaultSelector() as selector:
            selector.register(self._server, selectors.EVENT_READ)
            selector.register(self._wake, selectors.EVENT_READ)
            while not self._stopping:
                for key, _ in selector.select():
                    if key.fileobj is self._server and not self._stopping:
                        self._server.handle_request()

    def metrics_text(self) -> bytes:
        """The Prometheus page, made from a fresh answer of the loop at most once per `_FRESH` seconds
        however often it is scraped (the page is the cache, so it is never older than `_FRESH`)."""
        with self._metrics_lock:
            made, text = self._metrics
            if time.monotonic() - made >= _FRESH:
                text = generate_latest(self.registry)
                self._metrics = (time.monotonic(), text)
            return text

    @classmethod
    def start(cls, address: str, keys_dir: str, insecure: bool, log: Any) -> Dashboard:
        """Bind and serve `address` ('http://host:port'). Beyond loopback it needs the token of `zmr keys
        init` in `keys_dir` (or `insecure`); on loopback without one, a fresh token is made for this run."""
        host, _ = _host_port(address)
        loopback = security.is_loopback(f"tcp://{host}:1")
        token = security.load_dashboard_token(keys_dir)
        if not loopback and not token and not insecure:
            raise ConfigError(
                f"refusing to serve the dashboard on {address} without a token: anyone who reaches it could "
                "read every job. Run `zmr keys init` (it writes dashboard.token) and set security.keys_dir, "
                "serve it on 127.0.0.1, or pass --insecure if this network is trusted")
        bridge = DashboardBridge()
        try:
            dashboard = cls(address, bridge, token or secrets.token_urlsafe(24),
                            reads_need_token=not loopback and not insecure, log=log)
        except BaseException:
            bridge.close()
            raise
        dashboard._thread.start()
        return dashboard

    def stop(self) -> None:
        self._stopping = True
        self._waker.send(b"x")
        self._thread.join(timeout=2)
        self._server.server_close()
        self._wake.close()
        self._waker.close()
        self.bridge.close()


def _host_port(address: str) -> tuple[str, int]:
    rest = address.partition("://")[2].rstrip("/")
    host, _, port = rest.rpartition(":")
    return host.strip("[]"), int(port)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64


class _V6Server(_Server):
    address_family = socket.AF_INET6


def _bind(host: str, port: int, log: Any) -> _Server:
    """Bind `port`, or a free one if it is taken (another cluster's dashboard, say): said in the log."""
    cls = _V6Server if ":" in host else _Server
    try:
        return cls((host, port), _Handler)
    except OSError as exc:
        if port == 0:
            raise ConfigError(f"cannot serve the dashboard on {host}: {exc}") from exc
        server = cls((host, 0), _Handler)
        log.warning("dashboard_port_taken", port=port, instead=server.server_address[1], error=str(exc))
        return server


class _Handler(BaseHTTPRequestHandler):
    server_version = "zmr-dashboard"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = 30   # seconds a connection may sit idle or trickle a request before its thread lets it go
    disable_nagle_algorithm = True   # a response's body leaves without waiting for the ACK of its head

    @property
    def dash(self) -> Dashboard:
        return self.server.dashboard   # type: ignore[attr-defined,no-any-return]

    def log_message(self, format: str, *args: Any) -> None:   # noqa: A002 - the base class's name
        self.dash.log.debug("dashboard_request", line=format % args)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if self.dash.reads_need_token and not self._has_token(query):
            self._send_json(Answer.of({"error": "this dashboard needs its token (the URL zmr printed ends in "
                                                "?token=...)"}, 401))
            return
        if url.path in self.dash.assets:
            body, ctype = self.dash.assets[url.path]
            extra = {}
            if url.path == "/" and self._token_in(query):   # later requests of this page carry it as a cookie
                extra["Set-Cookie"] = f"{_COOKIE}={self.dash.token}; HttpOnly; SameSite=Strict; Path=/"
            self._send(200, body, ctype, extra)
        elif url.path == "/api/status":
            self._send_json(self.dash.bridge.ask(("status", "")))
        elif url.path == "/metrics":
            self._send(200, self.dash.metrics_text(), "text/plain; version=0.0.4; charset=utf-8")
        elif (found := _JOB_PATH.match(url.path)) and not found.group(2):
            self._send_json(self.dash.bridge.ask(("job", found.group(1))))
        else:
            self._send_json(Answer.of({"error": f"no such page: {url.path}"}, 404))

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        found = _JOB_PATH.match(url.path)
        if not (found and found.group(2)):
            self._send_json(Answer.of({"error": f"nothing to post to at {url.path}"}, 404))
            return
        if not self._bearer_ok():
            self._send_json(Answer.of({"error": "cancelling needs the dashboard token: open the URL zmr printed "
                                                "(it ends in ?token=...)"}, 401))
            return
        self._send_json(self.dash.bridge.ask(("cancel", found.group(1)), cached=False))

    def do_HEAD(self) -> None:
        self._send_json(Answer.of({"error": "use GET"}, 405))

    def _token_in(self, query: dict[str, list[str]]) -> bool:
        return any(hmac.compare_digest(t.encode(), self.dash.token.encode()) for t in query.get("token", []))

    def _bearer_ok(self) -> bool:
        scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.dash.token.encode())

    def _has_token(self, query: dict[str, list[str]]) -> bool:
        if self._bearer_ok() or self._token_in(query):
            return True
        for part in (self.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == _COOKIE and hmac.compare_digest(value.encode(), self.dash.token.encode()):
                return True
        return False

    def _send_json(self, answer: Answer) -> None:
        extra = {"WWW-Authenticate": 'Bearer realm="zmr"'} if answer.status == 401 else {}
        self._send(answer.status, answer.body, "application/json", extra)

    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status, HTTPStatus(status).phrase)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for name, value in {**_HEADERS, **(extra or {})}.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass   # the browser went away; nothing to tell it
