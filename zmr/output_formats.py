"""Output formats: how a job writes its results to `mr-out-<r>`, one line per key, and how they read back.

    text    `key value`, the value as str() writes it (the default); neither may hold a newline
    jsonl   `{"key": "...", "value": ...}`, the value's type kept (str, int or float)
    csv     `key,value` with RFC 4180 quoting (no header row, so the files concatenate)

Keys are sorted within each file in every format. `read_results` gives back (key, value) pairs: with the
value's type for jsonl, as str for the others (text cannot tell the number 12 from the string "12").
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec

from zmr.core.batches import Value
from zmr.errors import AppError
from zmr.protocol.messages import OutputFormat

__all__ = ["OUTPUT_FORMATS", "OutputFormat", "line_writer", "read_results"]

OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("text", "jsonl", "csv")
_JSON = msgspec.json.Encoder()
_QUOTED = frozenset(',"\r\n')


class _Result(msgspec.Struct):
    key: str
    value: str | int | float | None   # None: a float that JSON cannot hold (nan, inf)


def line_writer(fmt: str, app: str) -> Callable[[str, Value], str]:
    """The line (with its newline) that holds one result; a result the format cannot hold is an AppError."""
    if fmt == "jsonl":
        return lambda key, value: _JSON.encode(_Result(key, value)).decode() + "\n"
    if fmt == "csv":
        return lambda key, value: f"{_csv_field(key)},{_csv_field(str(value))}\n"
    if fmt != "text":
        raise ValueError(f"not an output format: {fmt!r}")

    def text(key: str, value: Value) -> str:
        line = f"{key} {value}\n"
        if line.count("\n") > 1:
            raise AppError(f"app {app!r}: output for key {key!r} contains a newline: {value!r} (the text output "
                           "format has one line per key; choose --output-format jsonl or csv)")
        return line

    return text


def _csv_field(text: str) -> str:
    return f'"{text.replace(chr(34), chr(34) * 2)}"' if not _QUOTED.isdisjoint(text) else text


def read_results(path: Path, fmt: str) -> Iterator[tuple[str, Value | None]]:
    """The (key, value) pairs of one output file written in `fmt`."""
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        if fmt == "jsonl":
            decoder = msgspec.json.Decoder(_Result)
            for line in f:
                result = decoder.decode(line)
                yield result.key, result.value
        elif fmt == "csv":
            for row in csv.reader(f):
                yield row[0], row[1]
        else:
            for line in f:
                key, _, value = line.rstrip("\n").partition(" ")
                yield key, value
