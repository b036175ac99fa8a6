"""Compressed input files: recognised by their first bytes, read decompressed as one stream.

The format is told by the file's magic number, not its name: a `.txt` that is really gzip is still read
right, and a `.gz` that is plain text is read as text. None of these formats can be cut at an arbitrary
byte offset, so a compressed file is one split (see `zmr.core.splits`).
"""

from __future__ import annotations

import bz2
import gzip
import lzma
from contextlib import AbstractContextManager
from typing import Any, Protocol

import zstandard

from zmr import storage
from zmr.protocol.messages import Codec

__all__ = ["DECODE_ERRORS", "MAGIC_BYTES", "Codec", "Stream", "detect", "open_decompressed"]


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
DECODE_ERRORS = (OSError, EOFError, ValueError, lzma.LZMAError, zstandard.ZstdError)


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


def open_decompressed(path: str, codec: str) -> Stream:
    """`path` (a local file or a URL: `zmr.storage`) opened for reading its decompressed bytes (every
    member or frame of it, in order); closing it closes the file too."""
    if codec not in ("gzip", "bz2", "xz", "zstd"):
        raise ValueError(f"not a compression format: {codec!r}")
    raw = storage.open_input(path)
    try:
        if codec == "zstd":
            return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=True)
        opened: Stream = (gzip.GzipFile(fileobj=raw, mode="rb") if codec == "gzip" else
                          bz2.BZ2File(raw, "rb") if codec == "bz2" else lzma.LZMAFile(raw, "rb"))
    except BaseException:
        raw.close()
        raise
    return _Closing(opened, raw)


class _Closing:
    """A decompressing reader that closes the file it reads when it is closed (gzip does not)."""

    def __init__(self, reader: Stream, raw: Any) -> None:
        self._reader, self._raw = reader, raw

    def read(self, size: int = -1, /) -> bytes:
        return self._reader.read(size)

    def __enter__(self) -> _Closing:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._reader.__exit__(None, None, None)
        finally:
            self._raw.close()
