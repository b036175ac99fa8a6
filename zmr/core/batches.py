"""Partition batches: the map side's per-partition buffers, the wire encoding, and the reduce-side merge.

A batch is a sorted run: `[(key, [value, ...]), ...]` with keys ascending and unique. On the wire and
on disk it is a sequence of chunks, each a 4-byte little-endian length and a msgpack array of at most
`CHUNK_RECORDS` records, so a reader holds one small chunk per run in memory however large the run.
Because every run is sorted, a reducer k-way merges runs and streams each key's values into `reduce`.
"""

from __future__ import annotations

import bisect
import itertools
import struct
from collections.abc import Callable, Iterable, Iterator
from operator import itemgetter
from typing import Any

import msgspec
from xxhash import xxh3_64_intdigest

from zmr.errors import ProtocolError

Records = list[tuple[str, list[str]]]
Record = tuple[str, list[str]]
CHUNK_RECORDS = 256
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(list[tuple[str, list[str]]])
_LENGTH = struct.Struct("<I")
_RECORD_OVERHEAD = 4  # rough msgpack framing per key or value
_FIRST = itemgetter(0)


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
                 partition: Callable[[str, int], Any] | None,
                 combine: Callable[[str, list[str]], str] | None,
                 check_partition: Callable[[str, int, Any], int] | None = None) -> None:
        """`partition` None is the default partitioner, `partition_of`, computed inline. Anything else it
        returns than an int in range goes to `check_partition`, which raises or returns the one to use."""
        self._n = n_reduce
        self._check_partition = check_partition or _partition_in_range
        self._batch_bytes = batch_bytes
        self._max_bytes = max_bytes
        self._partition = partition
        self._combine = combine
        self._buffers: list[dict[str, list[str]]] = [{} for _ in range(n_reduce)]
        self._sizes = [0] * n_reduce
        self._total = 0
        self.records = 0   # pairs added so far

    def add(self, key: str, value: str) -> list[tuple[int, Records]]:
        """Buffer one record; returns the runs that became due (usually none)."""
        return [due for due in self.add_all([(key, value)]) if due is not None]

    def add_all(self, pairs: Iterable[Any], check: Callable[[Any], tuple[str, str]] | None = None,
                tick_every: int = 4096) -> Iterator[tuple[int, Records] | None]:
        """Buffer every pair; yields each run as it becomes due, and None after every `tick_every` pairs.

        This is the map side's hot loop, so it is one flat loop with the default partitioner inlined.
        Anything but a tuple of two str goes to `check`, which raises or returns the pair to use.
        """
        n, buffers, sizes = self._n, self._buffers, self._sizes
        partition, batch_bytes, max_bytes = self._partition, self._batch_bytes, self._max_bytes
        check_partition = self._check_partition
        hash64 = xxh3_64_intdigest
        count = 0
        for pair in pairs:
            if type(pair) is not tuple or len(pair) != 2 or type(pair[0]) is not str or type(pair[1]) is not str:
                if check is None:
                    raise TypeError(f"expected a (str, str) tuple, got {pair!r}")
                pair = check(pair)
            key, value = pair
            if partition is None:
                p = hash64(key.encode("utf-8", "surrogatepass")) % n
            else:
                p = partition(key, n)
                if type(p) is not int or not 0 <= p < n:
                    p = check_partition(key, n, p)
            buffer = buffers[p]
            values = buffer.get(key)
            if values is None:
                buffer[key] = [value]
                size = len(key) + len(value) + 2 * _RECORD_OVERHEAD
            else:
                values.append(value)
                size = len(value) + _RECORD_OVERHEAD
            sizes[p] += size
            self._total += size
            if sizes[p] >= batch_bytes:
                yield p, self._take(p)
            elif self._total > max_bytes:
                largest = max(range(n), key=sizes.__getitem__)
                yield largest, self._take(largest)
            count += 1
            if count == tick_every:
                self.records += count
                count = 0
                yield None
        self.records += count

    def drain(self) -> list[tuple[int, Records]]:
        """Every non-empty partition's run, for the end of the map task."""
        return [(p, self._take(p)) for p in range(self._n) if self._buffers[p]]

    def _take(self, p: int) -> Records:
        buffer, self._buffers[p] = self._buffers[p], {}
        self._total -= self._sizes[p]
        self._sizes[p] = 0
        combine = self._combine
        ordered = sorted(buffer.items(), key=_FIRST)   # by key alone: list.sort's fast path for str keys
        if combine is None:
            return ordered
        return [(k, [combine(k, vs)] if len(vs) > 1 else vs) for k, vs in ordered]


def _partition_in_range(key: str, n: int, p: Any) -> int:
    if not isinstance(p, int) or isinstance(p, bool) or not 0 <= p < n:
        raise ValueError(f"partition of {key!r} is {p!r}, not an int in range(0, {n})")
    return p


def merge_runs(runs: Iterable[Iterable[Record]]) -> Iterator[tuple[str, Iterator[str]]]:
    """K-way merge of sorted runs: each key once, in order, with an iterator over all its values."""
    return merge_chunked(_chunks(run) for run in runs)


def merge_chunked(runs: Iterable[Iterable[Records]]) -> Iterator[tuple[str, Iterator[str]]]:
    """`merge_runs` over runs given as chunks (lists of records), with the per-record work done in C.

    Each round takes the smallest last key among the chunks at hand as a bound: every record up to it
    is here (keys rise within a run, so nothing at or below the bound can follow in any run). Those
    records are cut out with bisect and put in order by one stable `list.sort`, which merges the
    presorted pieces natively; a key's values keep the order of the runs, as with a heap merge.
    Memory: one chunk per run, as with a heap merge.
    """
    sources = [iter(run) for run in runs]
    heads: list[Records] = []
    starts: list[int] = []
    live: list[Iterator[Records]] = []
    for source in sources:
        chunk = _next_chunk(source)
        if chunk:
            heads.append(chunk)
            starts.append(0)
            live.append(source)
    while heads:
        bound = min(head[-1][0] for head in heads)
        taken: Records = []
        for i, head in enumerate(heads):
            start = starts[i]
            if head[-1][0] <= bound:
                end = len(head)
            else:
                end = bisect.bisect_right(head, bound, lo=start, key=_FIRST)
            taken += head[start:end]
            starts[i] = end
        taken.sort(key=_FIRST)
        n = len(taken)
        j = 0
        while j < n:   # each key once, its values in run order (inline: this is the reducer's hot loop)
            key, values = taken[j]
            j += 1
            if j < n and taken[j][0] == key:
                group = [values]
                while j < n and taken[j][0] == key:
                    group.append(taken[j][1])
                    j += 1
                yield key, itertools.chain.from_iterable(group)
            else:
                yield key, iter(values)
        for i in reversed(range(len(heads))):
            if starts[i] == len(heads[i]):   # used up: its next chunk, or the run is done
                chunk = _next_chunk(live[i])
                if chunk:
                    heads[i], starts[i] = chunk, 0
                else:
                    del heads[i], starts[i], live[i]


def _next_chunk(source: Iterator[Records]) -> Records:
    """The run's next non-empty chunk, or [] once it is done."""
    for chunk in source:
        if chunk:
            return chunk
    return []


def _chunks(records: Iterable[Record]) -> Iterator[Records]:
    iterator = iter(records)
    while chunk := list(itertools.islice(iterator, CHUNK_RECORDS)):
        yield chunk
