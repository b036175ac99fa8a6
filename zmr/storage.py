"""Where inputs and outputs live: local paths, or URLs (`s3://bucket/prefix`, `gs://`, `http(s)://`, any
filesystem fsspec knows), opened the same way so every reader works on both.

A URL is read through fsspec with the usual credentials of its protocol (for S3: the AWS environment
variables, profiles or instance roles; an endpoint of another S3 server with `FSSPEC_S3_ENDPOINT_URL`).
Protocols other than local files need their fsspec implementation installed (`pip install 'zmr[s3]'` for
S3). Nothing about credentials is logged or journaled: a URL travels, its secrets stay in the environment.
"""

from __future__ import annotations

import os
from typing import IO, Any

__all__ = ["filesystem", "is_url", "join", "list_url", "open_input", "size_of"]


def is_url(path: str) -> bool:
    """Whether `path` names an object through a protocol (`s3://...`) rather than a local file."""
    scheme, sep, _ = path.partition("://")
    return bool(sep) and scheme.isidentifier()


def join(folder: str, name: str) -> str:
    """`name` inside `folder`, a local directory or a URL prefix."""
    return f"{folder.rstrip('/')}/{name}" if is_url(folder) else os.path.join(folder, name)


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem of `url` and the path inside it. Raises OSError if its protocol is unknown here
    or its implementation is not installed."""
    try:
        import fsspec
    except ImportError:  # pragma: no cover - fsspec is a dependency
        raise OSError(f"using {url!r} needs fsspec: pip install fsspec") from None
    protocol = url.partition("://")[0]
    try:
        fs, inner = fsspec.core.url_to_fs(url)
        return fs, str(inner)
    except (ImportError, ValueError) as exc:
        hint = " (pip install 'zmr[s3]')" if protocol in ("s3", "s3a") else ""
        raise OSError(f"cannot use {protocol}:// paths here{hint}: {exc}") from exc


def hidden(name: str) -> bool:
    """A file or folder name a listed input skips, as Hadoop's input listing does: dot files, and the
    names jobs write beside their output ('_SUCCESS', '_temporary', '_logs'), so that the output folder
    of one job is the input of the next as it stands."""
    return name.startswith((".", "_"))


def list_url(typed: str) -> list[tuple[str, int]]:
    """The objects a typed URL stands for, with their sizes: itself, or the visible objects under it (sorted,
    names with a component that is `hidden` skipped), each named by its URL. Raises FileNotFoundError,
    or OSError for anything else that goes wrong."""
    fs, root = filesystem(typed)
    info = fs.info(root)
    if info.get("type") != "directory":
        return [(typed, int(info.get("size") or 0))]
    prefix = typed.rstrip("/")
    found = []
    for path, detail in sorted(fs.find(root, detail=True).items()):
        rel = path[len(root.rstrip("/")):].lstrip("/")
        if not rel or detail.get("type") == "directory" or any(map(hidden, rel.split("/"))):
            continue
        found.append((f"{prefix}/{rel}", int(detail.get("size") or 0)))
    return found


def open_input(path: str) -> IO[bytes]:
    """`path` opened for reading bytes, with `seek`: a local file, or an object through fsspec."""
    if not is_url(path):
        return open(path, "rb")  # noqa: SIM115 - the caller closes it
    fs, inner = filesystem(path)
    return fs.open(inner, "rb")  # type: ignore[no-any-return]


def size_of(f: IO[bytes]) -> int:
    """The size of an open input."""
    size = getattr(f, "size", None)
    return int(size) if isinstance(size, int) else os.fstat(f.fileno()).st_size

