"""Job spec limits: a spec over a bound is refused with the bound's config key, by the client's checks
and by the scheduler, and a refused spec leaves the queue untouched however large it claims to be."""

from __future__ import annotations

import time

import msgspec
import pytest

from zmr.config import Config, load_config
from zmr.core.scheduler import SchedulerParams
from zmr.core.specs import SpecLimits, app_problem, map_tasks_problem, n_reduce_problem, spec_problem
from zmr.protocol import messages as m
from zmr.testing import SimCluster

LIMITS = SpecLimits(max_n_reduce=8, max_map_tasks=5, max_app_bytes=100)


def spec(n_splits: int = 2, n_reduce: int = 2, app: bytes = b"app") -> m.JobSpec:
    splits = [m.InputSplit(f"in-{i}", f"/in/{i}", 0, 10) for i in range(n_splits)]
    return m.JobSpec(app_name="t", app_blob=app, splits=splits, output_dir="/out", n_reduce=n_reduce)


def test_a_spec_at_every_limit_is_accepted() -> None:
    assert spec_problem(spec(n_splits=5, n_reduce=8, app=b"x" * 100), LIMITS) == ""


@pytest.mark.parametrize(("flawed", "key", "figures"), [
    (spec(n_reduce=9), "job.max_n_reduce", ("n_reduce is 9", "limit of 8")),
    (spec(n_splits=6), "job.max_map_tasks", ("map tasks is 6", "limit of 5")),
    (spec(app=b"x" * 101), "job.max_app_bytes", ("size in bytes (with its --py-files) is 101", "limit of 100")),
    (msgspec.structs.replace(spec(app=b"x" * 60), py_files=[b"y" * 30, b"z" * 11]), "job.max_app_bytes",
     ("size in bytes (with its --py-files) is 101", "limit of 100")),
])
def test_a_spec_over_a_limit_is_refused_naming_the_value_the_limit_and_its_key(
        flawed: m.JobSpec, key: str, figures: tuple[str, ...]) -> None:
    problem = spec_problem(flawed, LIMITS)
    assert key in problem and f"raise {key}" in problem, problem
    for figure in figures:
        assert figure in problem, problem


def test_the_checks_one_value_at_a_time_say_the_same() -> None:
    assert n_reduce_problem(0, LIMITS) == "n_reduce must be at least 1, got 0"
    assert "1,000,000,000" in n_reduce_problem(10**9, LIMITS)
    assert n_reduce_problem(8, LIMITS) == map_tasks_problem(5, LIMITS) == app_problem(100, LIMITS) == ""
    assert map_tasks_problem(6, LIMITS, "the number of input files").startswith("the number of input files is 6")


def test_the_defaults_are_those_of_the_config() -> None:
    assert Config().job.limits == SpecLimits()
    config = load_config(env={"ZMR_JOB_MAX_N_REDUCE": "8", "ZMR_JOB_MAX_MAP_TASKS": "5",
                              "ZMR_JOB_MAX_APP_BYTES": "2048"})
    assert config.job.limits == SpecLimits(8, 5, 2048)


def test_the_scheduler_refuses_a_huge_n_reduce_at_once_and_queues_nothing() -> None:
    sim = SimCluster(SchedulerParams(python="3.11", limits=SpecLimits()))
    sim.add_worker()
    journaled = list(sim.journal)
    started = time.perf_counter()
    replies = sim.client_send(m.SubmitJob(spec=sim.spec(n_reduce=10**9)))
    assert time.perf_counter() - started < 0.5
    assert len(replies) == 1 and isinstance(replies[0], m.ErrorReply)
    assert "job.max_n_reduce" in replies[0].message
    assert sim.scheduler.jobs == {} and sim.journal == journaled


@pytest.mark.parametrize("change", [{"n_reduce": 9}, {"app_blob": b"x" * 101}, {"splits": "six"}])
def test_the_scheduler_enforces_its_own_limits(change: dict[str, object]) -> None:
    sim = SimCluster(SchedulerParams(python="3.11", limits=LIMITS))
    sim.add_worker()
    base = sim.spec(n_splits=5, n_reduce=8)
    if change.get("splits") == "six":
        change = {"splits": [*base.splits, base.splits[0]]}
    replies = sim.client_send(m.SubmitJob(spec=msgspec.structs.replace(base, **change)))
    assert [type(r) for r in replies] == [m.ErrorReply]
    assert sim.scheduler.jobs == {}
    assert isinstance(sim.client_send(m.SubmitJob(spec=base))[0], m.JobAccepted)   # at the limits: queued


def stepped(*steps: m.StepPlan, **fields: object) -> m.JobSpec:
    return msgspec.structs.replace(spec(), steps=list(steps), **fields)


COUNT = m.StepPlan(name="count", n_reduce=2, inputs=["<files>"], has_map=True, has_reduce=True)
TOP = m.StepPlan(name="top", n_reduce=1, inputs=["count"], has_map=True, has_reduce=True)


@pytest.mark.parametrize(("flawed", "problem"), [
    (stepped(COUNT, TOP, head="job-0001"), "only the coordinator sets"),
    (stepped(COUNT, TOP, step=0), "only the coordinator sets"),
    (stepped(COUNT, TOP, fed_maps=3), "only the coordinator sets"),
    (stepped(COUNT, msgspec.structs.replace(TOP, n_reduce=9)), "step 'top': n_reduce is 9"),
    (stepped(msgspec.structs.replace(COUNT, n_reduce=6), TOP), "step 'top': the number of map tasks is 6"),
    (stepped(COUNT, msgspec.structs.replace(TOP, inputs=["top"])), "read each other's output in a cycle"),
    (stepped(COUNT, msgspec.structs.replace(TOP, inputs=["nope"])), "reads 'nope', which no step makes"),
    (stepped(*[msgspec.structs.replace(COUNT, name=f"s{k}", inputs=[f"s{k - 1}"] if k else ["<files>"])
               for k in range(257)]), "257 steps, over the limit of 256"),
])
def test_a_multi_step_spec_the_client_should_have_refused_is_refused_by_the_coordinator(
        flawed: m.JobSpec, problem: str) -> None:
    assert problem in spec_problem(flawed, LIMITS)


def test_a_planned_chain_is_accepted() -> None:
    assert spec_problem(stepped(COUNT, TOP), LIMITS) == ""
