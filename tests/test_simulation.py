"""The at-scale simulator (zmr.simulation, scripts/simulate) at a size that runs in seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from zmr.protocol import journal as jr
from zmr.protocol import messages as m
from zmr.simulation import CostModel, ReduceInputs, SimConfig, Simulation, compare_run, simulate

REPO = Path(__file__).resolve().parents[1]
SMALL = {"workers": 20, "maps": 400, "partitions": 40, "memory": False}


def test_a_calm_job_succeeds_and_commits_every_partition_once() -> None:
    result = simulate(SimConfig(**SMALL, check_every=50), CostModel())
    assert result.succeeded and result.job_state == "succeeded"
    assert result.commits == {p: 1 for p in range(40)}
    assert result.invariant_checks > 0
    assert result.deaths == result.replacements == 0
    assert result.attempts >= 440   # every task ran at least once
    assert result.job_time_s >= result.ideal_time_s


def test_messages_and_journal_are_counted_as_encoded() -> None:
    sim = Simulation(SimConfig(**SMALL), CostModel())
    result = sim.run()
    counted = result.messages
    assert counted["AssignMap"]["count"] >= 400 and counted["AssignReduce"]["count"] >= 40
    assert counted["Register"]["count"] >= 20 and counted["Welcome"]["count"] >= 20
    total = sum(c["bytes"] for c in counted.values())
    assert total == result.bytes_to_coordinator + result.bytes_from_coordinator
    parsed = jr.parse(bytes(sim.journal))   # the journal is real framed records, and intact
    assert not parsed.problem
    assert result.compactions == 0 and len(parsed.records) == result.journal_records
    assert len(sim.journal) == result.journal_bytes


def test_deaths_and_stragglers_cost_time_but_the_job_succeeds_with_invariants_checked() -> None:
    config = SimConfig(**SMALL, deaths_per_min=10.0, replace_after=5.0, check_every=25, seed=3)
    result = compare_run(config, CostModel(stragglers=0.1, straggler_factor=5.0))
    assert result.succeeded
    assert result.commits == {p: 1 for p in range(40)}
    assert result.deaths > 0 and result.replacements > 0
    assert result.attempts > 440   # lost work ran again
    assert result.invariant_checks > 0
    assert result.baseline_time_s is not None and result.job_time_s > result.baseline_time_s


def test_deaths_without_replacement_shrink_the_cluster() -> None:
    result = simulate(SimConfig(**SMALL, deaths_per_min=5.0, replace_after=0.0, seed=2), CostModel())
    assert result.succeeded and result.deaths > 0 and result.replacements == 0


def test_a_coordinator_restarted_from_its_journal_finishes_the_job() -> None:
    config = SimConfig(**SMALL, restart_at=0.5, check_every=25)
    result = simulate(config, CostModel(stragglers=0.05))
    assert result.succeeded
    assert result.commits == {p: 1 for p in range(40)}
    restart = result.restart
    assert restart is not None
    assert restart["maps_done"] >= 200 and restart["journal_records"] > 0 and restart["journal_bytes"] > 0
    assert result.messages["RegisterAgain"]["count"] >= 1   # workers heard of the restart and came back


def test_a_reduce_asks_about_what_was_not_pushed_then_pulls_it_or_misses_what_died() -> None:
    sim = Simulation(SimConfig(**SMALL), CostModel())
    sim.run()
    reducer, holder = list(sim.workers.values())[:2]
    job = "job-x"
    sim.pushed[(0, 1)] = sim.owner_table(job, 99, [reducer.addr] * 40)   # pushed to the reducer
    sim.pushed[(2, 3)] = sim.pushed[(0, 1)]                               # attempt 3 of map 2 was too ...
    reducer.commits[job] = (sim._life, 1, {2: 3})                         # ... and it is the one that counts
    assign = m.AssignReduce(attempt=m.AttemptId(job, "reduce", 3, 1), output_dir="/out", n_maps=4,
                            commits_base=1, commits=[])
    assert sim.reduce_inputs(reducer, assign).missing == [1, 3]            # to ask the coordinator about
    holder.kept[job] = {(1, 1)}
    asked = m.to_runs([1, 3])
    listed = m.MapLocations(attempt=assign.attempt, peers=[holder.addr], maps=[[1]], nowhere=[3])
    counted = m.MapLocations(attempt=assign.attempt, peers=[holder.addr], counts=[1], nowhere=[3])
    for located in (listed, counted):
        plan = sim.pull_plan(job, located, asked, frozenset({1, 3}), {}, 3)
        assert plan.pulls == {holder.addr: 1} and plan.missing == [3]
    holder.alive = False                                                   # what it kept died with it
    assert sim.pull_plan(job, counted, asked, frozenset({1, 3}), {}, 3).missing == [1, 3]


def test_a_holder_lost_after_its_turn_costs_the_reduce_nothing_one_lost_during_it_costs_its_maps() -> None:
    """As the worker's puller, a reduce pulls from one holder at a time, in the order it was told."""
    sim = Simulation(SimConfig(**SMALL), CostModel())
    sim.run()
    reducer, first, second = list(sim.workers.values())[:3]
    job = "job-x"
    first.kept[job], second.kept[job] = {(1, 1)}, {(2, 1)}
    attempt = m.AttemptId(job, "reduce", 3, 1)
    reducer.running, reducer.awaiting, reducer.located = attempt, None, {}
    reducer.asked, reducer.lacking = m.to_runs([1, 2]), frozenset({1, 2})
    sim._run_reduce(reducer, attempt, ReduceInputs([], {first.addr: 1, second.addr: 1}))
    turn = CostModel().pull_seconds(1, SMALL["partitions"])
    assert reducer.pulled_by == {first.addr: sim.now + turn, second.addr: sim.now + 2 * turn}
    sim.now += 1.5 * turn   # the first holder's turn is over, the second's is not
    assert sim._on_sources_lost(reducer, m.SourcesLost(attempt=attempt, addr=first.addr)) == []
    assert reducer.missing == []
    sim._on_sources_lost(reducer, m.SourcesLost(attempt=attempt, addr=second.addr))
    assert reducer.missing == [2]


def test_a_reduce_pulls_second_copies_only_from_the_replica_they_were_pushed_to() -> None:
    """Map 1 (attempt 1) ran on a worker that owned partition 3 by the table it pushed by: its output for
    partition 3 went to the replica, the owner of partition 4, as well. Map 2 did not own partition 3."""
    sim = Simulation(SimConfig(**SMALL, replicate=True), CostModel())
    sim.run()
    mapper, replica, other = list(sim.workers.values())[:3]
    job = "job-x"
    table = [other.addr] * 40
    table[3], table[4] = mapper.addr, replica.addr
    sim.pushed[(1, 1)] = sim.pushed[(2, 1)] = sim.owner_table(job, 98, table)
    sim.mapper[(1, 1)], sim.mapper[(2, 1)] = mapper.addr, other.addr
    located = m.MapLocations(attempt=m.AttemptId(job, "reduce", 3, 1), peers=[], replicas=[replica.addr],
                             replica_runs=[[(1, 3)]], commits={1: 1, 2: 1})
    plan = sim.pull_plan(job, located, [(1, 3)], frozenset({1, 2}), {1: 1, 2: 1}, 3)
    assert (plan.copies, plan.missing) == ({replica.addr: [1]}, [2])
    replica.alive = False
    assert sim.pull_plan(job, located, [(1, 3)], frozenset({1, 2}), {1: 1, 2: 1}, 3).missing == [1, 2]


def test_the_command_writes_the_measures_it_promises(tmp_path: Path) -> None:
    out = tmp_path / "sim.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "simulate"), "--workers", "8", "--maps", "60",
                           "--partitions", "8", "--deaths-per-min", "5", "--stragglers", "0.1",
                           "--restart-at", "0.5", "--check", "20", "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "scheduler events" in proc.stdout and "control bytes" in proc.stdout
    data = json.loads(out.read_text())
    for key in ("events", "scheduler_cpu_s", "events_per_s", "scheduler_us_per_task", "codec_cpu_s",
                "simulator_cpu_s", "wall_s", "control_bytes", "journal", "job_time_s", "ideal_time_s",
                "baseline_time_s", "memory", "restart", "counts", "partitions_committed_once"):
        assert key in data, key
    assert data["succeeded"] and data["partitions_committed_once"]
    assert {"to_coordinator", "from_coordinator", "per_task", "by_type"} <= set(data["control_bytes"])
    assert {"bytes", "records", "compactions"} <= set(data["journal"])
    assert {"deaths", "replacements", "reruns", "backups"} <= set(data["counts"])
    assert data["baseline_time_s"] is not None   # --compare is on by default with faults
    assert data["memory"]["peak_per_task_bytes"] > 0
    assert data["restart"]["replay_s"] >= 0 and data["restart"]["journal_bytes"] > 0


def test_the_command_runs_several_seeds_and_sums_up_their_ratios(tmp_path: Path) -> None:
    out = tmp_path / "seeds.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "simulate"), "--workers", "8", "--maps", "60",
                           "--partitions", "8", "--deaths-per-min", "5", "--stragglers", "0.1", "--no-memory",
                           "--seeds", "1,2", "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    runs, summary = data["runs"], data["summary"]
    assert [run["config"]["seed"] for run in runs] == [1, 2] == summary["seeds"]
    ratios = [run["job_time_s"] / run["baseline_time_s"] for run in runs]
    assert summary["job_over_baseline"] == ratios
    assert summary["mean_job_over_baseline"] == sum(ratios) / 2 and summary["worst_job_over_baseline"] == max(ratios)
    assert f"job/baseline mean x{sum(ratios) / 2:.3f}, worst x{max(ratios):.3f}" in proc.stdout


def test_settings_no_job_can_have_and_a_refused_job_end_at_once_with_a_clear_error() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for flags, message in [
        (["--maps", "0"], "maps must be at least 1, got 0"),
        (["--workers", "0"], "workers must be at least 1, got 0"),
        (["--stragglers", "2"], "stragglers is a fraction of attempts, from 0 to 1, got 2.0"),
        (["--restart-at", "1.5"], "restart_at is the fraction of the maps committed, above 0 and at most 1, got 1.5"),
        (["--map-sigma", "-1"], "map_sigma must not be negative, got -1.0"),
        (["--maps", "200001", "--workers", "2", "--partitions", "2"],   # over job.max_map_tasks: never starts
         "the scheduler refused the job: the number of map tasks is 200,001, over the limit"),
    ]:
        proc = subprocess.run([sys.executable, str(REPO / "scripts" / "simulate"), *flags, "--no-memory"],
                              capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == 2, (flags, proc.stdout, proc.stderr)
        assert proc.stderr.startswith(f"simulate: {message}"), (flags, proc.stderr)
        assert "Traceback" not in proc.stderr
