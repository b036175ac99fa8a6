"""Sorted runs on disk and the reducer's memory-bounded merge.

A run is a segment (offset, length) of a file, holding length-prefixed chunks (see zmr.core.batches).
Reading one holds a single chunk in memory. When a partition has more runs than `fan_in`, groups of
runs are merged into longer runs on disk first (as an external sort does), so the final k-way merge
never holds more than `fan_in` chunks at once, however much data the partition received.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from zmr.core.batches import (
    CHUNK_RECORDS,
    COLUMN_CHUNK_BYTES,
    HEADER_BYTES,
    Packer,
    Pair,
    Pairs,
    Value,
    chunk_header,
    decode_chunk,
    decode_chunk_columns,
    merge_chunked,
)

if TYPE_CHECKING:
    from zmr.core.columns import Columns

Run = tuple[str, int, int]   # (path, offset, length)
_RAW = Packer()
_TICK_CHUNKS = 64
MERGE_READ_BYTES = 256 << 10   # read per run at a time while merging: ~1 MiB decoded, as `fan_in` assumes


def read_run(run: Run) -> Iterator[Pair]:
    """Stream a run's pairs, one chunk at a time."""
    for chunk in read_chunks(run):
        yield from chunk


def read_chunks(run: Run, min_bytes: int = 0) -> Iterator[Pairs]:
    """Stream a run's pairs in lists of whole chunks, of at least `min_bytes` encoded (but the last).

    A merge takes its bounds from the ends of these lists, so longer lists mean fewer rounds.
    """
    path, offset, length = run
    fd = os.open(path, os.O_RDONLY)
    try:
        end = offset + length
        records: Pairs = []
        read = 0
        while offset < end:
            length_left = end - offset
            codec, size = chunk_header(os.pread(fd, HEADER_BYTES, offset), length_left)
            body = os.pread(fd, size, offset + HEADER_BYTES)
            offset += HEADER_BYTES + size
            records += decode_chunk(body, codec)
            read += size
            if read >= min_bytes:
                yield records
                records, read = [], 0
        if records:
            yield records
    finally:
        os.close(fd)


def read_column_chunks(run: Run, files: _OpenFiles) -> Iterator[Columns]:
    """`read_chunks` for a batch app's runs: one column chunk at a time, its arrays views of what was read."""
    path, offset, length = run
    fd = files.fd(path)
    end = offset + length
    while offset < end:
        codec, size = chunk_header(os.pread(fd, HEADER_BYTES, offset), end - offset)
        yield decode_chunk_columns(os.pread(fd, size, offset + HEADER_BYTES), codec)
        offset += HEADER_BYTES + size


class _OpenFiles:
    """One descriptor per file for a merge's runs, however many runs a file holds (a received partition
    is one file of many runs), so a merge of a thousand runs does not run out of descriptors."""

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}

    def fd(self, path: str) -> int:
        if path not in self._fds:
            self._fds[path] = os.open(path, os.O_RDONLY)
        return self._fds[path]

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def column_round_bytes(fan_in: int) -> int:
    """What a column merge loads per round within the memory `fan_in` stands for (1 MiB a run): a third,
    as a round's rows are copied once more (put together) and ordering them takes about a third as much."""
    return (fan_in << 20) // 3


def column_fan_in(fan_in: int) -> int:
    """Runs a column merge takes at once: as many as leave half of a round's load to rows under the
    bound (each run's last chunk may reach past it)."""
    return max(fan_in, column_round_bytes(fan_in) // (2 * COLUMN_CHUNK_BYTES))


def merged_columns(runs: list[Run], fan_in: int, scratch: Path, packer: Packer = _RAW,
                   tick: Callable[[], None] = lambda: None) -> Iterator[Columns]:
    """A batch app's runs merged into batches in (key, value) order, as `merged` merges pairs.

    A run is read a column chunk (`COLUMN_CHUNK_BYTES`, decoded in place) at a time, and a round loads
    `column_round_bytes` (see `merge_sorted`), so more runs are merged at once than pair runs
    (`column_fan_in`): a 10 GB sort on two workers with a 256 MiB budget merges each partition's 600 runs
    in one pass, not two. `tick` is called for every batch merged on disk first (progress: such a
    merge may take minutes)."""
    from zmr.core.columns import merge_sorted

    width, round_bytes = column_fan_in(fan_in), column_round_bytes(fan_in)
    files = _OpenFiles()
    try:
        level = 0
        while len(runs) > width:
            scratch.mkdir(parents=True, exist_ok=True)
            path = scratch / f"merge-{level}.run"
            merged_runs = []
            for i in range(0, len(runs), width):
                with open(path, "ab") as out:
                    start = out.tell()
                    for batch in merge_sorted((read_column_chunks(r, files) for r in runs[i:i + width]),
                                              round_bytes):
                        out.write(packer.columns(batch))
                        tick()
                    merged_runs.append((str(path), start, out.tell() - start))
            runs = merged_runs
            level += 1
        yield from merge_sorted((read_column_chunks(r, files) for r in runs), round_bytes)
    finally:
        files.close()


def write_run(path: Path, records: Iterable[Pair], packer: Packer = _RAW,
              tick: Callable[[], None] = lambda: None) -> Run:
    """Append pairs (already sorted by key) to `path` as one run, its chunks encoded by `packer`; `tick`
    is called every `_TICK_CHUNKS` chunks."""
    with open(path, "ab") as out:
        start = out.tell()
        chunk: Pairs = []
        written = 0
        for record in records:
            chunk.append(record)
            if len(chunk) == CHUNK_RECORDS:
                out.write(packer.chunk(chunk))
                chunk = []
                written += 1
                if written % _TICK_CHUNKS == 0:
                    tick()
        if chunk:
            out.write(packer.chunk(chunk))
        return str(path), start, out.tell() - start


def _flattened(groups: Iterator[tuple[str, Iterator[Value]]]) -> Iterator[Pair]:
    """A merge's output as pairs again, streamed: a key's values are never all in memory at once."""
    for key, values in groups:
        for value in values:
            yield key, value


def merged(runs: list[Run], fan_in: int, scratch: Path, packer: Packer = _RAW,
           tick: Callable[[], None] = lambda: None) -> Iterator[tuple[str, Iterator[Value]]]:
    """Every key of `runs` once, in order, with an iterator over its values; at most `fan_in` runs open.
    Runs merged on disk on the way are encoded by `packer`, with `tick` called as they are written (a
    long merge is progress, not a hung task)."""
    level = 0
    while len(runs) > fan_in:
        scratch.mkdir(parents=True, exist_ok=True)
        path = scratch / f"merge-{level}.run"
        runs = [write_run(path, _flattened(merge_chunked(read_chunks(r, MERGE_READ_BYTES) for r in runs[i:i + fan_in])),
                          packer, tick)
                for i in range(0, len(runs), fan_in)]
        level += 1
    return merge_chunked(read_chunks(r, MERGE_READ_BYTES) for r in runs)
