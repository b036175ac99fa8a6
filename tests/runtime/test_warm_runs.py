"""A map task's last runs outlive it until the next map has made its own, within bounds.

The runs are held where the map ran: in the task process (`zmr.runtime.runner.Runner`), driven here
in-process over an inproc channel.
"""

from __future__ import annotations

import itertools
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from zmr.apps import ship_app
from zmr.core.batches import Packer, Pairs
from zmr.core.pair_columns import ColumnBuffers
from zmr.protocol import messages as m
from zmr.protocol import taskproc as t
from zmr.runtime import runner as runner_module
from zmr.runtime.runner import Runner

APPS = Path(__file__).resolve().parents[2] / "apps"
MIXED = Path(__file__).resolve().parents[1] / "e2e" / "apps" / "mixed_values.py"
JOB = "job-0001"


@pytest.fixture()
def runner(tmp_path: Path) -> Iterator[Runner]:
    ctx: zmq.Context[Any] = zmq.Context()
    ours, theirs = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    ours.bind("inproc://chan")
    theirs.connect("inproc://chan")
    r = Runner(ctx, theirs, t.ProcSetup(worker_id="w-1", max_message_bytes=1 << 20, ack_timeout=1.0,
                                        memory_budget=64 << 20, task_memory_mb=0))
    r._note(t.JobInfo(job_id=JOB, app_blob=ship_app(str(APPS / "bench_wc.py")), args=[], n_reduce=3, push=False,
                      batch_bytes=1 << 20, window_bytes=1 << 20, owners=["a", "b", "c"], owners_epoch=1))
    yield r
    r._pusher.close()
    ours.close(linger=0)
    theirs.close(linger=0)
    ctx.term()


def _map(runner: Runner, path: Path, task: int, kept: Path) -> t.FromProc:
    split = m.InputSplit(name=path.name, path=str(path), start=0, end=path.stat().st_size)
    return runner._run(t.RunMap(attempt=m.AttemptId(job_id=JOB, kind="map", task=task, number=1),
                                split=split, kept_dir=str(kept)))


def test_a_map_task_leaves_its_runs_held_and_the_next_one_replaces_them(runner: Runner, tmp_path: Path) -> None:
    """Maps of fewer pairs than a block make runs of pairs: those are held."""
    first, second = tmp_path / "one.txt", tmp_path / "two.txt"
    first.write_text("the cat and the dog\nthe end\n")
    second.write_text("zebra yak\n")
    done = _map(runner, first, 0, tmp_path)
    assert isinstance(done, t.MapResult), done   # it ran to the end
    assert sorted(pair for run in runner._warm for pair in run) == [
        ("and", 1), ("cat", 1), ("dog", 1), ("end", 1), ("the", 3)]
    _map(runner, second, 1, tmp_path)
    assert sorted(pair for run in runner._warm for pair in run) == [("yak", 1), ("zebra", 1)]


def test_a_map_of_columns_leaves_its_keys_held_and_the_next_one_replaces_them(runner: Runner,
                                                                              tmp_path: Path) -> None:
    """A map of more pairs than a block makes columns: the keys map made are held instead."""
    first, second = tmp_path / "one.txt", tmp_path / "two.txt"
    words = ["".join(letters) for letters in itertools.islice(itertools.product(string.ascii_lowercase, repeat=3),
                                                               ColumnBuffers.BLOCK + 100)]
    first.write_text(" ".join(words) + "\n")
    second.write_text("zebra yak\n")
    done = _map(runner, first, 0, tmp_path)
    assert isinstance(done, t.MapResult), done
    assert sorted(key for keys in runner._warm for key in keys) == sorted(words)
    _map(runner, second, 1, tmp_path)
    assert sorted(pair for run in runner._warm for pair in run) == [("yak", 1), ("zebra", 1)]


def test_a_map_whose_pairs_make_no_columns_holds_its_runs_of_pairs(runner: Runner, tmp_path: Path) -> None:
    """Mixed values (an int, then floats) send the task back to pair buffers: those runs are held."""
    runner._note(t.JobInfo(job_id="job-0002", app_blob=ship_app(str(MIXED)), args=[], n_reduce=2, push=False,
                           batch_bytes=1 << 20, window_bytes=1 << 20, owners=["a", "b"], owners_epoch=1))
    path = tmp_path / "mixed.txt"
    path.write_text("a b c\n")
    split = m.InputSplit(name=path.name, path=str(path), start=0, end=path.stat().st_size)
    done = runner._run(t.RunMap(attempt=m.AttemptId(job_id="job-0002", kind="map", task=0, number=1),
                                split=split, kept_dir=str(tmp_path)))
    assert isinstance(done, t.MapResult), done
    assert done.records_out == 5
    assert sorted(pair for run in runner._warm for pair in run) == [("a", 1.5), ("b", 1), ("c", 1.5)]


def test_the_last_runs_are_held_then_given_up_once_the_process_idles(runner: Runner) -> None:
    runs: list[Pairs] = [[("a", 1), ("b", 2)], [("c", 3)]]
    runner._keep_warm(runs)
    assert runner._warm is runs
    runner._keep_warm([[("d", 4)]])   # the next task's replace them
    assert runner._warm == [[("d", 4)]]
    runner.step(0.05)                 # nothing came within the idle time
    assert runner._warm == []


def test_runs_beyond_the_bound_are_not_held(runner: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_module, "_WARM_MAX_PAIRS", 3)
    runner._keep_warm([[("a", 1), ("b", 2)], [("c", 3)]])
    assert runner._warm == [[("a", 1), ("b", 2)], [("c", 3)]]
    runner._keep_warm([[("a", 1), ("b", 2)], [("c", 3), ("d", 4)]])
    assert runner._warm == []


def test_a_reduce_gives_up_the_runs_before_it_runs(runner: Runner, tmp_path: Path) -> None:
    runner._keep_warm([[("a", 1)]])
    done = runner._run(t.RunReduce(attempt=m.AttemptId(job_id=JOB, kind="reduce", task=0, number=1),
                                   runs=[], tmp_path=str(tmp_path / "out.tmp"),
                                   scratch=str(tmp_path / "scratch"), fan_in=16))
    assert isinstance(done, t.ReduceResult) and done.records_out == 0
    assert runner._warm == []


def test_a_map_reports_its_kept_copy_whole_and_the_error_of_the_app(runner: Runner, tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_text("one two three four\n")
    done = _map(runner, path, 0, tmp_path)
    assert isinstance(done, t.MapResult)
    for kept in done.kept:
        assert (tmp_path / f"p{kept.partition}.data").stat().st_size >= kept.offset + kept.length
    assert sum(k.length for k in done.kept) == done.bytes_out


def test_a_reduce_that_meets_pairs_after_columns_writes_its_file_again_from_pairs(runner: Runner,
                                                                                  tmp_path: Path) -> None:
    """Every run starts with a column chunk of one kind, so the merge starts as columns; a chunk of pairs
    further on (MixedColumns) sends the reduce back to a merge of pairs, and the file holds every count
    once: nothing written by the first try is left in it."""
    from zmr.core import columns

    packer = Packer()
    first = packer.columns(columns.columns_of((["a", "b"], [1, 2]))) + packer.batch([("c", 3), ("d", 4)])
    second = packer.columns(columns.columns_of((["a", "c"], [10, 20])))
    data = tmp_path / "runs.data"
    data.write_bytes(first + second)
    runs = [(str(data), 0, len(first)), (str(data), len(first), len(second))]
    out = tmp_path / "out.tmp"
    done = runner._run(t.RunReduce(attempt=m.AttemptId(job_id=JOB, kind="reduce", task=0, number=1), runs=runs,
                                   tmp_path=str(out), scratch=str(tmp_path / "scratch"), fan_in=16))
    assert isinstance(done, t.ReduceResult), done
    assert out.read_text().splitlines() == ["a 11", "b 2", "c 23", "d 4"]
    assert done.records_out == 4


def test_a_reduce_that_catches_the_failed_read_is_still_written_whole(runner: Runner, tmp_path: Path) -> None:
    """The run turns to pairs while the reduce reads one key's values, and the app's reduce catches
    what that raises: the runner still sees it, and writes the file again from pairs, whole."""
    from zmr.core import columns

    app = tmp_path / "catching.py"
    app.write_text("def map(filename, contents):\n    return []\n\n\n"
                   "def reduce(key, values):\n    total = 0\n    try:\n        for value in values:\n"
                   "            total += value\n    except Exception:\n        return -1\n    return total\n")
    runner._note(t.JobInfo(job_id="job-0003", app_blob=ship_app(str(app)), args=[], n_reduce=1, push=False,
                           batch_bytes=1 << 20, window_bytes=1 << 20, owners=["a"], owners_epoch=1))
    many = 1_000_000   # more of one key than a merge round loads: its values are read inside the reduce
    packer = Packer()
    body = packer.columns(columns.columns_of((["k"] * many, [1] * many))) + packer.batch([("k", 5), ("z", 1)])
    data = tmp_path / "run.data"
    data.write_bytes(body)
    out = tmp_path / "out.tmp"
    done = runner._run(t.RunReduce(attempt=m.AttemptId(job_id="job-0003", kind="reduce", task=0, number=1),
                                   runs=[(str(data), 0, len(body))], tmp_path=str(out),
                                   scratch=str(tmp_path / "scratch"), fan_in=4))
    assert isinstance(done, t.ReduceResult), done
    assert out.read_text().splitlines() == [f"k {many + 5}", "z 1"]
