"""The worker knows which jobs its task process keeps: a task process keeps the latest few jobs (their
apps loaded), and the worker sends a job again once the process has dropped it, however many newer jobs
passed through in between (a long job among many short ones, say).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import msgspec
import zmq

from zmr import pyfiles
from zmr.apps import ship_app
from zmr.log import get_logger
from zmr.protocol import messages as m
from zmr.protocol import taskproc as t
from zmr.runtime.executor import Executor, ExecutorSettings, JobContext
from zmr.runtime.runner import Runner
from zmr.runtime.stores import MapOutputStore, ReceiveStore

APPS = Path(__file__).resolve().parents[2] / "apps"


class _ProcessOverChannel:
    """Stands for the worker's TaskProcess: what it sends is handed to a real Runner at once."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.jobs: dict[str, int] = {}

    def send(self, rec: Any) -> None:
        self.runner._note(t.decode_to_proc(t.encode_rec(rec)))


def _job(number: int, blob: bytes) -> JobContext:
    setup = m.JobSetup(job_id=f"job-{number:04d}", app_blob=blob, args=[], n_reduce=1, peers=["a"], cycle=[0],
                       moved={}, owners_epoch=1, push=False, batch_bytes=1 << 20, window_bytes=1 << 20)
    return JobContext(setup=setup, owners=("a",), owners_epoch=1)


def test_a_job_the_task_process_dropped_is_sent_again(tmp_path: Path) -> None:
    ctx: zmq.Context[Any] = zmq.Context()
    chan = ctx.socket(zmq.PAIR)
    runner = Runner(ctx, chan, t.ProcSetup(worker_id="w-1", max_message_bytes=1 << 20, ack_timeout=1.0,
                                           memory_budget=64 << 20, task_memory_mb=0))
    settings = ExecutorSettings(worker_id="w-1", work_dir=tmp_path, memory_budget=64 << 20,
                                max_message_bytes=1 << 20, pull_timeout=1.0, commit_timeout=1.0)
    executor = Executor(ctx, settings, {}, ReceiveStore(tmp_path / "recv"), MapOutputStore(tmp_path / "kept"),
                        report=lambda report: None, log=get_logger(),
                        zygote=None)  # type: ignore[arg-type]  # no task runs: the zygote is never used
    proc = _ProcessOverChannel(runner)
    blob = ship_app(str(APPS / "wc.py"))
    jobs = [_job(n, blob) for n in range(1, t.JOBS_KEPT + 3)]
    try:
        for job in jobs:   # the first job is still running while newer ones pass through
            executor._sync_job(proc, job)  # type: ignore[arg-type]
            assert job.setup.job_id in runner._jobs
        executor._sync_job(proc, jobs[0])  # type: ignore[arg-type]   # the first job's next task
        assert jobs[0].setup.job_id in runner._jobs, "the task process no longer knows the job it is to run"
        assert list(proc.jobs) == list(runner._jobs)
    finally:
        runner._pusher.close()
        chan.close(linger=0)
        ctx.term()


def test_a_jobs_py_files_are_on_the_task_process_path_for_that_job_only(tmp_path: Path) -> None:
    """The worker writes the job's archives into its work dir; the task process imports from them while it
    knows the job, and forgets both the path and the modules it imported when the job is over."""
    helper = f"zmrhelper_{tmp_path.name.replace('-', '_')}"
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / f"{helper}.py").write_text("def shout(s):\n    return s.upper()\n")
    app = tmp_path / "app" / "shouting.py"
    app.parent.mkdir()
    app.write_text(f"import {helper}\n\ndef map(f, text):\n    return [({helper}.shout(w), 1) for w in text.split()]"
                   "\n\ndef reduce(k, vs):\n    return sum(vs)\n")
    with pyfiles.on_path([str(tmp_path / "src")]):
        blob = ship_app(str(app))
    del sys.modules[helper]   # as in a task process that never saw it
    ctx: zmq.Context[Any] = zmq.Context()
    chan = ctx.socket(zmq.PAIR)
    runner = Runner(ctx, chan, t.ProcSetup(worker_id="w-1", max_message_bytes=1 << 20, ack_timeout=1.0,
                                           memory_budget=64 << 20, task_memory_mb=0))
    settings = ExecutorSettings(worker_id="w-1", work_dir=tmp_path / "work", memory_budget=64 << 20,
                                max_message_bytes=1 << 20, pull_timeout=1.0, commit_timeout=1.0)
    executor = Executor(ctx, settings, {}, ReceiveStore(tmp_path / "recv"), MapOutputStore(tmp_path / "kept"),
                        report=lambda report: None, log=get_logger(),
                        zygote=None)  # type: ignore[arg-type]  # no task runs: the zygote is never used
    job = _job(1, blob)
    job = JobContext(setup=msgspec.structs.replace(job.setup, py_files=pyfiles.pack([str(tmp_path / "src")])),
                     owners=job.owners, owners_epoch=job.owners_epoch)
    try:
        executor._sync_job(_ProcessOverChannel(runner), job)  # type: ignore[arg-type]
        [archive] = runner._jobs[job.setup.job_id].info.py_paths
        assert Path(archive).is_relative_to(tmp_path / "work") and Path(archive).is_file()
        assert list(runner._jobs[job.setup.job_id].app().map("f", "a b", [])) == [("A", 1), ("B", 1)]
        assert archive in sys.path and helper in sys.modules
        runner._note(t.ForgetJob(job_id=job.setup.job_id))
        assert archive not in sys.path and helper not in sys.modules
    finally:
        runner._pusher.close()
        chan.close(linger=0)
        ctx.term()
        sys.modules.pop(helper, None)
