"""Job spec validation: what a spec must hold, and how big it may be, before the job is queued. Pure.

Both sides run the same checks: the client first, so a user hears of a bad spec without a round trip,
and the coordinator again with its own limits, since a client may be old or hostile. The limits bound
what one job costs the coordinator: a task record per map task and per reduce partition (and a status
row, journal records and a set-up table entry for each), and the app's bytes in every worker's set-up.
"""

from __future__ import annotations

from dataclasses import dataclass

from zmr.core.stepgraph import StepNode, plan_waves
from zmr.errors import AppError
from zmr.protocol import messages as m

# The scale zmr aims at (docs/architecture.md section 10): 10,000 partitions and 100,000 map tasks per
# job. Measured on a real coordinator: 10,000 partitions cost it about 11 MiB over a whole job and every
# event stays under 0.1 s; 100,000 cost 113 MiB and block it for 0.6 s on submit and 0.8 s per detailed
# status. A 4 MiB app leaves room in the 16 MiB control messages for the owner table and the spec that
# travel with it.
DEFAULT_MAX_N_REDUCE = 10_000
DEFAULT_MAX_MAP_TASKS = 100_000
DEFAULT_MAX_APP_BYTES = 4 << 20
DEFAULT_N_REDUCE = 4   # a job's reduce partitions when it does not say


@dataclass(frozen=True)
class SpecLimits:
    """The largest job a cluster accepts; each bound is the config key of the same name in `[job]`."""

    max_n_reduce: int = DEFAULT_MAX_N_REDUCE
    max_map_tasks: int = DEFAULT_MAX_MAP_TASKS
    max_app_bytes: int = DEFAULT_MAX_APP_BYTES


def over_limit(what: str, value: int, key: str, limit: int, hint: str = "") -> str:
    """The refusal of a spec that passes a limit: the value, the limit and the config key that raises it."""
    return (f"{what} is {value:,}, over the limit of {limit:,} (job.{key}){hint}; to allow more, raise "
            f"job.{key} in the config of the client and of the coordinator")


def n_reduce_below_one(n_reduce: int) -> str | None:
    """What is wrong with `n_reduce` whatever the limits, or None: the one rule the config's
    `job.n_reduce` and every spec check share (the caller names the setting)."""
    return None if n_reduce >= 1 else f"must be at least 1, got {n_reduce}"


def n_reduce_problem(n_reduce: int, limits: SpecLimits) -> str:
    """Why `n_reduce` partitions are refused, or ''."""
    if problem := n_reduce_below_one(n_reduce):
        return f"n_reduce {problem}"
    if n_reduce > limits.max_n_reduce:
        return over_limit("n_reduce", n_reduce, "max_n_reduce", limits.max_n_reduce)
    return ""


def map_tasks_problem(count: int, limits: SpecLimits, what: str = "the number of map tasks") -> str:
    """Why `count` map tasks (or input files, each at least one map task) are refused, or ''."""
    if count > limits.max_map_tasks:
        return over_limit(what, count, "max_map_tasks", limits.max_map_tasks,
                          " (each input file is at least one map task)")
    return ""


def app_problem(size: int, limits: SpecLimits) -> str:
    """Why a shipped app of `size` bytes (with its --py-files) is refused, or ''."""
    if size > limits.max_app_bytes:
        return over_limit("the shipped app's size in bytes (with its --py-files)", size, "max_app_bytes",
                          limits.max_app_bytes)
    return ""


def spec_problem(spec: m.JobSpec, limits: SpecLimits) -> str:
    """Why a job spec cannot be queued, or '' if it can."""
    problem = (n_reduce_problem(spec.n_reduce, limits) or map_tasks_problem(len(spec.splits), limits)
               or app_problem(len(spec.app_blob) + sum(map(len, spec.py_files)), limits))   # bounds first: lengths
    if problem:
        return problem
    if not spec.splits:
        return "the job has no input"
    if not spec.output_dir:
        return "the job has no output directory"
    if not spec.app_blob:
        return "the job has no app"
    return max_attempts_problem(spec.max_attempts) or steps_problem(spec, limits)


MAX_STEPS = 256   # steps of one multi-step job: each is a job of its own to the coordinator


def steps_problem(spec: m.JobSpec, limits: SpecLimits) -> str:
    """Why a multi-step job's steps cannot run, or '': a graph the client should have refused (see
    zmr.core.stepgraph), too many steps or partitions, or fields only the coordinator sets."""
    if spec.is_step or spec.step != -1 or spec.fed_maps or spec.feeds:
        return "the spec sets the fields of a step job, which only the coordinator sets"
    if not spec.steps:
        return ""
    if len(spec.steps) > MAX_STEPS:
        return f"the job has {len(spec.steps):,} steps, over the limit of {MAX_STEPS}"
    for step in spec.steps:
        fed = sum(s.n_reduce for s in spec.steps if s.name in step.inputs)
        if problem := n_reduce_problem(step.n_reduce, limits) or map_tasks_problem(fed, limits):
            return f"step {step.name!r}: {problem}"
    try:
        plan_waves(spec.app_name, [StepNode(s.name, tuple(s.inputs), s.has_map, s.has_reduce, s.n_reduce)
                                   for s in spec.steps])
    except AppError as exc:
        return str(exc)
    return ""


MAX_ATTEMPTS_LIMIT = 100


def max_attempts_problem(max_attempts: int) -> str:
    """Why a job's own attempt limit is refused, or '' (0 stands for the cluster's retry.max_attempts)."""
    if not 0 <= max_attempts <= MAX_ATTEMPTS_LIMIT:
        return f"max_attempts must be from 1 to {MAX_ATTEMPTS_LIMIT}, got {max_attempts}"
    return ""
