"""Input formats: what `map` receives from a split, as an app declares it (`INPUT = "jsonl"`).

    text        map(filename, contents: str), the split's text in pieces of at most 16 MiB (the default)
    lines       map(filename, line: str) for each line, without its line end
    jsonl       map(filename, record) for each non-blank line, parsed as JSON
    csv         map(filename, record: dict[str, str]) for each row after the file's header row
    bytes       map(filename, data: bytes), the split's bytes exactly, in pieces of at most 16 MiB
    records:N   map(filename, record: bytes) for each N-byte record (a split owns the records that start
                in it, so a record is never cut)

Text formats (the first four) read UTF-8 with replacements and refuse a NUL byte (`zmr.inputs`); the
binary ones read anything. A record that does not parse (bad JSON, a CSV row with more fields than its
header) is an InputError that names the file and the line: the job fails at once, since reading it again
would give the same answer. CSV rows are split at line ends, so a quoted field must not hold a newline.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec

from zmr import compressed, storage
from zmr.errors import AppError, InputError
from zmr.inputs import MAP_CHUNK_BYTES, read_chunks

__all__ = ["TEXT", "InputFormat", "input_format", "map_inputs"]

_TEXT_KINDS = ("text", "lines", "jsonl", "csv")
_MAX_RECORD_BYTES = 64 << 20


@dataclass(frozen=True)
class InputFormat:
    """How a split is read: `kind` (see the module docstring), `record_bytes` for fixed-size records."""

    kind: str = "text"
    record_bytes: int = 0

    @property
    def binary(self) -> bool:
        """Read as bytes: no decoding, and a NUL byte is data, not a sign of a wrong file."""
        return self.kind not in _TEXT_KINDS

    @property
    def per_record(self) -> bool:
        """`map` is called once per record rather than once per piece of the split."""
        return self.kind in ("lines", "jsonl", "csv", "records")

    def __str__(self) -> str:
        return f"records:{self.record_bytes}" if self.kind == "records" else self.kind


TEXT = InputFormat()


def input_format(value: object, app: str) -> InputFormat:
    """The format an app's `INPUT` names; an AppError says what may be named."""
    if value is None:
        return TEXT
    if isinstance(value, str):
        if value in (*_TEXT_KINDS, "bytes"):
            return InputFormat(value)
        kind, colon, size = value.partition(":")
        if kind == "records" and colon and size.isdigit() and 0 < int(size) <= _MAX_RECORD_BYTES:
            return InputFormat("records", int(size))
    raise AppError(f"app {app!r}: INPUT = {value!r} is not an input format; use one of 'text', 'lines', 'jsonl', "
                   f"'csv', 'bytes' or 'records:N' (N bytes a record, 1 to {_MAX_RECORD_BYTES})")


def map_inputs(fmt: InputFormat, path: str, start: int, end: int, codec: str = "",
               count_lines: bool = True, batch: bool = False,
               piece_bytes: int = MAP_CHUNK_BYTES, name: str = "") -> Iterator[tuple[list[Any] | str | bytes, int]]:
    """What `map` gets from the split [start, end) of `path`, a piece at a time, with the 1-based line number
    of the piece's first line (0 when not `count_lines`, and for binary formats): the text or bytes itself,
    or, for per-record formats, a list of records to call `map` with one by one. `batch` (for `map_batch`):
    fixed-size records come as one bytes object of whole records per piece of up to `piece_bytes`. Errors
    name the file as `name` (as the user typed it), else by `path`."""
    label = name or path
    if fmt.kind == "bytes":
        for data in _byte_pieces(path, start, end, codec, MAP_CHUNK_BYTES, label):
            yield data, 0
        return
    if fmt.kind == "records":
        if batch:
            yield from ((records, 0) for records in _record_blobs(path, start, end, codec, fmt.record_bytes,
                                                                  piece_bytes, label))
        else:
            yield from ((_cut(records, fmt.record_bytes), 0)
                        for records in _record_blobs(path, start, end, codec, fmt.record_bytes, 4 << 20, label))
        return
    pieces = read_chunks(path, start, end, count_lines=count_lines, codec=codec, name=label)
    if fmt.kind == "text":
        yield from pieces
        return
    header = _csv_header(path, codec, label) if fmt.kind == "csv" and start > 0 else None
    seen = 0   # lines of the split before this piece, for errors when lines are not counted
    for text, first_line in pieces:
        lines = _lines(text)
        where = _Where(label, start, first_line, seen)
        seen += len(lines)
        if fmt.kind == "lines":
            yield lines, first_line
        elif fmt.kind == "jsonl":
            yield _json_records(where, lines), first_line
        else:
            if header is None:   # the split at the file's start: its first line is the header
                if not lines:
                    continue
                header, lines = _csv_row(where, lines[0]), lines[1:]
                where = _Where(label, start, first_line + 1 if first_line else 0, 1)
            yield _csv_records(where, header, lines), first_line


def _lines(text: str) -> list[str]:
    """A piece's lines without their line ends (\\n or \\r\\n); pieces end at a line end."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


_JSON = msgspec.json.Decoder()


@dataclass(frozen=True)
class _Where:
    """Names a line of a piece in an error: by its number in the file when lines are counted, else by its
    place in the split (counting costs a read of the file up to the split)."""

    path: str         # the file as errors name it
    start: int
    first_line: int   # of the piece, 0 when not counted
    before: int       # lines of the split before the piece

    def line(self, index: int) -> str:
        if self.first_line:
            return f"input {self.path!r} line {self.first_line + index}"
        return f"input {self.path!r}, line {self.before + index + 1} of the split from byte {self.start}"


def _json_records(where: _Where, lines: list[str]) -> list[Any]:
    records = []
    for index, line in enumerate(lines):
        if line.strip():
            try:
                records.append(_JSON.decode(line))
            except msgspec.DecodeError as exc:
                raise InputError(f"{where.line(index)}: not JSON ({exc})") from exc
    return records


def _csv_header(path: str, codec: str, label: str) -> list[str]:
    """The first row of a CSV file, for a split that starts further in."""
    for text, _ in read_chunks(path, 0, 1, count_lines=False, codec=codec, name=label):
        lines = _lines(text)
        return _csv_row(_Where(label, 0, 1, 0), lines[0]) if lines else []
    return []


def _csv_row(where: _Where, line: str) -> list[str]:
    try:
        return next(csv.reader([line]), [])
    except csv.Error as exc:
        raise InputError(f"{where.line(0)}: not a CSV row ({exc})") from exc


def _csv_records(where: _Where, header: list[str], lines: list[str]) -> list[dict[str, str]]:
    records = []
    for index, line in enumerate(lines):
        row = _csv_row(where, line) if line else []
        if not row:
            continue
        if len(row) > len(header):
            raise InputError(f"{where.line(index)}: {len(row)} fields, but the header has {len(header)}")
        records.append(dict(zip(header, row + [""] * (len(header) - len(row)), strict=True)))
    return records


def _byte_pieces(path: str, start: int, end: int, codec: str, piece_bytes: int, label: str) -> Iterator[bytes]:
    """Bytes [start, end) of the file (all of it, decompressed, when `codec`), in pieces; errors name `label`."""
    if codec:
        with compressed.reading(path, codec, name=label) as stream:
            yield from iter(lambda: stream.read(piece_bytes), b"")
        return
    with storage.open_input(path) as f:
        f.seek(start)
        left = end - start
        while left > 0 and (data := f.read(min(piece_bytes, left))):
            left -= len(data)
            yield data


def _cut(blob: bytes, size: int) -> list[bytes]:
    view = memoryview(blob)
    return [bytes(view[i:i + size]) for i in range(0, len(blob), size)]


def _record_blobs(path: str, start: int, end: int, codec: str, size: int, piece_bytes: int,
                  label: str) -> Iterator[bytes]:
    """The fixed-size records that start in [start, end), whole records of about `piece_bytes` at a time; a
    file that does not end on a record boundary is an InputError."""
    if not codec:   # a record belongs to the split it starts in (reading stops at the file's end anyway)
        start, end = -(-start // size) * size, -(-end // size) * size
    per_piece = max(1, piece_bytes // size) * size
    carry = b""
    for data in _byte_pieces(path, start, end, codec, per_piece, label):
        data = carry + data if carry else data
        whole = len(data) - len(data) % size
        carry = data[whole:]
        yield data if whole == len(data) else data[:whole]
    if carry:
        raise InputError(f"input {label!r} ends with {len(carry)} bytes, not a whole record of {size}")


