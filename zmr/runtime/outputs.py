"""Job output directories: checked before a job is queued, `_SUCCESS` on success, cleaned on failure."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

# what a job writes into its output directory, committed or not
_JOB_FILE = re.compile(r"mr-out-\d+|\.mr-out-.+\.tmp|_SUCCESS|\._SUCCESS\..+\.tmp")


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


def remove_abandoned(folder: Path) -> bool:
    """Remove an output directory a killed run created, unless its job succeeded (`_SUCCESS`) or it
    holds anything a job does not write (then it is someone else's too); True if it is gone."""
    try:
        names = [p.name for p in folder.iterdir()]
        if "_SUCCESS" in names or not all(_JOB_FILE.fullmatch(n) for n in names):
            return False
        for name in names:
            (folder / name).unlink(missing_ok=True)
        folder.rmdir()
    except OSError:
        return False
    return True


def remove_job_output(output_dir: str, job_id: str, n_reduce: int) -> None:
    """A failed or cancelled job leaves nothing behind: no mr-out-*, no temporary files of its attempts."""
    folder = Path(output_dir)
    for r in range(n_reduce):
        (folder / f"mr-out-{r}").unlink(missing_ok=True)
    remove_temporaries(output_dir, job_id)
    (folder / "_SUCCESS").unlink(missing_ok=True)
