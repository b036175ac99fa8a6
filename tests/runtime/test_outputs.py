"""Output directories never overlap inputs: compared as real paths, both ways, whatever the spelling."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from zmr.runtime.outputs import files_in_output, overlap_problem


@pytest.fixture
def data(tmp_path: Path) -> Path:
    (tmp_path / "data" / "sub").mkdir(parents=True)
    (tmp_path / "data" / "a.txt").write_text("a\n")
    (tmp_path / "data" / "sub" / "b.txt").write_text("b\n")
    return tmp_path / "data"


def _files(folder: Path) -> list[str]:
    return [str(p) for p in sorted(folder.rglob("*")) if p.is_file()]


@pytest.mark.parametrize(("output", "message"), [
    ("data/out", "is inside the input directory"),
    ("data/sub/deeper/out", "is inside the input directory"),
    ("data", "is the input"),
    ("data/../data/./", "is the input"),
    (".", "is inside the output directory"),
])
def test_overlap_is_refused_both_ways(data: Path, output: str, message: str) -> None:
    base = data.parent
    problem = overlap_problem([str(data)], _files(data), str(base / output))
    assert message in problem and "must not overlap" in problem, problem


def test_an_input_file_in_the_output_directory_is_refused(data: Path) -> None:
    problem = overlap_problem([str(data / "sub" / "b.txt")], [str(data / "sub" / "b.txt")], str(data / "sub"))
    assert "is inside the output directory" in problem


def test_separate_directories_pass_even_with_a_common_prefix(data: Path) -> None:
    (data.parent / "data-out").mkdir()
    assert overlap_problem([str(data)], _files(data), str(data.parent / "data-out")) == ""
    assert overlap_problem([str(data / "a.txt")], [str(data / "a.txt")], str(data / "sub")) == ""


def test_a_symbolic_link_cannot_hide_an_overlap(data: Path, tmp_path: Path) -> None:
    (tmp_path / "alias").symlink_to(data, target_is_directory=True)
    assert "inside the input directory" in overlap_problem([str(data)], _files(data), str(tmp_path / "alias" / "out"))
    # a file in the inputs that links to a file in the output directory (os.walk lists it as a file)
    out = tmp_path / "out"
    out.mkdir()
    (out / "mr-out-0").write_text("old 1\n")
    (data / "linked.txt").symlink_to(out / "mr-out-0")
    assert "input file" in overlap_problem([str(data)], [*_files(data), str(data / "linked.txt")], str(out))


def test_the_coordinator_check_sees_files_only(data: Path) -> None:
    files = _files(data)
    assert files_in_output(files, str(data / "out")) == ""   # an output below the inputs' folder: no file in it
    assert "input file" in files_in_output(files, str(data / "sub"))
    assert "input file" in files_in_output([os.path.relpath(f) for f in files], str(data))


def test_a_link_in_the_output_directory_to_an_input_elsewhere_is_refused(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "mr-out-0").symlink_to(data / "a.txt")   # --overwrite would delete the link, and the input with it
    assert "input file" in files_in_output([str(out / "mr-out-0")], str(out))


def test_the_coordinator_check_is_quick_for_many_files(tmp_path: Path) -> None:
    files = [str(tmp_path / f"d{i % 100}" / f"f{i}.txt") for i in range(100_000)]
    started = time.perf_counter()
    assert files_in_output(files, str(tmp_path / "out")) == ""
    assert time.perf_counter() - started < 1.5   # resolving each file took 1.5 to 2.6 s here
