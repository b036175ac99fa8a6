"""Sorted runs on disk and the reducer's memory-bounded merge.

A run is a segment (offset, length) of a file, holding length-prefixed chunks (see zmr.core.batches).
Reading one holds a single chunk in memory. When a partition has more runs than `fan_in`, groups of
runs are merged into longer runs on disk first (as an external sort does), so the final k-way merge
never holds more than `fan_in` chunks at once, however much data the partition received.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from zmr.core.batches import (
    CHUNK_RECORDS,
    COLUMN_CHUNK_BYTES,
    COLUMNS_MAGIC,
    HEADER_BYTES,
    Packer,
    Pair,
    Pairs,
    Value,
    chunk_header,
    decode_chunk,
    decode_chunk_columns,
    merge_chunked,
    unpacked,
)

if TYPE_CHECKING:
    from zmr.core.columns import Columns

Run = tuple[str, int, int]   # (path, offset, length)
T = TypeVar("T")
_RAW = Packer()
_TICK_CHUNKS = 64
MERGE_READ_BYTES = 256 << 10   # read per run at a time while merging: ~1 MiB decoded, as `fan_in` assumes


class Watch:
    """The first exception a merge's reading raised, for `check` once the output is written.

    A reduce reads its values lazily, so a failed read (a damaged chunk, a lost file, a run of another
    kind part-way) is raised inside the app's `reduce`. An app that catches it there (a try/except around
    its loop) would otherwise let the merge go on as if that run had ended, and the output would be cut
    short without a word; with a watch, the task fails instead (or is written again from pairs)."""

    def __init__(self) -> None:
        self.error: Exception | None = None

    def watched(self, source: Iterable[T]) -> Iterator[T]:
        try:
            yield from source
        except Exception as exc:
            if self.error is None:
                self.error = exc
            raise

    def check(self) -> None:
        """Raise what the merge raised, if anything, even if app code caught it."""
        if self.error is not None:
            raise self.error


def read_run(run: Run) -> Iterator[Pair]:
    """Stream a run's pairs, one chunk at a time."""
    for chunk in read_chunks(run):
        yield from chunk


def read_chunks(run: Run, min_bytes: int = 0) -> Iterator[Pairs]:
    """Stream a run's pairs in lists of whole chunks, of at least `min_bytes` encoded (but the last).

    A merge takes its bounds from the ends of these lists, so longer lists mean fewer rounds.
    """
    fd = os.open(run[0], os.O_RDONLY)
    try:
        records: Pairs = []
        read = 0
        for codec, body in _chunk_bodies(fd, run):
            records += decode_chunk(body, codec)
            read += len(body)
            if read >= min_bytes:
                yield records
                records, read = [], 0
        if records:
            yield records
    finally:
        os.close(fd)


def read_column_chunks(run: Run, files: _OpenFiles, strict: bool = False) -> Iterator[Columns]:
    """`read_chunks` for runs of columns: one column chunk at a time, its arrays views of what was read
    (`strict`: a chunk of pairs is MixedColumns, not converted)."""
    for codec, body in _chunk_bodies(files.fd(run[0]), run):
        yield decode_chunk_columns(body, codec, strict)


def column_kinds(run: Run, files: _OpenFiles) -> tuple[int, ...] | None:
    """The kinds and widths of the columns of the run's first chunk; None if it is a chunk of pairs (told
    by its first byte, so a reduce of runs of pairs never imports numpy)."""
    for codec, stored in _chunk_bodies(files.fd(run[0]), run):
        body = unpacked(stored, codec)
        if not (len(body) and body[0] == COLUMNS_MAGIC):
            return None
        from zmr.core.columns import chunk_kinds

        return chunk_kinds(body)
    return None


def _chunk_bodies(fd: int, run: Run) -> Iterator[tuple[int, bytes]]:
    """Each chunk of the run in `fd` as (codec, body as stored), a chunk at a time."""
    _, offset, length = run
    end = offset + length
    while offset < end:
        codec, size = chunk_header(os.pread(fd, HEADER_BYTES, offset), end - offset)
        yield codec, os.pread(fd, size, offset + HEADER_BYTES)
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
                   tick: Callable[[], None] = lambda: None, by_value: bool = True,
                   strict: bool = False) -> Iterator[Columns]:
    """A batch app's runs merged into batches in (key, value) order, as `merged` merges pairs.

    A run is read a column chunk (`COLUMN_CHUNK_BYTES`, decoded in place) at a time, and a round loads
    `column_round_bytes` (see `merge_sorted`), so more runs are merged at once than pair runs
    (`column_fan_in`): a 10 GB sort on two workers with a 256 MiB budget merges each partition's 600 runs
    in one pass, not two. `tick` is called for every batch merged on disk first (progress: such a
    merge may take minutes)."""
    from zmr.core.columns import merge_sorted

    round_bytes = column_round_bytes(fan_in)
    files = _OpenFiles()

    def merge(group: list[Run]) -> Iterator[Columns]:
        return merge_sorted((read_column_chunks(r, files, strict) for r in group), round_bytes, by_value)

    def write(path: Path, group: list[Run]) -> Run:
        with open(path, "ab") as out:
            start = out.tell()
            for batch in merge(group):
                out.write(packer.columns(batch))
                tick()
            return str(path), start, out.tell() - start

    try:
        yield from merge(_narrowed(runs, column_fan_in(fan_in), scratch, write))
    finally:
        files.close()


def _narrowed(runs: list[Run], fan_in: int, scratch: Path, write: Callable[[Path, list[Run]], Run]) -> list[Run]:
    """At most `fan_in` runs: while there are more, each group of `fan_in` is merged into one longer run
    in `scratch` by `write(path, group)`, as an external sort does."""
    level = 0
    while len(runs) > fan_in:
        scratch.mkdir(parents=True, exist_ok=True)
        path = scratch / f"merge-{level}.run"
        runs = [write(path, runs[i:i + fan_in]) for i in range(0, len(runs), fan_in)]
        level += 1
    return runs


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
           tick: Callable[[], None] = lambda: None, watch: Watch | None = None,
           ) -> Iterator[tuple[str, Iterator[Value]]]:
    """Every key of `runs` once, in order, with an iterator over its values; at most `fan_in` runs open.
    Runs merged on disk on the way are encoded by `packer`, with `tick` called as they are written (a
    long merge is progress, not a hung task). `watch` sees every failed read."""
    seen = watch or Watch()

    def merge(group: list[Run]) -> Iterator[tuple[str, Iterator[Value]]]:
        return merge_chunked(seen.watched(read_chunks(r, MERGE_READ_BYTES)) for r in group)

    def write(path: Path, group: list[Run]) -> Run:
        return write_run(path, _flattened(merge(group)), packer, tick)

    return merge(_narrowed(runs, fan_in, scratch, write))


def mixed_runs(exc: BaseException) -> bool:
    """Whether `exc` is a column merge's MixedColumns (see `grouped`); without numpy loaded, no column
    merge ran, so it cannot be."""
    columns = sys.modules.get("zmr.core.columns")
    return columns is not None and isinstance(exc, columns.MixedColumns)


def grouped(runs: list[Run], fan_in: int, scratch: Path, packer: Packer = _RAW,
            tick: Callable[[], None] = lambda: None, by_value: bool = False, watch: Watch | None = None,
            ) -> Iterator[tuple[Any, Iterator[Value]]]:
    """`merged`'s groups, merged as columns when every run starts with column chunks of one kind (a plain
    app's runs, or a batch app's): only each key, once, and the values become Python objects. A run that
    turns out to hold pairs or other kinds further on raises MixedColumns: merge them with `merged`.
    `watch` sees every failed read."""
    files = _OpenFiles()   # one descriptor per file, as the merge has: a partition's runs share a file
    try:
        kinds = {column_kinds(run, files) for run in runs if run[2]}
    finally:
        files.close()
    if None in kinds or len(kinds) > 1 or not runs:
        return merged(runs, fan_in, scratch, packer, tick, watch)
    from zmr.core.columns import groups

    return groups((watch or Watch()).watched(merged_columns(runs, fan_in, scratch, packer, tick, by_value,
                                                            strict=True)))
