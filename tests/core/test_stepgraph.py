"""The step graph: what a job can run is planned into waves, anything else is an error naming the step."""

from __future__ import annotations

import pytest

from zmr.core.stepgraph import FILES, StepNode, plan_waves
from zmr.errors import AppError


def node(name: str, *inputs: str, map: bool = True, reduce: bool = True, n_reduce: int = 2) -> StepNode:
    return StepNode(name, inputs, map, reduce, n_reduce)


def test_a_chain_is_one_step_per_wave() -> None:
    nodes = [node("a", FILES), node("b", "a"), node("c", "b", n_reduce=1)]
    assert plan_waves("app", nodes) == [["a"], ["b"], ["c"]]


def test_a_join_and_a_fan_out_share_waves() -> None:
    nodes = [node("users", FILES, reduce=False), node("orders", FILES, reduce=False),
             node("joined", "users", "orders", map=False), node("per_user", "joined"), node("per_day", "joined"),
             node("report", "per_user", "per_day", n_reduce=1)]
    assert plan_waves("app", nodes) == [["users", "orders"], ["joined"], ["per_user", "per_day"], ["report"]]


def test_a_step_may_come_before_the_step_it_reads_in_the_list() -> None:
    nodes = [node("b", "a"), node("a", FILES), node("c", "b")]
    assert plan_waves("app", nodes) == [["a"], ["b"], ["c"]]


@pytest.mark.parametrize(("nodes", "message"), [
    ([], "gave no step"),
    ([node("a", FILES), node("a", "a")], "step 'a' is named twice"),
    ([node("", FILES)], "a step is named ''"),
    ([node(FILES, FILES)], "a step is named '<files>'"),
    ([node("a")], "step 'a' reads nothing"),
    ([node("a", FILES, map=False, reduce=False)], "step 'a' has nothing to do"),
    ([node("a", FILES, map=False)], "step 'a' reads the input files, so it needs a map"),
    ([node("a", FILES), node("b", FILES, "a")], "step 'b' reads the input files and steps at once"),
    ([node("a", FILES, n_reduce=0)], "step 'a': n_reduce must be at least 1, got 0"),
    ([node("a", FILES), node("b", "nope")], "step 'b' reads 'nope', which no step makes"),
    ([node("a", FILES), node("b", "a"), node("c", "a")], "no step reads the output of step 'b'"),
    ([node("a", FILES), node("c", "b"), node("b", "a")], "step 'b' is last, so its output is the job's"),
    ([node("a", FILES), node("b", "a", "d"), node("c", "b"), node("d", "c"), node("e", "d")],
     "steps 'b' -> 'c' -> 'd' -> 'b' read each other's output in a cycle"),
])
def test_a_graph_a_job_cannot_run_is_refused_naming_the_step(nodes: list[StepNode], message: str) -> None:
    with pytest.raises(AppError, match="^app 'app': ") as err:
        plan_waves("app", nodes)
    assert message in str(err.value)
