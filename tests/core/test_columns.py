"""Columnar batches: columns from what apps return, (key, value) order, partitions, the wire, and the merge."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zmr.core import columns as c
from zmr.core.batches import Packer, decode_batch
from zmr.core.partition import partition_of
from zmr.errors import ProtocolError
from zmr.runtime.runs import column_fan_in, merged_columns

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, database=None)


def fixed(rows: list[bytes], key_bytes: int) -> c.Columns:
    array = np.frombuffer(b"".join(rows), np.uint8).reshape(len(rows), -1) if rows else np.zeros((0, 4), np.uint8)
    return c.Columns(c.column_of(array[:, :key_bytes]), c.column_of(array[:, key_bytes:]))


def sorted_runs(batch: c.Columns, cuts: list[int], chunk_bytes: int) -> list[list[c.Columns]]:
    runs = []
    for start, end in zip([0, *cuts], [*cuts, len(batch)], strict=True):
        piece = batch.slice(start, end)
        runs.append(list(c.chunks(piece.take(c.order(piece)), chunk_bytes)))
    return runs


@SETTINGS
@given(width=st.integers(0, 20), key_bytes=st.integers(0, 20), seed=st.integers(0, 2**32 - 1),
       alphabet=st.integers(1, 256), n=st.integers(0, 400))
def test_fixed_width_rows_sort_as_python_sorts_their_bytes(width: int, key_bytes: int, seed: int, alphabet: int,
                                                          n: int) -> None:
    """Small alphabets make long shared prefixes and equal keys: the tie paths run as often as the plain one."""
    key_bytes = min(key_bytes, width)
    rng = np.random.default_rng(seed)
    rows = [bytes(row) for row in rng.integers(0, alphabet, size=(n, width), dtype=np.uint8)]
    batch = fixed(rows, key_bytes) if width else c.Columns(c.column_of([b""] * n), c.column_of([b""] * n))
    assert batch.take(c.order(batch)).pairs() == sorted(batch.pairs())


@SETTINGS
@given(pairs=st.lists(st.tuples(st.text(max_size=4), st.integers(-(2**63), 2**63 - 1)), max_size=200))
def test_text_keys_with_int_values_sort_and_partition_as_pairs_do(pairs: list[tuple[str, int]]) -> None:
    batch = c.columns_of(([k for k, _ in pairs], [v for _, v in pairs]))
    assert batch.take(c.order(batch)).pairs() == sorted(pairs)
    assert c.hash_partitions(batch.keys, 7).tolist() == [partition_of(k, 7) for k, _ in pairs]


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 600), cuts=st.lists(st.integers(0, 600), max_size=6),
       chunk_bytes=st.integers(16, 2000), round_bytes=st.integers(1, 20_000))
def test_merging_sorted_runs_gives_every_pair_once_in_order(seed: int, n: int, cuts: list[int],
                                                            chunk_bytes: int, round_bytes: int) -> None:
    """Rounds of any size, from a row to everything: small ones make many bounds fall inside batches."""
    rng = np.random.default_rng(seed)
    rows = [bytes(row) for row in rng.integers(0, 3, size=(n, 12), dtype=np.uint8)]
    batch = fixed(rows, 10)
    runs = sorted_runs(batch, sorted(x for x in cuts if x <= n), chunk_bytes)
    outs = list(c.merge_sorted(runs, round_bytes))
    assert [pair for out in outs for pair in out.pairs()] == sorted(batch.pairs())
    if n > 100 and round_bytes < 500:   # a round takes about round_bytes: many rounds
        assert len(outs) > 1


def test_rows_of_zero_width_columns_are_merged_too() -> None:
    empty = c.Columns(c.column_of(np.zeros((3, 0), np.uint8)), c.column_of(np.zeros((3, 0), np.uint8)))
    merged = [pair for out in c.merge_sorted([[empty], [empty.slice(0, 2)]]) for pair in out.pairs()]
    assert merged == [(b"", b"")] * 5


@SETTINGS
@given(keys=st.lists(st.binary(max_size=5), max_size=120), seed=st.integers(0, 1000))
def test_variable_width_bytes_merge_and_round_trip(keys: list[bytes], seed: int) -> None:
    values = [float(v) for v in np.random.default_rng(seed).integers(0, 4, size=len(keys))]
    batch = c.columns_of((keys, values))
    assert c.decode(c.encode(batch)).pairs() == batch.pairs()
    cuts = sorted({len(keys) // 3, len(keys) // 2})
    merged = [pair for out in c.merge_sorted(sorted_runs(batch, cuts, 40), 100) for pair in out.pairs()]
    assert merged == sorted(batch.pairs())


def test_a_fixed_width_batch_survives_the_chunk_framing_with_each_codec() -> None:
    rows = [bytes([i % 7]) * 10 + b"payload %05d\n" % i for i in range(5000)]
    batch = fixed(rows, 10)
    ordered = batch.take(c.order(batch))
    for codec in ("none", "lz4", "zstd"):
        payload = Packer(codec).columns(ordered)
        assert decode_batch(payload) == sorted(batch.pairs())
    assert len(Packer("zstd").columns(ordered)) < len(Packer("none").columns(ordered)) // 4


def test_split_by_partition_keeps_each_partition_sorted_and_complete() -> None:
    rng = np.random.default_rng(3)
    rows = [bytes(row) for row in rng.integers(0, 255, size=(3000, 20), dtype=np.uint8)]
    batch = fixed(rows, 10)
    parts = c.hash_partitions(batch.keys, 5)
    seen = []
    for p, run in c.split_by_partition(batch, parts, 5):
        pairs = run.pairs()
        assert pairs == sorted(pairs)
        assert all(c.hash_partitions(run.keys, 5) == p)
        seen += pairs
    assert sorted(seen) == sorted(batch.pairs())


@pytest.mark.parametrize(("returned", "message"), [
    ([b"a"], "expected a \\(keys, values\\) tuple"),
    (([b"a", b"b"], [1]), "2 keys but 1 values"),
    (([1, 2], [1, 2]), "keys must be bytes or str"),
    (([b"a", "b"], [1, 2]), "all bytes, all str"),
    ((np.zeros((2, 2), np.float32), [1, 2]), "2-D uint8 array"),
    (([b"a"], [2**70]), "does not fit in 64 bits"),
    (({"a": 1}, [1]), "numpy array or a list"),
])
def test_what_is_not_two_columns_is_refused_with_the_reason(returned: object, message: str) -> None:
    with pytest.raises(c.ColumnError, match=message):
        c.columns_of(returned)


@pytest.mark.parametrize(("result", "message"), [
    ([0, 1], "expected 3 partition numbers"),
    ([0, 1, 3], "in range\\(0, 3\\)"),
    ([0, -1, 2], "in range\\(0, 3\\)"),
    (np.array([0.0, 1.0, 2.0]), "1-D int array"),
])
def test_a_partition_batch_result_out_of_contract_is_refused(result: object, message: str) -> None:
    with pytest.raises(c.ColumnError, match=message):
        c.checked_partitions(result, 3, 3)


def test_malformed_column_chunks_are_protocol_errors_never_crashes() -> None:
    body = c.encode(c.columns_of(([b"key", b"other"], ["v", "w"])))
    broken = {
        "truncated header": body[:5],
        "truncated body": body[:-1],
        "extra bytes": body + b"x",
        "unknown version": body[:1] + b"\x09" + body[2:],
        "unknown kind": body[:6] + b"\x09" + body[7:],
        "numeric keys": struct.pack("<BBIBIBI", c.MAGIC, c.VERSION, 1, c.INT, 0, c.INT, 0) + b"\0" * 16,
        "width on a var column": body[:7] + struct.pack("<I", 3) + body[11:],
        "huge row count": body[:2] + struct.pack("<I", 2**31) + body[6:],
        "text not utf-8": struct.pack("<BBIBIBI", c.MAGIC, c.VERSION, 1, c.BYTES, 0, c.STR, 0)
        + struct.pack("<I", 1) + b"k" + struct.pack("<I", 1) + b"\xff",
    }
    for name, payload in broken.items():
        with pytest.raises(ProtocolError):
            c.decode(payload)
            pytest.fail(name)


def test_a_reducer_merges_runs_on_disk_past_its_fan_in(tmp_path: Path) -> None:
    """More runs than `fan_in`: merged into longer runs on disk first, the output unchanged."""
    rng = np.random.default_rng(5)
    rows = [bytes(row) for row in rng.integers(0, 4, size=(2000, 14), dtype=np.uint8)]
    batch = fixed(rows, 10)
    packer = Packer("lz4")
    path = tmp_path / "runs"
    runs = []
    with open(path, "wb") as f:
        for start in range(0, 2000, 50):
            piece = batch.slice(start, start + 50)
            payload = packer.columns(piece.take(c.order(piece)))
            runs.append((str(path), f.tell(), len(payload)))
            f.write(payload)
    ticks: list[int] = []
    out = [pair for b in merged_columns(runs, 3, tmp_path / "scratch", packer, lambda: ticks.append(1))
           for pair in b.pairs()]
    assert out == sorted(batch.pairs())
    assert list((tmp_path / "scratch").glob("merge-*.run"))
    assert len(ticks) >= 40 // column_fan_in(3), "a merge on disk reports progress, or a long one looks hung"


def test_raw_joins_keys_and_values_back_to_back() -> None:
    rows = [b"k1vvv", b"k0www"]
    assert bytes(c.joined(fixed(rows, 2))) == b"k1vvvk0www"
    mixed = c.columns_of((["é", "b"], [1, 2.5]))   # ints among floats: a float column
    assert c.joined(mixed, b" ", b"\n") == "é 1.0\nb 2.5\n".encode()


KEYS = st.binary(max_size=20) | st.sampled_from([b"", b"a", b"a\0", b"abcdefgh", b"abcdefgh\0", b"abcdefghi",
                                                 b"abcdefghijklmnopq", b"abcdefghijklmnopr", b"\xff" * 9])


@SETTINGS
@given(keys=st.lists(KEYS, max_size=150), data=st.data())
def test_variable_length_keys_sort_stably_as_python_sorts_their_bytes(keys: list[bytes], data: st.DataObject) -> None:
    """Shared 8-byte prefixes, keys that are prefixes of others, trailing zero bytes and equal keys: every
    pass of `var_order` (next words, lengths) runs; the order is Python's, stable, and `same` marks the
    equal neighbours."""
    perm, same = c.var_order(c.column_of(list(keys)))
    assert perm.tolist() == sorted(range(len(keys)), key=keys.__getitem__)
    ordered = sorted(keys)
    assert same.tolist() == [a == b for a, b in zip(ordered, ordered[1:], strict=False)]
    assert c.same_keys(c.column_of(ordered)).tolist() == same.tolist()
    values = data.draw(st.lists(st.integers(-3, 3) | st.just(2**40), min_size=len(keys), max_size=len(keys)))
    batch = c.Columns(c.column_of(list(keys)), c.column_of(values) if values else c.column_of([]))
    assert batch.take(c.order(batch)).pairs() == sorted(zip(keys, values, strict=False))
    by_key = c.order(batch, by_value=False).tolist()
    assert by_key == perm.tolist()


@SETTINGS
@given(runs=st.lists(st.lists(KEYS, max_size=90), min_size=1, max_size=12))
def test_keys_that_come_as_sorted_runs_are_merged_stably_as_python_sorts_them(runs: list[list[bytes]]) -> None:
    """A merge round's input: sorted runs put together, equal keys across runs among them. The kernel merges
    such runs rather than sorting them afresh; the order is still Python's, stable."""
    keys = [key for run in runs for key in sorted(run)]
    perm, same = c.var_order(c.column_of(list(keys)))
    assert perm.tolist() == sorted(range(len(keys)), key=keys.__getitem__)
    ordered = sorted(keys)
    assert same.tolist() == [a == b for a, b in zip(ordered, ordered[1:], strict=False)]
    if len(keys) > 1:
        assert c._numpy_var_order(c.column_of(list(keys)))[0].tolist() == perm.tolist()


@SETTINGS
@given(keys=st.lists(KEYS, max_size=150))
def test_the_numpy_passes_order_keys_as_the_kernel_does(keys: list[bytes]) -> None:
    """Where the kernel was not built, numpy passes stand in for it, with the same answers."""
    column = c.column_of(list(keys))
    perm, same = c.var_order(column)
    numpy_perm, numpy_same = c._numpy_var_order(column) if len(keys) > 1 else (perm, same)
    assert numpy_perm.tolist() == perm.tolist() and numpy_same.tolist() == same.tolist()
    ordered = column.take(perm)
    assert c._numpy_same_keys(ordered).tolist() == c.same_keys(ordered).tolist() == same.tolist()


@SETTINGS
@given(keys=st.lists(KEYS, max_size=60), data=st.data())
def test_the_numpy_gather_takes_rows_as_the_kernel_does(keys: list[bytes], data: st.DataObject) -> None:
    column = c.column_of(list(keys))
    index = np.array(data.draw(st.lists(st.integers(0, max(len(keys) - 1, 0)), max_size=80 if keys else 0)), np.int64)
    taken = column.take(index)
    assert taken.tolist() == column._numpy_take(index).tolist() == [keys[i] for i in index.tolist()]
    with pytest.raises(IndexError):
        column.take(np.array([len(keys)], np.int64))


@pytest.mark.parametrize("offsets", [[0, 5], [0, 2, 1], [-1, 0], []])
def test_the_kernels_refuse_offsets_outside_the_data(offsets: list[int]) -> None:
    kernels = c.kernels
    assert kernels is not None
    data, bounds = np.frombuffer(b"abc", np.uint8), np.array(offsets, np.int64)
    assert np.frombuffer(kernels.var_order(data, np.array([0, 1, 2, 3], np.int64))[0], np.int64).tolist() == [0, 1, 2]
    for kernel in (kernels.var_order, kernels.same_keys):
        with pytest.raises(ValueError):
            kernel(data, bounds)
    with pytest.raises(ValueError):
        kernels.take_bytes(data, bounds, np.zeros(0, np.int64))


@SETTINGS
@given(pairs=st.lists(st.tuples(st.text(max_size=10), st.text(max_size=3)), max_size=120))
def test_text_values_order_equal_text_keys(pairs: list[tuple[str, str]]) -> None:
    batch = c.columns_of(([k for k, _ in pairs], [v for _, v in pairs]))
    assert batch.take(c.order(batch)).pairs() == sorted(pairs)


def test_text_columns_of_ascii_non_ascii_and_lone_surrogates_read_back_as_they_were() -> None:
    for items in (["a", "bc", ""], ["é", "ab", "日本"], ["a\ud800", "b"]):
        column = c.text_column(items)
        assert column.kind == c.STR and column.tolist() == items
        assert c.hash_partitions(column, 5).tolist() == [partition_of(k, 5) for k in items]


def test_columns_of_different_kinds_are_not_put_together() -> None:
    ints, floats = c.columns_of((["a"], [1])), c.columns_of((["b"], [1.5]))
    with pytest.raises(c.MixedColumns):
        c.concat_columns([ints, floats])


@SETTINGS
@given(pairs=st.lists(st.tuples(st.sampled_from(["a", "b", "bb", "abcdefghij", "abcdefghik", "é", ""]),
                                st.integers(-3, 3)), max_size=80),
       cuts=st.lists(st.integers(0, 80), max_size=5), read=st.integers(0, 3))
def test_groups_give_each_key_once_with_its_values_across_batches(pairs: list[tuple[str, int]], cuts: list[int],
                                                                  read: int) -> None:
    """A key whose rows span batches streams on through them; what reduce leaves unread is skipped."""
    ordered = sorted(pairs, key=lambda pair: pair[0])
    batch = c.columns_of(([k for k, _ in ordered], np.array([v for _, v in ordered], np.int64)))
    bounds = sorted({0, len(ordered), *(x for x in cuts if x <= len(ordered))})
    batches = [batch.slice(a, b) for a, b in zip(bounds, bounds[1:], strict=False)]
    want: dict[str, list[int]] = {}
    for key, value in ordered:
        want.setdefault(key, []).append(value)
    got = [(key, list(values) if read == 3 else [next(values) for _ in range(min(read, len(want[key])))])
           for key, values in c.groups(iter(batches))]
    assert [key for key, _ in got] == list(want)
    assert got == [(key, vs if read == 3 else vs[:read]) for key, vs in want.items()]


@SETTINGS
@given(pairs=st.lists(st.tuples(st.sampled_from(["x", "y", "yy", "abcdefghijk", "abcdefghijz"]),
                                st.integers(0, 1000)), max_size=300),
       cuts=st.lists(st.integers(0, 300), max_size=5), round_bytes=st.integers(1, 5000))
def test_a_merge_by_key_alone_keeps_each_runs_values_in_their_order(pairs: list[tuple[str, int]], cuts: list[int],
                                                                   round_bytes: int) -> None:
    """Runs sorted by key alone (a plain app's): merged by key, a key's values in run order within a run."""
    bounds = sorted({0, len(pairs), *(x for x in cuts if x <= len(pairs))})
    runs = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        piece = c.columns_of(([k for k, _ in pairs[a:b]], np.array([v for _, v in pairs[a:b]], np.int64)))
        runs.append(list(c.chunks(piece.take(c.order(piece, by_value=False)), 64)))
    got = {key: list(values) for key, values in c.groups(c.merge_sorted(runs, round_bytes, by_value=False))}
    assert list(got) == sorted(got)
    for key, values in got.items():
        assert sorted(values) == sorted(v for k, v in pairs if k == key)
        for a, b in zip(bounds, bounds[1:], strict=False):   # each run's values of the key, in the order they had
            mine = [v for k, v in pairs[a:b] if k == key]
            assert _subsequence(mine, values)


def _subsequence(part: list[int], whole: list[int]) -> bool:
    it = iter(whole)
    return all(any(x == y for y in it) for x in part)


@pytest.mark.parametrize(("values", "width"), [([0, 255 - 128, -128], 1), ([1, -30000], 2), ([1 << 20, -5], 4),
                                               ([1 << 40], 8), ([-(1 << 63), (1 << 63) - 1], 8)])
def test_ints_travel_in_the_fewest_bytes_that_hold_them_and_read_back_exactly(values: list[int], width: int) -> None:
    batch = c.columns_of((["k"] * len(values), values))
    body = c.encode(batch)
    assert struct.unpack_from("<BBIBIBI", body)[6] == width
    assert c.decode(body).pairs() == batch.pairs()
    assert c.chunk_kinds(body) == (c.STR, 0, c.INT, 0)   # as wide as it is, it is one kind


def test_lengths_of_keys_travel_narrow_too_and_long_keys_still_fit() -> None:
    for size, width in ((3, 1), (300, 2), (70_000, 4)):
        batch = c.columns_of(([b"x" * size, b""], [1, 2]))
        body = c.encode(batch)
        assert struct.unpack_from("<BBIBIBI", body)[4] == width
        assert c.decode(body).pairs() == batch.pairs()


def test_a_chunk_of_the_first_version_still_reads() -> None:
    """Version 1 wrote every length in 4 bytes and every int in 8, and widths of 0."""
    body = (struct.pack("<BBIBIBI", c.MAGIC, 1, 2, c.STR, 0, c.INT, 0) + struct.pack("<II", 1, 2) + b"abc"
            + struct.pack("<qq", 7, -1))
    assert c.decode(body).pairs() == [("a", 7), ("bc", -1)]
    with pytest.raises(ProtocolError):   # narrow widths are version 2's
        c.decode(body[:1] + b"\x01" + body[2:7] + struct.pack("<I", 1) + body[11:])
