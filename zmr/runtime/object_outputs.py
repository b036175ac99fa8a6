"""Job output on an object store (`--output s3://bucket/prefix`, or any filesystem fsspec knows): the output
contract of a local directory, committed without a rename.

An object store has no atomic rename, but it publishes each object whole: a PUT, or the completion of a
multipart upload, makes an object appear all at once or not at all. The commit builds on that alone:

1. A reduce attempt writes its output to a local file, then uploads it to a temporary key beside the final
   one, `PREFIX/.mr-out-<r>.<job>.a<n>.tmp` (the name a local temporary file has).
2. Only the attempt the coordinator grants the commit copies that key to `PREFIX/mr-out-<r>` (a copy on the
   server: no data passes through the worker again) and deletes it. The coordinator grants one attempt of a
   partition at a time, and a partition's final key is written only by a granted attempt.
3. When every partition has committed, the coordinator deletes the job's leftover temporary keys and writes
   `PREFIX/_SUCCESS`, naming the job, last.

So a reader waits for `_SUCCESS` (naming the job it expects), then reads `mr-out-0` to `mr-out-<R-1>`; it
does not list `mr-out-*` while the job runs. A failed or cancelled job deletes its final and temporary keys.

Every call here turns whatever its filesystem raises (botocore's errors are not all OSErrors) into OSError,
so callers handle one kind of failure and a peer's bad URL never takes a coordinator down.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from zmr import storage
from zmr.protocol import output_names, success
from zmr.protocol.messages import AttemptId

__all__ = ["commit", "discard", "prepare", "read_success", "remove_job_output", "remove_temporaries", "stage",
           "write_success"]


@contextlib.contextmanager
def _store(url: str) -> Iterator[tuple[Any, str]]:
    """The filesystem of an output URL and its root path in it (no trailing slash), for a block whose
    failures all come out as OSError: the store's own error types (credentials, throttling, ...) too."""
    try:
        fs, root = storage.filesystem(url)
        yield fs, root.rstrip("/")
    except OSError:
        raise
    except Exception as exc:
        raise OSError(f"{url}: {type(exc).__name__}: {exc}") from exc


def _names(fs: Any, root: str) -> list[str]:
    """The names of the objects directly under `root`, read afresh (listings are cached by fsspec)."""
    fs.invalidate_cache(root)
    try:
        return sorted(str(p).rsplit("/", 1)[-1] for p in fs.ls(root, detail=False))
    except FileNotFoundError:
        return []


def _remove_where(fs: Any, root: str, doomed: Callable[[str], bool]) -> list[str]:
    """Delete the objects directly under `root` whose names are `doomed` (in one request where the store
    takes several); returns their names."""
    names = [name for name in _names(fs, root) if doomed(name)]
    if names:
        fs.rm([f"{root}/{name}" for name in names])
    return names


def _committed(name: str) -> bool:
    """Is `name` committed output of some job (`mr-out-<r>` or `_SUCCESS`)?"""
    return name == success.SUCCESS_NAME or output_names.output_partition(name) is not None


def prepare(url: str, overwrite: bool) -> str:
    """Make `url` ready for a job's output (its bucket or directory made, as `mkdir -p` would); '' if the job
    may write there, else why not. Output an earlier job left is deleted if `overwrite`, else refused."""
    try:
        with _store(url) as (fs, root):
            if not root:
                scheme = url.partition("://")[0]
                return f"output {url} names no bucket or folder: give one, e.g. {scheme}://results"
            fs.makedirs(root, exist_ok=True)
            if overwrite:
                _remove_where(fs, root, _committed)
            elif old := [name for name in _names(fs, root) if _committed(name)]:
                return (f"output {url} already holds output ({old[0]}, ...); "
                        "choose another output or pass --overwrite (overwrite=True in Python)")
    except OSError as exc:
        return f"cannot use output {url}: {exc}"
    return ""


def stage(local: Path, url: str, attempt: AttemptId) -> str:
    """Upload a reduce attempt's finished local output to its temporary key; returns the key."""
    with _store(url) as (fs, root):
        key = f"{root}/{output_names.temp_output_name(attempt)}"
        fs.put_file(str(local), key)
    return key


def commit(key: str, url: str, partition: int) -> None:
    """Publish a granted attempt's staged output as the partition's final object."""
    with _store(url) as (fs, root):
        fs.copy(key, f"{root}/{output_names.output_name(partition)}")
        fs.rm_file(key)


def discard(key: str, url: str) -> None:
    """Delete a staged output that was not granted (the job's end deletes any that remain)."""
    with _store(url) as (fs, _), contextlib.suppress(FileNotFoundError):
        fs.rm_file(key)


def remove_temporaries(url: str, job_id: str) -> None:
    """The temporary keys of the job's attempts that never committed (a reducer killed after staging)."""
    with _store(url) as (fs, root):
        _remove_where(fs, root, lambda name: output_names.is_temp_output_of(name, job_id))


def remove_job_output(url: str, job_id: str, n_reduce: int) -> None:
    """A failed or cancelled job leaves nothing behind: no mr-out-*, no temporary keys, no `_SUCCESS`."""
    def doomed(name: str) -> bool:
        partition = output_names.output_partition(name)
        return (name == success.SUCCESS_NAME or output_names.is_temp_output_of(name, job_id)
                or (partition is not None and partition < n_reduce))

    with _store(url) as (fs, root):
        _remove_where(fs, root, doomed)


def write_success(url: str, marker: success.SuccessMarker) -> None:
    """`_SUCCESS`, one PUT: it appears whole, after every partition's output."""
    with _store(url) as (fs, root):
        fs.pipe_file(f"{root}/{success.SUCCESS_NAME}", success.encode(marker).encode())


def read_success(url: str) -> bytes | None:
    """What `_SUCCESS` under `url` holds (at most enough to tell a marker), or None if there is none."""
    with _store(url) as (fs, root):
        fs.invalidate_cache(root)
        try:
            return bytes(fs.cat_file(f"{root}/{success.SUCCESS_NAME}", start=0, end=success.MAX_MARKER_BYTES + 1))
        except FileNotFoundError:
            return None
