"""A poison record: one key whose reduce always raises. Its job fails, cleanly; the cluster goes on.

The poison app (tests/e2e/apps/poison.py) raises in the reduce of one key and leaves a marker file each
time that reduce is reached, so the number of attempts is counted by the app itself.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from zmr.core.partition import partition_of
from zmr.errors import JobFailed

from .conftest import APPS, TEST_APPS, Cluster, SeqOracle, Watcher, read_output

pytestmark = pytest.mark.e2e

POISON_APP = TEST_APPS / "poison.py"
MAX_ATTEMPTS = 3
POISON_R = 4


def test_a_poisoned_reduce_fails_its_job_alone_with_the_traceback_and_no_output(
        library: Path, tmp_path: Path, cluster, run_zmr, seq_oracle: SeqOracle) -> None:
    c: Cluster = cluster(2, retry__max_attempts=str(MAX_ATTEMPTS), retry__base="0.2", retry__cap="1")
    assert c.client is not None
    client = c.client
    markers, out = tmp_path / "markers", tmp_path / "poisoned"
    markers.mkdir()
    watcher = Watcher(c.processes(), out)
    watcher.start()
    try:
        poisoned = client.submit(str(POISON_APP), [str(library)], str(out), n_reduce=POISON_R,
                                 args=[f"markers={markers}", "key=Holmes"])
        alongside = client.submit(str(APPS / "wc.py"), [str(library)], str(tmp_path / "alongside"), n_reduce=3)
        with pytest.raises(JobFailed) as failed:
            client.wait(poisoned, timeout=60)
    finally:
        watcher.stop()

    # the reason names the task and carries the app's exception and traceback, into the app's own code
    partition = partition_of("Holmes", POISON_R)
    reason = failed.value.reason
    assert failed.value.job_id == poisoned
    assert f"reduce-{partition} failed {MAX_ATTEMPTS} times" in reason, reason
    assert "PoisonError: zmr-e2e-poison on key 'Holmes'" in reason, reason
    assert "Traceback (most recent call last)" in reason and "poison.py" in reason, reason
    assert "_swallow_poison" in reason, reason

    # the failing reduce ran exactly max_attempts times, counted by the app and by the coordinator
    assert len(list(markers.glob("poison-*.json"))) == MAX_ATTEMPTS
    info = client.job(poisoned)
    assert info.state == "failed"
    assert [t.attempts for t in info.tasks if (t.kind, t.index) == ("reduce", partition)] == [MAX_ATTEMPTS]

    # the partial output it had committed is gone, and so is the directory the coordinator made for it
    assert {n for n in watcher.names if n.startswith("mr-out-")}, "no partition committed before the failure"
    assert not out.exists()

    # zmr status shows the error
    status = run_zmr("status", poisoned, "--coordinator", c.address)
    assert status.returncode == 0, str(status)
    assert f"job {poisoned}: failed" in status.stdout, status.stdout
    assert "error:" in status.stdout and "PoisonError: zmr-e2e-poison on key 'Holmes'" in status.stdout, \
        status.stdout
    assert "Traceback (most recent call last)" in status.stdout, status.stdout

    # the job that ran alongside it, and one submitted after it, succeed on the same cluster
    client.wait(alongside, timeout=60)
    assert read_output(tmp_path / "alongside", 3) == seq_oracle(APPS / "wc.py", [library])
    after = client.submit(str(APPS / "wc.py"), [str(library)], str(tmp_path / "after"), n_reduce=2)
    client.wait(after, timeout=60)
    assert read_output(tmp_path / "after", 2) == seq_oracle(APPS / "wc.py", [library])
    assert not out.exists(), "the failed job's output came back"


BROKEN_CONTRACT = '''
def map(filename, contents):
    for n, word in enumerate(contents.split()):
        yield (n, word) if word == "Holmes" else (word, 1)   # an int key: zmr refuses it


def reduce(key, values):
    return sum(values)
'''


def test_a_broken_contract_fails_the_job_after_one_attempt(library: Path, tmp_path: Path, cluster) -> None:
    """zmr's own check of the app's output (here: an int key) is no fault that a retry could mend: the job
    fails with the first error, not after `retry.max_attempts` tries with backoff."""
    c: Cluster = cluster(2, retry__max_attempts=str(MAX_ATTEMPTS), retry__base="2", retry__cap="4")
    assert c.client is not None
    app = tmp_path / "int_keys.py"
    app.write_text(BROKEN_CONTRACT)
    job = c.client.submit(str(app), [str(library)], str(tmp_path / "out"), n_reduce=2)
    with pytest.raises(JobFailed) as failed:
        c.client.wait(job, timeout=60)
    reason = failed.value.reason
    assert re.search(r"map-\d+ failed: app '.*int_keys.py': map yielded \(\d+, 'Holmes'\), expected a str key",
                     reason), reason
    info = c.client.job(job)
    assert info.state == "failed" and max(t.attempts for t in info.tasks) == 1
    assert info.finished is not None and info.started is not None and info.finished - info.started < 2.0
    assert not (tmp_path / "out").exists()
    mine = tmp_path / "mine"   # a directory the user made stays, emptied of the failed job's output
    mine.mkdir()
    again = c.client.submit(str(app), [str(library)], str(mine), n_reduce=2)
    with pytest.raises(JobFailed):
        c.client.wait(again, timeout=60)
    assert mine.is_dir() and list(mine.iterdir()) == []
