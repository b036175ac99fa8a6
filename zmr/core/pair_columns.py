"""A plain app's pairs as columns: the map side's buffers.

A plain app's `map` yields (str, value) tuples. Block by block they become a key column and a value
column filed by partition, in one call of a compiled kernel (`filed_columns`); from there on they are
sorted, encoded and merged by kernels and array passes (`zmr.core.columns`), as a batch app's are, and
only each key, once, and the values `reduce` reads become Python objects again
(`zmr.core.columns.groups`). Order is by key alone and stable: a key's values reach `combine` and
`reduce` in the order map emitted them, as with pair runs.

A column holds one kind of value, so a block of mixed values (ints and floats, say), an int past 64 bits,
or anything the app's pair check must convert sends the rest of the task to pair buffers
(`zmr.core.batches.PartitionBuffers`): the partitions held so far go out as column runs first. A reducer
that meets runs of both kinds merges pairs (see `zmr.runtime.runs.grouped`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from operator import itemgetter
from typing import TYPE_CHECKING, Any, TypeAlias

from zmr.core.batches import Pair, Pairs, PartitionBuffers, Value, due_runs, key_partitions
from zmr.core.native import kernels

if TYPE_CHECKING:   # numpy is imported once there is a block's worth of pairs: small maps never need it
    from zmr.core import columns as c

_FIRST = itemgetter(0)
_SECOND = itemgetter(1)
Run: TypeAlias = "c.Columns | Pairs"   # what a partition's buffer hands back: columns, or pairs


def filed_columns(block: list[Any], n: int) -> tuple[c.Columns, list[int]] | None:
    """The block as (key column, value column) with its rows filed stably by partition (xxh3 of the key's
    UTF-8, surrogates kept, modulo n: `partition_of`'s number), and each partition's row count; with n == 0
    the rows keep their order in one partition and are not hashed (an app's own partitioner files them).
    None unless every item is a tuple of a str and a value, all values of one kind: str, float, or int
    within 64 bits. One call of the compiled kernel where it was built, else numpy passes."""
    from zmr.core import columns as c

    if kernels is None:
        return _numpy_filed_columns(block, n)
    made = kernels.pair_columns(block, n)
    if made is None:
        return None
    import numpy as np

    kind, key_data, key_offsets, value_data, value_offsets, counts = made
    keys = c.Column(c.STR, np.frombuffer(key_data, np.uint8), np.frombuffer(key_offsets, np.int64))
    if kind == c.STR:
        values = c.Column(c.STR, np.frombuffer(value_data, np.uint8), np.frombuffer(value_offsets, np.int64))
    else:
        values = c.Column(kind, np.frombuffer(value_data, np.int64 if kind == c.INT else np.float64))
    return c.Columns(keys, values), counts


def _numpy_filed_columns(block: list[Any], n: int) -> tuple[c.Columns, list[int]] | None:
    """`filed_columns` without the kernel: each key is encoded once, for the column and the hash."""
    import numpy as np

    from zmr.core import columns as c

    if set(map(type, block)) != {tuple} or set(map(len, block)) != {2}:
        return None
    keys = list(map(_FIRST, block))
    if set(map(type, keys)) != {str}:
        return None
    column = value_column(list(map(_SECOND, block)))
    if column is None:
        return None
    try:
        encoded = list(map(str.encode, keys))
    except UnicodeEncodeError:   # a lone surrogate
        encoded = [key.encode("utf-8", "surrogatepass") for key in keys]
    batch = c.Columns(c.bytes_column(c.STR, encoded), column)
    if n <= 1:
        return batch, [len(batch)]
    digits = c.partitions_of_bytes(encoded, n).astype(np.uint16 if n <= 1 << 16 else np.int64)   # 16-bit: radix
    return batch.take(np.argsort(digits, kind="stable")), np.bincount(digits, minlength=n).tolist()


def value_column(values: list[Any]) -> c.Column | None:
    """`values` as a column, if they are all str, all float or all ints within 64 bits; else None."""
    import numpy as np

    from zmr.core import columns as c

    kinds = set(map(type, values))
    if kinds == {int}:
        try:
            return c.Column(c.INT, np.array(values, np.int64))
        except OverflowError:   # past 64 bits
            return None
    if kinds == {float}:
        return c.Column(c.FLOAT, np.array(values, np.float64))
    if kinds == {str}:
        return c.text_column(values)
    return None


class ColumnBuffers:
    """Map output by partition, as column pieces; hands back a sorted, combined run when a partition fills.

    The bounds are those of `PartitionBuffers`: `batch_bytes` a run, `max_bytes` everything held (the
    largest partition goes first), counted as the columns' bytes.
    """

    BLOCK = 8192

    def __init__(self, n_reduce: int, batch_bytes: int, max_bytes: int,
                 partition: Callable[[str, int], Any] | None,
                 combine: Callable[[str, list[Value]], Value] | None,
                 check_partition: Callable[[str, int, Any], int], hold_keys: int = 0) -> None:
        """`hold_keys`: the map's keys are held (`held_keys`) as long as there are no more than this many."""
        self._n = n_reduce
        self._batch_bytes = batch_bytes
        self._max_bytes = max_bytes
        self._partition = partition
        self._combine = combine
        self._check_partition = check_partition
        self._pieces: list[list[c.Columns]] = [[] for _ in range(n_reduce)]
        self._sizes = [0] * n_reduce
        self._total = 0
        self._kinds: tuple[int, int] | None = None   # (key kind, value kind) of every piece
        self._pairs: PartitionBuffers | None = None   # the rest of the task, once a block made no columns
        self._pending: list[Any] = []   # the task's first pairs, until there are a block's worth
        self._check: Callable[[Any], Pair] | None = None
        self._records = 0
        self._hold_keys = hold_keys
        self._held: list[list[str]] = []

    def held_keys(self) -> list[list[str]]:
        """The keys of every pair added, as map made them, if there were no more than `hold_keys`, else
        none (see `zmr.runtime.runner.Runner._keep_warm`)."""
        return self._held if self._records <= self._hold_keys else []

    @property
    def records(self) -> int:
        """Pairs added so far."""
        return self._records + (self._pairs.records if self._pairs is not None else 0)

    def add_all(self, pairs: Iterable[Any], check: Callable[[Any], Pair] | None = None,
                ) -> Iterator[tuple[int, Run] | None]:
        """Buffer every pair; yields each run as it becomes due, and None after every block (a tick).

        Until a block's worth has come, the pairs wait as they are: a map that emits fewer than a block
        in all goes to pair buffers at its end, so a small job never imports numpy."""
        source = iter(pairs)
        self._check = check
        while self._pairs is None:
            block = list(itertools.islice(source, self.BLOCK - len(self._pending)))
            if not block:
                return
            if self._pending:
                block, self._pending = self._pending + block, []
            if self._kinds is None and len(block) < self.BLOCK:   # the task's first pairs, not yet a block
                self._pending = block
                return
            made = filed_columns(block, self._n if self._partition is None else 0)
            kinds = (made[0].keys.kind, made[0].values.kind) if made is not None else None
            if made is None or self._kinds not in (None, kinds):
                yield from self._to_pairs()
                source = itertools.chain(block, source)
                break
            self._kinds = kinds
            self._file(block, *made)
            yield from self._due()
            yield None
        assert self._pairs is not None
        yield from self._pairs.add_all(source, check)

    def drain(self) -> list[tuple[int, Run]]:
        """Every non-empty partition's run, for the end of the map task."""
        if self._pending:   # fewer pairs than a block in all: they go as pairs
            pending, self._pending = self._pending, []
            self._pairs = self._pair_buffers()
            due: list[tuple[int, Run]] = [run for run in self._pairs.add_all(pending, self._check) if run is not None]
            return due + self._pairs.drain()
        runs: list[tuple[int, Run]] = [(p, self._take(p)) for p in range(self._n) if self._pieces[p]]
        if self._pairs is not None:
            runs += self._pairs.drain()
        return runs

    def _to_pairs(self) -> Iterator[tuple[int, Run]]:
        """From here on pairs: what is held goes out as column runs now."""
        yield from self.drain()
        self._pairs = self._pair_buffers()

    def _pair_buffers(self) -> PartitionBuffers:
        return PartitionBuffers(self._n, self._batch_bytes, self._max_bytes, self._partition, self._combine,
                                self._check_partition)

    def _file(self, block: list[Any], batch: c.Columns, counts: list[int]) -> None:
        """Add a block's columns, filed by partition (`filed_columns`), to the partitions' pieces; with an
        app's own partitioner, filed here."""
        import numpy as np

        self._records += len(batch)
        holding = self._records <= self._hold_keys
        keys = list(map(_FIRST, block)) if holding or self._partition is not None else []
        if holding:
            self._held.append(keys)
        elif self._held:
            self._held = []
        n = self._n
        if self._partition is not None:   # called even with one partition, as pair buffers call it
            parts = key_partitions(keys, n, self._partition, self._check_partition)
            assert parts is not None   # None only without an app partitioner
            digits = np.asarray(parts).astype(np.uint16 if n <= 1 << 16 else np.int64)   # 16-bit: radix sort
            batch = batch.take(np.argsort(digits, kind="stable"))
            counts = np.bincount(digits, minlength=n).tolist()
        start = 0
        for p, count in enumerate(counts):
            if count:
                self._add(p, batch.slice(start, start + count))
            start += count

    def _add(self, p: int, piece: c.Columns) -> None:
        self._pieces[p].append(piece)
        size = piece.nbytes
        self._sizes[p] += size
        self._total += size

    def _due(self) -> Iterator[tuple[int, Run]]:
        return due_runs(self._sizes, self._batch_bytes, self._max_bytes, lambda: self._total, self._take)

    def _take(self, p: int) -> Run:
        from zmr.core import columns as c

        batch, self._pieces[p] = c.concat_columns(self._pieces[p]), []
        self._total -= self._sizes[p]
        self._sizes[p] = 0
        perm, same = c.var_order(batch.keys)
        batch = batch.take(perm)
        if self._combine is not None and same.any():
            return _combined(batch, same, self._combine)
        return batch


def _combined(batch: c.Columns, same: Any, combine: Callable[[str, list[Value]], Value]) -> Run:
    """A sorted run with each key's values combined into one; pairs if what combine returned is not all
    of the run's value kind."""
    import numpy as np

    from zmr.core import columns as c

    starts = np.flatnonzero(np.concatenate(([True], ~same)))
    keys = batch.keys.take(starts)
    names = keys.tolist()
    values = batch.values.tolist()
    bounds = [*starts.tolist(), len(batch)]
    out = [values[a] if b - a == 1 else combine(key, values[a:b])
           for key, a, b in zip(names, bounds, bounds[1:], strict=False)]
    column = value_column(out)
    if column is None or column.kind != batch.values.kind:
        return list(zip(names, out, strict=True))
    return c.Columns(keys, column)
