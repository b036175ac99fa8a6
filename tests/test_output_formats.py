"""Output formats: every result written in each format reads back as it was (its type too, in jsonl)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from zmr import output_formats
from zmr.core.batches import Value
from zmr.errors import AppError
from zmr.output_formats import OUTPUT_FORMATS, read_results, write_reduced

RESULTS: list[tuple[str, Value]] = [
    ("plain", 1), ("big", 2**63), ("neg", -3), ("half", 0.5), ("text", "a value"), ("digits", "12"),
    ("comma,key", 'quote " and, comma'), ("tab\tkey", "tab\tvalue"), ("caf\u00e9", "na\u00efve \u2603"),
    ("", ""), ("spaces in key", " lead and trail "),
]
MULTILINE: list[tuple[str, Value]] = [("two\nlines", "v"), ("k", "line one\nline two\r\n")]


def _write(path: Path, fmt: str, results: list[tuple[str, Value]]) -> None:
    """As a reducer writes: each key's one value, reduced to itself."""
    written = write_reduced(str(path), fmt, "app", ((k, iter([v])) for k, v in results), lambda k, vs: next(vs),
                            lambda: None)
    assert written == len(results)


def test_jsonl_keeps_every_key_and_value_and_its_type(tmp_path: Path) -> None:
    path = tmp_path / "out"
    _write(path, "jsonl", RESULTS + MULTILINE)
    back = list(read_results(path, "jsonl"))
    assert back == RESULTS + MULTILINE
    assert [type(v) for _, v in back] == [type(v) for _, v in RESULTS + MULTILINE]
    assert path.read_text().splitlines()[0] == '{"key":"plain","value":1}'


def test_csv_keeps_every_key_and_value_as_text(tmp_path: Path) -> None:
    path = tmp_path / "out"
    _write(path, "csv", RESULTS + MULTILINE)
    assert list(read_results(path, "csv")) == [(k, str(v)) for k, v in RESULTS + MULTILINE]
    assert path.read_text().splitlines()[:2] == ["plain,1", "big,9223372036854775808"]


def test_text_is_key_space_value_and_refuses_a_newline(tmp_path: Path) -> None:
    path = tmp_path / "out"
    simple = [(k, v) for k, v in RESULTS if " " not in k]
    _write(path, "text", simple)
    assert list(read_results(path, "text")) == [(k, str(v)) for k, v in simple]
    for key, value in MULTILINE:
        which = f"key {key!r}" if "\n" in key else f"value of key {key!r}"   # the one with the newline
        with pytest.raises(AppError, match=f"output's {re.escape(which)} contains a newline.*choose --output-format "
                                           "jsonl or csv"):
            _write(tmp_path / "bad", "text", [("a", 1), (key, value)])


def test_a_float_json_cannot_hold_reads_back_as_none(tmp_path: Path) -> None:
    path = tmp_path / "out"
    _write(path, "jsonl", [("nan", math.nan), ("inf", math.inf)])
    assert list(read_results(path, "jsonl")) == [("nan", None), ("inf", None)]


def test_the_formats_are_these(tmp_path: Path) -> None:
    assert OUTPUT_FORMATS == ("text", "jsonl", "csv", "parquet", "raw")
    with pytest.raises(ValueError, match="not an output format"):
        _write(tmp_path / "out", "xml", [])
    assert not (tmp_path / "out").exists()


def _parquet(path: Path, results: list[tuple[str, Value]]) -> None:
    _write(path, "parquet", results)


@pytest.mark.parametrize("values", [[1, 2**62, -5], [0.5, 2.0], ["a", "b\nc", ""]])
def test_parquet_keeps_keys_values_and_their_type_across_row_groups(tmp_path: Path, values: list[Value],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(output_formats, "_ROWS_PER_GROUP", 2)   # several row groups
    results = [(f"k{i:03d}", values[i % len(values)]) for i in range(7)]
    _parquet(tmp_path / "out", results)
    assert list(read_results(tmp_path / "out", "parquet")) == results
    assert pq.ParquetFile(tmp_path / "out").num_row_groups == 4


def test_parquet_takes_ints_into_a_float_column_and_refuses_other_mixes(tmp_path: Path) -> None:
    _parquet(tmp_path / "mixed", [("a", 0.5), ("b", 2)])
    back = list(read_results(tmp_path / "mixed", "parquet"))
    assert back == [("a", 0.5), ("b", 2.0)] and type(back[1][1]) is float
    with pytest.raises(AppError, match="holds one value type, int, but reduce\\('b', ...\\) returned a str"):
        _parquet(tmp_path / "bad", [("a", 1), ("b", "x")])
    with pytest.raises(AppError, match="does not fit the parquet int64 column"):
        _parquet(tmp_path / "big", [("a", 2**63)])


def test_an_empty_parquet_output_reads_back_empty(tmp_path: Path) -> None:
    _parquet(tmp_path / "empty", [])
    assert list(read_results(tmp_path / "empty", "parquet")) == []
