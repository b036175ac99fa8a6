"""Input formats: each split gives map exactly its records, whatever the split boundaries and compression."""

from __future__ import annotations

import gzip
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from zmr.apps import load_app
from zmr.errors import AppError, InputError
from zmr.formats import InputFormat, input_format, map_inputs
from zmr.inputs import expand_inputs, plan_splits
from zmr.seq import run_sequential


def _records(path: Path, fmt: InputFormat, split_size: int, count_lines: bool = False) -> list[Any]:
    """Every record map would get, over the file's splits of `split_size` bytes (the last two cut in
    quarters, as for any job), in order."""
    [file] = expand_inputs([str(path)], text=not fmt.binary)
    out: list[Any] = []
    for split in plan_splits([file], split_size, min_tail_piece=1):
        for piece, _ in map_inputs(fmt, split.path, split.start, split.end, split.codec, count_lines):
            out.extend(piece if fmt.per_record else [piece])
    return out


@pytest.mark.parametrize(("value", "expected"), [
    (None, InputFormat("text")), ("lines", InputFormat("lines")), ("jsonl", InputFormat("jsonl")),
    ("csv", InputFormat("csv")), ("bytes", InputFormat("bytes")), ("records:100", InputFormat("records", 100)),
])
def test_an_app_names_its_input_format(value: object, expected: InputFormat) -> None:
    assert input_format(value, "a") == expected


@pytest.mark.parametrize("value", ["json", "records", "records:0", "records:x", 3, "TEXT"])
def test_an_unknown_input_format_is_an_app_error(value: object) -> None:
    with pytest.raises(AppError, match=r"app 'a': INPUT = .* is not an input format; use one of 'text', 'lines'"):
        input_format(value, "a")


@pytest.mark.parametrize("split_size", [7, 64, 1 << 20])
def test_lines_come_once_each_without_line_ends(tmp_path: Path, split_size: int) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"one\r\ntwo\n\nthree \xe2\x80\xa8 same line\nlast without end")
    assert _records(path, InputFormat("lines"), split_size) == [
        "one", "two", "", "three \u2028 same line", "last without end"]


@pytest.mark.parametrize("split_size", [10, 100, 1 << 20])
def test_json_lines_are_parsed_once_each_skipping_blank_lines(tmp_path: Path, split_size: int) -> None:
    rows = [{"user": f"u{i % 7}", "n": i, "tags": ["a", "b"][: i % 3], "x": i / 4} for i in range(200)]
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join(json.dumps(r) + ("\n" if i % 10 == 0 else "") for i, r in enumerate(rows)) + "\n")
    assert _records(path, InputFormat("jsonl"), split_size) == rows


def test_a_line_that_is_not_json_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": \n{"a": 4}\n')
    size = path.stat().st_size
    with pytest.raises(InputError, match=r"bad.jsonl' line 3: not JSON"):
        list(map_inputs(InputFormat("jsonl"), str(path), 0, size, count_lines=True))
    with pytest.raises(InputError, match=r"bad.jsonl', line 3 of the split from byte 0: not JSON"):
        list(map_inputs(InputFormat("jsonl"), str(path), 0, size, count_lines=False))
    with pytest.raises(InputError, match=r"bad.jsonl', line 1 of the split from byte 10: not JSON"):
        list(map_inputs(InputFormat("jsonl"), str(path), 10, size, count_lines=False))   # its first whole line: line 3
    with pytest.raises(InputError, match=r"^input 'logs/bad.jsonl' line 3: not JSON"):   # as the user typed it
        list(map_inputs(InputFormat("jsonl"), str(path), 0, size, count_lines=True, name="logs/bad.jsonl"))


def test_every_input_error_names_the_file_as_the_user_typed_it(tmp_path: Path) -> None:
    binary, damaged, short = tmp_path / "b.txt", tmp_path / "d.txt.gz", tmp_path / "r.dat"
    binary.write_bytes(b"text\0more\n")
    damaged.write_bytes(gzip.compress(b"words\n" * 1000)[:-20])
    short.write_bytes(b"x" * 150)
    for path, fmt, codec, message in [(binary, "text", "", "is not text"), (binary, "bytes", "", None),
                                      (damaged, "text", "gzip", "is not a readable gzip file"),
                                      (damaged, "bytes", "gzip", "is not a readable gzip file"),
                                      (short, "records:100", "", "ends with 50 bytes")]:
        typed = f"in/{path.name}"
        kind, _, size = fmt.partition(":")
        reading = map_inputs(InputFormat(kind, int(size or 0)), str(path), 0, path.stat().st_size, codec,
                             name=typed)
        if message is None:   # bytes are read as they are
            assert b"".join(data for data, _ in reading) == path.read_bytes()
            continue
        with pytest.raises(InputError, match=rf"^input '{re.escape(typed)}' {message}"):
            list(reading)


@pytest.mark.parametrize("split_size", [16, 100, 1 << 20])
def test_csv_rows_are_dicts_by_the_header_in_every_split(tmp_path: Path, split_size: int) -> None:
    path = tmp_path / "a.csv"
    lines = ["city,population,note"] + [f'c{i},{i * 1000},"with, a comma {i}"' for i in range(40)] + ["short,1"]
    path.write_text("\r\n".join(lines) + "\r\n")
    rows = _records(path, InputFormat("csv"), split_size)
    assert rows[:2] == [{"city": "c0", "population": "0", "note": "with, a comma 0"},
                        {"city": "c1", "population": "1000", "note": "with, a comma 1"}]
    assert len(rows) == 41 and rows[-1] == {"city": "short", "population": "1", "note": ""}


def test_a_csv_row_longer_than_its_header_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("a,b\n1,2\n1,2,3\n")
    with pytest.raises(InputError, match=r"a.csv', line 3 of the split from byte 0: 3 fields, but the header has 2"):
        list(map_inputs(InputFormat("csv"), str(path), 0, path.stat().st_size, count_lines=False))
    with pytest.raises(InputError, match=r"a.csv' line 3: 3 fields"):
        list(map_inputs(InputFormat("csv"), str(path), 0, path.stat().st_size, count_lines=True))


@pytest.mark.parametrize("split_size", [1, 33, 1 << 20])
def test_bytes_are_the_split_exactly_nul_bytes_included(tmp_path: Path, split_size: int) -> None:
    data = random.Random(1).randbytes(5000)
    path = tmp_path / "blob.bin"
    path.write_bytes(b"\0" + data)
    assert b"".join(_records(path, InputFormat("bytes"), split_size)) == b"\0" + data
    packed = tmp_path / "blob.gz"
    packed.write_bytes(gzip.compress(b"\0" + data))
    assert b"".join(_records(packed, InputFormat("bytes"), split_size)) == b"\0" + data


@pytest.mark.parametrize("split_size", [1, 99, 100, 101, 1234, 1 << 20])
def test_fixed_size_records_are_never_cut_and_come_once_each(tmp_path: Path, split_size: int) -> None:
    records = [bytes([i % 256]) * 100 for i in range(97)]
    path = tmp_path / "r.dat"
    path.write_bytes(b"".join(records))
    assert _records(path, InputFormat("records", 100), split_size) == records


def test_a_file_that_does_not_end_on_a_record_boundary_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "r.dat"
    path.write_bytes(b"x" * 250)
    with pytest.raises(InputError, match=r"r.dat' ends with 50 bytes, not a whole record of 100"):
        _records(path, InputFormat("records", 100), 1 << 20)


def test_a_jsonl_app_and_a_records_app_run_in_the_reference(tmp_path: Path) -> None:
    (tmp_path / "events.py").write_text(
        'INPUT = "jsonl"\n\ndef map(filename, event):\n    yield event["user"], event["n"]\n\n'
        'def reduce(user, values):\n    return sum(values)\n')
    (tmp_path / "keys.py").write_text(
        'INPUT = "records:10"\n\ndef map(filename, record):\n    yield record[:2].hex(), 1\n\n'
        'def reduce(key, values):\n    return sum(values)\n')
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps({"user": f"u{i % 3}", "n": i}) + "\n" for i in range(30)))
    out = run_sequential(str(tmp_path / "events.py"), [str(events)], tmp_path / "out-events").read_text()
    assert out == "u0 135\nu1 145\nu2 155\n"
    keys = tmp_path / "keys.dat"
    keys.write_bytes(b"\0\0" + b"k" * 8 + b"\0\1" + b"k" * 8 + b"\0\0" + b"z" * 8)   # NUL bytes: fine here
    assert load_app(str(tmp_path / "keys.py")).input == InputFormat("records", 10)
    out = run_sequential(str(tmp_path / "keys.py"), [str(keys)], tmp_path / "out-keys").read_text()
    assert out == "0000 2\n0001 1\n"
