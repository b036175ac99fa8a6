"""Partition batches: the map side's per-partition buffers, the wire encoding, and the reduce-side merge.

A batch is a sorted run of (key, value) pairs (keys str; values str, int or float): keys ascending, a key's
pairs side by side (one pair per key once a combiner has run). On the wire and on disk it is a sequence of
chunks, each a 4-byte little-endian length and a msgpack array of at most `CHUNK_RECORDS` [key, value] pairs,
so a reader holds one small chunk per run in memory however large the run. A chunk may be compressed (lz4
or zstd, `shuffle.compression`): the top two bits of its length word name the codec (0: none), so runs of
either kind, and chunks left raw because compressing them did not pay, read alike. Pairs stay flat, as map emitted
them: no list per key to build on the map side or to decode on the reduce side. Because every run is sorted, a
reducer k-way merges runs and streams each key's values into `reduce`, even a key whose pairs span many
chunks.

These are the runs of pairs. A plain app's map output whose values make columns (all str, all float, or
all ints within 64 bits: nearly every app) travels as column chunks instead (`zmr.core.pair_columns`);
`PartitionBuffers` takes over where they do not, and serves the later steps of a multi-step job.
"""

from __future__ import annotations

import bisect
import itertools
import operator
import struct
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import lz4.block
import msgspec
import zstandard

from zmr.core.partition import partition_of, partitions_of_encoded
from zmr.errors import ProtocolError
from zmr.protocol.messages import Compression

if TYPE_CHECKING:   # numpy is imported only by jobs of batch apps: plain jobs start without it
    from zmr.core.columns import Columns

Value = str | int | float
"""What a value may be: text, or a number the app adds up without converting it to text and back."""
Pair = tuple[str, Value]
Pairs = list[Pair]
CHUNK_RECORDS = 256
COLUMNS_MAGIC = 0xC1   # a column chunk's first byte (`zmr.core.columns`): one msgpack never writes
COLUMN_CHUNK_BYTES = 64 << 10   # a column chunk: per-chunk costs vanish; a merge holds one per run
INT_MIN, INT_MAX = -(1 << 63), (1 << 64) - 1   # the ints msgpack carries
_VALUE_TYPES = frozenset({str, int, float})
_NUMBER_BYTES = 9   # a number's msgpack size, at most
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(list[tuple[str, str | int | float]])
_LENGTH = struct.Struct("<I")
_PAIR_OVERHEAD = 8  # rough msgpack framing per pair
_CODEC_SHIFT = 30
MAX_CHUNK_BYTES = (1 << _CODEC_SHIFT) - 1   # a chunk's body, stored or decompressed
_CODEC_TAGS: dict[str, int] = {"none": 0, "lz4": 1, "zstd": 2}
_LZ4, _ZSTD = 1, 2
AUTO_MAX_SKIP = 64
_MIN_PACK = 256      # smaller bodies stay raw: a codec's framing eats what it would save
_ZSTD_LEVEL = 1      # the fastest of zstd's normal levels: the shuffle is CPU-bound more often than not
_FIRST = itemgetter(0)
_SECOND = itemgetter(1)
_DICT_ITEMS: type = type(iter({}.items()))   # what iter() of a dict's items gives


class Packer:
    """Encodes chunks, compressed with one codec where that makes a chunk at least an eighth smaller.

    One per task process and job: it holds the codec's reusable context (a fresh zstd context per chunk
    would cost more than the compression itself). `auto` is lz4 measured as it goes: after a chunk it
    did not shrink, the next 1, 2, 4 ... up to `AUTO_MAX_SKIP` chunks are left raw untried, and one
    that shrinks starts it over, so random data costs a lz4 pass over a few chunks in a hundred.
    """

    def __init__(self, compression: Compression = "none") -> None:
        if compression not in (*_CODEC_TAGS, "auto"):
            raise ValueError(f"compression must be one of {sorted(_CODEC_TAGS)} or auto, got {compression!r}")
        self.compression = compression
        self._auto = compression == "auto"
        self._tag = _CODEC_TAGS["lz4" if self._auto else compression]
        self._zstd = zstandard.ZstdCompressor(level=_ZSTD_LEVEL) if self._tag == _ZSTD else None
        self._skip = 0      # chunks still to leave raw untried (auto)
        self._backoff = 1   # chunks to skip after the next one that does not shrink (auto)

    def chunk(self, pairs: Pairs) -> bytes:
        """One length-prefixed chunk."""
        return self._framed(_ENCODER.encode(pairs), len(pairs))

    def columns(self, batch: Columns) -> bytes:
        """A batch app's sorted run: column chunks of about `COLUMN_CHUNK_BYTES` each."""
        from zmr.core import columns

        return b"".join(self._framed(columns.encode(piece), len(piece))
                        for piece in columns.chunks(batch, COLUMN_CHUNK_BYTES))

    def _framed(self, body: bytes, rows: int) -> bytes:
        if self._skip:
            self._skip -= 1
        elif self._tag and len(body) >= _MIN_PACK:
            packed = self._zstd.compress(body) if self._zstd is not None else lz4.block.compress(body, store_size=True)
            if len(packed) <= len(body) - len(body) // 8:
                self._backoff = 1
                return _LENGTH.pack(len(packed) | self._tag << _CODEC_SHIFT) + packed
            if self._auto:
                self._skip, self._backoff = self._backoff, min(AUTO_MAX_SKIP, self._backoff * 2)
        if len(body) > MAX_CHUNK_BYTES:
            raise ValueError(f"{rows} pairs take {len(body)} bytes, more than a chunk holds ({MAX_CHUNK_BYTES})")
        return _LENGTH.pack(len(body)) + body

    def batch(self, pairs: Pairs) -> bytes:
        return b"".join(self.chunk(pairs[i:i + CHUNK_RECORDS]) for i in range(0, len(pairs), CHUNK_RECORDS))


_RAW = Packer()


def encode_chunk(pairs: Pairs) -> bytes:
    """One length-prefixed chunk, uncompressed."""
    return _RAW.chunk(pairs)


def encode_batch(pairs: Pairs) -> bytes:
    """A batch of uncompressed chunks."""
    return _RAW.batch(pairs)


def decode_chunk(body: bytes | memoryview, codec: int = 0) -> Pairs:
    """Parse one chunk body (stored with `codec`, from its header); garbage raises ProtocolError, never
    anything else, and a compressed body may not claim to grow past `MAX_CHUNK_BYTES`."""
    if codec:
        body = _unpack(body, codec)
    if len(body) and body[0] == COLUMNS_MAGIC:
        from zmr.core.columns import decode

        return decode(body).pairs()
    try:
        return _DECODER.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed batch: {exc}") from exc


def decode_chunk_columns(body: bytes | memoryview, codec: int = 0, strict: bool = False) -> Columns:
    """One chunk body as a batch of columns (a msgpack chunk converted, or if `strict` refused with
    MixedColumns: a plain app's pairs may mix kinds of value a column cannot hold); garbage raises
    ProtocolError."""
    from zmr.core import columns

    if codec:
        body = _unpack(body, codec)
    if columns.is_columns(body):
        return columns.decode(body)
    if strict:
        raise columns.MixedColumns("a run of pairs among runs of columns")
    pairs = decode_chunk(body)
    try:
        return columns.Columns(columns.column_of([k for k, _ in pairs]), columns.column_of([v for _, v in pairs]))
    except columns.ColumnError as exc:
        raise ProtocolError(f"batch chunk whose pairs make no columns: {exc}") from exc


def unpacked(body: bytes | memoryview, codec: int) -> bytes | memoryview:
    """A chunk body as stored with `codec`, decompressed (see `_unpack`)."""
    return _unpack(body, codec) if codec else body


def _unpack(body: bytes | memoryview, codec: int) -> bytes:
    try:
        if codec == _LZ4:
            if len(body) < 4 or _LENGTH.unpack(body[:4])[0] > MAX_CHUNK_BYTES:
                raise ProtocolError("lz4 batch chunk without a size, or one past the largest chunk")
            return bytes(lz4.block.decompress(body))
        if codec == _ZSTD:
            size = zstandard.frame_content_size(body)
            if not 0 <= size <= MAX_CHUNK_BYTES:
                raise ProtocolError("zstd batch chunk without a content size, or one past the largest chunk")
            return bytes(zstandard.ZstdDecompressor().decompress(body, max_output_size=MAX_CHUNK_BYTES))
    except (lz4.block.LZ4BlockError, zstandard.ZstdError) as exc:
        raise ProtocolError(f"malformed compressed batch chunk: {exc}") from exc
    raise ProtocolError(f"batch chunk compressed with an unknown codec ({codec})")


def chunk_header(header: bytes | memoryview, remaining: int) -> tuple[int, int]:
    """The (codec, body length) a chunk header announces, the length checked against what is left of the run."""
    if len(header) < _LENGTH.size:
        raise ProtocolError("truncated batch chunk header")
    (word,) = _LENGTH.unpack(header[:_LENGTH.size])
    codec, length = word >> _CODEC_SHIFT, word & MAX_CHUNK_BYTES
    if length > remaining - _LENGTH.size:
        raise ProtocolError(f"batch chunk of {length} bytes overruns its run")
    return int(codec), int(length)


def iter_batch(payload: bytes | memoryview) -> Iterator[Pair]:
    """The pairs of an in-memory batch, one chunk decoded at a time."""
    view = memoryview(payload)
    pos = 0
    while pos < len(view):
        codec, length = chunk_header(view[pos:pos + _LENGTH.size], len(view) - pos)
        start = pos + _LENGTH.size
        yield from decode_chunk(view[start:start + length], codec)
        pos = start + length


def decode_batch(payload: bytes | memoryview) -> Pairs:
    """Every pair of a batch; garbage raises ProtocolError, never anything else."""
    return list(iter_batch(payload))


HEADER_BYTES = _LENGTH.size


class PartitionBuffers:
    """Map output by partition; hands back a sorted, combined run when a partition fills.

    `batch_bytes` bounds one batch, `max_bytes` bounds everything buffered (the largest partition is
    flushed first), so a mapper's memory stays bounded whatever the app emits. Pairs are taken from
    map a block at a time and checked, partitioned and filed by C-level passes over the block; a block
    is sized from the pairs seen so far to about a quarter of the smaller bound, so a bound is overshot
    by little.
    """

    MAX_BLOCK = 8192

    def __init__(self, n_reduce: int, batch_bytes: int, max_bytes: int,
                 partition: Callable[[str, int], Any] | None,
                 combine: Callable[[str, list[Value]], Value] | None,
                 check_partition: Callable[[str, int, Any], int] | None = None) -> None:
        """`partition` None is the default partitioner, `partition_of`, computed in bulk. Anything else it
        returns than an int in range goes to `check_partition`, which raises or returns the one to use."""
        self._n = n_reduce
        self._check_partition = check_partition or _partition_in_range
        self._batch_bytes = batch_bytes
        self._max_bytes = max_bytes
        self._partition = partition
        self._combine = combine
        self._pairs: list[Pairs] = [[] for _ in range(n_reduce)]
        self._sizes = [0] * n_reduce
        self._sources = [0] * n_reduce      # the `add_all` call whose pairs a partition holds (0: none yet)
        self._distinct = [True] * n_reduce  # whether its keys are known to be distinct (no combine to try)
        self._calls = 0
        self._total = 0
        self._block_bytes = max(1, min(batch_bytes, max_bytes) // 4)
        self._block = self._block_for(16)
        self.records = 0   # pairs added so far

    def add(self, key: str, value: str) -> list[tuple[int, Pairs]]:
        """Buffer one pair; returns the runs that became due (usually none)."""
        return [due for due in self.add_all([(key, value)]) if due is not None]

    def add_all(self, pairs: Iterable[Any], check: Callable[[Any], Pair] | None = None,
                ) -> Iterator[tuple[int, Pairs] | None]:
        """Buffer every pair; yields each run as it becomes due, and None after every block (a tick).

        Anything but a tuple of two str goes to `check`, which raises or returns the pair to use. Pairs
        from a dict's items (a `Counter(...).items()`, say) have distinct keys: a partition that holds only
        those of one call has nothing to combine, and is not searched for equal keys.
        """
        source = iter(pairs)
        self._calls += 1
        call = self._calls if type(source) is _DICT_ITEMS else -1
        while block := list(itertools.islice(source, self._block)):
            block, text = _checked(block, check)
            added = self._file(block, self._partitions(block), text, call)
            self.records += len(block)
            self._block = self._block_for(added / len(block))
            yield from self._due()
            yield None

    def drain(self) -> list[tuple[int, Pairs]]:
        """Every non-empty partition's run, for the end of the map task."""
        return [(p, self._take(p)) for p in range(self._n) if self._pairs[p]]

    def _block_for(self, pair_bytes: float) -> int:
        return max(1, min(self.MAX_BLOCK, int(self._block_bytes / max(pair_bytes, 1.0))))

    def _partitions(self, block: Pairs) -> list[int] | None:
        """Each pair's partition; None when there is one partition and no app partitioner."""
        return key_partitions(list(map(_FIRST, block)), self._n, self._partition, self._check_partition)

    def _file(self, block: Pairs, parts: list[int] | None, text: bool | None, call: int) -> int:
        """Append the block's pairs to their partitions; returns the bytes added. `text`: whether all
        values are str (True), none is (False), or some are (None). Each partition is charged its share
        of the block's bytes by its count of pairs: one pass over the block, not one per partition."""
        lists = self._pairs
        added = sum(map(len, map(_FIRST, block))) + _PAIR_OVERHEAD * len(block) + _values_bytes(block, text)
        if parts is None:
            lists[0] += block
            grown = [(0, len(block))]
        else:
            marks = [len(pairs) for pairs in lists]
            appends = [pairs.append for pairs in lists]
            for pair, p in zip(block, parts, strict=True):
                appends[p](pair)
            grown = [(p, len(lists[p]) - mark) for p, mark in enumerate(marks) if len(lists[p]) > mark]
        sizes, sources, distinct = self._sizes, self._sources, self._distinct
        for p, count in grown:
            share = -(-added * count // len(block))
            sizes[p] += share
            self._total += share
            if sources[p] != call:
                distinct[p] = call > 0 and not sources[p]
                sources[p] = call
        return added

    def _due(self) -> Iterator[tuple[int, Pairs]]:
        return due_runs(self._sizes, self._batch_bytes, self._max_bytes, lambda: self._total, self._take)

    def _take(self, p: int) -> Pairs:
        pairs, self._pairs[p] = self._pairs[p], []
        self._total -= self._sizes[p]
        self._sizes[p] = 0
        distinct, self._distinct[p], self._sources[p] = self._distinct[p], True, 0
        pairs.sort(key=_FIRST)   # stable, by key alone (list.sort's fast path for str keys)
        combine = self._combine
        if combine is not None and len(pairs) > 1 and not distinct:
            keys = list(map(_FIRST, pairs))
            if any(map(operator.eq, keys, itertools.islice(keys, 1, None))):
                return _combined(pairs, combine)
        return pairs


def due_runs(sizes: list[int], batch_bytes: int, max_bytes: int, total: Callable[[], int],
             take: Callable[[int], Any]) -> Iterator[tuple[int, Any]]:
    """The runs a map's buffers hand back now: every partition of `batch_bytes` or more, then the largest
    while everything held (`total()`, which `take` lowers) is over `max_bytes`."""
    for p in range(len(sizes)):
        if sizes[p] >= batch_bytes:
            yield p, take(p)
    while total() > max_bytes:
        largest = max(range(len(sizes)), key=sizes.__getitem__)
        yield largest, take(largest)


def key_partitions(keys: list[str], n: int, partition: Callable[[str, int], Any] | None,
                   check: Callable[[str, int, Any], int]) -> list[int] | None:
    """Each key's partition: the app's `partition` (anything but an int in range goes to `check`, which
    raises or returns the one to use), else `partition_of` computed in bulk; None when there is one
    partition and no app partitioner."""
    if partition is None:
        if n == 1:
            return None
        try:
            return list(partitions_of_encoded(map(str.encode, keys), n))
        except UnicodeEncodeError:   # a lone surrogate: encoded as `partition_of` does
            return [partition_of(key, n) for key in keys]
    parts = list(map(partition, keys, itertools.repeat(n, len(keys))))
    if set(map(type, parts)) == {int} and min(parts) >= 0 and max(parts) < n:
        return parts
    return [p if type(p) is int and 0 <= p < n else check(key, n, p) for key, p in zip(keys, parts, strict=True)]


def _checked(block: list[Any], check: Callable[[Any], Pair] | None) -> tuple[Pairs, bool | None]:
    """The block as pairs, with whole-block type tests and `check` for whatever fails them, and whether
    its values are all str (True), none is (False), or some are (None)."""
    if (set(map(type, block)) == {tuple} and set(map(len, block)) == {2}
            and set(map(type, map(_FIRST, block))) == {str}):
        kinds = set(map(type, map(_SECOND, block)))
        if kinds == {str}:
            return block, True
        if kinds <= _VALUE_TYPES and (int not in kinds or _ints_fit(block, kinds)):
            return block, None if str in kinds else False
    block = [pair if is_pair(pair) else _check_one(pair, check) for pair in block]
    kinds = set(map(type, map(_SECOND, block)))
    return block, True if kinds == {str} else None if str in kinds else False


def _ints_fit(block: Pairs, kinds: set[type]) -> bool:
    values = list(map(_SECOND, block)) if kinds == {int} else [v for _, v in block if type(v) is int]
    return INT_MIN <= min(values) and max(values) <= INT_MAX


def is_value(value: Any) -> bool:
    """Whether `value` may be a value: a str, a float, or an int that msgpack carries (not a bool)."""
    kind = type(value)
    return kind is str or kind is float or (kind is int and INT_MIN <= value <= INT_MAX)


def is_pair(pair: Any) -> bool:
    return type(pair) is tuple and len(pair) == 2 and type(pair[0]) is str and is_value(pair[1])


def _check_one(pair: Any, check: Callable[[Any], Pair] | None) -> Pair:
    if check is None:
        raise TypeError(f"expected a (str, str | int | float) tuple, got {pair!r}")
    return check(pair)


def _values_bytes(pairs: Pairs, text: bool | None) -> int:
    if text:
        return sum(map(len, map(_SECOND, pairs)))
    if text is False:
        return _NUMBER_BYTES * len(pairs)
    return sum(len(v) if type(v) is str else _NUMBER_BYTES for _, v in pairs)


def _combined(pairs: Pairs, combine: Callable[[str, list[Value]], Value]) -> Pairs:
    """Sorted pairs with each key's values combined into one."""
    out: Pairs = []
    for key, group in itertools.groupby(pairs, _FIRST):
        values = list(map(_SECOND, group))
        out.append((key, values[0] if len(values) == 1 else combine(key, values)))
    return out


def _partition_in_range(key: str, n: int, p: Any) -> int:
    if not isinstance(p, int) or isinstance(p, bool) or not 0 <= p < n:
        raise ValueError(f"partition of {key!r} is {p!r}, not an int in range(0, {n})")
    return p


def merge_runs(runs: Iterable[Iterable[Pair]]) -> Iterator[tuple[str, Iterator[Value]]]:
    """K-way merge of sorted runs: each key once, in order, with an iterator over all its values."""
    return merge_chunked(_chunks(run) for run in runs)


def merge_chunked(runs: Iterable[Iterable[Pairs]]) -> Iterator[tuple[str, Iterator[Value]]]:
    """`merge_runs` over runs given as chunks (lists of pairs), with the per-pair work done in C.

    Each round takes the smallest last key among the chunks at hand as a bound: every pair below it is
    here (keys rise within a run). Those pairs and the bound's are cut out with bisect and put in order
    by one stable `list.sort`, which merges the presorted pieces natively. Only the bound key can go on
    in a run's next chunk; its values iterator then reads on through those chunks, one at a time, so a
    key with more values than fit in memory streams into `reduce` too. Memory: one chunk per run.
    """
    heads: list[Pairs] = []
    starts: list[int] = []
    live: list[Iterator[Pairs]] = []
    for run in runs:
        source = iter(run)
        chunk = _next_chunk(source)
        if chunk:
            heads.append(chunk)
            starts.append(0)
            live.append(source)

    def move_on(i: int) -> None:
        """Run i's chunk is used up: load its next one, or drop the finished run."""
        chunk = _next_chunk(live[i])
        if chunk:
            heads[i], starts[i] = chunk, 0
        else:
            del heads[i], starts[i], live[i]

    def rest_of(key: str) -> Iterator[Value]:
        """`key`'s values in the chunks after this round's: only runs whose next pair has the key."""
        i = 0
        while i < len(heads):
            head, start = heads[i], starts[i]
            if head[start][0] != key:
                i += 1
                continue
            end = bisect.bisect_right(head, key, lo=start, key=_FIRST)
            starts[i] = end
            yield from map(_SECOND, head[start:end])
            if end < len(head):
                i += 1
            else:
                move_on(i)   # look at run i again: its next chunk (or the run now at i) may go on with `key`
    while heads:
        bound = min(head[-1][0] for head in heads)
        taken: Pairs = []
        for i, head in enumerate(heads):
            start = starts[i]
            end = len(head) if head[-1][0] <= bound else bisect.bisect_right(head, bound, lo=start, key=_FIRST)
            taken += head[start:end]
            starts[i] = end
        for i in reversed(range(len(heads))):
            if starts[i] == len(heads[i]):
                move_on(i)
        continues = any(head[start][0] == bound for head, start in zip(heads, starts, strict=True))
        taken.sort(key=_FIRST)
        for key, group in itertools.groupby(taken, _FIRST):   # each key once, its values in run order
            values = map(_SECOND, group)
            if continues and key == bound:   # the last key, which goes on in the runs' next chunks
                more = rest_of(key)
                yield key, itertools.chain(values, more)
                deque(more, maxlen=0)   # what reduce left unread
            else:
                yield key, values


def _next_chunk(source: Iterator[Pairs]) -> Pairs:
    """The run's next non-empty chunk, or [] once it is done."""
    for chunk in source:
        if chunk:
            return chunk
    return []


def _chunks(pairs: Iterable[Pair]) -> Iterator[Pairs]:
    iterator = iter(pairs)
    while chunk := list(itertools.islice(iterator, CHUNK_RECORDS)):
        yield chunk
