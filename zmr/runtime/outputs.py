"""Job output directories: checked before a job is queued, `_SUCCESS` on success, cleaned on failure."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from zmr.protocol import success


def write_atomically(path: Path, text: str) -> None:
    """Write to a hidden temporary name, then rename into place: readers see all or nothing."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def existing_output(folder: Path) -> list[Path]:
    return sorted(folder.glob("mr-out-*")) + ([folder / "_SUCCESS"] if (folder / "_SUCCESS").exists() else [])


def prepare_output_dir(output_dir: str, overwrite: bool) -> str:
    """Create the output directory; '' if the job may write there, else why not."""
    folder = Path(output_dir)
    try:
        if folder.exists() and not folder.is_dir():
            return f"output path {output_dir} exists and is not a directory"
        folder.mkdir(parents=True, exist_ok=True)
        old = existing_output(folder)
        if old and not overwrite:
            return (f"output directory {output_dir} already holds output ({old[0].name}, ...); "
                    "choose another directory or pass --overwrite")
        for path in old:
            path.unlink()
    except OSError as exc:
        return f"cannot use output directory {output_dir}: {exc}"
    return ""


def remove_temporaries(output_dir: str, job_id: str) -> None:
    """Temporary files of the job's attempts that never committed (a reducer killed mid-write)."""
    for tmp in Path(output_dir).glob(f".mr-out-*.{job_id}.a*.tmp"):
        tmp.unlink(missing_ok=True)


def remove_job_output(output_dir: str, job_id: str, n_reduce: int) -> None:
    """A failed or cancelled job leaves nothing behind: no mr-out-*, no temporary files of its attempts."""
    folder = Path(output_dir)
    for r in range(n_reduce):
        (folder / f"mr-out-{r}").unlink(missing_ok=True)
    remove_temporaries(output_dir, job_id)
    (folder / "_SUCCESS").unlink(missing_ok=True)


def write_success(output_dir: str, marker: success.SuccessMarker) -> None:
    """`_SUCCESS`, naming the job that wrote it, so a restart can tell that job's committed output."""
    write_atomically(Path(output_dir) / success.SUCCESS_NAME, success.encode(marker))


def success_markers(output_dirs: set[str]) -> dict[str, success.SuccessMarker | None]:
    """What `_SUCCESS` says in each of these directories that holds one (None: it names no job)."""
    found: dict[str, success.SuccessMarker | None] = {}
    for output_dir in sorted(output_dirs):
        path = Path(output_dir) / success.SUCCESS_NAME
        try:
            with open(path, "rb") as f:
                found[output_dir] = success.decode(f.read(success.MAX_MARKER_BYTES + 1))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError:   # there, but unreadable: it still is a _SUCCESS that recovery must not write over
            found[output_dir] = None
    return found
