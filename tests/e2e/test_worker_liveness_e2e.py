"""A worker stays alive while its task's app code holds the GIL (one long C call, as a regex over a big
split makes): liveness is about the worker's process; a task that makes no progress is what
`coordinator.task_timeout` is for. (Workers really stopped with SIGSTOP: test_straggler_e2e.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import APPS, TEST_APPS, Cluster, SeqOracle, read_output

pytestmark = pytest.mark.e2e

GIL_HOG_APP = TEST_APPS / "gil_hog.py"


def test_a_map_holding_the_gil_longer_than_the_liveness_does_not_kill_its_worker(
        library: Path, tmp_path: Path, cluster, seq_oracle: SeqOracle) -> None:
    """Each map holds the GIL 2 s in one C call, while liveness is 0.1 s * 6 beats: the worker's own
    heartbeats stop meanwhile. One lost worker more than allowed would fail the job at once."""
    c: Cluster = cluster(2, retry__max_worker_losses=1, coordinator__task_timeout=30)
    assert c.client is not None
    book = library / "pg-metamorphosis.txt"
    out = tmp_path / "out"
    job = c.client.submit(str(GIL_HOG_APP), [str(book)], str(out), n_reduce=2, args=["hold=2"])
    c.client.wait(job, timeout=60)
    assert read_output(out, 2) == seq_oracle(APPS / "wc.py", [book])
    assert [t.attempts for t in c.client.job(job).tasks if t.kind == "map"] == [1]
    assert all(w.state != "dead" for w in c.client.status().workers)
