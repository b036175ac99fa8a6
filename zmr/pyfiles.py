"""`--py-files`: code a job ships to its workers besides the app, put on their `sys.path` for that job only.

A `.py` file travels as a module of its name; a folder with an `__init__.py` as that package; a folder
without one as the modules and packages in it; a `.whl`, `.zip` or `.egg` as it is. Files and folders are
packed into one zip archive, so a worker imports everything with `zipimport`: pure-Python code only (an
extension module, `.so`, cannot be imported from an archive and must be installed on the workers).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import zipfile
from collections.abc import Iterator, Sequence

from zmr.errors import JobSpecError

__all__ = ["ARCHIVE_SUFFIXES", "on_path", "pack"]

ARCHIVE_SUFFIXES = (".whl", ".zip", ".egg")
_SKIPPED_DIRS = {"__pycache__"}


def pack(paths: Sequence[str]) -> list[bytes]:
    """The zip archives that carry `paths` (see the module docstring); a path that cannot be shipped, or two
    that would land on the same name, is a JobSpecError that names it."""
    loose: dict[str, str] = {}   # name in the archive -> file on disk
    archives: list[bytes] = []
    for path in paths:
        if not os.path.exists(path):
            raise JobSpecError(f"--py-files: {path!r} does not exist")
        if os.path.isdir(path):
            _add_folder(loose, path)
        elif path.endswith(".py"):
            _add(loose, os.path.basename(path), path)
        elif path.endswith(ARCHIVE_SUFFIXES):
            if not zipfile.is_zipfile(path):
                raise JobSpecError(f"--py-files: {path!r} is not a zip archive")
            with open(path, "rb") as f:
                archives.append(f.read())
        else:
            raise JobSpecError(f"--py-files takes .py files, folders and {', '.join(ARCHIVE_SUFFIXES)} archives; "
                               f"got {path!r}")
    if not loose:
        return archives
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, source in sorted(loose.items()):
            zf.write(source, name)
    return [buffer.getvalue(), *archives]


def _add_folder(loose: dict[str, str], folder: str) -> None:
    """A package folder as the package; any other folder as its contents."""
    top = folder.rstrip(os.sep)
    prefix = os.path.basename(top) if os.path.isfile(os.path.join(top, "__init__.py")) else ""
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIPPED_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or name.endswith((".pyc", ".pyo")):
                continue
            rel = os.path.relpath(os.path.join(dirpath, name), top)
            _add(loose, "/".join(filter(None, [prefix, *rel.split(os.sep)])), os.path.join(dirpath, name))


def _add(loose: dict[str, str], name: str, source: str) -> None:
    if name in loose and loose[name] != source:
        raise JobSpecError(f"--py-files: {source!r} and {loose[name]!r} would both be {name!r} on the workers")
    loose[name] = source


@contextlib.contextmanager
def on_path(paths: Sequence[str]) -> Iterator[None]:
    """`paths` importable here for a while, as the workers will have them: so that an app that imports
    them loads (and ships) on the client too."""
    entries = []
    for path in paths:
        if os.path.isdir(path):
            top = path.rstrip(os.sep)
            entries.append(os.path.dirname(top) if os.path.isfile(os.path.join(top, "__init__.py")) else top)
        else:
            entries.append(path if path.endswith(ARCHIVE_SUFFIXES) else os.path.dirname(path))
    added = [os.path.abspath(e or ".") for e in dict.fromkeys(entries)]
    sys.path[:0] = added
    try:
        yield
    finally:
        for entry in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(entry)
