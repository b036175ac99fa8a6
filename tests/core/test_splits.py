"""Split planning: every byte of every file in exactly one split, files in order, no I/O in the core."""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zmr.core import splits
from zmr.core.splits import Split, plan_splits
from zmr.errors import JobSpecError


@dataclass(frozen=True)
class File:
    name: str
    path: str
    size: int
    codec: str = ""


def test_small_file_is_one_split() -> None:
    assert plan_splits([File("a", "/a", 10)], 64) == [Split("a", "/a", 0, 10)]


def test_a_compressed_file_is_one_split_wherever_it_comes() -> None:
    files = [File("a", "/a", 100), File("b.gz", "/b.gz", 100, "gzip"), File("c.zst", "/c.zst", 10, "zstd")]
    assert plan_splits(files, 30, min_tail_piece=1) == [
        Split("a", "/a", 0, 25), Split("a", "/a", 25, 50), Split("a", "/a", 50, 75), Split("a", "/a", 75, 100),
        Split("b.gz", "/b.gz", 0, 100, "gzip"), Split("c.zst", "/c.zst", 0, 10, "zstd")]


def test_empty_file_still_gives_one_empty_split() -> None:
    assert plan_splits([File("e", "/e", 0)], 64) == [Split("e", "/e", 0, 0)]


def test_large_file_is_cut_into_ceil_size_over_split_size_equal_ranges() -> None:
    assert plan_splits([File("b", "/b", 25)], 10) == [
        Split("b", "/b", 0, 8),
        Split("b", "/b", 8, 16),
        Split("b", "/b", 16, 25),
    ]


def test_exact_multiple_has_no_trailing_empty_split() -> None:
    assert plan_splits([File("b", "/b", 20)], 10) == [Split("b", "/b", 0, 10), Split("b", "/b", 10, 20)]


@pytest.mark.parametrize("size", [0, -1])
def test_split_size_must_be_positive(size: int) -> None:
    with pytest.raises(JobSpecError, match="split size"):
        plan_splits([File("a", "/a", 1)], size)


@given(
    sizes=st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=5),
    split_size=st.integers(min_value=1, max_value=3_000),
)
def test_splits_tile_each_file_in_order(sizes: list[int], split_size: int) -> None:
    files = [File(f"f{i}", f"/f{i}", size) for i, size in enumerate(sizes)]
    planned = plan_splits(files, split_size, min_tail_piece=10_001)   # no file is big enough for a tail cut
    for file in files:
        mine = [s for s in planned if s.name == file.name]
        assert all(s.path == file.path for s in mine)
        assert len(mine) == max(1, math.ceil(file.size / split_size))
        assert mine[0].start == 0 and mine[-1].end == file.size
        assert all(a.end == b.start for a, b in zip(mine, mine[1:], strict=False))
        assert all(0 < s.end - s.start <= split_size for s in mine) or file.size == 0
        lengths = [s.end - s.start for s in mine]
        assert max(lengths) - min(lengths) <= 1   # equal ranges, not full ones and a remainder
    assert [s.name for s in planned] == sorted((s.name for s in planned), key=lambda n: int(n[1:]))


def test_the_last_two_splits_are_cut_into_quarters() -> None:
    planned = plan_splits([File("a", "/a", 60), File("b", "/b", 20)], 20, min_tail_piece=2)
    assert planned == [
        Split("a", "/a", 0, 20), Split("a", "/a", 20, 40),
        Split("a", "/a", 40, 45), Split("a", "/a", 45, 50), Split("a", "/a", 50, 55), Split("a", "/a", 55, 60),
        Split("b", "/b", 0, 5), Split("b", "/b", 5, 10), Split("b", "/b", 10, 15), Split("b", "/b", 15, 20),
    ]


def test_with_the_workers_known_a_tail_that_already_ends_together_is_left_whole() -> None:
    files = [File(f"f{i}", f"/f{i}", 40) for i in range(4)]
    whole = [Split(f"f{i}", f"/f{i}", start, start + 20) for i in range(4) for start in (0, 20)]
    assert plan_splits(files, 20, min_tail_piece=2, workers=2) == whole, "8 equal splits, 2 workers: 4 each"
    assert plan_splits(files, 20, min_tail_piece=2, workers=4) == whole
    assert plan_splits(files, 20, min_tail_piece=2) == plan_splits(files, 20, min_tail_piece=2, workers=3), \
        "8 splits on 3 workers: the last round would leave one idle, so the tail is cut as without workers"
    assert len(plan_splits(files, 20, min_tail_piece=2, workers=3)) == 6 + 2 * splits.TAIL_PIECES
    assert len(plan_splits(files, 20, min_tail_piece=2, workers=16)) == 6 + 2 * splits.TAIL_PIECES, \
        "more workers than splits: pieces let more of them work"
    odd = [File("a", "/a", 40), File("b", "/b", 20)]
    assert len(plan_splits(odd, 20, min_tail_piece=2, workers=2)) == 1 + 2 * splits.TAIL_PIECES, \
        "3 splits on 2 workers: the third would run alone"
    mixed = [File("a", "/a", 40), File("b", "/b", 30)]
    assert len(plan_splits(mixed, 20, min_tail_piece=2, workers=2)) == 4, "20+15 bytes each: they end together"


def test_a_tail_split_is_not_cut_below_the_minimum_piece() -> None:
    assert plan_splits([File("a", "/a", 5)], 64, min_tail_piece=2) == [Split("a", "/a", 0, 2), Split("a", "/a", 2, 5)]
    assert plan_splits([File("a", "/a", 5)], 64, min_tail_piece=6) == [Split("a", "/a", 0, 5)]
    assert plan_splits([File("e", "/e", 0)], 64, min_tail_piece=1) == [Split("e", "/e", 0, 0)]


@given(
    sizes=st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=5),
    split_size=st.integers(min_value=1, max_value=3_000),
    min_piece=st.integers(min_value=1, max_value=1_000),
)
def test_tail_pieces_still_tile_each_file_in_order(sizes: list[int], split_size: int, min_piece: int) -> None:
    files = [File(f"f{i}", f"/f{i}", size) for i, size in enumerate(sizes)]
    planned = plan_splits(files, split_size, min_tail_piece=min_piece)
    whole = plan_splits(files, split_size, min_tail_piece=10_001)
    assert planned[:max(0, len(whole) - splits.TAIL_SPLITS)] == whole[:max(0, len(whole) - splits.TAIL_SPLITS)]
    for file in files:
        mine = [s for s in planned if s.name == file.name]
        assert mine[0].start == 0 and mine[-1].end == file.size
        assert all(a.end == b.start for a, b in zip(mine, mine[1:], strict=False))
    for cut in whole[max(0, len(whole) - splits.TAIL_SPLITS):]:
        pieces = [s for s in planned if s.path == cut.path and cut.start <= s.start and s.end <= cut.end
                  and s.end > s.start or s == cut]
        assert pieces == [cut] or (2 <= len(pieces) <= splits.TAIL_PIECES
                                   and all(p.end - p.start >= min_piece for p in pieces))


def test_splits_module_does_no_io() -> None:
    """The core is pure: its imports are limited to typing helpers and the error tree."""
    tree = ast.parse(Path(splits.__file__).read_text())
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= {"__future__", "collections.abc", "dataclasses", "heapq", "typing", "zmr.errors"}
