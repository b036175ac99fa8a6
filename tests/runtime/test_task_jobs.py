"""The worker knows which jobs its task process keeps: a task process keeps the latest few jobs (their
apps loaded), and the worker sends a job again once the process has dropped it, however many newer jobs
passed through in between (a long job among many short ones, say).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import zmq

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
