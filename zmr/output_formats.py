"""Output formats: how a job writes its results to `mr-out-<r>`, one line per key, and how they read back.

    text     `key value`, the value as str() writes it (the default); neither may hold a newline
    jsonl    `{"key": "...", "value": ...}`, the value's type kept (str, int or float)
    csv      `key,value` with RFC 4180 quoting (no header row, so the files concatenate)
    parquet  columns `key` (string) and `value` (int64, double or string, by the job's first value; ints
             go into a double column), in row groups of 64k; needs pyarrow (`pip install 'zmr[parquet]'`)
    raw      the key's bytes then the value's, nothing added (bytes as they are, str as UTF-8, a number
             as str() writes it): fixed-size records written back exactly as they were read

Keys are sorted within each file in every format. `read_results` gives back (key, value) pairs: with the
value's type for jsonl and parquet, as str for the others (text cannot tell 12 from "12").
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

import msgspec

from zmr import storage
from zmr.core.batches import Value
from zmr.errors import AppError, JobSpecError
from zmr.protocol.messages import OutputFormat

if TYPE_CHECKING:
    from zmr.core.columns import Columns

__all__ = ["OUTPUT_FORMATS", "OutputFormat", "check_available", "read_results", "write_reduced"]

OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("text", "jsonl", "csv", "parquet", "raw")
_LINES_PER_WRITE = 4096    # one write call per line costs more than joining a few thousand
_ROWS_PER_GROUP = 1 << 16
_RAW_WRITE_BYTES = 4 << 20
_JSON = msgspec.json.Encoder()
_QUOTED = frozenset(',"\r\n')


class _Result(msgspec.Struct):
    key: str
    value: str | int | float | None   # None: a float that JSON cannot hold (nan, inf)


class _ResultWriter(Protocol):
    """Writes one output file: `write` each result in key order, then `close` (data on disk: fsync)."""

    def write(self, key: str, value: Value) -> None: ...

    def close(self) -> None: ...


def check_available(fmt: str) -> None:
    """A JobSpecError now, rather than a failed job later, if `fmt` needs a library that is missing here."""
    if fmt == "parquet":
        try:
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            raise JobSpecError("the parquet output format needs pyarrow: pip install 'zmr[parquet]'") from None


def write_reduced(path: str, fmt: str, app: str, groups: Iterable[tuple[str, Iterator[Value]]],
                  reduce: Callable[[str, Iterator[Value]], Value], tick: Callable[[], None],
                  format_line: Callable[[str, Value], str] | None = None) -> int:
    """Reduce each (key, values) group and write the result to a new file at `path` in `fmt`, durably;
    returns the number of results. `tick` is called every few thousand results (progress). `format_line`:
    the app's own line for a result in the text format (`App.output_formatter`)."""
    if fmt == "text":
        if format_line is not None:
            return _write_text(path, app, groups, lambda key, values: format_line(key, reduce(key, values)),
                               tick, formatted=True)
        return _write_text(path, app, groups, reduce, tick)
    writer = _open_writer(path, fmt, app)
    count = 0
    try:
        for key, values in groups:
            writer.write(key, reduce(key, values))
            count += 1
            if count % _LINES_PER_WRITE == 0:
                tick()
    finally:
        writer.close()
    return count


def _write_text(path: str, app: str, groups: Iterable[tuple[str, Iterator[Value]]],
                reduce: Callable[[str, Iterator[Value]], Value], tick: Callable[[], None],
                formatted: bool = False) -> int:
    """The text format's loop, kept tight: it runs once per key of the job (the sort: every record).
    `formatted`: `reduce` gives the whole line (the app's format_output), checked already."""
    count = 0
    with open(path, "w", encoding="utf-8", errors="surrogateescape", newline="") as out:
        lines: list[str] = []
        for key, values in groups:
            value = reduce(key, values)
            if formatted:
                lines.append(f"{value}\n")
            elif "\n" in key or (type(value) is str and "\n" in value):
                _text_newline(app, key, value)
            else:
                lines.append(f"{key} {value}\n")
            if len(lines) == _LINES_PER_WRITE:
                out.write("".join(lines))
                lines.clear()
                count += _LINES_PER_WRITE
                tick()
        out.write("".join(lines))
        count += len(lines)
        out.flush()
        os.fsync(out.fileno())
    return count


def write_columns(path: str, fmt: str, app: str, batches: Iterable[Columns], tick: Callable[[], None]) -> int:
    """Write a batch app's pairs, batch by batch, each pair a result (the app has no reduce), durably;
    returns the number of results. `raw` joins a batch's bytes in array passes; the other formats take
    str keys and str or number values, and refuse bytes."""
    from zmr.core.columns import BYTES, FIXED, chunks, joined

    if fmt != "raw":
        def pairs() -> Iterator[tuple[str, Iterator[Value]]]:
            for batch in batches:
                if {batch.keys.kind, batch.values.kind} & {BYTES, FIXED}:
                    raise _bytes_refused(app, fmt)
                for key, value in batch.pairs():
                    yield key, iter((value,))
                tick()
        return write_reduced(path, fmt, app, pairs(), _only, lambda: None)
    count = 0
    with open(path, "wb") as out:
        for batch in batches:
            for piece in chunks(batch, _RAW_WRITE_BYTES):   # bounds the copy that interleaves keys and values
                out.write(joined(piece))   # type: ignore[arg-type]  # an array is a buffer
            count += len(batch)
            tick()
        out.flush()
        os.fsync(out.fileno())
    return count


def refuse_bytes(app: str, fmt: str, items: Iterable[Any]) -> None:
    """An AppError if an item is bytes: only the raw format writes those."""
    if any(type(item) is bytes for item in items):
        raise _bytes_refused(app, fmt)


def _bytes_refused(app: str, fmt: str) -> AppError:
    return AppError(f"app {app!r}: map_batch gave bytes, which only --output-format raw writes "
                    f"(or OUTPUT_FORMAT = 'raw' in the app); give str to write {fmt}")


def str_keys(app: str, fmt: str, groups: Iterable[tuple[Any, Iterator[Value]]],
             ) -> Iterator[tuple[str, Iterator[Value]]]:
    """A batch app's reduce groups, with an AppError at the first bytes key (only raw writes those)."""
    for key, values in groups:
        if type(key) is bytes:
            raise _bytes_refused(app, fmt)
        yield key, values


def _only(key: str, values: Iterator[Value]) -> Value:
    return next(values)


def _text_newline(app: str, key: str, value: Value) -> None:
    where = f"key {key!r} contains a newline" if "\n" in key else f"value of key {key!r} contains a newline: {value!r}"
    raise AppError(f"app {app!r}: the output's {where} (the text output format has one line per key; choose "
                   "--output-format jsonl or csv)")


def _open_writer(path: str, fmt: str, app: str) -> _ResultWriter:
    """A writer of results to a new file at `path`, in `fmt`."""
    if fmt == "raw":
        return _RawWriter(path)
    return _ParquetWriter(path, app) if fmt == "parquet" else _LineWriter(path, _line_of(fmt))


class _RawWriter:
    """Results as the key's bytes then the value's, nothing between or after (see the module docstring)."""

    def __init__(self, path: str) -> None:
        self._out = open(path, "wb")  # noqa: SIM115
        self._parts: list[bytes] = []

    def write(self, key: Any, value: Value) -> None:
        from zmr.core.columns import as_bytes

        self._parts += (as_bytes(key), as_bytes(value))
        if len(self._parts) >= 2 * _LINES_PER_WRITE:
            self._out.write(b"".join(self._parts))
            self._parts.clear()

    def close(self) -> None:
        try:
            self._out.write(b"".join(self._parts))
            self._out.flush()
            os.fsync(self._out.fileno())
        finally:
            self._out.close()


class _LineWriter:
    def __init__(self, path: str, line_of: Callable[[str, Value], str]) -> None:
        self._out = open(path, "w", encoding="utf-8", errors="surrogateescape", newline="")  # noqa: SIM115
        self._line_of = line_of
        self._lines: list[str] = []

    def write(self, key: str, value: Value) -> None:
        self._lines.append(self._line_of(key, value))
        if len(self._lines) == _LINES_PER_WRITE:
            self._out.write("".join(self._lines))
            self._lines.clear()

    def close(self) -> None:
        try:
            self._out.write("".join(self._lines))
            self._out.flush()
            os.fsync(self._out.fileno())
        finally:
            self._out.close()


class _ParquetWriter:
    """Results as a Parquet file; the value column's type is set by the first value."""

    def __init__(self, path: str, app: str) -> None:
        try:
            import pyarrow as pa  # an optional dependency: imported only by jobs that write Parquet
        except ImportError:
            raise AppError("the parquet output format needs pyarrow where the job runs: "
                           "pip install 'zmr[parquet]'") from None

        self._pa = pa
        self._path, self._app = path, app
        self._keys: list[str] = []
        self._values: list[Value] = []
        self._kind: type | None = None
        self._writer: Any = None

    def write(self, key: str, value: Value) -> None:
        kind = type(value)
        if self._kind is None:
            self._kind = kind
        elif kind is not self._kind:
            if kind is int and self._kind is float:
                value = float(value)
            else:
                raise AppError(f"app {self._app!r}: the parquet output holds one value type, {self._kind.__name__}, "
                               f"but reduce({key!r}, ...) returned a {kind.__name__}; choose --output-format jsonl")
        if kind is int and not -(1 << 63) <= value < 1 << 63:   # type: ignore[operator]
            raise AppError(f"app {self._app!r}: {value} for key {key!r} does not fit the parquet int64 column")
        self._keys.append(key)
        self._values.append(value)
        if len(self._keys) == _ROWS_PER_GROUP:
            self._flush()

    def _flush(self) -> None:
        pa = self._pa
        import pyarrow.parquet as pq

        value_type = {int: pa.int64(), float: pa.float64()}.get(self._kind or str, pa.string())
        table = pa.table({"key": pa.array(self._keys, pa.string()), "value": pa.array(self._values, value_type)})
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._path, table.schema)
        self._writer.write_table(table)
        self._keys, self._values = [], []

    def close(self) -> None:
        if self._keys or self._writer is None:
            self._flush()
        self._writer.close()
        fd = os.open(self._path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _line_of(fmt: str) -> Callable[[str, Value], str]:
    """The line (with its newline) that holds one result in jsonl or csv (text has its own loop)."""
    if fmt == "jsonl":
        return lambda key, value: _JSON.encode(_Result(key, value)).decode() + "\n"
    if fmt == "csv":
        return lambda key, value: f"{_csv_field(key)},{_csv_field(str(value))}\n"
    raise ValueError(f"not an output format: {fmt!r}")


def _csv_field(text: str) -> str:
    return f'"{text.replace(chr(34), chr(34) * 2)}"' if not _QUOTED.isdisjoint(text) else text


def read_results(path: str | Path, fmt: str) -> Iterator[tuple[str, Value | None]]:
    """The (key, value) pairs of one output file written in `fmt`: a local path or a URL."""
    with storage.open_input(str(path)) as raw:
        yield from _read_results(raw, fmt)


def _read_results(raw: IO[bytes], fmt: str) -> Iterator[tuple[str, Value | None]]:
    if fmt == "raw":
        raise JobSpecError("raw output has no boundaries between results to read them back by; read the "
                           "mr-out-* files themselves")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        reader = pq.ParquetFile(raw)
        for group in range(reader.num_row_groups):
            table = reader.read_row_group(group)
            yield from zip(table.column("key").to_pylist(), table.column("value").to_pylist(), strict=True)
        return
    with io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="") as f:
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
