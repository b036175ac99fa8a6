"""Multi-step jobs on real processes: apps/topwords.py and apps/pagerank.py under `zmr run` against
computations done here and `zmr seq`, and a worker SIGKILLed while step 2 of a three-step job runs."""

from __future__ import annotations

import itertools
import os
import random
import signal
from collections import Counter
from pathlib import Path

import pytest

from zmr.apps import load_app
from zmr.steps import plan_steps

from .conftest import APPS, FAST_FLAGS, TEST_APPS, Cluster, SeqOracle, output_lines, wait_until

pytestmark = pytest.mark.e2e

STEPS3_APP = TEST_APPS / "steps3.py"


def _run(app: Path, inputs: list[Path], out: Path, *extra: str) -> list[str]:
    return ["run", "--app", str(app), "--input", *map(str, inputs), "--output", str(out), "--workers", "3",
            *FAST_FLAGS, *extra]


def test_topwords_prints_the_most_frequent_words_and_leaves_only_its_output(library: Path, tmp_path: Path,
                                                                           run_zmr) -> None:
    counts: Counter[str] = Counter()
    for book in sorted(library.glob("*.txt")):
        text = book.read_bytes().decode("utf-8", errors="replace")
        counts.update("".join(run) for alpha, run in itertools.groupby(text, str.isalpha) if alpha)
    expected = [f"{w} {n}" for w, n in sorted(counts.items(), key=lambda wn: (-wn[1], wn[0]))[:10]]
    out = tmp_path / "out"
    result = run_zmr(*_run(APPS / "topwords.py", [library], out, "--n-reduce", "4", "--arg", "10"))
    assert result.returncode == 0, str(result)
    assert "in 2 steps" in result.stdout
    assert output_lines(out / "mr-out-0") == expected
    assert result.stdout.splitlines()[1:] == expected   # printed after the summary
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", "mr-out-0"]
    assert result.leftovers == []
    assert list(result.tmpdir.iterdir()) == []   # the cluster's scratch, and every step's data with it, is gone


def test_pagerank_on_the_cluster_equals_the_sequential_run(tmp_path: Path, run_zmr, seq_oracle: SeqOracle) -> None:
    rng = random.Random(11)
    graph = tmp_path / "edges.txt"
    graph.write_text("".join(f"p{rng.randrange(300)} p{int(rng.paretovariate(1.3)) % 300}\n" for _ in range(3000)))
    out = tmp_path / "out"
    result = run_zmr(*_run(APPS / "pagerank.py", [graph], out, "--n-reduce", "3", "--arg", "5"))
    assert result.returncode == 0, str(result)
    assert "in 6 steps" in result.stdout
    assert len(result.stdout.splitlines()) == 1   # 300 records: too many to print
    lines = sorted(line for r in range(3) for line in output_lines(out / f"mr-out-{r}"))
    assert lines == seq_oracle(APPS / "pagerank.py", [graph], ["5"])
    assert len(lines) == len({n for line in graph.read_text().splitlines() for n in line.split()})


def test_a_graph_with_a_join_and_a_step_read_twice_equals_the_sequential_run(tmp_path: Path, run_zmr,
                                                                             seq_oracle: SeqOracle) -> None:
    rng = random.Random(5)
    users, orders = tmp_path / "users.txt", tmp_path / "orders.txt"
    users.write_text("".join(f"{i} {''.join(rng.choice('abcdef') for _ in range(4))}{i}\n" for i in range(300)))
    orders.write_text("".join(f"{rng.randrange(320)} {rng.randrange(60)}\n" for _ in range(3000)))
    out = tmp_path / "out"
    result = run_zmr(*_run(TEST_APPS / "joined.py", [users, orders], out, "--n-reduce", "3"))
    assert result.returncode == 0, str(result)
    assert "in 6 steps" in result.stdout
    lines = output_lines(out / "mr-out-0")
    assert sorted(lines) == seq_oracle(TEST_APPS / "joined.py", [users, orders])
    spent: Counter[str] = Counter()
    names = dict(line.split() for line in users.read_text().splitlines())
    for line in orders.read_text().splitlines():
        uid, amount = line.split()
        if uid in names:
            spent[names[uid]] += int(amount)
    assert {line.split()[0][4:] for line in lines if line.startswith("big-")} == {
        n for n in names.values() if spent[n] > 100}


def _worker_of(c: Cluster, pid: int) -> int:
    """The worker process whose task process (a fork of its zygote) is `pid`."""
    workers = {proc.pid for proc in c.local.workers if proc is not None}
    while pid > 1 and pid not in workers:
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    assert pid in workers, "no worker is an ancestor of the held task process"
    return pid


def test_a_worker_killed_in_step_two_of_three_changes_nothing_in_the_output(
        library: Path, tmp_path: Path, cluster, seq_oracle: SeqOracle) -> None:
    c: Cluster = cluster(3)
    assert c.client is not None
    hold = tmp_path / "hold"
    hold.mkdir()
    out = tmp_path / "out"
    job = c.client.submit(str(STEPS3_APP), [str(library)], str(out), n_reduce=4, args=[f"hold={hold}"])
    held = wait_until(lambda: sorted(hold.glob("held-*.json")), 60, what="a reduce of step 2 to hold")
    first, second = (s.job_id for s in c.client.job(job, tasks=False).steps[:2])
    assert c.client.job(first, tasks=False).reduces_done == 4   # step 1 is done, step 2 reduces
    victim = _worker_of(c, int(held[0].name.split("-")[1].split(".")[0]))
    os.kill(victim, signal.SIGKILL)
    (hold / "release").touch()
    info = c.client.wait(job, timeout=120)
    assert info.state == "succeeded", info.error
    coordinator_log = (c.local.log_dir / "coordinator.log").read_text()
    assert any("reduce_reopened" in line and f"job={first}" in line for line in coordinator_log.splitlines()), \
        "step 1's reduces that fed step 2 on the killed worker were not run again"
    assert sorted(output_lines(out / "mr-out-0")) == seq_oracle(STEPS3_APP, [library])
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", "mr-out-0"]
    steps = c.client.job(job, tasks=False).steps
    assert [s.state for s in steps] == ["succeeded"] * 3
    assert c.client.job(second, tasks=True).tasks   # the step job answers for itself too
    # the leases of every step drop to zero once the job has ended
    wait_until(lambda: all(c.client.job(s.job_id, tasks=False).leases == 0 for s in steps), 30,
               what="every step's leases to be dropped")


def test_the_step_plan_of_the_shipped_apps_is_valid() -> None:
    assert [s.name for s in plan_steps(load_app(str(APPS / "pagerank.py")), ["3"], 4)] == [
        "links", "round-1", "round-2", "round-3"]
