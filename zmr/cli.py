"""Command line: `zmr` (run, submit, status, report, cancel, seq, cluster up), `zmr-coord` and `zmr-worker`.

Every command builds one Config from --config, ZMR_* environment and its flags (flags win), and turns
zmr's own errors into a one-line message and a non-zero exit code instead of a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import sysconfig
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from zmr import __version__, report, runfile, storage
from zmr.apps import first_frame_not
from zmr.client import Client, build_spec
from zmr.config import Config, load_config
from zmr.core.views import STATUS_JSON_VERSION
from zmr.errors import JobFailed, JobSpecError, ZmrError
from zmr.local import LocalCluster, refuse_unusable_output, submit_to
from zmr.log import configure_logging, get_logger
from zmr.output_formats import OUTPUT_FORMATS
from zmr.progress import ProgressLine, format_status, format_summary, status_json
from zmr.protocol.messages import JobInfo, JobSpec
from zmr.protocol.output_names import output_name
from zmr.remote import RemoteWorkers, worker_coordinator
from zmr.runtime import outputs, security
from zmr.runtime.stopflag import StopFlag

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143


class Terminated(KeyboardInterrupt):
    """SIGTERM in `zmr run`: it unwinds the launcher as Ctrl-C does, so the cluster is stopped on the way."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


# ------------------------------------------------------------------ argument helpers


def _paths(action: argparse.Action, kind: str) -> None:
    """Shell completion offers files ("FILE") or folders ("DIRECTORY") for this flag."""
    action.complete_paths = kind  # type: ignore[attr-defined]   # turned into shtab's hint by cmd_completion


def cmd_completion(ns: argparse.Namespace) -> int:
    import shtab  # here, not at the top: every other command would pay for its import

    parser = build_parser()
    for action in _all_actions(parser):
        kind = getattr(action, "complete_paths", None)
        if kind:
            action.complete = getattr(shtab, kind)  # type: ignore[attr-defined]   # read by shtab
    try:
        print(shtab.complete(parser, shell=ns.shell), flush=True)
    except BrokenPipeError:   # `zmr completion bash | head`: the reader has all it wants
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK


def _all_actions(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    """Every option of the parser and of its subcommands, however deep."""
    for action in parser._actions:
        yield action
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from _all_actions(sub)


def _config_flags(p: argparse.ArgumentParser) -> None:
    _paths(p.add_argument("--config", metavar="FILE", help="TOML config file (see configs/local.toml)"), "FILE")
    p.add_argument("--set", metavar="SECTION.KEY=VALUE", action="append", default=[],
                   help="override one config key, e.g. --set shuffle.batch_bytes=262144 (repeatable)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="log level")
    p.add_argument("--log-format", choices=["console", "json"], help="log format")


def _job_flags(p: argparse.ArgumentParser,
               output_help: str = "output directory or URL (s3://bucket/prefix): mr-out-<r> files, then _SUCCESS",
               ) -> None:
    _paths(p.add_argument("--app", required=True, help="app module: a file path (apps/wc.py) or a module name "
                          "(apps.wc)"), "FILE")
    _paths(p.add_argument("--input", required=True, nargs="+", metavar="FILE_OR_DIR",
                          help="input files, directories or URLs (s3://bucket/prefix)"), "FILE")
    _paths(p.add_argument("--output", required=True, metavar="OUTDIR", help=output_help), "DIRECTORY")
    p.add_argument("--arg", action="append", default=[], metavar="X", help="job argument for the app (repeatable)")
    p.add_argument("--output-format", choices=OUTPUT_FORMATS, default=None,
                   help="how results are written: text (`key value` lines, the default unless the app sets "
                        "OUTPUT_FORMAT), jsonl, csv, parquet or raw (key and value bytes, nothing added)")


def _cluster_job_flags(p: argparse.ArgumentParser) -> None:
    _job_flags(p)
    p.add_argument("--n-reduce", type=int, metavar="R", help="number of reduce partitions (default: job.n_reduce)")
    p.add_argument("--split-size-mb", type=int, metavar="MB", help="split input files larger than this")
    p.add_argument("--overwrite", action="store_true", help="replace output already in OUTDIR")
    _paths(p.add_argument("--py-files", nargs="+", default=[], metavar="PATH",
                          help="code to ship with the job onto the workers' sys.path: .py files, folders, "
                          ".whl/.zip archives"), "FILE")
    p.add_argument("--compression", choices=["none", "lz4", "zstd", "auto"],
                   help="compress this job's shuffle (default: the cluster's shuffle.compression)")
    p.add_argument("--max-attempts", type=int, metavar="N",
                   help="failed attempts of one task that fail this job (default: the cluster's retry.max_attempts)")


def _dashboard_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dashboard", metavar="URL",
                   help="serve the web dashboard here, e.g. http://127.0.0.1:8787 (the default; a busy port: "
                   "a free one)")
    p.add_argument("--no-dashboard", action="store_true", help="serve no dashboard")


def _set_overrides(ns: argparse.Namespace) -> dict[str, str]:
    """The --set SECTION.KEY=VALUE flags (and --log-level, --log-format, --dashboard, --no-dashboard), also
    handed on to the processes a launcher starts."""
    overrides = {}
    for item in ns.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ZmrError(f"--set expects SECTION.KEY=VALUE, got {item!r}")
        overrides[key.strip()] = value
    for key, flag in (("log.level", ns.log_level), ("log.format", ns.log_format)):
        if flag is not None:
            overrides[key] = flag
    if getattr(ns, "no_dashboard", False):
        overrides["coordinator.dashboard"] = ""
    elif getattr(ns, "dashboard", None):
        overrides["coordinator.dashboard"] = ns.dashboard
    return overrides


def _load(ns: argparse.Namespace, extra: dict[str, Any] | None = None) -> Config:
    overrides = {**_set_overrides(ns), **{k: v for k, v in (extra or {}).items() if v is not None}}
    config = load_config(ns.config, overrides=overrides)
    configure_logging(config.log.level, config.log.format)
    return config


def _coordinator_address(ns: argparse.Namespace, config: Config) -> str:
    return str(ns.coordinator or config.worker.coordinator)


# ------------------------------------------------------------------ zmr run / submit / status / report / cancel / seq


def _job_spec(ns: argparse.Namespace, config: Config, workers: int | None = None) -> JobSpec:
    """The job the flags describe, checked before anything starts or is sent."""
    if ns.max_attempts is not None and ns.max_attempts < 1:   # 0 is the spec's "the cluster's", not the user's
        raise JobSpecError(f"--max-attempts must be at least 1, got {ns.max_attempts}")
    return build_spec(ns.app, ns.input, ns.output, config.job.n_reduce, ns.arg, config.job.split_size_mb << 20,
                      ns.overwrite, workers, config.job.limits, max_attempts=ns.max_attempts or 0,
                      output_format=ns.output_format, py_files=ns.py_files, compression=ns.compression or "")


def _client(address: str, config: Config) -> Client:
    """A client that knows the cluster's keys and bounds from the config."""
    return Client(address, keys_dir=config.security.keys_dir,
                  max_message_bytes=config.coordinator.max_message_bytes, limits=config.job.limits)


def _wait_with_progress(client: Client, job_id: str) -> JobInfo:
    progress = ProgressLine(sys.stderr)
    try:
        return client.wait(job_id, on_progress=progress.update)
    finally:
        progress.close()


SHOWN_RECORDS, SHOWN_BYTES = 20, 4096   # `zmr run` prints a job's output that is this small


def small_output(info: JobInfo) -> str:
    """A small text output (a top ten, a total), whole, for `zmr run` to print after its summary; ''
    for anything bigger, another format, or output at a URL."""
    if info.records_out > SHOWN_RECORDS or info.output_format != "text" or storage.is_url(info.output_dir):
        return ""
    text = b""
    for r in range(info.reduces_total):
        path = Path(info.output_dir) / output_name(r)
        if not path.is_file() or path.stat().st_size + len(text) > SHOWN_BYTES:
            return ""
        text += path.read_bytes()
    return text.decode("utf-8", errors="replace")


def cmd_run(ns: argparse.Namespace) -> int:
    config = _load(ns, {"job.split_size_mb": ns.split_size_mb, "job.n_reduce": ns.n_reduce,
                        "cluster.workers": ns.workers})
    workers = config.cluster.worker_count(with_hosts=False)   # all on this machine
    spec = _job_spec(ns, config, workers)
    refuse_unusable_output(spec)   # before a cluster starts for nothing
    started = time.monotonic()
    keys = config.security.keys_dir
    cluster = LocalCluster(workers, ns.config, _set_overrides(ns), keys_dir=keys, fork=run_command,
                           keep_logs=ns.keep_logs)
    made_output = not storage.is_url(spec.output_dir) and not os.path.lexists(spec.output_dir)
    if made_output:
        cluster.made_output(spec.output_dir)
    on_term = _terminate_by_exception()
    try:
        with cluster, _client(cluster.address, config) as client:
            if cluster.dashboard_url:
                print(f"zmr: dashboard at {cluster.dashboard_url} while the job runs", file=sys.stderr, flush=True)
            info = _wait_with_progress(client, submit_to(cluster, client, spec))
        print(format_summary(info, time.monotonic() - started))
        if shown := small_output(info):
            print(shown, end="")
        if ns.keep_logs:
            print(f"zmr: cluster logs are in {cluster.log_dir}", file=sys.stderr)
        return EXIT_OK
    except JobFailed as exc:
        print(f"zmr: job {exc.ended}: {exc.reason}", file=sys.stderr)
        print(f"zmr: cluster logs are in {cluster.log_dir}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt as exc:
        if made_output:   # the cluster is down: nothing writes there any more
            outputs.remove_abandoned(Path(spec.output_dir))
        return _interrupted(exc, f"; cluster stopped, its logs are in {cluster.log_dir}")
    finally:
        if on_term is not None:
            signal.signal(signal.SIGTERM, on_term)


def _terminate_by_exception() -> Any:
    """Make SIGTERM raise `Terminated` (from the main thread only: handlers can be set only there);
    returns the handler to put back, or None when there is none to."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


def _interrupted(exc: KeyboardInterrupt, detail: str = "") -> int:
    terminated = isinstance(exc, Terminated)
    print(f"zmr: {'terminated' if terminated else 'interrupted'}{detail}", file=sys.stderr)
    return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED


def cmd_submit(ns: argparse.Namespace) -> int:
    config = _load(ns, {"job.split_size_mb": ns.split_size_mb, "job.n_reduce": ns.n_reduce})
    spec = _job_spec(ns, config)
    with _client(_coordinator_address(ns, config), config) as client:
        job_id = client.submit_spec(spec)
        print(job_id, flush=True)
        if not ns.wait:
            return EXIT_OK
        started = time.monotonic()
        info = _wait_with_progress(client, job_id)
    print(format_summary(info, time.monotonic() - started))
    return EXIT_OK


def cmd_status(ns: argparse.Namespace) -> int:
    if ns.tasks and ns.job_id is None:
        raise ZmrError("--tasks lists one job's tasks: name the job, as in `zmr status JOB --tasks`")
    config = _load(ns)
    with _client(_coordinator_address(ns, config), config) as client:
        reply = client.status(ns.job_id, tasks=ns.tasks)
    print(status_json(reply) if ns.json else format_status(reply, detail=ns.job_id is not None))
    return EXIT_OK


def cmd_report(ns: argparse.Namespace) -> int:
    if ns.plot:
        try:
            report.check_plotting()
        except report.PlotUnavailable as exc:
            print(exc, file=sys.stderr)
            return EXIT_USAGE
    config = _load(ns)
    with _client(_coordinator_address(ns, config), config) as client:
        info = client.job(ns.job_id)
        steps = [client.job(step.job_id) for step in info.steps]   # a multi-step job: each step's own record
    if ns.plot:
        print(_written(lambda: report.plot_steps(info, steps, ns.plot) if steps else
                       report.plot_timeline(info, ns.plot), ns.plot))
    if ns.html:
        print(_written(lambda: report.write_html(info, ns.html, time.time()), ns.html))
    if not (ns.plot or ns.html):
        print(report.format_steps(info, steps) if steps else report.format_timeline(info))
    return EXIT_OK


def _written(write: Callable[[], Path], path: str) -> Path:
    """`write()`'s file, or a ZmrError saying why it could not be written (a folder that is not there)."""
    try:
        return write()
    except OSError as exc:
        raise ZmrError(f"cannot write {exc.filename or path}: {exc.strerror or exc}") from exc


def _html_file(value: str) -> str:
    if not value.lower().endswith(report.HTML_SUFFIXES):
        raise argparse.ArgumentTypeError(f"must end in .html: {value!r}")
    return value


def _plot_file(value: str) -> str:
    if not value.lower().endswith(report.PLOT_SUFFIXES):
        raise argparse.ArgumentTypeError(f"must end in .png or .svg: {value!r}")
    return value


def cmd_cancel(ns: argparse.Namespace) -> int:
    config = _load(ns)
    with _client(_coordinator_address(ns, config), config) as client:
        before = client.job(ns.job_id, tasks=False).state
        info = client.cancel(ns.job_id)
    if info.state in ("succeeded", "failed") or before == "cancelled":
        done = "been cancelled" if before == "cancelled" else info.state
        print(f"zmr: job {info.job_id} had already {done}: nothing to cancel", file=sys.stderr)
        return EXIT_FAILED
    print(f"{info.job_id} {info.state}")
    return EXIT_OK


def cmd_seq(ns: argparse.Namespace) -> int:
    from zmr.seq import run_sequential

    config = _load(ns, {"job.split_size_mb": ns.split_size_mb})
    try:
        path = run_sequential(ns.app, ns.input, ns.output, ns.arg, config.job.split_size_mb << 20,
                              overwrite=ns.overwrite, output_format=ns.output_format)
    except ZmrError:
        raise
    except Exception as exc:   # an error in this process: the app's (its traceback), or of the files
        print(_seq_failure(exc), end="", file=sys.stderr)
        print(f"zmr: seq failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(path)
    return EXIT_OK


_MACHINERY = (str(Path(__file__).parent) + os.sep, sysconfig.get_paths()["stdlib"] + os.sep)


def _seq_failure(exc: Exception) -> str:
    """The traceback `zmr seq` shows above its one-line error: from the app's first frame on (zmr's own and
    the standard library's frames in front of it left out); none for an OSError raised outside the app
    (an output folder it cannot write: the line says it all); the whole of it for zmr's own bug."""
    tb = first_frame_not(exc.__traceback__, lambda filename: filename.startswith(_MACHINERY))
    if tb is None and isinstance(exc, OSError):
        return ""
    return "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))


# ------------------------------------------------------------------ cluster, coordinator, worker


def _stop_on_signals(stop: Callable[[], None], flag: StopFlag | None = None) -> None:
    """SIGTERM, SIGINT and SIGHUP call `stop`; with `flag`, the signal also wakes the polls that watch it at
    once. SIGHUP is how a process started over `ssh -tt` hears that its connection or launcher is gone."""
    def handler(signum: int, frame: Any) -> None:
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGHUP, handler)
    if flag is not None:
        flag.route_signals()


def cmd_cluster_up(ns: argparse.Namespace) -> int:
    config = _load(ns, {"cluster.workers": ns.workers, "security.insecure": ns.insecure or None})
    security.check_bind(config.coordinator.bind, bool(config.security.keys_dir), config.security.insecure,
                        get_logger(role="cluster"))
    if config.cluster.hosts:
        worker_coordinator(config)   # the hosts can reach the coordinator: checked before anything starts
    stopped = threading.Event()
    _stop_on_signals(stopped.set)
    overrides = {**_set_overrides(ns), **({"security.insecure": "true"} if ns.insecure else {})}
    with runfile.holding(ns.config), LocalCluster(config.cluster.worker_count(), ns.config, overrides,
                                                  bind=config.coordinator.bind,
                                                  keys_dir=config.security.keys_dir) as cluster:
        remote = RemoteWorkers(config, cluster.log_dir)
        remote.start()
        try:
            on_hosts = f" and {len(remote)} on {len(config.cluster.hosts)} hosts over SSH" if len(remote) else ""
            print(f"zmr cluster: coordinator at {cluster.address}, {cluster.n_workers} workers here{on_hosts} "
                  f"(logs in {cluster.log_dir}); Ctrl-C or `zmr cluster down {ns.config}` stops it", flush=True)
            if cluster.dashboard_url:
                print(f"zmr cluster: dashboard at {cluster.dashboard_url}", flush=True)
            if code := _supervise(cluster, remote, config, stopped):
                return code
        finally:
            remote.stop()
    print("zmr cluster: stopped", flush=True)
    return EXIT_OK


def _supervise(cluster: LocalCluster, remote: RemoteWorkers, config: Config, stopped: threading.Event) -> int:
    """Start again whatever of the cluster exits, until `stopped`; EXIT_FAILED if the coordinator exits and
    cannot be started again (it has no journal, or no fixed address)."""
    while not stopped.wait(0.5):
        for i, proc in enumerate(cluster.workers):
            if proc.poll() is not None:
                print(f"zmr cluster: worker {i} exited with {proc.returncode}", file=sys.stderr)
                cluster.workers[i] = cluster.start_worker(i)
        for news in remote.supervise():
            print(f"zmr cluster: {news}", file=sys.stderr, flush=True)
        if cluster.coordinator is not None and cluster.coordinator.poll() is not None:
            code = cluster.coordinator.returncode
            if not config.coordinator.state_dir or config.coordinator.bind.endswith(":*"):
                print(f"zmr cluster: the coordinator exited with {code}", file=sys.stderr)
                return EXIT_FAILED
            print(f"zmr cluster: the coordinator exited with {code}; restarting it from "
                  f"{config.coordinator.state_dir}", file=sys.stderr)
            cluster.start_coordinator()
            if cluster.dashboard_url:   # a new start, a new token: the address printed before is stale
                print(f"zmr cluster: dashboard at {cluster.dashboard_url}", file=sys.stderr, flush=True)
    return EXIT_OK


def cmd_cluster_down(ns: argparse.Namespace) -> int:
    pid = runfile.stop(ns.config, timeout=ns.timeout)
    print(f"zmr cluster: stopped the cluster of {ns.config} (pid {pid})", flush=True)
    return EXIT_OK


def cmd_coord(ns: argparse.Namespace) -> int:
    from zmr.runtime.coordinator import Coordinator

    config = _load(ns, {"coordinator.bind": ns.bind, "coordinator.state_dir": ns.state_dir,
                        "coordinator.recover_damaged_journal": ns.recover_damaged_journal or None,
                        "security.insecure": ns.insecure or None})
    from zmr.runtime.gctune import tune_for_data

    coordinator = Coordinator(config, endpoint_file=ns.endpoint_file, parent_pid=ns.exit_with_parent,
                              dashboard_file=ns.dashboard_file)
    _stop_on_signals(coordinator.stop, coordinator.stop_flag)
    tune_for_data()   # a large job is 100,000s of long-lived task records: no full heap walk every few ms
    coordinator.run()
    return EXIT_OK


def cmd_worker(ns: argparse.Namespace) -> int:
    from zmr.runtime.worker import WorkerProcess

    config = _load(ns, {"worker.coordinator": ns.coordinator, "worker.work_dir": ns.work_dir,
                        "worker.data_bind": ns.data_bind,
                        "security.insecure": ns.insecure or None})
    from zmr.runtime.gctune import tune_for_data

    worker = WorkerProcess(config, parent_pid=ns.exit_with_parent)
    _stop_on_signals(worker.stop, worker.stop_flag)
    # Past a file-size limit, a write must fail the task with EFBIG, not kill the worker.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    tune_for_data()
    worker.run()
    return EXIT_OK


# ------------------------------------------------------------------ parsers


def _insecure_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--insecure", action="store_true",
                   help="allow binding a non-loopback address without CURVE keys (anyone who reaches it can run code)")


def cmd_keys_init(ns: argparse.Namespace) -> int:
    from zmr.runtime.security import init_keys

    hosts = [h.strip() for h in (ns.workers or "").split(",") if h.strip()]
    for path in init_keys(ns.dir, hosts):
        print(path)
    print(f"set security.keys_dir = \"{ns.dir}\" on the coordinator, the workers and the clients")
    if hosts:
        _per_host_hint(ns.dir)
    return EXIT_OK


def cmd_keys_add_worker(ns: argparse.Namespace) -> int:
    from zmr.runtime.security import add_worker_key

    for path in add_worker_key(ns.dir, ns.name):
        print(path)
    _per_host_hint(ns.dir)
    print("then restart the coordinator and the workers: each loads the listed keys when it starts")
    return EXIT_OK


def _per_host_hint(keys_dir: str) -> None:
    print(f"give each worker host coordinator.key, data.key, data.key_secret, workers/ and only its own "
          f"worker-NAME.key_secret from {keys_dir}")


def _coord_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bind", help="control endpoint (default tcp://127.0.0.1:5555)")
    p.add_argument("--state-dir", help="journal directory: a coordinator restarted with the same one recovers "
                   "every job (default: none, state is in memory only)")
    p.add_argument("--recover-damaged-journal", action="store_true",
                   help="start even if the journal is damaged before its end: keep the records before the damage, "
                   "move the file aside as journal.damaged-<time> (default: refuse to start, leave the file alone)")
    p.add_argument("--endpoint-file", help=argparse.SUPPRESS)
    p.add_argument("--dashboard-file", help=argparse.SUPPRESS)
    _dashboard_flags(p)
    _insecure_flag(p)
    p.add_argument("--exit-with-parent", type=int, help=argparse.SUPPRESS)
    _config_flags(p)
    p.set_defaults(func=cmd_coord)


def _worker_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--coordinator", help="coordinator endpoint (default tcp://127.0.0.1:5555)")
    p.add_argument("--work-dir", help="where intermediate files live (default: a fresh temporary directory)")
    p.add_argument("--data-bind", help="data socket endpoint (default tcp://127.0.0.1:*)")
    _insecure_flag(p)
    p.add_argument("--exit-with-parent", type=int, help=argparse.SUPPRESS)
    _config_flags(p)
    p.set_defaults(func=cmd_worker)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zmr", description="zmr: MapReduce for Python on ZeroMQ, "
                                     "with a streaming peer-to-peer shuffle.")
    parser.add_argument("--version", action="version", version=f"zmr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run a job on an embedded local cluster (coordinator + workers on loopback)",
                       description="Run a job on an embedded local cluster (coordinator + workers on loopback), "
                                   "then print a summary, and the output itself when it is small (at most "
                                   f"{SHOWN_RECORDS} records of text, such as a top ten).")
    _cluster_job_flags(p)
    p.add_argument("--workers", type=int, metavar="N", help="worker processes (default: number of cores)")
    p.add_argument("--keep-logs", action="store_true",
                   help="keep the cluster's logs after a success too (their folder is printed)")
    _dashboard_flags(p)
    _config_flags(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("submit", help="submit a job to a running cluster; prints its id")
    _cluster_job_flags(p)
    p.add_argument("--coordinator", metavar="ADDR", help="coordinator endpoint (default worker.coordinator)")
    p.add_argument("--wait", action="store_true", help="show progress and wait; exit non-zero if the job fails")
    _config_flags(p)
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("status", help="jobs and workers of a running cluster, or one job in detail")
    p.add_argument("job_id", nargs="?", metavar="JOB_ID")
    p.add_argument("--tasks", action="store_true",
                   help="with JOB_ID: every task and partition of the job too (one line each)")
    p.add_argument("--json", action="store_true",
                   help=f"print it as one JSON document (format version {STATUS_JSON_VERSION}) instead of tables")
    p.add_argument("--coordinator", metavar="ADDR", help="coordinator endpoint")
    _config_flags(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("report", help="one job's timeline of live leases and progress, as a table, a plot or a page")
    p.add_argument("job_id", metavar="JOB_ID")
    p.add_argument("--plot", metavar="FILE", type=_plot_file, help="draw it to FILE (.png or .svg; needs matplotlib)")
    p.add_argument("--html", metavar="FILE", type=_html_file,
                   help="write the dashboard's page of the job (attempts timeline, lease graph, error) to FILE, "
                   "one self-contained .html file to attach to a bug report")
    p.add_argument("--coordinator", metavar="ADDR", help="coordinator endpoint")
    _config_flags(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("cancel", help="cancel a job: stop its tasks and remove its partial output")
    p.add_argument("job_id", metavar="JOB_ID")
    p.add_argument("--coordinator", metavar="ADDR", help="coordinator endpoint")
    _config_flags(p)
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("completion", help="print a shell completion script: eval \"$(zmr completion bash)\"")
    p.add_argument("shell", choices=["bash", "zsh"])
    p.set_defaults(func=cmd_completion)

    p = sub.add_parser("seq", help="the sequential reference: run the app in this process into OUTDIR/mr-out-0")
    _job_flags(p, "local output directory: one mr-out-0 file (no _SUCCESS)")
    p.add_argument("--split-size-mb", type=int, metavar="MB", help="split input files larger than this")
    p.add_argument("--overwrite", action="store_true", help="replace output already in OUTDIR")
    _config_flags(p)
    p.set_defaults(func=cmd_seq)

    p = sub.add_parser("cluster", help="run a cluster from a config file: workers here and on hosts over SSH")
    cluster_sub = p.add_subparsers(dest="cluster_command", required=True, metavar="ACTION")
    up = cluster_sub.add_parser("up", help="start the coordinator, cluster.workers workers here and the workers "
                                "of cluster.hosts over SSH, in the foreground; restart what exits")
    up.add_argument("config", metavar="CONFIG", help="TOML config file, e.g. configs/local.toml")
    up.add_argument("--workers", type=int, metavar="N", help="override cluster.workers")
    up.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a key")
    up.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    up.add_argument("--log-format", choices=["console", "json"])
    _dashboard_flags(up)
    _insecure_flag(up)
    up.set_defaults(func=cmd_cluster_up)
    down = cluster_sub.add_parser("down", help="stop the cluster that `zmr cluster up CONFIG` runs on this machine")
    down.add_argument("config", metavar="CONFIG", help="the config file it was started with")
    down.add_argument("--timeout", type=float, default=60.0, metavar="S", help="how long to wait for it to stop")
    down.set_defaults(func=cmd_cluster_down)

    p = sub.add_parser("keys", help="CurveZMQ keys for a cluster that binds beyond loopback")
    keys_sub = p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    init = keys_sub.add_parser("init", help="create coordinator, client and worker key pairs in DIR")
    init.add_argument("dir", metavar="DIR")
    init.add_argument("--workers", metavar="NAME,NAME...",
                      help="one worker key pair per worker host (worker-NAME) instead of one shared by all")
    init.set_defaults(func=cmd_keys_init)
    add = keys_sub.add_parser("add-worker", help="add a worker host's own key pair (worker-NAME) to DIR")
    add.add_argument("dir", metavar="DIR")
    add.add_argument("name", metavar="NAME", help="the host's name: letters, digits, '.', '_' or '-'")
    add.set_defaults(func=cmd_keys_add_worker)

    _coord_parser(sub.add_parser("coord", help="run a coordinator (same as zmr-coord)"))
    _worker_parser(sub.add_parser("worker", help="run a worker (same as zmr-worker)"))
    return parser


def _run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    ns = parser.parse_args(argv)
    try:
        return int(ns.func(ns))
    except KeyboardInterrupt as exc:
        return _interrupted(exc)
    except ZmrError as exc:
        print(f"zmr: {exc}", file=sys.stderr)
        return EXIT_FAILED


def run_command(argv: Sequence[str] | None = None) -> int:
    """What `zmr ARGV...` does, as an exit code (a forked cluster process runs its command this way)."""
    return _run(build_parser(), argv)


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run_command(argv))


def entry() -> None:
    """The `zmr` command (and `python -m zmr`): `main`, then out without the interpreter's teardown, which
    frees every module and object one by one (some 50 ms, longer than a small job's own shutdown). The
    work is done by then: logs and standard streams are flushed first, and every child process has been
    waited for. Usage errors and --help leave the normal way."""
    code = run_command()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):   # a closed pipe (`zmr status | head`): nothing more to say
            stream.flush()
    os._exit(code)


def coord_main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="zmr-coord", description="The zmr coordinator.")
    _coord_parser(parser)
    sys.exit(_run(parser, argv))


def worker_main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="zmr-worker", description="A zmr worker.")
    _worker_parser(parser)
    sys.exit(_run(parser, argv))


