"""Partition batches: the map side's per-partition buffers, the wire encoding, and the reduce-side merge.

A batch is a sorted run: `[(key, [value, ...]), ...]` with keys ascending and unique, msgpack-encoded.
Because every batch is sorted, a reducer k-way merges runs and streams each key's values into `reduce`.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator
from operator import itemgetter

import msgspec

from zmr.errors import ProtocolError

Records = list[tuple[str, list[str]]]
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(list[tuple[str, list[str]]])
_RECORD_OVERHEAD = 4  # rough msgpack framing per key or value


def encode_batch(records: Records) -> bytes:
    return _ENCODER.encode(records)


def decode_batch(payload: bytes | memoryview) -> Records:
    """Parse a peer's batch; garbage raises ProtocolError, never anything else."""
    try:
        return _DECODER.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ProtocolError(f"malformed batch: {exc}") from exc


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
