"""Partition batches: the map side's per-partition buffers, the wire encoding, and the reduce-side merge.

A batch is a sorted run: `[(key, [value, ...]), ...]` with keys ascending and unique. On the wire and
on disk it is a sequence of chunks, each a 4-byte little-endian length and a msgpack array of at most
`CHUNK_RECORDS` records, so a reader holds one small chunk per run in memory however large the run.
Because every run is sorted, a reducer k-way merges runs and streams each key's values into `reduce`.
"""

from __future__ import annotations

import heapq
import itertools
import struct
from collections.abc import Callable, Iterable, Iterator
from operator import itemgetter

import msgspec

from zmr.errors import ProtocolError

Records = list[tuple[str, list[str]]]
Record = tuple[str, list[str]]
CHUNK_RECORDS = 256
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(list[tuple[str, list[str]]])
_LENGTH = struct.Struct("<I")
_RECORD_OVERHEAD = 4  # rough msgpack framing per key or value


def encode_chunk(records: Records) -> bytes:
    """One length-prefixed chunk."""
    body = _ENCODER.encode(records)
    return _LENGTH.pack(len(body)) + body


def encode_batch(records: Records) -> bytes:
    return b"".join(encode_chunk(records[i:i + CHUNK_RECORDS]) for i in range(0, len(records), CHUNK_RECORDS))


def decode_chunk(body: bytes | memoryview) -> Records:
    """Parse one chunk body; garbage raises ProtocolError, never anything else."""
    try:
        return _DECODER.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed batch: {exc}") from exc


def chunk_length(header: bytes | memoryview, remaining: int) -> int:
    """The body length a chunk header announces, checked against what is left of the run."""
    if len(header) < _LENGTH.size:
        raise ProtocolError("truncated batch chunk header")
    (length,) = _LENGTH.unpack(header[:_LENGTH.size])
    if length > remaining - _LENGTH.size:
        raise ProtocolError(f"batch chunk of {length} bytes overruns its run")
    return int(length)


def iter_batch(payload: bytes | memoryview) -> Iterator[Record]:
    """The records of an in-memory batch, one chunk decoded at a time."""
    view = memoryview(payload)
    pos = 0
    while pos < len(view):
        length = chunk_length(view[pos:pos + _LENGTH.size], len(view) - pos)
        start = pos + _LENGTH.size
        yield from decode_chunk(view[start:start + length])
        pos = start + length


def decode_batch(payload: bytes | memoryview) -> Records:
    """Every record of a batch; garbage raises ProtocolError, never anything else."""
    return list(iter_batch(payload))


HEADER_BYTES = _LENGTH.size


class PartitionBuffers:
    """Map output grouped by partition; hands back a sorted, combined run when a partition fills.

    `batch_bytes` bounds one batch, `max_bytes` bounds everything buffered (the largest partition
    is flushed first), so a mapper's memory stays bounded whatever the app emits.
    """

    def __init__(self, n_reduce: int, batch_bytes: int, max_bytes: int,
                 partition: Callable[[str, int], int],
                 combine: Callable[[str, list[str]], str] | None) -> None:
        self._n = n_reduce
        self._batch_bytes = batch_bytes
        self._max_bytes = max_bytes
        self._partition = partition
        self._combine = combine
        self._buffers: list[dict[str, list[str]]] = [{} for _ in range(n_reduce)]
        self._sizes = [0] * n_reduce
        self._total = 0

    def add(self, key: str, value: str) -> list[tuple[int, Records]]:
        """Buffer one record; returns the runs that became due (usually none)."""
        p = self._partition(key, self._n)
        values = self._buffers[p].get(key)
        if values is None:
            self._buffers[p][key] = [value]
            size = len(key) + len(value) + 2 * _RECORD_OVERHEAD
        else:
            values.append(value)
            size = len(value) + _RECORD_OVERHEAD
        self._sizes[p] += size
        self._total += size
        if self._sizes[p] >= self._batch_bytes:
            return [(p, self._take(p))]
        if self._total > self._max_bytes:
            largest = max(range(self._n), key=self._sizes.__getitem__)
            return [(largest, self._take(largest))]
        return []

    def drain(self) -> list[tuple[int, Records]]:
        """Every non-empty partition's run, for the end of the map task."""
        return [(p, self._take(p)) for p in range(self._n) if self._buffers[p]]

    def _take(self, p: int) -> Records:
        buffer, self._buffers[p] = self._buffers[p], {}
        self._total -= self._sizes[p]
        self._sizes[p] = 0
        combine = self._combine
        if combine is None:
            return sorted(buffer.items())
        return [(k, [combine(k, vs)] if len(vs) > 1 else vs) for k, vs in sorted(buffer.items())]


def merge_runs(runs: Iterable[Iterable[tuple[str, list[str]]]]) -> Iterator[tuple[str, Iterator[str]]]:
    """K-way merge of sorted runs: each key once, in order, with an iterator over all its values."""
    merged = heapq.merge(*runs, key=itemgetter(0))
    for key, group in itertools.groupby(merged, key=itemgetter(0)):
        yield key, itertools.chain.from_iterable(values for _, values in group)
