"""Input expansion and split reading: every line read exactly once, with its true line number."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from unittest import mock

import fsspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import zmr.inputs as inputs
from zmr import storage
from zmr.compressed import detect
from zmr.core.specs import SpecLimits
from zmr.errors import JobSpecError
from zmr.inputs import InputFile, expand_inputs, plan_splits, read_split


def _write(path: Path, data: bytes | str = b"x\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


# --- expand_inputs -------------------------------------------------------------------------------


def test_file_keeps_the_typed_name_and_gets_an_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path / "a.txt", b"hello\n")
    monkeypatch.chdir(tmp_path)
    assert expand_inputs(["a.txt"]) == [InputFile("a.txt", str(tmp_path / "a.txt"), 6)]


def test_a_single_string_is_one_input(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.txt")
    assert [f.name for f in expand_inputs(str(path))] == [str(path)]


def test_directory_is_expanded_recursively_sorted_skipping_hidden(tmp_path: Path) -> None:
    for rel in ["b.txt", "a/z.txt", "a/b/c.txt", "c", ".hidden", ".git/config", "a/.secret", "a/.d/x",
                "_SUCCESS", "a/_logs/history", "_temporary/0/part"]:
        _write(tmp_path / "in" / rel)
    typed = str(tmp_path / "in") + "/"
    names = [f.name for f in expand_inputs([typed])]
    expected = ["a/b/c.txt", "a/z.txt", "b.txt", "c"]
    assert names == [os.path.join(typed, rel) for rel in expected]
    assert all(Path(f.path).is_absolute() and f.size == 2 for f in expand_inputs([typed]))


def test_a_file_named_with_an_underscore_is_read_when_named(tmp_path: Path) -> None:
    path = _write(tmp_path / "_part.txt")
    assert [f.name for f in expand_inputs([str(path)])] == [str(path)]


def test_files_and_directories_keep_the_order_given(tmp_path: Path) -> None:
    _write(tmp_path / "z.txt")
    _write(tmp_path / "d" / "a.txt")
    names = [f.name for f in expand_inputs([str(tmp_path / "z.txt"), str(tmp_path / "d")])]
    assert names == [str(tmp_path / "z.txt"), str(tmp_path / "d" / "a.txt")]


def test_no_inputs_is_an_error() -> None:
    with pytest.raises(JobSpecError, match="no inputs"):
        expand_inputs([])


def test_missing_input_is_named(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.txt")
    with pytest.raises(JobSpecError, match="does not exist") as err:
        expand_inputs([missing])
    assert missing in str(err.value)


def test_directory_without_visible_files_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path / "d" / ".only_hidden")
    (tmp_path / "d" / "empty_sub").mkdir()
    with pytest.raises(JobSpecError, match="holds no") as err:
        expand_inputs([str(tmp_path / "d")])
    assert str(tmp_path / "d") in str(err.value)


def test_unreadable_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(_write(tmp_path / "locked.txt"))

    def refuse(name: str, mode: str = "r") -> object:
        raise PermissionError(13, "Permission denied", name)

    monkeypatch.setattr(storage, "open", refuse, raising=False)  # we may run as root, where chmod is moot
    with pytest.raises(JobSpecError, match="cannot be read.*Permission denied") as err:
        expand_inputs([path])
    assert path in str(err.value)


def test_fifo_is_refused_rather_than_read(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(JobSpecError, match="neither a regular file nor a directory"):
        expand_inputs([str(fifo)])


# --- read_split ----------------------------------------------------------------------------------


def _read_all(path: Path, split_size: int) -> list[tuple[str, int]]:
    files = expand_inputs([str(path)])
    return [read_split(s.path, s.start, s.end) for s in plan_splits(files, split_size)]


def test_split_starting_mid_line_leaves_that_line_to_the_previous_split(tmp_path: Path) -> None:
    path = _write(tmp_path / "f", b"aaaa\nbbbb\ncccc\n")
    assert read_split(str(path), 0, 7) == ("aaaa\nbbbb\n", 1)  # ends inside line 2: read it to its end
    assert read_split(str(path), 7, 15) == ("cccc\n", 3)  # starts inside line 2: skip it
    assert read_split(str(path), 5, 10) == ("bbbb\n", 2)  # starts exactly on a line: keep it
    assert read_split(str(path), 6, 8) == ("", 3)  # no line starts in [6, 8)


def test_last_line_without_newline_and_empty_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "f", b"one\ntwo")
    assert _read_all(path, 4) == [("one\n", 1), ("two", 2)]   # splits [0, 3) and [3, 7)
    longer = _write(tmp_path / "g", b"one\ntwo-three")
    # splits [0, 6) and [6, 13): "two-three" starts at byte 4, in split one, so split two owns nothing
    assert _read_all(longer, 7) == [("one\ntwo-three", 1), ("", 2)]
    empty = _write(tmp_path / "e", b"")
    assert _read_all(empty, 5) == [("", 1)]


def test_invalid_utf8_is_replaced_not_fatal(tmp_path: Path) -> None:
    path = _write(tmp_path / "f", b"ok\n\xff\xfe bad\n\xe2\x82\n")
    assert "".join(text for text, _ in _read_all(path, 4)) == "ok\n\ufffd\ufffd bad\n\ufffd\n"


def test_lines_longer_than_a_read_chunk(tmp_path: Path) -> None:
    path = _write(tmp_path / "f", b"x" * 50 + b"\n" + b"y" * 50 + b"\nz")
    with mock.patch.object(inputs, "_CHUNK", 7):
        assert _read_all(path, 10) == [("x" * 50 + "\n", 1)] + [("", 2)] * 4 + [("y" * 50 + "\n", 2)] + [
            ("", 3)
        ] * 4 + [("z", 3)]


@settings(max_examples=300, deadline=None)
@given(
    data=st.lists(st.sampled_from([b"\n", b"a", b"bc", b"\xc3\xa9", b"\xff", b"\xe2\x82", b"\r\n"])).map(
        b"".join
    )
    # a NUL byte or a compressed file's magic: not read as text (tests/test_compressed_inputs.py)
    | st.binary(max_size=200).map(lambda b: b.replace(b"\0", b"\1")).filter(lambda b: not detect(b[:10])),
    split_size=st.integers(min_value=1, max_value=64),
    chunk=st.sampled_from([1, 2, 5, 1 << 20]),
)
def test_splits_concatenate_to_the_file_with_true_line_numbers(
    data: bytes, split_size: int, chunk: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(inputs, "_CHUNK", chunk):
        path = _write(Path(tmp) / "f", data)
        pieces = _read_all(path, split_size)
    assert "".join(text for text, _ in pieces) == data.decode("utf-8", errors="replace")
    lines_before = 0
    for text, first_line in pieces:
        if text:
            assert first_line == lines_before + 1
        lines_before += text.count("\n")


# --- read_chunks: bounded pieces for map ---------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(st.text(alphabet="ab é\t€", max_size=30), max_size=12), trailing=st.booleans(),
       split_size=st.integers(1, 60), chunk=st.integers(1, 40))
def test_chunks_add_up_to_the_split_and_carry_true_line_numbers(
        lines: list[str], trailing: bool, split_size: int, chunk: int) -> None:
    data = ("\n".join(lines) + ("\n" if trailing and lines else "")).encode()
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp) / "f", data)
        for split in plan_splits(expand_inputs([str(path)]), split_size):
            text, first = read_split(split.path, split.start, split.end)
            pieces = list(inputs.read_chunks(split.path, split.start, split.end, chunk))
            assert "".join(p for p, _ in pieces) == text          # nothing lost, nothing doubled, no U+FFFD
            assert pieces[0][1] == first
            seen = first
            for piece, number in pieces:
                assert number == seen
                seen += piece.count("\n")
            uncounted = list(inputs.read_chunks(split.path, split.start, split.end, chunk, count_lines=False))
            assert uncounted == [(piece, 0) for piece, _ in pieces], "the same pieces, line numbers left at 0"


def test_a_line_far_longer_than_a_chunk_is_cut_between_words(tmp_path: Path) -> None:
    words = [f"w{i}" for i in range(5000)]
    path = _write(tmp_path / "f", " ".join(words) + "\nlast line\n")
    pieces = list(inputs.read_chunks(str(path), 0, path.stat().st_size, 1000))
    assert len(pieces) > 20 and all(len(p.encode()) <= 1000 for p, _ in pieces)
    assert [w for p, _ in pieces for w in p.split()] == words + ["last", "line"]
    assert pieces[0][1] == 1 and pieces[-1][1] == 1 + sum(p.count("\n") for p, _ in pieces[:-1])


def test_a_run_without_whitespace_is_cut_between_utf8_sequences(tmp_path: Path) -> None:
    text = "€" * 1000   # 3 bytes each
    path = _write(tmp_path / "f", text)
    pieces = list(inputs.read_chunks(str(path), 0, path.stat().st_size, 100))
    assert "".join(p for p, _ in pieces) == text


def test_too_many_files_are_refused_before_any_is_opened(tmp_path: Path) -> None:
    for i in range(6):
        _write(tmp_path / "many" / f"f{i}.txt")
    limits = SpecLimits(max_map_tasks=5)
    with mock.patch.object(inputs, "_input_file", side_effect=AssertionError("opened")), \
            pytest.raises(JobSpecError, match=r"number of input files is 6, over the limit of 5 \(job.max_map_tasks\)"):
        expand_inputs([str(tmp_path / "many")], limits)
    assert len(expand_inputs([str(tmp_path / "many")], SpecLimits(max_map_tasks=6))) == 6


def test_a_url_prefix_skips_hidden_objects_as_a_directory_does() -> None:
    fs = fsspec.filesystem("memory")
    root = "/zmr-test-hidden"
    try:
        for rel in ["b.txt", "a/c.txt", ".hidden", "_SUCCESS", "_temporary/0/part", "a/.d/x"]:
            fs.pipe_file(f"{root}/{rel}", b"x\n")
        names = [f.name for f in expand_inputs([f"memory://{root}/"])]
        assert names == [f"memory://{root}/a/c.txt", f"memory://{root}/b.txt"]
    finally:
        fs.rm(root, recursive=True)
