"""Split planning: cut input files into byte ranges that become map tasks. Pure; reads nothing.

A split is only a byte range. Which lines it owns is decided when it is read (`zmr.inputs.read_split`):
the lines that *start* inside the range, so every line belongs to exactly one split. A compressed file
cannot be entered at a byte offset, so it is always one split, the whole file.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from zmr.errors import JobSpecError


class SizedFile(Protocol):
    """What planning needs to know about an input file (`zmr.inputs.InputFile` fits)."""

    @property
    def name(self) -> str: ...

    @property
    def path(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def codec(self) -> str: ...


@dataclass(frozen=True)
class Split:
    """Bytes [start, end) of the file at `path`; `name` is the file's name as the user typed it; `codec`
    the file's compression ("" for none: see `zmr.compressed`)."""

    name: str
    path: str
    start: int
    end: int
    codec: str = ""


DEFAULT_SPLIT_SIZE = 16 << 20
"""16 MiB: one map call per split (a map reads at most that much at once), and enough tasks that no
worker idles at the end of the map phase while another finishes a long one."""


TAIL_SPLITS = 2
"""The last splits of a job, which are cut into `TAIL_PIECES` smaller ones each."""
TAIL_PIECES = 4
MIN_TAIL_PIECE = 1 << 20
"""A tail split is cut only into pieces of at least this many bytes: below that, per-task costs dominate."""


def plan_splits(files: Iterable[SizedFile], split_size: int, min_tail_piece: int = MIN_TAIL_PIECE,
                workers: int | None = None) -> list[Split]:
    """Cut each file into ceil(size / split_size) consecutive ranges of equal size (within a byte), then
    cut the job's last `TAIL_SPLITS` splits into `TAIL_PIECES` pieces each, unless `workers` says that
    there is no need.

    Equal ranges, not full ones and a remainder: a 25 MB file at 16 MiB gives two 12.5 MB tasks, not
    a 16 and a 9, so tasks take the same time. An empty file still gives one.

    The smaller last tasks are for the end of the map phase. Maps go out in this order, and no reduce
    can start before every map is done, so a worker that takes the last big split keeps the others
    idle for as long as it runs. Small pieces at the end let the workers that finish first take the
    rest, and every worker's last task ends at about the same time.

    Pieces are not free, though: each is a task with its own fixed costs, and the map output of an app
    that combines (word count) is about as large for a piece as for a whole split. So when the number
    of `workers` is known and the splits, handed out in order, already keep every worker busy to within
    one piece of the end (equal splits, a multiple of the workers), the tail is left whole.
    """
    if split_size < 1:
        raise JobSpecError(f"split size must be at least 1 byte, got {split_size}")
    splits = [split for file in files for split in _file_splits(file, split_size)]
    cut = max(0, len(splits) - TAIL_SPLITS)
    if workers is not None and splits and _finish_spread(splits, workers) <= _largest(splits[cut:]) // TAIL_PIECES:
        return splits
    return splits[:cut] + [piece for split in splits[cut:] for piece in _pieces(split, min_tail_piece)]


def _finish_spread(splits: list[Split], workers: int) -> int:
    """Bytes between the first and the last of `workers` equal workers to finish, each taking the next
    split whenever it is free (as the coordinator hands them out)."""
    finish = [0] * max(1, workers)
    for split in splits:
        heapq.heapreplace(finish, finish[0] + split.end - split.start)
    return max(finish) - min(finish)


def _largest(splits: list[Split]) -> int:
    return max(split.end - split.start for split in splits)


def _pieces(split: Split, min_piece: int) -> list[Split]:
    if split.codec:
        return [split]
    n = max(1, min(TAIL_PIECES, (split.end - split.start) // max(1, min_piece)))
    size = split.end - split.start
    bounds = [split.start + size * i // n for i in range(n + 1)]
    return [Split(split.name, split.path, start, end) for start, end in zip(bounds, bounds[1:], strict=False)]


def _file_splits(file: SizedFile, split_size: int) -> list[Split]:
    if file.size < 0:
        raise JobSpecError(f"input {file.name!r} has a negative size {file.size}")
    if file.size == 0 or file.codec:
        return [Split(file.name, file.path, 0, file.size, file.codec)]
    n = -(-file.size // split_size)
    bounds = [file.size * i // n for i in range(n + 1)]
    return [Split(file.name, file.path, start, end) for start, end in zip(bounds, bounds[1:], strict=False)]
