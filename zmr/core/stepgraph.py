"""A job's steps as a graph: checked before anything is queued, and planned into waves.

A multi-step job is a directed acyclic graph of MapReduce steps. Each step reads the job's input files
(`FILES`) or the output pairs of earlier steps, and the steps no other step reads are the job's output.
A chain (an app's `steps()`) is the graph where step k reads step k-1. Checking the graph here, pure,
means a cycle, a missing input or an empty step is a clear error naming the step, raised by the client
before the job is queued (and by `zmr seq`), never a wedge halfway through a run.

A *wave* is a set of steps whose inputs are all made by earlier waves: wave 0 reads only files. Steps of
one wave may run side by side; a step may also start while the wave before it is still reducing, since
its input streams in, so waves say what depends on what, not when each step runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from zmr.errors import AppError

FILES = "<files>"   # the input name that stands for the job's input files


@dataclass(frozen=True, slots=True)
class StepNode:
    """What the planner needs of one step: its name, what it reads, and whether it does anything."""

    name: str
    inputs: tuple[str, ...]   # FILES or names of earlier steps
    has_map: bool
    has_reduce: bool
    n_reduce: int


def plan_waves(app: str, nodes: Sequence[StepNode]) -> list[list[str]]:
    """The steps' waves, each in the order given; an AppError naming the step if the graph is not one
    a job can run: no step, a duplicate or empty name, a step with no input, an input no step makes, a
    step that reads its own output through any path (a cycle), a step with neither map nor reduce, a
    step reading files without a map (files are not pairs) or files and steps at once, an `n_reduce`
    below 1, or a step other than the last whose output no step reads (the last step's is the job's)."""
    if not nodes:
        raise AppError(f"app {app!r}: steps() gave no step; a multi-step app has at least one")
    by_name: dict[str, StepNode] = {}
    for node in nodes:
        where = f"app {app!r}: step {node.name!r}"
        if not node.name or node.name == FILES:
            raise AppError(f"app {app!r}: a step is named {node.name!r}, which names no step")
        if node.name in by_name:
            raise AppError(f"{where} is named twice; step names must be unique")
        if not node.inputs:
            raise AppError(f"{where} reads nothing; give it the job's files or an earlier step")
        if len(set(node.inputs)) < len(node.inputs):
            raise AppError(f"{where} names an input twice")
        if not (node.has_map or node.has_reduce):
            raise AppError(f"{where} has nothing to do: it has neither map nor reduce")
        if FILES in node.inputs and not node.has_map:
            raise AppError(f"{where} reads the input files, so it needs a map(filename, contents)")
        if FILES in node.inputs and len(set(node.inputs)) > 1:
            raise AppError(f"{where} reads the input files and steps at once; its map takes one kind of input, "
                           "so give each its own step")
        if node.n_reduce < 1:
            raise AppError(f"{where}: n_reduce must be at least 1, got {node.n_reduce}")
        by_name[node.name] = node
    for node in nodes:
        for source in node.inputs:
            if source != FILES and source not in by_name:
                raise AppError(f"app {app!r}: step {node.name!r} reads {source!r}, which no step makes")
    waves = _waves(app, nodes, by_name)
    read = {source for node in nodes for source in node.inputs}
    if nodes[-1].name in read:
        raise AppError(f"app {app!r}: step {nodes[-1].name!r} is last, so its output is the job's, yet a step "
                       "reads it")
    for node in nodes[:-1]:
        if node.name not in read:
            raise AppError(f"app {app!r}: no step reads the output of step {node.name!r}; only the last step's "
                           "output is the job's")
    return waves


def _waves(app: str, nodes: Sequence[StepNode], by_name: dict[str, StepNode]) -> list[list[str]]:
    """Kahn's algorithm by levels; what is left over lies on a cycle, which the error spells out."""
    wave_of: dict[str, int] = {}
    remaining = [node.name for node in nodes]
    while remaining:
        placed = {name: 1 + max((wave_of[s] for s in by_name[name].inputs if s != FILES), default=-1)
                  for name in remaining
                  if all(s == FILES or s in wave_of for s in by_name[name].inputs)}
        if not placed:
            raise AppError(f"app {app!r}: steps {_cycle(remaining, by_name)} read each other's output in a cycle")
        wave_of.update(placed)
        remaining = [name for name in remaining if name not in placed]
    waves: list[list[str]] = [[] for _ in range(max(wave_of.values()) + 1)]
    for node in nodes:
        waves[wave_of[node.name]].append(node.name)
    return waves


def _cycle(remaining: list[str], by_name: dict[str, StepNode]) -> str:
    """One cycle among the steps left unplaced, as 'a -> b -> a'."""
    left = set(remaining)
    path = [remaining[0]]
    while True:
        step = next(s for s in by_name[path[-1]].inputs if s in left)
        if step in path:
            loop = path[path.index(step):] + [step]
            return " -> ".join(repr(s) for s in reversed(loop))
        path.append(step)
