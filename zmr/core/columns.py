"""Columnar batches: a batch app's pairs as a key column and a value column, handled by numpy kernels.

A batch app's `map_batch` returns whole columns, and from there to the output file its pairs are never
Python objects one by one: they are partitioned, sorted, encoded, merged and written by array passes.

A column holds one kind of item:

    FIXED   bytes of one width: a 2-D uint8 array (n, width); TeraSort's keys and payloads
    BYTES   bytes of any length: flat uint8 data and int64 offsets (n + 1)
    STR     text, stored as BYTES of its UTF-8 (surrogates kept); read back as str
    INT     int64
    FLOAT   float64

Order is (key, value): bytes and text by their bytes (UTF-8 bytes sort as Python sorts str), numbers as
numbers. Sorting by the value too where keys tie makes the output of a job whose pairs are written
without a reduce one exact answer, whatever order the maps ran in.

A FIXED key column sorts by a least-significant-digit pass of numpy's stable sort per 8-byte big-endian
word (one pass for keys of up to 8 bytes, two for TeraSort's 10). A BYTES or STR key column sorts by its
first 8-byte word, then only the rows still tied by their next words and lengths (`var_order`): no key
becomes a Python object. Where the compiled kernels were built (`zmr.core.native`), `var_order`,
`same_keys` and the gather of byte-string rows are C passes instead, with the same answers. Rows with
equal keys are then ordered by value, ranked by the value column's own order, in one more array pass over
those rows.

A column chunk's body (see `zmr.core.batches` for the chunk around it) starts with 0xC1, a byte msgpack
never writes, so it is told apart from a msgpack chunk by its first byte; then a version, the row count,
and each column's kind, width and arrays. A decoder checks that every size adds up to the body exactly.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from zmr.core.native import kernels
from zmr.core.partition import encoded_hash
from zmr.errors import ProtocolError

FIXED, BYTES, STR, INT, FLOAT = 1, 2, 3, 4, 5
KIND_NAMES = {FIXED: "bytes (fixed width)", BYTES: "bytes", STR: "str", INT: "int", FLOAT: "float"}
MAGIC = 0xC1   # batches.COLUMNS_MAGIC
VERSION = 2   # 2: narrow ints and lengths (see `encode`); chunks of version 1 still read
_HEAD = struct.Struct("<BBIBIBI")   # magic, version, rows, key kind, key width, value kind, value width
_U8 = np.dtype(np.uint8)


@dataclass(frozen=True, eq=False)
class Column:
    """One column of a batch (see the module docstring for the kinds and their arrays)."""

    kind: int
    data: np.ndarray
    offsets: np.ndarray | None = None   # BYTES and STR only

    def __len__(self) -> int:
        return len(self.offsets) - 1 if self.offsets is not None else len(self.data)

    @property
    def width(self) -> int:
        return int(self.data.shape[1]) if self.kind == FIXED else 0

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes) + (int(self.offsets.nbytes) if self.offsets is not None else 0)

    def take(self, index: np.ndarray) -> Column:
        """The items at `index`, in its order."""
        if self.offsets is None:
            return Column(self.kind, np.take(self.data, index, axis=0))   # np.take: ~3x fancy indexing's speed
        if kernels is not None:
            data, offsets = kernels.take_bytes(*_buffers(self), np.ascontiguousarray(index, np.int64))
            return Column(self.kind, np.frombuffer(data, _U8), np.frombuffer(offsets, np.int64))
        return self._numpy_take(index)

    def _numpy_take(self, index: np.ndarray) -> Column:
        """`take` of a BYTES or STR column by numpy passes, where the kernel was not built."""
        assert self.offsets is not None
        starts, lengths = self.offsets[:-1][index], np.diff(self.offsets)[index]
        offsets = np.zeros(len(index) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        if not offsets[-1]:
            return Column(self.kind, np.zeros(0, _U8), offsets)
        positions = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
        return Column(self.kind, self.data[positions], offsets)

    def slice(self, start: int, end: int) -> Column:
        if self.offsets is None:
            return Column(self.kind, self.data[start:end])
        offsets = self.offsets[start:end + 1]
        return Column(self.kind, self.data[offsets[0]:offsets[-1]], offsets - offsets[0])

    def item(self, i: int) -> Any:
        if self.kind == FIXED:
            return self.data[i].tobytes()
        if self.offsets is not None:
            raw = self.data[self.offsets[i]:self.offsets[i + 1]].tobytes()
            return raw.decode("utf-8", "surrogatepass") if self.kind == STR else raw
        return self.data[i].item()

    def tolist(self) -> list[Any]:
        if self.kind == FIXED:
            raw, width = self.data.tobytes(), self.width
            return [raw[i:i + width] for i in range(0, len(raw), width)] if width else [b""] * len(self)
        if self.offsets is not None:
            raw, ends = self.data.tobytes(), self.offsets.tolist()
            items = [raw[a:b] for a, b in itertools.pairwise(ends)]
            return [item.decode("utf-8", "surrogatepass") for item in items] if self.kind == STR else items
        return self.data.tolist()


def concat(columns: Sequence[Column]) -> Column:
    """One column of the items of `columns` (all of one kind and width), in order."""
    first = columns[0]
    if len(columns) == 1:
        return first
    if any(c.kind != first.kind or c.width != first.width for c in columns):
        raise MixedColumns(f"columns of {sorted({KIND_NAMES[c.kind] for c in columns})} cannot be put together")
    if first.offsets is None:
        return Column(first.kind, np.concatenate([c.data for c in columns]))
    lengths = np.concatenate([np.diff(c.offsets) for c in columns if c.offsets is not None])
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return Column(first.kind, np.concatenate([c.data for c in columns]), offsets)


@dataclass(frozen=True, eq=False)
class Columns:
    """A batch: n pairs as a key column and a value column of n items each."""

    keys: Column
    values: Column

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes + self.values.nbytes

    def take(self, index: np.ndarray) -> Columns:
        return Columns(self.keys.take(index), self.values.take(index))

    def slice(self, start: int, end: int) -> Columns:
        return Columns(self.keys.slice(start, end), self.values.slice(start, end))

    def row(self, i: int) -> tuple[Any, Any]:
        return self.keys.item(i), self.values.item(i)

    def pairs(self) -> list[tuple[Any, Any]]:
        return list(zip(self.keys.tolist(), self.values.tolist(), strict=True))


def concat_columns(batches: Sequence[Columns]) -> Columns:
    return Columns(concat([b.keys for b in batches]), concat([b.values for b in batches]))


# ------------------------------------------------------------------ from what an app returns

class ColumnError(ValueError):
    """What a batch app returned is not a column of one kind."""


class MixedColumns(ValueError):
    """Batches to put together hold columns of different kinds (a map that emitted ints, another floats),
    or a run of pairs is met among runs of columns: merge them as pairs."""


def column_of(items: Any) -> Column:
    """A column from an app's array or list: a 2-D uint8 array (FIXED), a 1-D int or float array, or a
    list of bytes, of str, of ints (64-bit) or of floats. Anything else is a ColumnError."""
    if isinstance(items, np.ndarray):
        return _array_column(items)
    if not isinstance(items, list | tuple):
        raise ColumnError(f"expected a numpy array or a list, got {type(items).__name__}")
    kinds = set(map(type, items))
    if not items or kinds == {bytes}:
        return bytes_column(BYTES, list(items))
    if kinds == {str}:
        return text_column(items)
    if kinds == {int}:
        try:
            return Column(INT, np.array(items, dtype=np.int64))
        except OverflowError:
            raise ColumnError("an int does not fit in 64 bits (-2**63 .. 2**63-1)") from None
    if kinds <= {int, float}:
        return Column(FLOAT, np.array(items, dtype=np.float64))
    names = ", ".join(sorted(k.__name__ for k in kinds))
    raise ColumnError(f"expected items all bytes, all str, all int or all float, got {names}")


def _array_column(items: np.ndarray) -> Column:
    if items.ndim == 2 and items.dtype == _U8:
        return Column(FIXED, items)
    if items.ndim == 1 and items.dtype.kind in "iub" and items.dtype != np.uint64:
        return Column(INT, items.astype(np.int64))
    if items.ndim == 1 and items.dtype.kind == "f":
        return Column(FLOAT, items.astype(np.float64))
    if items.ndim == 1 and items.dtype.kind == "S":
        return bytes_column(BYTES, items.tolist())
    raise ColumnError(f"expected a 2-D uint8 array (fixed-width bytes) or a 1-D int or float array, got a "
                      f"{items.ndim}-D {items.dtype} array")


def text_column(items: Sequence[str]) -> Column:
    """A STR column of `items`: text that is all ASCII is joined and encoded once, its lengths those of
    the str; other text is encoded item by item (UTF-8, surrogates kept)."""
    joined = "".join(items)
    if not joined.isascii():
        try:
            return bytes_column(STR, list(map(str.encode, items)))
        except UnicodeEncodeError:   # a lone surrogate, kept as `partition_of` keeps it
            return bytes_column(STR, [s.encode("utf-8", "surrogatepass") for s in items])
    offsets = np.zeros(len(items) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, items), np.int64, len(items)), out=offsets[1:])
    return Column(STR, np.frombuffer(joined.encode("ascii"), _U8), offsets)


def bytes_column(kind: int, items: list[bytes]) -> Column:
    """A BYTES column of `items`, or a STR one of their UTF-8 (as `kind` says)."""
    offsets = np.zeros(len(items) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, items), np.int64, len(items)), out=offsets[1:])
    return Column(kind, np.frombuffer(b"".join(items), _U8), offsets)


def columns_of(result: Any) -> Columns:
    """A batch from `map_batch`'s (keys, values); a ColumnError says what is wrong."""
    if not (isinstance(result, tuple) and len(result) == 2):
        raise ColumnError(f"expected a (keys, values) tuple, got {type(result).__name__}")
    keys, values = column_of(result[0]), column_of(result[1])
    if keys.kind in (INT, FLOAT):
        raise ColumnError("keys must be bytes or str")
    if len(keys) != len(values):
        raise ColumnError(f"{len(keys)} keys but {len(values)} values")
    return Columns(keys, values)


# ------------------------------------------------------------------ partitioning and order

def hash_partitions(keys: Column, n: int) -> np.ndarray:
    """The default partitioner over a column: xxh3 of each key's bytes modulo n, so a key lands where
    `zmr.core.partition.partition_of` puts it (a str key hashes its UTF-8, as there)."""
    if n == 1:
        return np.zeros(len(keys), np.int64)
    raw = keys.tolist() if keys.kind != STR else Column(BYTES, keys.data, keys.offsets).tolist()
    return partitions_of_bytes(raw, n)


def partitions_of_bytes(raw: list[bytes], n: int) -> np.ndarray:
    """`partition_of` of keys given as bytes (a str key as its UTF-8, surrogates kept): the hashes in one
    C-level pass, the modulo in one array pass."""
    return (np.fromiter(map(encoded_hash, raw), np.uint64, len(raw)) % np.uint64(n)).astype(np.int64)


def checked_partitions(result: Any, rows: int, n: int) -> np.ndarray:
    """An app's `partition_batch` result as an int array, or a ColumnError saying why it is not one."""
    parts = np.asarray(result)
    if parts.shape != (rows,) or parts.dtype.kind not in "iu":
        raise ColumnError(f"expected {rows} partition numbers (a 1-D int array), got {parts.dtype} of shape "
                          f"{parts.shape}")
    if rows and (int(parts.min()) < 0 or int(parts.max()) >= n):
        raise ColumnError(f"partition numbers must be in range(0, {n}), got {int(parts.min())}..{int(parts.max())}")
    return parts.astype(np.int64, copy=False)


def split_by_partition(batch: Columns, parts: np.ndarray, n: int) -> Iterator[tuple[int, Columns]]:
    """Each partition's pairs, sorted by (key, value); partitions with none are left out.

    One order for the whole batch (by key, then stably by partition: partition is the most significant
    digit) and one gather of its rows; the partitions are then slices of the result."""
    perm = order(batch)
    digits = parts[perm].astype(np.uint16 if n <= 1 << 16 else np.int64)   # 16-bit: numpy radix-sorts
    moved = np.argsort(digits, kind="stable")
    ordered = batch.take(perm[moved])
    bounds = np.searchsorted(digits[moved], np.arange(n + 1)).tolist()
    for p in range(n):
        if bounds[p] < bounds[p + 1]:
            yield p, ordered.slice(bounds[p], bounds[p + 1])


def order(batch: Columns, by_value: bool = True) -> np.ndarray:
    """The permutation that sorts `batch` by (key, value), stable; by key alone, stable, if not `by_value`
    (a plain app's pairs: a key's values stay in the order map emitted them)."""
    keys = batch.keys
    if keys.kind != FIXED:
        perm, same = var_order(keys)
        if by_value and same.any():
            _order_tied_values(perm, same, batch.values)
        return perm
    perm, may_tie = _fixed_order(keys.data)
    if not (may_tie and by_value):
        return perm
    tied = same_keys(keys.take(perm))
    if tied.any():
        _order_tied_values(perm, tied, batch.values)
    return perm


# A big-endian word's mask for its first k bytes (k = 0..8): the bytes past a key's end read as zeros.
_WORD_MASKS = np.array([((1 << 64) - 1) ^ ((1 << (64 - 8 * k)) - 1) for k in range(9)], np.uint64)


class _Words:
    """A BYTES or STR column's keys as 8-byte big-endian words, zero-padded past each key's end.

    The data is laid out once as eight lanes of native 64-bit words, lane k starting at byte k, so any 8
    bytes of it are one word of one lane and a word of every key is a single gather (taking 8 bytes per
    key from a strided view would copy them a byte at a time)."""

    def __init__(self, column: Column) -> None:
        assert column.offsets is not None
        self.starts = column.offsets[:-1]
        self.lengths = np.diff(column.offsets)
        self._size = len(column.data)
        self._words = self._size // 8 + 1
        padded = np.zeros(8 * self._words + 8, _U8)
        padded[:self._size] = column.data
        self._lanes = np.concatenate([padded[k:k + 8 * self._words].view(">u8") for k in range(8)]).astype(np.uint64)

    def word(self, j: int, rows: np.ndarray | None = None) -> np.ndarray:
        """Word j (bytes 8j..8j+8) of each key (of `rows`, in order), as uint64."""
        starts = self.starts if rows is None else self.starts[rows]
        lengths = self.lengths if rows is None else self.lengths[rows]
        at = np.minimum(starts + 8 * j, self._size)
        words = np.take(self._lanes, (at & 7) * self._words + (at >> 3))
        return words & _WORD_MASKS[np.clip(lengths - 8 * j, 0, 8)]


def var_order(keys: Column) -> tuple[np.ndarray, np.ndarray]:
    """Stable order of a BYTES or STR column by its bytes (UTF-8 bytes sort as Python sorts str), and
    `same`: whether each row of that order has the key of the row before it (n - 1 flags).

    Keys compare as their words (see `_Words`) and then their lengths: zero padding makes a key that is a
    prefix of another compare lower or equal word by word, and the length settles equal words. One stable
    sort of every key's first word; then, as long as rows tie on the words so far and one of them is
    longer, the tied rows alone are sorted by (group, next word); rows tied on every word by (group,
    length). Each pass is an array pass over the tied rows only: distinct keys that differ in their first
    8 bytes cost one sort.
    """
    n = len(keys)
    if n < 2:
        return np.arange(n, dtype=np.int64), np.zeros(max(n - 1, 0), bool)
    if kernels is not None:
        perm, same = kernels.var_order(*_buffers(keys))
        return np.frombuffer(perm, np.int64), np.frombuffer(same, bool)
    return _numpy_var_order(keys)


def _buffers(keys: Column) -> tuple[np.ndarray, np.ndarray]:
    """A BYTES or STR column's data and offsets as the kernels take them: contiguous uint8 and int64."""
    assert keys.offsets is not None
    return np.ascontiguousarray(keys.data, _U8), np.ascontiguousarray(keys.offsets, np.int64)


def _numpy_var_order(keys: Column) -> tuple[np.ndarray, np.ndarray]:
    """`var_order` by numpy passes, where the kernel was not built."""
    n = len(keys)
    words = _Words(keys)
    first = words.word(0)
    perm = np.argsort(first, kind="stable")
    ranked = first[perm]
    fresh = np.empty(n, bool)   # a new group of equal words so far starts at this place of `perm`
    fresh[0] = True
    np.not_equal(ranked[1:], ranked[:-1], out=fresh[1:])
    j = 1
    while True:
        at = _tied_places(fresh)
        if not len(at):
            return perm, np.zeros(n - 1, bool)
        lengths = words.lengths[perm[at]]
        group = np.cumsum(fresh)[at]
        longer = lengths > 8 * j
        if longer.any():   # groups with a key longer than the words so far: sort them by the next word
            active = np.zeros(int(group[-1]) + 1, bool)
            active[group[longer]] = True
            at = at[active[group]]
            _sort_within(perm, fresh, at, group[active[group]], words.word(j, perm[at]))
            j += 1
            continue
        starts = np.flatnonzero(np.concatenate(([True], group[1:] != group[:-1])))
        uneven = np.minimum.reduceat(lengths, starts) != np.maximum.reduceat(lengths, starts)
        if uneven.any():   # equal words, lengths that differ (zero bytes at the end): shorter first
            pick = np.repeat(uneven, np.diff(np.append(starts, len(at))))
            _sort_within(perm, fresh, at[pick], group[pick], lengths[pick])
        return perm, ~fresh[1:]


def _sort_within(perm: np.ndarray, fresh: np.ndarray, at: np.ndarray, group: np.ndarray, key: np.ndarray) -> None:
    """Sort the rows at places `at` of `perm` by (group, key), stably, and mark where `key` now splits a group."""
    sub = np.lexsort((key, group))
    perm[at] = perm[at][sub]
    key, group = key[sub], group[sub]
    again = np.empty(len(at), bool)
    again[0] = True
    again[1:] = (group[1:] != group[:-1]) | (key[1:] != key[:-1])
    fresh[at] = again


def _tied_places(fresh: np.ndarray) -> np.ndarray:
    """Places of `perm` in a group of two or more (by the group starts `fresh`)."""
    tied = ~fresh
    tied[:-1] |= ~fresh[1:]
    return np.flatnonzero(tied)


def same_keys(keys: Column) -> np.ndarray:
    """Whether each row of a sorted column has the key of the row before it (n - 1 flags)."""
    n = len(keys)
    if n < 2:
        return np.zeros(max(n - 1, 0), bool)
    if keys.kind == FIXED:
        data = keys.data
        return (data[1:] == data[:-1]).all(axis=1) if keys.width else np.ones(n - 1, bool)
    if kernels is not None:
        return np.frombuffer(kernels.same_keys(*_buffers(keys)), bool)
    return _numpy_same_keys(keys)


def _numpy_same_keys(keys: Column) -> np.ndarray:
    """`same_keys` of a BYTES or STR column by numpy passes, where the kernel was not built."""
    words = _Words(keys)
    lengths = words.lengths
    same = lengths[1:] == lengths[:-1]
    for j in range(0, int(lengths.max(initial=0)), 8):
        at = np.flatnonzero(same & (lengths[1:] > j))
        if not len(at):
            break
        same[at] = words.word(j // 8, at + 1) == words.word(j // 8, at)
    return same


def _fixed_order(data: np.ndarray) -> tuple[np.ndarray, bool]:
    """Stable order of fixed-width byte strings, and whether two of them may be equal (False: no two rows
    share even their first 8 bytes, so `order` need not look for ties).

    One stable sort by the first 8 bytes as a big-endian integer: numpy's timsort, which also merges
    presorted runs in O(n log runs), as a reducer's merge hands it. Rows whose first 8 bytes tie (rare
    with random keys, common with shared prefixes) are ordered among themselves by the later 8-byte words,
    least significant first, then by their group, all in array passes over those rows only.
    """
    n, width = data.shape
    if not width or n < 2:
        return np.arange(n, dtype=np.int64), n > 1
    first = _word(data, 0)
    perm = np.argsort(first, kind="stable")
    ranked = first[perm]
    fresh = np.empty(n, bool)
    fresh[0] = True
    np.not_equal(ranked[1:], ranked[:-1], out=fresh[1:])
    if fresh.all():
        return perm, False
    if width <= 8:
        return perm, True
    tied = ~fresh
    tied[:-1] |= ~fresh[1:]              # a row tied with the next one, or with the one before
    at = np.flatnonzero(tied)            # places in `perm` whose rows tie on the first word
    group = np.cumsum(fresh)[at]
    rows = perm[at]
    sub = np.arange(len(at))
    for start in reversed(range(8, width, 8)):
        sub = sub[np.argsort(_word(data, start, rows[sub]), kind="stable")]
    sub = sub[np.argsort(group[sub], kind="stable")]
    perm[at] = rows[sub]
    return perm, True


def _word(data: np.ndarray, start: int, rows: np.ndarray | None = None) -> np.ndarray:
    """Bytes start..start+8 of each row (of `rows`, in order), zero-padded, as big-endian uint64 (uint16
    when the word has two bytes or fewer: numpy radix-sorts those)."""
    size = min(8, data.shape[1] - start)
    part = data[:, start:start + size] if rows is None else np.take(data[:, start:start + size], rows, axis=0)
    word = np.zeros((len(part), 8), _U8)
    word[:, 8 - size:] = part
    digits = word.view(">u8").ravel()
    return digits.astype(np.uint16) if size <= 2 else digits


def _order_tied_values(perm: np.ndarray, tied: np.ndarray, values: Column) -> None:
    """Reorder each run of equal keys in `perm` by value, in place: one stable sort of the tied rows by
    (run, value rank), the values ranked by their own column's order."""
    fresh = np.concatenate(([True], ~tied))
    at = _tied_places(fresh)
    rows = perm[at]
    group = np.cumsum(fresh)[at]
    tied_values = values.take(rows)
    if values.kind in (INT, FLOAT):
        rank = tied_values.data
    else:
        by_value = var_order(tied_values)[0] if values.offsets is not None else _fixed_order(tied_values.data)[0]
        rank = np.empty(len(rows), np.int64)
        rank[by_value] = np.arange(len(rows))
    perm[at] = rows[np.lexsort((rank, group))]


def merge_sorted(runs: Iterable[Iterable[Columns]], round_bytes: int = 64 << 20,
                 by_value: bool = True) -> Iterator[Columns]:
    """K-way merge of runs sorted by (key, value), each given as batches; yields sorted batches. Not
    `by_value`: runs sorted by key alone, merged by key alone (a key's rows may then span two rounds,
    rows of the bound key still to come in a run's next batch).

    Each round first loads batches, always into the run whose loaded rows end lowest (a heap), until
    about `round_bytes` are loaded; the bound is then the lowest last row among runs that go on, and
    every row up to it is at hand, since rows rise within a run. Those rows are cut out of each run by
    binary search, put together and ordered by one `order` pass (a timsort over presorted pieces).

    Why not bound each round by one batch per run: the bound would then move by a batch's worth of rows
    per round, whatever the number of runs, and the per-run cuts cost Python time per run per round, so
    k runs cost O(k) per batch merged. Loading up to `round_bytes` makes a round take about that much,
    as only each run's last batch can reach past the bound. Memory: `round_bytes`, plus one batch a run
    beyond it at most, plus the round's rows put together once; they are yielded in order in slices of
    about `_OUT_BYTES`.
    """
    sources: list[Iterator[Columns]] = []
    loaded: list[list[Columns]] = []   # per run: batches at hand, the first cut from `starts`
    starts: list[int] = []
    waiting: list[tuple[Any, int]] = []   # (last loaded row, run) of runs with more to load
    last = _Rows.last if by_value else _Keys.last
    cut = _Rows if by_value else _Keys
    total = 0
    for run in runs:
        source = iter(run)
        batch = _next_batch(source)
        if batch is not None:
            waiting.append((last(batch), len(sources)))
            sources.append(source)
            loaded.append([batch])
            starts.append(0)
            total += _weight(batch)
    heapq.heapify(waiting)
    while waiting or total:
        while waiting and (total < round_bytes or not loaded[waiting[0][1]]):   # the bound's run needs rows
            lowest = waiting[0][1]
            batch = _next_batch(sources[lowest])
            if batch is None:
                heapq.heappop(waiting)   # all of the run is loaded: it bounds nothing any more
            else:
                loaded[lowest].append(batch)
                total += _weight(batch)
                heapq.heapreplace(waiting, (last(batch), lowest))
        bound = waiting[0][0] if waiting else None
        pieces = []
        for j, batches in enumerate(loaded):
            while batches:
                first, start = batches[0], starts[j]
                end = len(first) if bound is None else bisect.bisect_right(cut(first), bound, lo=start)
                if end > start:
                    pieces.append(first.slice(start, end))
                if end < len(first):
                    starts[j] = end
                    break
                batches.pop(0)
                starts[j] = 0
                total -= _weight(first)
        if len(pieces) == 1:
            yield pieces[0]
        elif pieces:
            taken = concat_columns(pieces)
            perm = order(taken, by_value)
            step = max(1, len(taken) * _OUT_BYTES // max(taken.nbytes, 1))
            for start in range(0, len(taken), step):   # in order a slice at a time: no second full copy
                yield taken.take(perm[start:start + step])


_OUT_BYTES = 4 << 20


def _weight(batch: Columns) -> int:
    """A batch's bytes, and a byte a row: rows of zero-width columns still count."""
    return batch.nbytes + len(batch)


class _Rows:
    """A batch's rows as a sequence, for `bisect`."""

    def __init__(self, batch: Columns) -> None:
        self._batch = batch

    def __len__(self) -> int:
        return len(self._batch)

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        return self._batch.row(i)

    @staticmethod
    def last(batch: Columns) -> tuple[Any, Any]:
        return batch.row(len(batch) - 1)


class _Keys(_Rows):
    """A batch's keys as a sequence, for `bisect` by key alone."""

    def __getitem__(self, i: int) -> Any:
        return self._batch.keys.item(i)

    @staticmethod
    def last(batch: Columns) -> Any:
        return batch.keys.item(len(batch) - 1)


def _next_batch(source: Iterator[Columns]) -> Columns | None:
    for batch in source:
        if len(batch):
            return batch
    return None


def groups(batches: Iterable[Columns]) -> Iterator[tuple[Any, Iterator[Any]]]:
    """Sorted batches as each key once, in order, with an iterator over its values (for `reduce`).

    Keys are found equal by array passes (`same_keys`), and only each key's first row and the values
    become Python objects. A key whose rows go on into the next batches streams on through them, one
    batch at a time, so a key with more values than fit in memory reaches `reduce` too. Memory: two
    batches.
    """
    source = iter(batches)
    batch = _next_batch(source)
    while batch is not None:
        following = _next_batch(source)
        starts = np.flatnonzero(np.concatenate(([True], ~same_keys(batch.keys))))
        keys = batch.keys.take(starts).tolist()
        values = batch.values.tolist()
        ends = [*starts[1:].tolist(), len(batch)]
        last = len(keys) - 1
        for i, (key, start, end) in enumerate(zip(keys, starts.tolist(), ends, strict=True)):
            if i == last and following is not None and following.keys.item(0) == key:
                rest = _KeyRest(key, following, source)
                yield key, itertools.chain(values[start:end], itertools.chain.from_iterable(rest))
                following = rest.finish()
            else:
                yield key, iter(values[start:end])
        batch = following


class _KeyRest:
    """The values of `key` in the batches from `batch` on, a list a batch, read a batch at a time;
    `finish` reads past what `reduce` left unread and gives the rows after the key's (None: no more)."""

    def __init__(self, key: Any, batch: Columns, source: Iterator[Columns]) -> None:
        self._key = key
        self._batch: Columns | None = batch
        self._source = source

    def __iter__(self) -> Iterator[list[Any]]:
        while self._batch is not None and self._batch.keys.item(0) == self._key:
            batch = self._batch
            count = bisect.bisect_right(_Keys(batch), self._key)   # the key's rows: a search, not a pass
            self._batch = batch.slice(count, len(batch)) if count < len(batch) else _next_batch(self._source)
            yield batch.values.slice(0, count).tolist()

    def finish(self) -> Columns | None:
        for _ in self:
            pass
        return self._batch


# ------------------------------------------------------------------ the wire

def encode(batch: Columns) -> bytes:
    """A column chunk's body. Ints and the lengths of bytes and text take the fewest bytes that hold every
    one of the chunk's (1, 2, 4 or 8 for ints, 1, 2 or 4 for lengths), named by the column's width in the
    header: counts and words then cost about what msgpack would spend on them, not 8 and 4 bytes each."""
    parts = [b""]
    widths = []
    for column in (batch.keys, batch.values):
        width = column.width
        if column.offsets is not None:
            lengths = np.diff(column.offsets)
            width = _narrow(lengths, _UNSIGNED)
            parts.append(lengths.astype(f"<u{width}").tobytes())
            parts.append(column.data.tobytes())
        elif column.kind == INT:
            width = _narrow(column.data, _SIGNED)
            parts.append(column.data.astype(f"<i{width}").tobytes())
        else:
            parts.append(column.data.astype(column.data.dtype.newbyteorder("<"), copy=False).tobytes())
        widths.append(width)
    parts[0] = _HEAD.pack(MAGIC, VERSION, len(batch), batch.keys.kind, widths[0], batch.values.kind, widths[1])
    return b"".join(parts)


_UNSIGNED = ((1, 0, 0xFF), (2, 0, 0xFFFF), (4, 0, 0xFFFFFFFF))
_SIGNED = ((1, -(1 << 7), (1 << 7) - 1), (2, -(1 << 15), (1 << 15) - 1), (4, -(1 << 31), (1 << 31) - 1),
           (8, -(1 << 63), (1 << 63) - 1))


def _narrow(numbers: np.ndarray, sizes: tuple[tuple[int, int, int], ...]) -> int:
    """The fewest bytes (of `sizes`: (bytes, least, most)) that hold every one of `numbers`."""
    if not len(numbers):
        return sizes[0][0]
    low, high = int(numbers.min()), int(numbers.max())
    return next(size for size, least, most in sizes if least <= low and high <= most)


def chunk_kinds(body: bytes | memoryview) -> tuple[int, ...] | None:
    """A column chunk's (key kind, key width, value kind, value width); None for a chunk of pairs. The
    width is a FIXED column's alone: how narrow an int or a length is stored does not make another kind."""
    if not is_columns(body) or len(body) < _HEAD.size:
        return None
    _, _, _, key_kind, key_width, value_kind, value_width = _HEAD.unpack_from(body)
    return key_kind, key_width if key_kind == FIXED else 0, value_kind, value_width if value_kind == FIXED else 0


def is_columns(body: bytes | memoryview) -> bool:
    return len(body) > 0 and body[0] == MAGIC


def decode(body: bytes | memoryview) -> Columns:
    """A column chunk's body back as a batch; anything malformed is a ProtocolError."""
    if len(body) < _HEAD.size:
        raise ProtocolError("truncated column chunk")
    magic, version, rows, key_kind, key_width, value_kind, value_width = _HEAD.unpack_from(body)
    if magic != MAGIC or version not in (1, VERSION):
        raise ProtocolError(f"column chunk of an unknown version ({version})")
    view = memoryview(body)
    pos = _HEAD.size
    keys, pos = _decode_column(view, pos, rows, key_kind, key_width, version)
    values, pos = _decode_column(view, pos, rows, value_kind, value_width, version)
    if pos != len(view) or keys.kind in (INT, FLOAT):
        raise ProtocolError("column chunk with bytes left over, or numeric keys")
    return Columns(keys, values)


def _decode_column(view: memoryview, pos: int, rows: int, kind: int, width: int,
                   version: int = VERSION) -> tuple[Column, int]:
    def take(size: int) -> memoryview:
        nonlocal pos
        if size > len(view) - pos:
            raise ProtocolError("column chunk shorter than its columns")
        pos += size
        return view[pos - size:pos]

    if kind == FIXED:
        return Column(FIXED, np.frombuffer(take(rows * width), _U8).reshape(rows, width)), pos
    allowed = {INT: (1, 2, 4, 8), BYTES: (1, 2, 4), STR: (1, 2, 4)}.get(kind, ()) if version > 1 else ()
    if width and width not in allowed:
        raise ProtocolError(f"column chunk with a width ({width}) for a column of kind {kind}")
    if kind in (INT, FLOAT):
        size = width or 8
        dtype = np.dtype(f"<i{size}" if kind == INT else "<f8")
        data = np.frombuffer(take(rows * size), dtype)
        return Column(kind, data if size == 8 else data.astype(np.int64)), pos
    if kind in (BYTES, STR):
        size = width or 4
        lengths = np.frombuffer(take(rows * size), f"<u{size}")
        offsets = np.zeros(rows + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        data = np.frombuffer(take(int(offsets[-1])), _U8)
        if kind == STR:
            try:
                data.tobytes().decode("utf-8", "surrogatepass")
            except UnicodeDecodeError as exc:
                raise ProtocolError(f"column chunk with text that is not UTF-8: {exc}") from exc
        return Column(kind, data, offsets), pos
    raise ProtocolError(f"column chunk with an unknown column kind ({kind}, width {width})")


def chunks(batch: Columns, chunk_bytes: int) -> Iterator[Columns]:
    """`batch` in pieces of about `chunk_bytes` each."""
    n = len(batch)
    per = max(1, int(chunk_bytes * n / max(batch.nbytes, 1))) if n else 1
    for start in range(0, n, per):
        yield batch.slice(start, min(n, start + per))


def joined(batch: Columns, sep: bytes = b"", end: bytes = b"") -> bytes | np.ndarray:
    """Each pair's key bytes, `sep`, its value bytes and `end`, back to back (the raw output): an array
    (written without another copy) when both columns are fixed-width, else bytes."""
    keys, values = batch.keys, batch.values
    if keys.kind == FIXED and values.kind == FIXED:
        n = len(batch)
        parts = [keys.data]
        if sep:
            parts.append(np.broadcast_to(np.frombuffer(sep, _U8), (n, len(sep))))
        parts.append(values.data)
        if end:
            parts.append(np.broadcast_to(np.frombuffer(end, _U8), (n, len(end))))
        return np.hstack(parts)
    return b"".join(as_bytes(k) + sep + as_bytes(v) + end
                    for k, v in zip(keys.tolist(), values.tolist(), strict=True))


def as_bytes(item: Any) -> bytes:
    """An item as the raw output writes it: bytes as they are, str as UTF-8, a number as str() writes it."""
    if type(item) is bytes:
        return item
    if type(item) is str:
        return item.encode("utf-8", "surrogateescape")
    return str(item).encode()
