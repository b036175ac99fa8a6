"""The sequential reference run: one process, no shuffle, no combiner; the oracle the engine is tested on.

It is deliberately plain: read every split, group every value by key in memory, reduce keys in sorted
order, write one `mr-out-0` atomically. Its output directory follows the engine's rules
(`zmr.runtime.outputs`).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from zmr import storage
from zmr.apps import App, load_app
from zmr.core.batches import Value
from zmr.core.splits import DEFAULT_SPLIT_SIZE, Split
from zmr.errors import JobSpecError
from zmr.formats import map_inputs
from zmr.inputs import expand_inputs, plan_splits
from zmr.output_formats import OutputFormat, check_available, refuse_bytes
from zmr.protocol.output_names import output_name
from zmr.runtime import outputs
from zmr.steps import FILES, StepApp, ignored_args_problem, is_multi_step, plan_steps

__all__ = ["DEFAULT_SPLIT_SIZE", "run_sequential"]


def run_sequential(
    app: App | str,
    inputs: Sequence[str],
    output_dir: str | os.PathLike[str],
    args: Sequence[str] = (),
    split_size: int = DEFAULT_SPLIT_SIZE,
    *,
    overwrite: bool = False,
    output_format: OutputFormat | None = None,
) -> Path:
    """Run the job in this process and return the path of `OUTDIR/mr-out-0`."""
    if storage.is_url(str(output_dir)):
        raise JobSpecError(f"the sequential run writes to a local directory, not {str(output_dir)!r}")
    the_app = load_app(app) if isinstance(app, str) else app
    fmt = output_format or the_app.output_format or "text"
    check_available(fmt)
    files = expand_inputs(inputs, text=not the_app.input.binary)
    if problem := outputs.overlap_problem(inputs, (f.path for f in files), str(output_dir)):
        raise JobSpecError(problem)
    splits = plan_splits(files, split_size)
    job_args = list(args)
    planned = plan_steps(the_app, job_args, 1) if is_multi_step(the_app) else []
    if problem := ignored_args_problem(the_app, job_args, planned):
        raise JobSpecError(problem)
    out_dir = Path(output_dir)
    made = not os.path.lexists(out_dir)
    if old := outputs.claim_output_dir(out_dir, overwrite):
        raise JobSpecError(f"output directory {str(out_dir)!r} already holds {old[0].name}; pass --overwrite "
                           "(overwrite=True) to replace it")
    try:
        return _run_job(the_app, splits, job_args, out_dir, fmt, planned)
    except BaseException:
        if made:   # a failed run leaves no folder of its own making behind, as a failed job does
            outputs.remove_abandoned(out_dir)
        raise


def _run_job(the_app: App, splits: list[Split], job_args: list[str], out_dir: Path, fmt: str,
             planned: list[StepApp]) -> Path:
    """Group every pair in memory, reduce in key order, write `mr-out-0` (or run the `planned` steps)."""
    if planned:
        return _run_steps(the_app, planned, splits, job_args, out_dir / output_name(0), fmt)
    groups: dict[str, list[Value]] = {}
    for split in splits:
        for key, value in _pairs(the_app, split.name, split.path, split.start, split.end, split.codec, job_args):
            groups.setdefault(key, []).append(value)
    if fmt != "raw" and the_app.is_batch:
        refuse_bytes(the_app.name, fmt, [*groups, *(v for values in groups.values() for v in values)])
    if the_app.reduce_fn is None:   # a batch app without reduce: every pair, in (key, value) order
        results = sorted((key, value) for key, values in groups.items() for value in values)
        return outputs.write_results_atomically(out_dir / output_name(0), ((k, iter((v,))) for k, v in results),
                                                lambda key, values: next(values), fmt, the_app.name)
    reduce = the_app.reducer(job_args)
    grouped = ((key, iter(groups[key])) for key in sorted(groups))
    return outputs.write_results_atomically(out_dir / output_name(0), grouped, reduce, fmt, the_app.name,
                                            the_app.output_formatter())


def _run_steps(app: App, steps: list[StepApp], splits: list[Split], args: list[str], path: Path, fmt: str) -> Path:
    """A multi-step app, step after step in graph order: each groups all the pairs it reads, as one
    reduce would, and its output is kept until the job ends (a step may be read by several)."""
    made: dict[str, list[tuple[str, Value]]] = {}
    for step in steps:
        if step.inputs == (FILES,):
            pairs: Iterable[tuple[str, Value]] = (
                pair for split in splits
                for pair in _pairs(step.app, split.name, split.path, split.start, split.end, split.codec, args))
        else:
            pairs = step.map_pairs(itertools.chain.from_iterable(made[name] for name in step.inputs), args)
        made[step.name] = list(step.reduce_pairs(_grouped(pairs), args))
    results = made[steps[-1].name]
    return outputs.write_results_atomically(path, ((k, iter((v,))) for k, v in results),
                                            lambda key, values: next(values), fmt, app.name,
                                            steps[-1].app.output_formatter())


def _grouped(pairs: Iterable[tuple[str, Value]]) -> Iterator[tuple[str, Iterator[Value]]]:
    """Every key's values, in key order (all of them read first: grouping needs the last pair)."""
    groups: dict[str, list[Value]] = {}
    for key, value in pairs:
        groups.setdefault(key, []).append(value)
    return ((key, iter(groups[key])) for key in sorted(groups))


def _pairs(app: App, name: str, path: str, start: int, end: int, codec: str, args: list[str]) -> Iterator[Any]:
    """The split's (key, value) pairs: from `map`, or from a batch app's `map_batch` columns."""
    for contents, first_line in map_inputs(app.input, path, start, end, codec, count_lines=app.map_takes_first_line,
                                           batch=app.is_batch, name=name):
        if app.is_batch:
            yield from app.map_columns(name, contents, args)[0].pairs()
        else:
            yield from app.map(name, contents, args, first_line=first_line)

