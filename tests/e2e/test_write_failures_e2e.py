"""Writing the output fails: the task fails with the OS error, is retried, and the job fails cleanly.

Running as root ignores file permissions, so the failure comes from RLIMIT_FSIZE: the workers are started
by hand with a small file-size limit, which their intermediate files stay under and the output of
tests/e2e/apps/fat_output.py does not. Past the limit a write fails with EFBIG, and the process gets
SIGXFSZ, whose default action would kill it: a worker must ignore it and live on.
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from zmr.client import Client
from zmr.errors import JobFailed

from .conftest import APPS, FAST_FLAGS, TEST_APPS, SeqOracle, live_workers, read_output, wait_until
from .peers import events, start_process, stop_process, zmr_command

pytestmark = pytest.mark.e2e

FAT_OUTPUT_APP = TEST_APPS / "fat_output.py"
FILE_LIMIT = 1 << 20   # bytes; a reduce of fat_output.py writes about 2 MB


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))


class LimitedCluster:
    """A coordinator, and workers that may not write a file larger than FILE_LIMIT."""

    def __init__(self, base: Path, workers: int) -> None:
        self.base = base
        self.address = f"tcp://127.0.0.1:{_free_port()}"
        flags = ["--exit-with-parent", str(os.getpid()), "--set", "log.format=json",
                 "--set", "retry.max_attempts=2", "--set", "retry.base=0.05", *FAST_FLAGS]
        self.coordinator = start_process(zmr_command("coord", "--bind", self.address, *flags),
                                         base / "coordinator.log", base)
        self.workers: list[subprocess.Popen[bytes]] = []
        for i in range(workers):
            self.workers.append(start_process(
                zmr_command("worker", "--coordinator", self.address, "--work-dir", base / f"work-{i}", *flags),
                base / f"worker-{i}.log", base, preexec_fn=_limit_file_size))
        self.client = Client(self.address, timeout=20)
        self._codes: list[int] | None = None
        wait_until(lambda: live_workers(self.client) == workers, 30, what="the workers to register")

    def alive(self) -> list[bool]:
        return [p.poll() is None for p in [self.coordinator, *self.workers]]

    def stop(self) -> list[int]:
        """Stop every process (once); their exit codes, workers first."""
        if self._codes is None:
            self.client.close()
            self._codes = [stop_process(p) for p in [*self.workers, self.coordinator]]
        return self._codes


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[LimitedCluster]:
    base = tmp_path / "limited"
    base.mkdir()
    c = LimitedCluster(base, 2)
    try:
        yield c
    finally:
        c.stop()


def test_output_past_the_file_size_limit_fails_the_job_cleanly_and_the_workers_live_on(
        limited: LimitedCluster, library: Path, tmp_path: Path, seq_oracle: SeqOracle) -> None:
    out = tmp_path / "out"
    job = limited.client.submit(str(FAT_OUTPUT_APP), [str(library)], str(out), n_reduce=2)
    with pytest.raises(JobFailed) as failed:
        limited.client.wait(job, timeout=120)
    reason = failed.value.reason
    assert "reduce-" in reason and "failed 2 times" in reason, reason
    assert "File too large" in reason and "Errno 27" in reason, reason
    # the job left nothing: no output under its final name, no temporary file, no _SUCCESS, and not the
    # directory the coordinator made for it
    assert not out.exists(), sorted(p.name for p in out.iterdir())
    # each attempt failed with the OS error as an io failure, and was retried
    failures = events(limited.base / "coordinator.log", "task_failed", job=job)
    assert len(failures) >= 2 and all(f["kind"] == "io" and "File too large" in f["error"] for f in failures)
    # SIGXFSZ did not kill anyone, and the same workers still run a job whose files fit
    assert all(limited.alive()), limited.alive()
    book = library / "pg-metamorphosis.txt"
    small = tmp_path / "small"
    second = limited.client.submit(str(APPS / "wc.py"), [str(book)], str(small), n_reduce=2)
    limited.client.wait(second, timeout=120)
    assert read_output(small, 2) == seq_oracle(APPS / "wc.py", [book])
    assert all(limited.alive()), limited.alive()
    assert limited.stop() == [0, 0, 0]
