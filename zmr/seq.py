"""The sequential reference run: one process, no shuffle, no combiner; the oracle the engine is tested on.

It is deliberately plain: read every split, group every value by key in memory, reduce keys in sorted
order, write one `mr-out-0` atomically.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path

from zmr.apps import App, load_app
from zmr.core.batches import Value
from zmr.core.splits import DEFAULT_SPLIT_SIZE
from zmr.errors import JobSpecError
from zmr.inputs import expand_inputs, plan_splits, read_chunks
from zmr.runtime import outputs

__all__ = ["DEFAULT_SPLIT_SIZE", "run_sequential"]


def run_sequential(
    app: App | str,
    inputs: Sequence[str],
    output_dir: str | os.PathLike[str],
    args: Sequence[str] = (),
    split_size: int = DEFAULT_SPLIT_SIZE,
    *,
    overwrite: bool = False,
) -> Path:
    """Run the job in this process and return the path of `OUTDIR/mr-out-0`."""
    the_app = load_app(app) if isinstance(app, str) else app
    files = expand_inputs(inputs)
    if problem := outputs.overlap_problem(inputs, (f.path for f in files), str(output_dir)):
        raise JobSpecError(problem)
    splits = plan_splits(files, split_size)
    out_dir = _prepare_output(Path(output_dir), overwrite)
    job_args = list(args)
    groups: dict[str, list[Value]] = {}
    for split in splits:
        for contents, first_line in read_chunks(split.path, split.start, split.end,
                                                count_lines=the_app.map_takes_first_line):
            for key, value in the_app.map(split.name, contents, job_args, first_line=first_line):
                groups.setdefault(key, []).append(value)
    lines = (f"{key} {the_app.reduce(key, groups[key], job_args)}\n" for key in sorted(groups))
    return _write_atomically(out_dir / "mr-out-0", lines)


def _prepare_output(out_dir: Path, overwrite: bool) -> Path:
    """Create OUTDIR; refuse to mix with an earlier run's output unless told to replace it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    old = sorted(out_dir.glob("mr-out-*"))
    if old and not overwrite:
        raise JobSpecError(f"output directory {str(out_dir)!r} already holds {old[0].name}; pass overwrite")
    if overwrite:
        for path in [*old, out_dir / "_SUCCESS"]:
            path.unlink(missing_ok=True)
    return out_dir


def _write_atomically(final: Path, lines: Iterable[str]) -> Path:
    """Write to a hidden temp file beside `final`, then rename: readers see all of it or nothing."""
    tmp = final.with_name(f".{final.name}.tmp-{secrets.token_hex(8)}")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.writelines(lines)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final
