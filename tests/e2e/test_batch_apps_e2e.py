"""Batch apps on a real local cluster: the same output as the sequential reference and as the data itself."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from .conftest import (
    APPS,
    FAST_FLAGS,
    KILL_SETTINGS,
    TEST_APPS,
    Cluster,
    SeqOracle,
    freeze_and_kill,
    read_output,
    wait_until,
)

pytestmark = pytest.mark.e2e

RECORD = 100


def _records(folder: Path, files: int, per_file: int, seed: int = 11) -> list[bytes]:
    """TeraSort-like records: random binary keys (a few shared by several records, some with NUL and
    newline bytes), then a payload that ends in a newline."""
    rng = random.Random(seed)
    folder.mkdir()
    shared = [rng.randbytes(10) for _ in range(5)]
    every = []
    for i in range(files):
        rows = []
        for n in range(per_file):
            key = rng.choice(shared) if n % 97 == 0 else rng.randbytes(10)
            rows.append(key + f" {i:03d}-{n:08d} ".encode().ljust(RECORD - 11, b"x") + b"\n")
        (folder / f"part-{i}.dat").write_bytes(b"".join(rows))
        every += rows
    return every


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_sort_outputs_the_records_themselves_in_order_under_a_small_budget(tmp_path: Path, run_zmr,
                                                                           compression: str) -> None:
    """50 maps make 50 runs per partition: over the column fan-in of a 16 MiB budget (42), so they are
    merged through scratch runs first."""
    records = _records(tmp_path / "in", files=50, per_file=2000)
    out = tmp_path / "out"
    result = run_zmr("run", "--app", str(APPS / "sort.py"), "--input", str(tmp_path / "in"), "--output", str(out),
                     "--n-reduce", "3", "--workers", "2", "--compression", compression,
                     "--set", "worker.memory_budget_mb=16", *FAST_FLAGS)
    assert result.returncode == 0, str(result)
    assert re.search(r"succeeded in [\d.]+ s: \d+ map and 3 reduce tasks, 100000 records out", result.stdout), \
        str(result)
    got = b"".join((out / f"mr-out-{r}").read_bytes() for r in range(3))
    assert got == b"".join(sorted(records))
    seq = tmp_path / "seq"
    assert run_zmr("seq", "--app", str(APPS / "sort.py"), "--input", str(tmp_path / "in"), "--output",
                   str(seq)).returncode == 0
    assert (seq / "mr-out-0").read_bytes() == got


def test_a_batch_app_with_a_reduce_equals_the_pair_app_and_the_reference(library: Path, tmp_path: Path, run_zmr,
                                                                         seq_oracle: SeqOracle) -> None:
    app, out = TEST_APPS / "batch_wc.py", tmp_path / "out"
    result = run_zmr("run", "--app", str(app), "--input", str(library), "--output", str(out), "--n-reduce", "4",
                     "--workers", "2", "--split-size-mb", "1", *FAST_FLAGS)
    assert result.returncode == 0, str(result)
    got = read_output(out, 4)
    assert got == seq_oracle(app, [library])
    expected = independent_lower_word_count(library)
    assert got == expected and len(got) > 1000


def independent_lower_word_count(library: Path) -> list[str]:
    counts: dict[str, int] = {}
    for book in sorted(library.glob("*.txt")):
        for word in book.read_bytes().decode("utf-8", errors="replace").lower().split():
            counts[word] = counts.get(word, 0) + 1
    return sorted(f"{word} {n}" for word, n in counts.items())


def test_a_batch_app_whose_columns_disagree_fails_the_job_naming_it(library: Path, tmp_path: Path, run_zmr) -> None:
    result = run_zmr("run", "--app", str(TEST_APPS / "bad_batch.py"), "--input", str(library), "--output",
                     str(tmp_path / "out"), "--n-reduce", "2", "--workers", "2", *FAST_FLAGS)
    assert result.returncode != 0
    assert "map_batch returned what is not (keys, values) columns" in result.stderr + result.stdout
    assert "keys but 1 values" in result.stderr + result.stdout


def test_bytes_keys_need_the_raw_format(tmp_path: Path, run_zmr) -> None:
    _records(tmp_path / "in", files=1, per_file=50)
    result = run_zmr("run", "--app", str(APPS / "sort.py"), "--input", str(tmp_path / "in"), "--output",
                     str(tmp_path / "out"), "--n-reduce", "2", "--workers", "1", "--output-format", "text",
                     *FAST_FLAGS)
    assert result.returncode != 0
    assert "only --output-format raw writes" in result.stderr + result.stdout


def test_a_partition_owner_killed_mid_sort_changes_nothing_in_the_output(tmp_path: Path, cluster) -> None:
    """Column runs survive a SIGKILL as pair runs do: kept copies are pulled, lost maps run again."""
    records = _records(tmp_path / "in", files=24, per_file=400)
    c: Cluster = cluster(3, **KILL_SETTINGS)
    assert c.client is not None
    client = c.client
    out = tmp_path / "out"
    job = client.submit(str(TEST_APPS / "slow_sort.py"), [str(tmp_path / "in")], str(out), n_reduce=4)

    def owner_that_committed_a_map() -> str:
        info = client.job(job)
        if info.state != "running" or len(info.partitions) < 4 or info.maps_done >= info.maps_total - 6:
            return ""
        owners = {p.owner for p in info.partitions}
        done = [t.worker for t in info.tasks if t.kind == "map" and t.state == "done" and t.worker in owners]
        return done[0] if len(set(t.worker for t in info.tasks if t.state == "done")) >= 2 and done else ""

    victim = wait_until(owner_that_committed_a_map, 60, interval=0.01, what="an owner that committed a map")
    before = freeze_and_kill(c, victim, job)
    lost = {t.index for t in before.tasks if t.kind == "map" and t.state == "done" and t.worker == victim}
    final = client.wait(job, timeout=120)
    assert final.state == "succeeded", final.error
    # the victim's committed maps ran again (their kept copies died with it) on the survivors
    assert lost and all(t.attempts >= 2 and t.worker != victim for t in final.tasks
                        if t.kind == "map" and t.index in lost)
    got = b"".join((out / f"mr-out-{r}").read_bytes() for r in range(4))
    assert got == b"".join(sorted(records))
