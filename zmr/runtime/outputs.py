"""Job output directories: checked before a job is queued, `_SUCCESS` on success, cleaned on failure.

An output at a URL (`s3://bucket/prefix`) gets the same treatment through `object_outputs`, which commits
without a rename; every function here that takes an output directory takes such a URL as well.

An output directory never overlaps the job's inputs: a job that read its own output would count the
previous run's `mr-out-*` and `_SUCCESS` as input, and `--overwrite` would delete input files after they
were listed. Paths are compared as resolved real paths, so symbolic links and `..` cannot hide an overlap.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from zmr import storage
from zmr.core.batches import Value
from zmr.output_formats import write_reduced
from zmr.protocol import output_names, success
from zmr.runtime import object_outputs

_OVERLAP = "inputs and output must not overlap: choose an output directory outside every input"


def write_atomically(path: Path, text: str | Iterable[str], *, durable: bool = False) -> Path:
    """Write to a hidden temporary name, then rename into place: readers see all or nothing, and a
    failed write leaves nothing behind. `durable`: fsync before the rename, so a crash cannot leave the
    final name on a file whose data never reached the disk."""
    tmp = path.with_name(output_names.temp_name(path.name, secrets.token_hex(4)))
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            if isinstance(text, str):
                f.write(text)
            else:
                f.writelines(text)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_results_atomically(path: Path, groups: Iterable[tuple[str, Iterator[Value]]],
                             reduce: Callable[[str, Iterator[Value]], Value], fmt: str, app: str,
                             format_line: Callable[[str, Value], str] | None = None) -> Path:
    """`write_atomically` for reduced groups in an output format (see `write_reduced`), made durable."""
    tmp = path.with_name(output_names.temp_name(path.name, secrets.token_hex(4)))
    try:
        write_reduced(str(tmp), fmt, app, groups, reduce, lambda: None, format_line)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def existing_output(folder: Path) -> list[Path]:
    """The output files (`mr-out-*`, `_SUCCESS`) an earlier job left in `folder`."""
    success_file = folder / success.SUCCESS_NAME
    return sorted(folder.glob(output_names.OUTPUT_GLOB)) + ([success_file] if success_file.exists() else [])


def claim_output_dir(folder: Path, overwrite: bool) -> list[Path]:
    """Create `folder` for a job's output. The output an earlier job left there is removed if
    `overwrite`, else returned (non-empty: the folder is not the job's to use). Raises OSError."""
    folder.mkdir(parents=True, exist_ok=True)
    old = existing_output(folder)
    if not overwrite:
        return old
    for path in old:
        path.unlink(missing_ok=True)
    return []


def overlap_problem(inputs: Sequence[str], files: Iterable[str], output_dir: str) -> str:
    """Why the output directory overlaps the inputs, or ''. `inputs` as typed (files and directories),
    `files` every input file they stand for: a file reached through a symbolic link counts where it lives."""
    typed_inputs = [inputs] if isinstance(inputs, str) else list(inputs)
    if storage.is_url(output_dir):
        return _url_overlap(typed_inputs, output_dir)
    out = os.path.realpath(output_dir)
    for typed in typed_inputs:
        if storage.is_url(typed):
            continue   # an object store is never the local output directory
        real = os.path.realpath(typed)
        if real == out:
            return f"output directory {output_dir!r} is the input {typed!r}; {_OVERLAP}"
        if _inside(out, real):
            return f"output directory {output_dir!r} is inside the input directory {typed!r}; {_OVERLAP}"
        if _inside(real, out):
            return f"input {typed!r} is inside the output directory {output_dir!r}; {_OVERLAP}"
    return files_in_output(files, output_dir)


def _url_overlap(inputs: Sequence[str], output: str) -> str:
    """Why an output URL overlaps an input URL (the same prefix, or one under the other), or ''."""
    out = output.rstrip("/") + "/"
    for typed in inputs:
        given = typed.rstrip("/") + "/"
        if given.startswith(out) or out.startswith(given):
            return f"output {output!r} overlaps the input {typed!r}; {_OVERLAP}"
    return ""


def files_in_output(files: Iterable[str], output_dir: str) -> str:
    """Why an input file lies in the output directory (or below it), or ''.

    All the coordinator can check: a spec names files, not the directories they were found in. It is
    what protects data: preparing the output deletes files in that directory only (a symbolic link
    there is refused too, as deleting it would take the input away). It runs in the
    coordinator's event loop for specs of up to 100,000 files, so each directory is resolved once and
    only files that are symbolic links are resolved one by one (found by listing their directory, which
    costs no system call per file).
    """
    if storage.is_url(output_dir):
        return _url_overlap([f for f in files if storage.is_url(f)], output_dir)
    out = os.path.realpath(output_dir)
    for folder, names in _by_directory(files).items():
        real_folder = os.path.realpath(folder)
        inside = names[:1] if _inside(real_folder, out) else [   # a link in the output counts as well
            name for name in _links(folder, names) if _inside(os.path.realpath(os.path.join(real_folder, name)), out)]
        if inside:
            return (f"input file {os.path.join(folder, inside[0])!r} is inside the output directory "
                    f"{output_dir!r}; {_OVERLAP}")
    return ""


def _by_directory(files: Iterable[str]) -> dict[str, list[str]]:
    """Absolute directory -> names of the files in it (each once: a file cut into many splits is one)."""
    found: dict[str, dict[str, None]] = {}
    for path in files:
        if storage.is_url(path):
            continue
        full = path if path.startswith(os.sep) else os.path.abspath(path)
        folder, _, name = full.rpartition(os.sep)
        found.setdefault(folder or os.sep, {})[name] = None
    return {folder: list(names) for folder, names in found.items()}


def _links(folder: str, names: list[str]) -> list[str]:
    """Those of `names` in `folder` that need resolving one by one: symbolic links (and '.', '..')."""
    wanted = set(names)
    try:
        with os.scandir(folder) as entries:
            links = [e.name for e in entries if e.name in wanted and e.is_symlink()]
    except (FileNotFoundError, NotADirectoryError):
        return []      # no such directory: its names resolve no further than it does
    except OSError:
        return names   # not listable: resolve every one
    return links + [name for name in ("", ".", "..") if name in wanted]


def _inside(path: str, folder: str) -> bool:
    """Is the real path `path` `folder` itself or somewhere below it? Both are normalised real paths,
    so comparing strings is enough (and much cheaper than `commonpath` over 100,000 files)."""
    return path == folder or path.startswith(folder if folder.endswith(os.sep) else folder + os.sep)


def prepare_output_dir(output_dir: str, overwrite: bool) -> str:
    """Create the output directory; '' if the job may write there, else why not."""
    if storage.is_url(output_dir):
        return object_outputs.prepare(output_dir, overwrite)
    folder = Path(output_dir)
    try:
        if problem := local_output_problem(output_dir, overwrite):
            return problem
        if old := claim_output_dir(folder, overwrite):
            return _holds_output(output_dir, old)
    except OSError as exc:
        return f"cannot use output directory {output_dir}: {exc}"
    return ""


def local_output_problem(output_dir: str, overwrite: bool) -> str:
    """Why a job may not write to the local `output_dir` as it is now, or '': read only, so a launcher
    can refuse a job before it starts a cluster for it. Raises OSError."""
    folder = Path(output_dir)
    if folder.exists() and not folder.is_dir():
        return f"output path {output_dir} exists and is not a directory"
    if not overwrite and folder.is_dir() and (old := existing_output(folder)):
        return _holds_output(output_dir, old)
    return ""


def _holds_output(output_dir: str, old: list[Path]) -> str:
    return (f"output directory {output_dir} already holds output ({old[0].name}, ...); "
            "choose another directory or pass --overwrite (overwrite=True in Python)")


def remove_temporaries(output_dir: str, job_id: str) -> None:
    """Temporary files of the job's attempts that never committed (a reducer killed mid-write)."""
    if storage.is_url(output_dir):
        return object_outputs.remove_temporaries(output_dir, job_id)
    for tmp in Path(output_dir).glob(output_names.temp_outputs_glob(job_id)):
        tmp.unlink(missing_ok=True)


def remove_abandoned(folder: Path) -> bool:
    """Remove an output directory a killed run created, unless its job succeeded (`_SUCCESS`) or it
    holds anything a job does not write (then it is someone else's too); True if it is gone."""
    try:
        found = [p.name for p in folder.iterdir()]
        if success.SUCCESS_NAME in found or not all(output_names.is_job_file(n) for n in found):
            return False
        for name in found:
            (folder / name).unlink(missing_ok=True)
        folder.rmdir()
    except OSError:
        return False
    return True


def remove_job_output(output_dir: str, job_id: str, n_reduce: int) -> None:
    """A failed or cancelled job leaves nothing behind: no mr-out-*, no temporary files of its attempts."""
    if storage.is_url(output_dir):
        return object_outputs.remove_job_output(output_dir, job_id, n_reduce)
    folder = Path(output_dir)
    for r in range(n_reduce):
        (folder / output_names.output_name(r)).unlink(missing_ok=True)
    remove_temporaries(output_dir, job_id)
    (folder / success.SUCCESS_NAME).unlink(missing_ok=True)


def write_success(output_dir: str, marker: success.SuccessMarker) -> None:
    """`_SUCCESS`, naming the job that wrote it, so a restart can tell that job's committed output."""
    if storage.is_url(output_dir):
        return object_outputs.write_success(output_dir, marker)
    write_atomically(Path(output_dir) / success.SUCCESS_NAME, success.encode(marker))


def success_markers(output_dirs: set[str]) -> dict[str, success.SuccessMarker | None]:
    """What `_SUCCESS` says in each of these directories that holds one (None: it names no job)."""
    found: dict[str, success.SuccessMarker | None] = {}
    for output_dir in sorted(output_dirs):
        try:
            held = _read_success(output_dir)
            if held is None:
                continue
            found[output_dir] = success.decode(held)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError:   # there, but unreadable: it still is a _SUCCESS that recovery must not write over
            found[output_dir] = None
    return found


def _read_success(output_dir: str) -> bytes | None:
    if storage.is_url(output_dir):
        return object_outputs.read_success(output_dir)
    with open(Path(output_dir) / success.SUCCESS_NAME, "rb") as f:
        return f.read(success.MAX_MARKER_BYTES + 1)
