"""Check contenders' outputs: normalise each to a digest, and for sort check order and completeness.

An output is a list of files whose concatenation, in the given order, is the contender's result
(zmr: mr-out-0..R-1 in numeric order; Spark: part-00000...; the others: part-NNNNN).

- Word count: every `key value` line, sorted, hashed (SHA-256): equal digests mean equal outputs.
- Sort: the concatenation must be in key order (first 10 bytes); its lines, sorted, are hashed, so equal
  digests mean the same multiset of records, i.e. nothing lost, duplicated or altered. Records are
  fixed-width (100 bytes), which lets numpy do this for a gigabyte in seconds; without numpy, or if a
  line is not 100 bytes, plain Python does it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from zmr.protocol.output_names import OUTPUT_GLOB, output_partition

RECORD = 100
KEY = 10


@dataclass
class Digest:
    """What an output normalises to."""

    digest: str
    lines: int
    ordered: bool = True   # sort: the concatenation is in key order
    problem: str = ""      # why the output is unusable, if it is


def output_files(folder: Path) -> list[Path]:
    """The result files of an output folder in concatenation order (zmr's mr-out-N numerically)."""
    zmr = sorted((r, p) for p in folder.glob(OUTPUT_GLOB) if (r := output_partition(p.name)) is not None)
    if zmr:
        return [p for _, p in zmr]
    return sorted(p for p in folder.glob("part-*") if not p.name.endswith(".crc"))


def wordcount_digest(folder: Path) -> Digest:
    lines: list[bytes] = []
    for path in output_files(folder):
        lines.extend(path.read_bytes().splitlines())
    if not lines:
        return Digest("", 0, problem=f"no output in {folder}")
    lines.sort()
    return Digest(_sha(b"\n".join(lines)), len(lines))


def ranked_digest(folder: Path) -> Digest:
    """A ranking (top words): its lines in file order, hashed, so the order counts as much as the lines."""
    lines = [line for path in output_files(folder) for line in path.read_bytes().splitlines()]
    if not lines:
        return Digest("", 0, problem=f"no output in {folder}")
    return Digest(_sha(b"\n".join(lines)), len(lines))


def sort_digest(folder: Path) -> Digest:
    files = output_files(folder)
    if not files:
        return Digest("", 0, ordered=False, problem=f"no output in {folder}")
    data = b"".join(p.read_bytes() for p in files)
    try:
        return _sort_digest_numpy(data)
    except (ImportError, ValueError):
        return _sort_digest_python(data)


def _sort_digest_numpy(data: bytes) -> Digest:
    import numpy as np

    if len(data) % RECORD:
        raise ValueError("not fixed-width")
    rows = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD)
    if not (rows[:, RECORD - 1] == ord("\n")).all():
        raise ValueError("not fixed-width")
    keys = np.ascontiguousarray(rows[:, :KEY]).view(f"S{KEY}").ravel()
    ordered = bool((keys[1:] >= keys[:-1]).all())
    records = np.frombuffer(data, dtype=f"S{RECORD}")
    if not bool((records[1:] >= records[:-1]).all()):  # equal keys in another order: sort whole lines
        records = np.sort(records)
    return Digest(_sha(records.tobytes()), len(records), ordered)


def _sort_digest_python(data: bytes) -> Digest:
    lines = data.splitlines()
    ordered = all(a[:KEY] <= b[:KEY] for a, b in zip(lines, lines[1:], strict=False))
    lines.sort()
    return Digest(_sha(b"\n".join(lines) + b"\n"), len(lines), ordered)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def records_reference(files: list[str]) -> Digest:
    """The digest every correct sort output must have: the input's records, sorted."""
    data = b"".join(Path(f).read_bytes() for f in files)
    try:
        import numpy as np

        if len(data) % RECORD:
            raise ValueError("not fixed-width")
        records = np.sort(np.frombuffer(data, dtype=f"S{RECORD}"))
        return Digest(_sha(records.tobytes()), len(records))
    except (ImportError, ValueError):
        lines = sorted(data.splitlines())
        return Digest(_sha(b"\n".join(lines) + b"\n"), len(lines))


def empty_output(folder: Path, n_reduce: int) -> Digest:
    """The identity job over empty files: R output files, all empty."""
    files = output_files(folder)
    size = sum(p.stat().st_size for p in files)
    problem = "" if len(files) == n_reduce and size == 0 else f"{len(files)} files, {size} bytes"
    return Digest("empty" if not problem else "", 0, problem=problem)
