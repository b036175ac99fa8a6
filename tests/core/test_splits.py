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


def test_small_file_is_one_split() -> None:
    assert plan_splits([File("a", "/a", 10)], 64) == [Split("a", "/a", 0, 10)]


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
    planned = plan_splits(files, split_size)
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


def test_splits_module_does_no_io() -> None:
    """The core is pure: its imports are limited to typing helpers and the error tree."""
    tree = ast.parse(Path(splits.__file__).read_text())
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= {"__future__", "collections.abc", "dataclasses", "typing", "zmr.errors"}
