"""Input files: expand what the user typed into readable text files, and read one split's lines.

Split planning itself is pure and lives in `zmr.core.splits`; it is re-exported here. Compressed files
(gzip, bzip2, xz, zstd; see `zmr.compressed`) are read decompressed, each as one split. Input must be
text: a NUL byte, which no text file holds, fails the job with an InputError naming the file, rather
than feeding garbage to map.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO

from zmr import compressed, storage
from zmr.core.specs import SpecLimits, map_tasks_problem
from zmr.core.splits import Split, plan_splits
from zmr.errors import InputError, JobSpecError

__all__ = ["MAP_CHUNK_BYTES", "InputFile", "Split", "expand_inputs", "plan_splits", "read_chunks", "read_split"]

_CHUNK = 1 << 20
MAP_CHUNK_BYTES = 16 << 20   # the most text one map call gets: memory stays bounded whatever the lines
_WHITESPACE = (b" ", b"\t", b"\r", b"\x0b", b"\x0c")
TEXT_PROBE_BYTES = 8192   # how much of each input (decompressed) is looked at when the job is submitted


@dataclass(frozen=True)
class InputFile:
    """An input file: `name` as the user typed it (map receives it), `path` absolute (workers open it),
    `size` in bytes as stored, `codec` its compression ("" for none)."""

    name: str
    path: str
    size: int
    codec: compressed.Codec = ""


def expand_inputs(inputs: Sequence[str], limits: SpecLimits | None = None, text: bool = True) -> list[InputFile]:
    """Files as given, directories expanded recursively (sorted, hidden entries skipped: names starting
    with '.' or '_', such as an earlier job's `_SUCCESS`).

    Raises JobSpecError naming the path for: no inputs, a missing path, an unreadable file,
    something that is neither a file nor a directory, or a directory holding no files; and, with
    `limits`, for more files than `limits.max_map_tasks`, before any file is opened (each file is at
    least one map task, so such a job would be refused anyway). With `text` (the input format of most
    apps), a file whose start holds a NUL byte is refused as not text.
    """
    if isinstance(inputs, str):
        inputs = [inputs]
    if not inputs:
        raise JobSpecError("no inputs given: pass at least one file or directory")
    names = [name for typed in inputs for name in _list_one(typed)]
    if limits is not None and (problem := map_tasks_problem(len(names), limits, "the number of input files")):
        raise JobSpecError(problem)
    return [_input_file(name, text) for name in names]


def _list_one(typed: str) -> list[str]:
    """The file names one typed input stands for: itself, or the visible files under a directory (or
    under a URL's prefix)."""
    if storage.is_url(typed):
        try:
            names = [name for name, _ in storage.list_url(typed)]
        except FileNotFoundError:
            raise JobSpecError(f"input {typed!r} does not exist") from None
        except OSError as exc:
            raise JobSpecError(f"input {typed!r} cannot be listed: {exc}") from exc
        if not names:
            raise JobSpecError(f"input {typed!r} holds no (non-hidden) objects")
        return names
    if os.path.isdir(typed):
        names = [os.path.join(typed, rel) for rel in _visible_files(typed)]
        if not names:
            raise JobSpecError(f"input directory {typed!r} holds no (non-hidden) files")
        return names
    if not os.path.exists(typed):
        raise JobSpecError(f"input {typed!r} does not exist")
    if not os.path.isfile(typed):
        raise JobSpecError(f"input {typed!r} is neither a regular file nor a directory")
    return [typed]


def _visible_files(top: str) -> list[str]:
    """Relative paths of the regular files under `top`, skipping `storage.hidden` names ('.' and '_')."""
    found: list[tuple[str, ...]] = []

    def fail(exc: OSError) -> None:
        raise JobSpecError(f"cannot list input directory {exc.filename!r}: {exc.strerror}") from exc

    for dirpath, dirnames, filenames in os.walk(top, onerror=fail):
        dirnames[:] = [d for d in dirnames if not storage.hidden(d)]
        rel_dir = os.path.relpath(dirpath, top)
        for name in filenames:
            if not storage.hidden(name) and os.path.isfile(os.path.join(dirpath, name)):
                found.append(_parts(os.path.normpath(os.path.join(rel_dir, name))))
    return [os.path.join(*parts) for parts in sorted(found)]


def _parts(rel: str) -> tuple[str, ...]:
    return tuple(rel.split(os.sep))


def _input_file(name: str, text: bool = True) -> InputFile:
    """Check `name` can be read now, and (if `text`) that its start is text (decompressed, if it is
    compressed), so a bad input fails the job before it is queued."""
    try:
        with storage.open_input(name) as f:
            size = storage.size_of(f)
            head = f.read(TEXT_PROBE_BYTES)
            codec = compressed.detect(head[:compressed.MAGIC_BYTES])
            if codec:
                f.seek(0)
                with compressed.reading(name, codec, f) as stream:
                    head = stream.read(TEXT_PROBE_BYTES)
    except InputError as exc:
        raise JobSpecError(str(exc)) from exc
    except OSError as exc:
        raise JobSpecError(f"input {name!r} cannot be read: {exc.strerror or exc}") from exc
    if text and (nul := head.find(b"\0")) >= 0:
        where = f"at byte {nul}" + (" of its decompressed text" if codec else "")
        raise JobSpecError(f"input {name!r} is not text: it holds a NUL byte {where}")
    return InputFile(name=name, path=name if storage.is_url(name) else os.path.abspath(name), size=size, codec=codec)


def read_split(path: str, start: int, end: int) -> tuple[str, int]:
    """The lines that start in bytes [start, end) of `path`, and the 1-based line number of the first.

    Hadoop's rule: a split not at offset 0 skips the partial line it starts inside (the previous split
    owns it), and its last line is read to its end even past `end`. Splits are cut after a b"\\n", which
    never occurs inside a UTF-8 sequence, so decoding splits separately equals decoding the whole file.
    """
    with open(path, "rb") as f:
        first = 0 if start == 0 else _next_line_start(f, start - 1)
        stop = _next_line_start(f, end - 1) if end > first else first
        f.seek(first)
        data = f.read(stop - first)
        line = 1 + _count_newlines(f, first)
    return data.decode("utf-8", errors="replace"), line


def read_chunks(path: str, start: int, end: int, chunk_bytes: int = MAP_CHUNK_BYTES,
                count_lines: bool = True, codec: str = "", name: str = "") -> Iterator[tuple[str, int]]:
    """The split's text (as `read_split` reads it) in pieces of at most about `chunk_bytes`, with line numbers.

    Pieces end at a line end. A line longer than `chunk_bytes` is cut at its last whitespace within the
    limit (or, for a run without any, before a UTF-8 sequence), so words stay whole and memory stays
    bounded; the pieces of one line share its line number. Without `count_lines` every line number is 0:
    counting means reading the file up to the split, which only apps that take `first_line` need.

    A compressed file (`codec`) is one split: all of its decompressed text, whatever `start` and `end`.
    Raises InputError for a NUL byte (the file is not text) or a damaged compressed stream, naming the
    file as `name` (as the user typed it), else by `path`.
    """
    label = name or path
    if codec:
        with compressed.reading(path, codec, name=label) as stream:
            yield from _pieces(label, stream, None, chunk_bytes, 1 if count_lines else 0, count_lines)
        return
    with storage.open_input(path) as f:
        first = 0 if start == 0 else _next_line_start(f, start - 1)
        stop = _next_line_start(f, end - 1) if end > first else first
        line = 1 + _count_newlines(f, first) if count_lines else 0
        f.seek(first)
        yield from _pieces(label, f, stop - first, chunk_bytes, line, count_lines)


def _pieces(label: str, f: compressed.Stream | IO[bytes], limit: int | None, chunk_bytes: int, line: int,
            count_lines: bool) -> Iterator[tuple[str, int]]:
    """`read_chunks`' pieces of the next `limit` bytes of `f` (None: up to its end); errors name `label`."""
    pos, carry, done = 0, b"", limit == 0
    if done:
        yield "", line   # map still sees the (empty) split, as with `read_split`
    while not done or carry:
        want = max(chunk_bytes - len(carry), 1)
        if limit is not None:
            want = min(want, limit - pos)
        got = f.read(want) if not done else b""
        if (nul := got.find(b"\0")) >= 0:
            raise InputError(f"input {label!r} is not text: it holds a NUL byte (at byte {pos + nul} of the "
                             f"{'split' if limit is not None else 'decompressed text'})")
        pos += len(got)
        done = done or not got or (limit is not None and pos >= limit)
        data = carry + got
        del got
        if not data:
            if pos == 0:
                yield "", line   # an empty stream: map still sees it
            break
        cut = len(data) if done else _cut(data)
        piece, carry = (data, b"") if cut == len(data) else (data[:cut], data[cut:])   # no needless copy
        if not piece:
            continue   # one UTF-8 sequence longer than the chunk: read on
        text = piece.decode("utf-8", errors="replace")
        newlines = piece.count(b"\n") if count_lines else 0
        del data, piece   # the bytes go before map runs on the text
        yield text, line
        line += newlines


def _cut(data: bytes) -> int:
    """Where to end a piece of `data` when more follows: after a line end, else after whitespace."""
    cut = data.rfind(b"\n") + 1
    if cut:
        return cut
    cut = max(data.rfind(w) for w in _WHITESPACE) + 1
    if cut:
        return cut
    return _utf8_end(data)


def _utf8_end(data: bytes) -> int:
    """The length of `data` without a UTF-8 sequence that is cut off at its end."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:   # ASCII or a lead byte: the last sequence starts here
            need = 1 if byte < 0xC0 else 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(data) - back if need > back else len(data)
    return len(data)   # not UTF-8 anyway: cut anywhere


def _next_line_start(f: IO[bytes], pos: int) -> int:
    """The offset just past the first b"\\n" at or after `pos`, or the file's size if there is none."""
    f.seek(pos)
    while chunk := f.read(_CHUNK):
        found = chunk.find(b"\n")
        if found >= 0:
            return pos + found + 1
        pos += len(chunk)
    return pos


def _count_newlines(f: IO[bytes], stop: int) -> int:
    """How many b"\\n" occur in bytes [0, stop), read in chunks."""
    f.seek(0)
    count = 0
    remaining = stop
    while remaining > 0 and (chunk := f.read(min(_CHUNK, remaining))):
        count += chunk.count(b"\n")
        remaining -= len(chunk)
    return count
