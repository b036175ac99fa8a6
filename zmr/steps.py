"""Multi-step apps: the `Step` record an app's `steps()` returns, and each step as a checked App.

An app module may define `steps()` (or `steps(args)`, to read the job's `--arg` values, such as a number
of rounds) returning a list of `zmr.Step`. Step 1's `map(filename, contents)` reads the input files, as a
one-step app's does; a later step's `map(key, value)` gets each pair the step before it made, values with
their types; a step without `map` passes pairs through, and one without `reduce` hands on (or writes) its
map output sorted by key. A step's `reduce(key, values)` returns one value, written as `(key, value)`, or
an iterable of `(key, value)` pairs (a list, a generator): a final aggregation (a top-k, say) can then
write several records under keys of its own. The job's output is the last step's.

The steps form a graph, not only a chain: a step's `inputs` names the steps it reads (or `zmr.FILES`),
and by default it reads the step before it (the first reads the files). Two map-only steps that read the
files (each keeping the files it wants, by name) and one reduce that reads both make a reduce-side join;
a step read by two later steps feeds both. Only the last step's output is the job's, so every other step
must be read by some step. `plan_steps` checks the graph before anything runs (see zmr.core.stepgraph).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from zmr.apps import App, _as_value, _declares
from zmr.core.batches import Value
from zmr.core.stepgraph import FILES, StepNode, plan_waves
from zmr.errors import AppError

__all__ = ["FILES", "Step", "StepApp", "plan_steps"]

Pairs = Iterator[tuple[str, Value]]


@dataclass(frozen=True)
class Step:
    """One MapReduce step of a multi-step app. Any function may be left out (see the module's doc);
    `n_reduce` defaults to the job's `--n-reduce`, and 1 makes the step a single final aggregation."""

    map: Callable[..., Any] | None = None
    combine: Callable[..., Any] | None = None
    reduce: Callable[..., Any] | None = None
    partition: Callable[..., Any] | None = None
    n_reduce: int | None = None
    name: str = ""
    inputs: tuple[str, ...] = ()   # FILES or names of other steps; () is the step before it (the files for the first)


@dataclass(frozen=True)
class StepApp:
    """Step `index` (from 0) of a job, its functions as an App so every check and call works as for a
    one-step app."""

    index: int
    name: str
    app: App
    n_reduce: int
    has_map: bool
    has_reduce: bool
    inputs: tuple[str, ...]   # FILES, or the names of the steps it reads

    def map_pairs(self, pairs: Iterable[tuple[str, Value]], args: Sequence[str]) -> Pairs:
        """This step's map over the pairs the step before made (each passed on as it is without a map)."""
        fn = self.app.map_fn
        if fn is None:
            yield from pairs
            return
        kwargs = {"args": args} if "map" in self.app.takes_args else {}
        for key, value in pairs:
            yield from _checked(self.app, self.app._iterable(fn(key, value, **kwargs)), "map")

    def reduce_pairs(self, grouped: Iterable[tuple[str, Iterable[Value]]], args: Sequence[str]) -> Pairs:
        """This step's output pairs from its groups, in key order: the reduce's value under the key, or
        the pairs it returned; without a reduce, every value under its key."""
        if not self.has_reduce:
            for key, values in grouped:
                for value in sorted(values, key=_order):
                    yield key, value
            return
        fn = self.app.reduce_fn
        assert fn is not None
        call = (lambda k, vs: fn(k, vs, args=args)) if "reduce" in self.app.takes_args else fn
        for key, values in grouped:
            result = call(key, values)
            exact = _as_value(result)
            if exact is not None:
                yield key, exact
            elif isinstance(result, bool | int | float | str | bytes) or result is None:
                raise AppError(f"app {self.app.name!r}: reduce({key!r}, ...) returned {result!r}, expected a str, "
                               "an int, a float or an iterable of (key, value) pairs")
            else:
                try:
                    pairs = iter(result)
                except TypeError:
                    raise AppError(f"app {self.app.name!r}: reduce({key!r}, ...) returned {result!r}, expected a "
                                   "value or an iterable of (key, value) pairs") from None
                yield from _checked(self.app, pairs, "reduce")


def _order(value: Value) -> tuple[int, Any]:
    """Values of mixed types in one order: numbers before text."""
    return (1, value) if isinstance(value, str) else (0, value)


def _checked(app: App, pairs: Iterator[Any], role: str) -> Pairs:
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise AppError(f"app {app.name!r}: {role} gave {pair!r}, expected a (key, value) tuple")
        key, value = app.check_pair(pair)
        yield key, value


def is_multi_step(app: App) -> bool:
    return app.steps_fn is not None


def ignored_args_problem(app: App, args: Sequence[str], steps: Sequence[StepApp]) -> str:
    """Why `args` would be lost on `app` (planned as `steps`, [] for a one-step app), or '': no function
    of it declares a parameter `args`, so a --arg the user typed would silently do nothing."""
    if args and not app.takes_args and not any(step.app.takes_args for step in steps):
        return (f"app {app.name!r} takes no arguments (none of its functions declares a parameter `args`), so "
                f"--arg {args[0]!r} would be ignored")
    return ""


def plan_steps(app: App, args: Sequence[str], n_reduce: int) -> list[StepApp]:
    """The app's steps, checked as a graph (`zmr.core.stepgraph`) before anything runs, in an order in
    which every step comes after those it reads (wave by wave); an AppError naming the step for anything
    a job could not run. The last step is the last one steps() gave: its output is the job's."""
    fn = app.steps_fn
    if fn is None:
        raise AppError(f"app {app.name!r} has no steps(); it is a one-step app")
    try:
        steps = fn(args=list(args)) if _declares(fn, "args") else fn()
    except Exception as exc:
        raise AppError(f"app {app.name!r}: steps() raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(steps, list | tuple):
        raise AppError(f"app {app.name!r}: steps() returned {type(steps).__name__}, expected a list of zmr.Step")
    planned: list[StepApp] = []
    for k, step in enumerate(steps):
        if not isinstance(step, Step):
            raise AppError(f"app {app.name!r}: steps()[{k}] is a {type(step).__name__}, expected a zmr.Step")
        name = step.name or f"step-{k + 1}"
        label = f"{app.name} step {name}"
        fns = {"map": step.map, "combine": step.combine, "reduce": step.reduce, "partition": step.partition}
        for role, f in fns.items():
            if f is not None and not callable(f):
                raise AppError(f"app {app.name!r}: step {name!r}: `{role}` must be a function, got "
                               f"{type(f).__name__}")
        width = n_reduce if step.n_reduce is None else step.n_reduce
        if not isinstance(width, int) or isinstance(width, bool):
            raise AppError(f"app {app.name!r}: step {name!r}: n_reduce must be an int, got {width!r}")
        step_app = dataclasses.replace(
            app, name=label, map_fn=step.map, reduce_fn=step.reduce, combine_fn=step.combine,
            partition_fn=step.partition, steps_fn=None,
            takes_args=frozenset(role for role, f in fns.items() if f is not None and _declares(f, "args")),
            map_takes_first_line=k == 0 and step.map is not None and _declares(step.map, "first_line"),
            format_fn=app.format_fn if k == len(steps) - 1 else None)
        inputs = step.inputs or ((FILES,) if k == 0 else (planned[k - 1].name,))
        if isinstance(inputs, str) or not all(isinstance(i, str) for i in inputs):
            raise AppError(f"app {app.name!r}: step {name!r}: inputs must be a tuple of step names or zmr.FILES, "
                           f"got {inputs!r}")
        planned.append(StepApp(k, name, step_app, width, step.map is not None, step.reduce is not None,
                               tuple(inputs)))
    by_name = {s.name: s for s in planned}
    waves = plan_waves(app.name, [StepNode(s.name, s.inputs, s.has_map, s.has_reduce, s.n_reduce) for s in planned])
    return [by_name[name] for wave in waves for name in wave]
