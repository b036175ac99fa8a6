"""Workers that die or hang at random while a job runs, as in MIT 6.5840's MapReduce crash test.

The crash app (tests/e2e/apps/crash.py) is a word count whose map calls and reduce tasks exit their
worker process at once (`os._exit(1)`) or stall far longer than the task timeout, at random. A supervisor
thread restarts every worker that exits, as `zmr cluster up` does. The output must still equal the
sequential reference of the plain word count app.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from zmr.core.splits import plan_splits
from zmr.inputs import expand_inputs

from .conftest import APPS, CRASH_APP, Cluster, SeqOracle, Supervisor, read_markers, read_output

pytestmark = pytest.mark.e2e

BOOKS = ["pg-being_ernest.txt", "pg-metamorphosis.txt", "pg-frankenstein.txt", "pg-tom_sawyer.txt"]
SPLIT = 150_000


def _events(markers: Path) -> dict[tuple[str, str], int]:
    """(event, phase) -> how many times it happened, from the app's marker files."""
    counts: dict[tuple[str, str], int] = {}
    for record in read_markers(markers):
        key = (record["event"], record["phase"])
        counts[key] = counts.get(key, 0) + 1
    return counts


def test_random_crashes_and_stalls_in_map_and_reduce_still_give_the_reference_output(
        library: Path, tmp_path: Path, cluster, seq_oracle: SeqOracle) -> None:
    """Each map call and reduce task crashes its worker with probability 1/8 and stalls it with 1/8.

    The first map and the first reduce crash and the next ones stall for sure (`force=crash,stall`), so
    every kind of fault happens in every run. Stalls (5 s) outlast the task timeout (3 s), so the
    coordinator gives up on them while their workers still beat.

    Why not 1/3 and 1/3 as in the MIT lab: there, map output lives on a shared file system. Here a dead
    worker takes the map output it kept with it, and since it owned partitions, every map it had
    committed runs again; at 1/3 each crash undoes more committed maps than the attempts in between
    commit, and the job never ends (measured: 246 attempts in 240 s, 3 of 8 maps committed).

    A stall that outlasts the task timeout counts against the task as an app failure, so with the default
    `retry.max_attempts` (4) the job fails, rightly, when one task stalls four times in a row: one chance
    in 512 for the task that took the forced stall, about 1 in 200 per run over its 15 or so tasks (seen
    once in CI). With 12 attempts it takes twelve stalls in a row of one task: under 1 in 10^9 per run.
    """
    c: Cluster = cluster(3, coordinator__heartbeat_interval="0.2", coordinator__task_timeout="3",
                         retry__max_attempts="12")
    assert c.client is not None
    inputs = [str(library / book) for book in BOOKS]
    markers, out = tmp_path / "markers", tmp_path / "out"
    markers.mkdir()
    args = [f"markers={markers}", "crash=1/8", "stall=1/8", "stall_s=5", "force=crash,stall"]
    with Supervisor(c) as supervisor:
        job = c.client.submit(str(CRASH_APP), inputs, str(out), n_reduce=5, args=args, split_size=SPLIT)
        info = c.client.wait(job, timeout=200)
    assert info.maps_total == len(plan_splits(expand_inputs(inputs), SPLIT)) >= 8
    assert read_output(out, 5) == seq_oracle(APPS / "wc.py", inputs)
    events = _events(markers)
    print(f"faults: {events}; worker restarts: {supervisor.restarts}; "
          f"attempts: {sum(t.attempts for t in info.tasks)} for {len(info.tasks)} tasks")
    for phase in ("map", "reduce"):
        assert events.get(("crash", phase), 0) >= 1 and events.get(("stall", phase), 0) >= 1, events
    # every crash took its worker down, and the supervisor brought up another in its place
    assert supervisor.restarts == events[("crash", "map")] + events[("crash", "reduce")]


def test_a_map_that_kills_its_worker_one_time_in_three_still_completes(
        library: Path, tmp_path: Path, cluster, seq_oracle: SeqOracle) -> None:
    """Only one file's map crashes (its first attempt for sure, then one time in three), default limits.

    With the default `retry.max_worker_losses` (8), the job fails only if nine attempts in a row crash:
    one chance in 6561 after the forced one. Each crash is exactly one lost attempt.
    """
    c: Cluster = cluster(3, coordinator__heartbeat_interval="0.2", speculation__enabled="false")
    assert c.client is not None
    inputs = [str(library / book) for book in BOOKS]
    markers, out = tmp_path / "markers", tmp_path / "out"
    markers.mkdir()
    target = "frankenstein"
    args = [f"markers={markers}", "crash=1/3", "phases=map", f"only={target}", "force=crash"]
    splits = plan_splits(expand_inputs(inputs), 1 << 30)   # one map per book
    index = next(i for i, split in enumerate(splits) if target in split.name)
    with Supervisor(c) as supervisor:
        job = c.client.submit(str(CRASH_APP), inputs, str(out), n_reduce=5, args=args, split_size=1 << 30)
        c.client.wait(job, timeout=120)
    assert read_output(out, 5) == seq_oracle(APPS / "wc.py", inputs)
    crashes = sum(1 for r in read_markers(markers) if r["event"] == "crash")
    assert crashes >= 1 and supervisor.restarts == crashes
    tasks = {(t.kind, t.index): t for t in c.client.job(job).tasks}
    assert tasks[("map", index)].attempts == crashes + 1
