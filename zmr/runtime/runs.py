"""Sorted runs on disk and the reducer's memory-bounded merge.

A run is a segment (offset, length) of a file, holding length-prefixed chunks (see zmr.core.batches).
Reading one holds a single chunk in memory. When a partition has more runs than `fan_in`, groups of
runs are merged into longer runs on disk first (as an external sort does), so the final k-way merge
never holds more than `fan_in` chunks at once, however much data the partition received.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from zmr.core.batches import CHUNK_RECORDS, HEADER_BYTES, Record, chunk_length, decode_chunk, encode_chunk, merge_runs

Run = tuple[str, int, int]   # (path, offset, length)


def read_run(run: Run) -> Iterator[Record]:
    """Stream a run's records, one chunk at a time."""
    path, offset, length = run
    fd = os.open(path, os.O_RDONLY)
    try:
        end = offset + length
        while offset < end:
            length_left = end - offset
            size = chunk_length(os.pread(fd, HEADER_BYTES, offset), length_left)
            body = os.pread(fd, size, offset + HEADER_BYTES)
            offset += HEADER_BYTES + size
            yield from decode_chunk(body)
    finally:
        os.close(fd)


def write_run(path: Path, records: Iterable[Record]) -> Run:
    """Append records (already sorted) to `path` as one run."""
    with open(path, "ab") as out:
        start = out.tell()
        chunk: list[Record] = []
        for record in records:
            chunk.append(record)
            if len(chunk) == CHUNK_RECORDS:
                out.write(encode_chunk(chunk))
                chunk = []
        if chunk:
            out.write(encode_chunk(chunk))
        return str(path), start, out.tell() - start


def _grouped(records: Iterator[tuple[str, Iterator[str]]]) -> Iterator[Record]:
    for key, values in records:
        yield key, list(values)


def merged(runs: list[Run], fan_in: int, scratch: Path) -> Iterator[tuple[str, Iterator[str]]]:
    """Every key of `runs` once, in order, with an iterator over its values; at most `fan_in` runs open."""
    level = 0
    while len(runs) > fan_in:
        scratch.mkdir(parents=True, exist_ok=True)
        path = scratch / f"merge-{level}.run"
        runs = [write_run(path, _grouped(merge_runs(read_run(r) for r in runs[i:i + fan_in])))
                for i in range(0, len(runs), fan_in)]
        level += 1
    return merge_runs(read_run(r) for r in runs)
