"""Bounded specs and separate inputs and outputs, against a real coordinator.

Each test starts from a way a hostile user broke an unbounded cluster: a job with a billion reduce
partitions (the coordinator stopped answering and grew by gigabytes), an app larger than the control
plane's message cap (the client waited for an answer that never came; the coordinator logged nothing),
and an output directory inside the input directory (the job read its previous output, and `--overwrite`
deleted it after listing it). Every refusal is quick, names the limit or the rule and the key to change,
leaves the queue and the files alone, and the coordinator goes on answering.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from zmr.client import Client, build_spec
from zmr.core.specs import SpecLimits
from zmr.errors import ClusterError
from zmr.protocol import messages as m

from .conftest import APPS, Cluster, independent_word_count, read_output
from .peers import log_records

pytestmark = pytest.mark.e2e

OPEN = SpecLimits(max_n_reduce=10**9, max_map_tasks=10**9, max_app_bytes=1 << 30)   # a client that checks nothing
CONTROL_LIMIT = 64 << 10     # coordinator.max_message_bytes of the small-cap cluster
APP_LIMIT = 16 << 10         # its job.max_app_bytes


@pytest.fixture
def books(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    for i in range(3):
        (folder / f"book{i}.txt").write_text(f"the cat sat on mat number {i}\nand the dog sat too\n" * 50)
    return folder


def _job_ids(c: Cluster) -> list[str]:
    assert c.client is not None
    return [j.job_id for j in c.client.status().jobs]


def _submit_args(c: Cluster, app: Path, inputs: list[Path], out: Path, *extra: str) -> list[str | Path]:
    return ["submit", "--coordinator", c.address, "--app", app, "--input", *inputs, "--output", out, *extra]


def _refused(result: Any, *needles: str) -> None:
    assert result.returncode == 1, str(result)
    assert result.stderr.startswith("zmr: ") and result.stderr.count("\n") == 1, str(result)
    for needle in needles:
        assert needle in result.stderr, str(result)


def _padded_app(path: Path, pad_bytes: int) -> Path:
    """Word count carrying a string constant of `pad_bytes` bytes, so the shipped app is that much larger."""
    pad = "x" * pad_bytes
    path.write_text(f'PAD = "{pad}"\n\n'
                    "def map(filename, contents):\n    return [(w, len(PAD) // len(PAD)) for w in contents.split()]\n\n"
                    "def reduce(key, values):\n    return sum(values)\n")
    return path


# ------------------------------------------------------------------ n_reduce


def test_a_huge_n_reduce_is_refused_at_once_and_the_coordinator_still_answers(
        books: Path, tmp_path: Path, cluster, run_zmr) -> None:
    c: Cluster = cluster(1, job__max_n_reduce="8")
    assert c.client is not None
    out = tmp_path / "out"
    result = run_zmr(*_submit_args(c, APPS / "wc.py", [books], out, "--n-reduce", "1000000000"), timeout=30)
    _refused(result, "n_reduce is 1,000,000,000, over the limit of 10,000 (job.max_n_reduce)", "raise job.max_n_reduce")

    # a client that checks nothing meets the coordinator's own limit, which is lower than the client's
    with Client(c.address, timeout=20, limits=OPEN) as hostile:
        for n_reduce in (10**9, 9):
            spec = build_spec(str(APPS / "wc.py"), [str(books)], str(out), n_reduce, limits=OPEN)
            started = time.monotonic()
            refusal = rf"n_reduce is {n_reduce:,}, over the limit of 8 \(job.max_n_reduce\)"
            with pytest.raises(ClusterError, match=refusal):
                hostile.submit_spec(spec)
            assert time.monotonic() - started < 5
    assert _job_ids(c) == [] and not out.exists()

    job = c.client.submit(str(APPS / "wc.py"), [str(books)], str(out), n_reduce=8)   # at the limit: runs
    c.client.wait(job, timeout=120)
    assert read_output(out, 8) == independent_word_count(sorted(books.glob("*.txt")))


# ------------------------------------------------------------------ the app's size and the message cap


@pytest.fixture
def small_cap(cluster) -> Cluster:
    c: Cluster = cluster(1, coordinator__max_message_bytes=str(CONTROL_LIMIT), job__max_app_bytes=str(APP_LIMIT),
                         log__format="json")
    return c


def test_an_app_over_the_message_cap_is_refused_by_the_client_naming_the_limit(
        books: Path, tmp_path: Path, small_cap: Cluster, run_zmr) -> None:
    app = _padded_app(tmp_path / "padded.py", 80 << 10)
    out = tmp_path / "out"
    cap = f"--set=coordinator.max_message_bytes={CONTROL_LIMIT}"
    started = time.monotonic()
    result = run_zmr(*_submit_args(small_cap, app, [books], out, cap), timeout=30)
    _refused(result, f"over the limit of {CONTROL_LIMIT:,} (coordinator.max_message_bytes)")
    assert time.monotonic() - started < 10   # not a wait for an answer that never comes
    result = run_zmr(*_submit_args(small_cap, app, [books], out, f"--set=job.max_app_bytes={APP_LIMIT}"), timeout=30)
    _refused(result, f"over the limit of {APP_LIMIT:,} (job.max_app_bytes)", "raise job.max_app_bytes")
    assert _job_ids(small_cap) == [] and not out.exists()


def test_an_oversized_message_is_answered_and_logged_once_by_the_coordinator(
        books: Path, tmp_path: Path, small_cap: Cluster) -> None:
    """A client that does not check (an old one) hears why instead of timing out."""
    out = tmp_path / "out"
    spec = build_spec(str(_padded_app(tmp_path / "padded.py", 80 << 10)), [str(books)], str(out), 2, limits=OPEN)
    with Client(small_cap.address, timeout=20, limits=OPEN, max_message_bytes=1 << 30) as old:
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(ClusterError, match=r"exceeds the 65536-byte limit \(coordinator.max_message_bytes\)"):
                old.submit_spec(spec)
            assert time.monotonic() - started < 5
        assert isinstance(old.status(), m.StatusReply)   # the same client, still served
    bad = [r for r in log_records(small_cap.local.log_dir / "coordinator.log") if r.get("event") == "bad_message"]
    assert len(bad) == 1 and "coordinator.max_message_bytes" in bad[0]["error"], bad
    assert _job_ids(small_cap) == [] and not out.exists()


def test_the_coordinator_enforces_its_own_app_limit(books: Path, tmp_path: Path, small_cap: Cluster) -> None:
    out = tmp_path / "out"
    spec = build_spec(str(_padded_app(tmp_path / "padded.py", 24 << 10)), [str(books)], str(out), 2, limits=OPEN)
    assert APP_LIMIT < len(spec.app_blob) < CONTROL_LIMIT
    with Client(small_cap.address, timeout=20, limits=OPEN) as hostile, \
            pytest.raises(ClusterError, match=rf"over the limit of {APP_LIMIT:,} \(job.max_app_bytes\)"):
        hostile.submit_spec(spec)
    assert _job_ids(small_cap) == [] and not out.exists()


# ------------------------------------------------------------------ inputs and output


def _previous_output(out: Path) -> dict[str, str]:
    out.mkdir(parents=True)
    files = {"mr-out-0": "cat 3\n", "mr-out-1": "dog 1\n", "_SUCCESS": ""}
    for name, text in files.items():
        (out / name).write_text(text)
    return files


def _contents(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in folder.iterdir()}


def test_an_output_inside_the_input_is_refused_with_overwrite_and_the_previous_output_stays(
        books: Path, cluster, run_zmr) -> None:
    c: Cluster = cluster(1)
    out = books / "out"
    old = _previous_output(out)
    result = run_zmr(*_submit_args(c, APPS / "wc.py", [books], out, "--overwrite", "--n-reduce", "2"), timeout=30)
    _refused(result, "inside the input directory", "must not overlap")
    result = run_zmr(*_submit_args(c, APPS / "wc.py", [out / "mr-out-0"], out, "--overwrite"), timeout=30)
    _refused(result, "inside the output directory", "must not overlap")
    result = run_zmr("run", "--app", APPS / "wc.py", "--input", books, "--output", out, "--overwrite",
                     "--workers", "1", timeout=60)
    _refused(result, "inside the input directory")
    assert _contents(out) == old and _job_ids(c) == []


def test_the_coordinator_refuses_an_input_in_the_output_before_cleaning_it(books: Path, tmp_path: Path,
                                                                           cluster) -> None:
    """A client that does not check sends the spec the broken run made: inputs listed in the output."""
    c: Cluster = cluster(1)
    assert c.client is not None
    out = books / "out"
    old = _previous_output(out)
    spec = build_spec(str(APPS / "wc.py"), [str(books / "book0.txt")], str(tmp_path / "elsewhere"), 2, overwrite=True)
    listed = [m.InputSplit(name=str(p), path=str(p), start=0, end=p.stat().st_size) for p in sorted(out.iterdir())]
    spec = msgspec.structs.replace(spec, splits=[*spec.splits, *listed], output_dir=str(out))
    with pytest.raises(ClusterError, match=r"input file .*out/(_SUCCESS|mr-out-\d)' is inside the output directory"):
        c.client.submit_spec(spec)
    assert _contents(out) == old and _job_ids(c) == []
