"""Compressed input files: recognised by their first bytes, read decompressed as one stream.

The format is told by the file's magic number, not its name: a `.txt` that is really gzip is still read
right, and a `.gz` that is plain text is read as text. None of these formats can be cut at an arbitrary
byte offset, so a compressed file is one split (see `zmr.core.splits`).
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import IO, Protocol

import zstandard

from zmr import storage
from zmr.errors import InputError
from zmr.protocol.messages import Codec

__all__ = ["MAGIC_BYTES", "Codec", "Stream", "detect", "reading"]


class Stream(AbstractContextManager["Stream"], Protocol):
    """What reading needs of a file: bytes on `read`, b"" at its end."""

    def read(self, size: int = -1, /) -> bytes: ...

MAGIC_BYTES = 10   # enough of a file's start to tell every format apart

_GZIP = b"\x1f\x8b\x08"   # magic and the only compression method gzip defines (deflate)
_XZ = b"\xfd7zXZ\x00"
_ZSTD = b"\x28\xb5\x2f\xfd"
_BZ2_BLOCK = b"1AY&SY"    # bzip2's block magic (pi); an empty stream has the end-of-stream magic instead
_BZ2_END = b"\x17\x72\x45\x38\x50\x90"
# What each library raises on a damaged stream (zlib.error, EOFError, OSError, ValueError, ...).
_DECODE_ERRORS = (OSError, EOFError, ValueError, lzma.LZMAError, zstandard.ZstdError)


def detect(head: bytes) -> Codec:
    """The compression of a file that starts with `head` (its first `MAGIC_BYTES` bytes, or all of it)."""
    if head.startswith(_GZIP):
        return "gzip"
    if head.startswith(_XZ):
        return "xz"
    if head.startswith(_ZSTD):
        return "zstd"
    if (len(head) >= 10 and head.startswith(b"BZh") and 0x31 <= head[3] <= 0x39
            and head[4:10] in (_BZ2_BLOCK, _BZ2_END)):
        return "bz2"
    return ""


@contextlib.contextmanager
def reading(path: str, codec: str, raw: IO[bytes] | None = None, name: str = "") -> Iterator[Stream]:
    """The decompressed bytes of `path` (a local file or a URL: `zmr.storage`; or of `raw`, a file of it
    already open, read from its start), every member or frame in order. A damaged stream, found when it
    is opened or at any read, is an InputError naming the file (as `name`, else `path`): reading it again
    would give the same. An error reading the file itself stays an OSError (it may pass)."""
    if codec not in ("gzip", "bz2", "xz", "zstd"):
        raise ValueError(f"not a compression format: {codec!r}")
    try:
        with contextlib.ExitStack() as stack:
            source = raw if raw is not None else stack.enter_context(storage.open_input(path))
            if codec == "zstd":
                yield stack.enter_context(zstandard.ZstdDecompressor().stream_reader(
                    source, read_across_frames=True, closefd=False))
            else:
                yield stack.enter_context(gzip.GzipFile(fileobj=source, mode="rb") if codec == "gzip" else
                                          bz2.BZ2File(source, "rb") if codec == "bz2" else lzma.LZMAFile(source, "rb"))
    except _DECODE_ERRORS as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise
        raise InputError(f"input {name or path!r} is not a readable {codec} file: {type(exc).__name__}: {exc}") \
            from exc
