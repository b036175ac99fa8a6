"""Partition batches: map-side buffers, the chunked wire encoding of flat pairs, and the reduce-side k-way merge."""

from __future__ import annotations

import itertools
import random
import struct
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator

import lz4.block
import msgspec
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from zmr.core.batches import (
    CHUNK_RECORDS,
    INT_MAX,
    INT_MIN,
    MAX_CHUNK_BYTES,
    Packer,
    Pairs,
    PartitionBuffers,
    chunk_header,
    decode_batch,
    decode_chunk,
    encode_batch,
    encode_chunk,
    iter_batch,
    merge_chunked,
    merge_runs,
)
from zmr.core.partition import partition_of
from zmr.errors import ProtocolError

SETTINGS = settings(max_examples=100, deadline=None, derandomize=True, database=None)
KEYS = st.text(alphabet="abcdefgh", min_size=1, max_size=4)
RECORDS = st.lists(st.tuples(KEYS, st.text(alphabet="0123456789xyz", max_size=6)), max_size=300)


def add_sum(_key: str, values: list[str]) -> str:
    """An associative combiner over integers written as text."""
    return str(sum(int(v) for v in values))


def feed(buffers: PartitionBuffers, records: list[tuple[str, str]],
         partition: Callable[[str, int], int], n: int, batch_bytes: int, max_bytes: int,
         ) -> list[tuple[int, Pairs]]:
    """Add every record, checking after each add that buffered data stays within both bounds."""
    pending = [0] * n            # raw bytes (key + value) added to a partition since its last run came out
    out: list[tuple[int, Pairs]] = []
    for key, value in records:
        pending[partition(key, n)] += len(key) + len(value)
        for p, run in buffers.add(key, value):
            out.append((p, run))
            pending[p] = 0
        assert max(pending) < batch_bytes
        assert sum(pending) <= max_bytes
    out += buffers.drain()
    assert buffers.drain() == []
    return out


def check_run(p: int, run: Pairs, partition: Callable[[str, int], int], n: int, combined: bool = False) -> None:
    keys = [k for k, _ in run]
    assert run, "no empty runs"
    assert keys == sorted(keys), "keys ascending"
    if combined:
        assert len(set(keys)) == len(keys), "one pair per key once combined"
    assert all(partition(k, n) == p for k in keys), "every key in its own partition"


@SETTINGS
@given(records=RECORDS, n=st.integers(1, 5), batch_bytes=st.integers(1, 200), cap=st.integers(1, 400))
def test_buffers_give_sorted_runs_within_bounds_and_lose_nothing(records: list[tuple[str, str]], n: int,
                                                                 batch_bytes: int, cap: int) -> None:
    out = feed(PartitionBuffers(n, batch_bytes, cap, partition_of, None), records, partition_of, n,
               batch_bytes, cap)
    values: dict[str, list[str]] = defaultdict(list)
    for p, run in out:
        check_run(p, run, partition_of, n)
        for key, value in run:
            values[key].append(value)
    assert Counter((k, v) for k, vs in values.items() for v in vs) == Counter(records)
    expected: dict[str, list[str]] = defaultdict(list)
    for key, value in records:
        expected[key].append(value)
    assert values == expected, "a key's values come out in the order they went in"


@SETTINGS
@given(records=st.lists(st.tuples(KEYS, st.integers(-50, 50).map(str)), max_size=300),
       n=st.integers(1, 4), batch_bytes=st.integers(1, 200), cap=st.integers(1, 400))
def test_buffers_combine_within_each_run(records: list[tuple[str, str]], n: int, batch_bytes: int,
                                         cap: int) -> None:
    out = feed(PartitionBuffers(n, batch_bytes, cap, partition_of, add_sum), records, partition_of, n,
               batch_bytes, cap)
    totals: Counter[str] = Counter()
    for p, run in out:
        check_run(p, run, partition_of, n, combined=True)
        for key, value in run:
            totals[key] += int(value)
    expected: Counter[str] = Counter()
    for key, value in records:
        expected[key] += int(value)
    assert {k: v for k, v in totals.items()} == {k: v for k, v in expected.items()}
    assert sum(len(run) for _, run in out) <= len(records)


def test_a_full_partition_comes_out_at_once() -> None:
    buffers = PartitionBuffers(1, batch_bytes=30, max_bytes=1000, partition=lambda k, n: 0, combine=None)
    assert buffers.add("b", "1" * 10) == []                 # 1 + 10 + 8 bytes of framing = 19
    assert buffers.add("a", "2" * 10) == [(0, [("a", "2" * 10), ("b", "1" * 10)])]
    assert buffers.drain() == []


def test_over_the_cap_the_largest_partition_comes_out() -> None:
    buffers = PartitionBuffers(3, batch_bytes=100, max_bytes=50, partition=lambda k, n: int(k[0]),
                               combine=None)
    assert buffers.add("0", "x" * 5) == []
    assert buffers.add("1", "x" * 20) == []
    assert buffers.add("2", "x" * 10) == [(1, [("1", "x" * 20)])]   # 14 + 29 + 19 > 50
    assert buffers.drain() == [(0, [("0", "x" * 5)]), (2, [("2", "x" * 10)])]


def test_a_single_value_is_not_combined() -> None:
    calls: list[str] = []

    def combine(key: str, values: list[str]) -> str:
        calls.append(key)
        return ",".join(values)

    buffers = PartitionBuffers(1, 1000, 1000, lambda k, n: 0, combine)
    for key, value in [("a", "1"), ("b", "2"), ("a", "3")]:
        buffers.add(key, value)
    assert buffers.drain() == [(0, [("a", "1,3"), ("b", "2")])]
    assert calls == ["a"]


def by_key(out: list[tuple[int, Pairs]]) -> dict[tuple[int, str], list[str]]:
    """(partition, key) -> the key's values in the order the runs hold them."""
    grouped: dict[tuple[int, str], list[str]] = defaultdict(list)
    for p, run in out:
        for key, value in run:
            grouped[(p, key)].append(value)
    return grouped


@SETTINGS
@given(records=RECORDS, n=st.integers(1, 5), batch_bytes=st.integers(1, 4000), cap=st.integers(1, 8000))
def test_add_all_in_blocks_matches_add_one_by_one(records: list[tuple[str, str]], n: int, batch_bytes: int,
                                                  cap: int) -> None:
    one_by_one = PartitionBuffers(n, batch_bytes, cap, partition_of, None)
    expected = [due for key, value in records for due in one_by_one.add(key, value)] + one_by_one.drain()
    bulk = PartitionBuffers(n, batch_bytes, cap, None, None)
    yielded = list(bulk.add_all(records))
    got = [due for due in yielded if due is not None] + bulk.drain()
    for p, run in got:
        check_run(p, run, partition_of, n)
    assert by_key(got) == by_key(expected), "same partitions, same values in the same order"
    assert yielded.count(None) >= (1 if records else 0), "a tick after every block"
    assert bulk.records == len(records)


@SETTINGS
@given(words=st.lists(st.sampled_from(["a", "b", "tree", "\ud800", "\u00e9t\u00e9", "z" * 30]), max_size=3000),
       n=st.integers(1, 6), batch_bytes=st.sampled_from([64, 1000, 1 << 20]))
def test_blocks_partition_and_combine_like_the_reference(words: list[str], n: int, batch_bytes: int) -> None:
    buffers = PartitionBuffers(n, batch_bytes, 4 * batch_bytes, None, add_sum)
    out = [due for due in buffers.add_all((w, "1") for w in words) if due is not None] + buffers.drain()
    totals: Counter[str] = Counter()
    for p, run in out:
        check_run(p, run, partition_of, n, combined=True)
        for key, value in run:
            totals[key] += int(value)
    assert totals == Counter(words)


@SETTINGS
@given(calls=st.lists(st.tuples(st.booleans(), st.lists(KEYS, max_size=60)), max_size=6),
       n=st.integers(1, 3), batch_bytes=st.sampled_from([8, 64, 1 << 20]))
def test_a_dicts_items_are_combined_with_what_other_calls_added(calls: list[tuple[bool, list[str]]], n: int,
                                                                batch_bytes: int) -> None:
    """A partition holding one dict's items has distinct keys; once another call adds to it (a dict's
    items or anything else), its run is combined again."""
    buffers = PartitionBuffers(n, batch_bytes, 4 * batch_bytes, None, add_sum)
    out: list[tuple[int, Pairs]] = []
    expected: Counter[str] = Counter()
    for as_dict, words in calls:
        counts = Counter(words)
        expected += counts
        pairs = {w: str(c) for w, c in counts.items()}.items() if as_dict else [(w, "1") for w in words]
        out += [due for due in buffers.add_all(pairs) if due is not None]
    out += buffers.drain()
    totals: Counter[str] = Counter()
    for p, run in out:
        check_run(p, run, partition_of, n, combined=True)
        for key, value in run:
            totals[key] += int(value)
    assert totals == expected


class Word(str):
    """A str subclass: not the fast path's exact type, but a valid key."""


def test_add_all_sends_anything_but_a_str_pair_to_check() -> None:
    seen: list[object] = []

    def check(pair: object) -> tuple[str, str]:
        seen.append(pair)
        if isinstance(pair, list):
            raise ValueError(f"not a tuple: {pair!r}")
        return pair  # type: ignore[return-value]  # a wrong pair, on purpose

    buffers = PartitionBuffers(1, 1000, 1000, None, None)
    assert list(buffers.add_all([("a", "1"), (Word("b"), "2")], check)) == [None], "no run due, one tick"
    assert seen == [("b", "2")]
    with pytest.raises(ValueError, match="not a tuple"):
        list(buffers.add_all([["c", "3"]], check))
    with pytest.raises(TypeError, match="expected a"):
        list(buffers.add_all(["ab"]))
    assert buffers.drain() == [(0, [("a", "1"), ("b", "2")])]


@pytest.mark.parametrize("values", [[1, 2, 3], [1.5, -2.0, 3], ["1", 2, 3.0], [INT_MIN, INT_MAX, 0]])
def test_numbers_take_the_fast_path_and_combine(values: list[object]) -> None:
    def check(pair: object) -> tuple[str, str]:
        raise AssertionError(f"valid pair sent to check: {pair!r}")

    buffers = PartitionBuffers(1, 1000, 1000, None, lambda key, vs: len(vs))
    assert list(buffers.add_all([("k", v) for v in values] + [("j", 7)], check)) == [None]
    assert buffers.drain() == [(0, [("j", 7), ("k", 3)])]


@pytest.mark.parametrize("bad", [True, 2**64, INT_MIN - 1, None, b"1"])
def test_a_value_msgpack_cannot_carry_goes_to_check(bad: object) -> None:
    seen: list[object] = []

    def check(pair: object) -> tuple[str, str]:
        seen.append(pair)
        raise ValueError("bad value")

    buffers = PartitionBuffers(1, 1000, 1000, None, None)
    with pytest.raises(ValueError, match="bad value"):
        list(buffers.add_all([("a", 1), ("b", bad), ("c", "3")], check))
    assert seen == [("b", bad)]


def test_numbers_count_toward_the_batch_bound() -> None:
    buffers = PartitionBuffers(1, 100, 10_000, None, None)
    due = [run for run in buffers.add_all((f"k{i:03d}", i) for i in range(40)) if run]
    assert due and all(len(run) < 40 for _, run in due), "a run falls due once numbers fill the batch"


# ---------------------------------------------------------------- merging runs

RUN = st.lists(st.tuples(KEYS, st.text(alphabet="uvw", max_size=2)), max_size=20).map(
    lambda pairs: sorted(pairs, key=lambda pair: pair[0]))


def grouped(runs: list[Pairs]) -> dict[str, list[str]]:
    expected: dict[str, list[str]] = defaultdict(list)
    for run in runs:
        for key, value in run:
            expected[key].append(value)
    return expected


@SETTINGS
@given(runs=st.lists(RUN, max_size=6))
def test_merge_runs_groups_like_a_dict(runs: list[Pairs]) -> None:
    expected = grouped(runs)
    merged = [(key, list(values)) for key, values in merge_runs(iter(r) for r in runs)]
    assert [k for k, _ in merged] == sorted(expected)
    assert {k: sorted(vs) for k, vs in merged} == {k: sorted(vs) for k, vs in expected.items()}
    assert [key for key, _ in merge_runs(runs)] == sorted(expected), "every key, even if values are skipped"


@settings(SETTINGS, max_examples=40)
@given(runs=st.lists(st.lists(st.tuples(st.sampled_from("abc"), st.text(max_size=2)), max_size=4 * CHUNK_RECORDS)
                     .map(lambda pairs: sorted(pairs, key=lambda pair: pair[0])), max_size=4),
       read=st.integers(0, 3 * CHUNK_RECORDS))
def test_a_key_spanning_many_chunks_comes_out_once_with_every_value(runs: list[Pairs], read: int) -> None:
    expected = grouped(runs)
    streamed = [(k, list(vs)) for k, vs in merge_runs(iter_batch(encode_batch(run)) for run in runs)]
    assert [k for k, _ in streamed] == sorted(expected)
    assert {k: sorted(vs) for k, vs in streamed} == {k: sorted(vs) for k, vs in expected.items()}
    partly = [(k, list(itertools.islice(vs, read))) for k, vs in merge_runs(iter_batch(encode_batch(r)) for r in runs)]
    assert [(k, len(vs)) for k, vs in partly] == [(k, min(read, len(expected[k]))) for k in sorted(expected)], (
        "a reduce that reads only some values leaves the rest behind, not in the next key")


def test_a_huge_key_streams_a_chunk_at_a_time() -> None:
    """One key over many chunks in two runs: its values come out before the later chunks are read."""
    read: list[int] = []

    def run(tag: str, n_chunks: int) -> Iterator[Pairs]:
        for i in range(n_chunks):
            read.append(i)
            yield [("k", f"{tag}{i}.{j}") for j in range(CHUNK_RECORDS)]
        yield [("z", tag)]

    groups = merge_chunked([run("a", 50), run("b", 50)])
    key, values = next(groups)
    assert key == "k"
    first = list(itertools.islice(values, 10))
    assert len(first) == 10 and len(read) <= 4, "values flow before the key's later chunks are read"
    assert sum(1 for _ in values) == 100 * CHUNK_RECORDS - 10
    assert [(k, sorted(vs)) for k, vs in groups] == [("z", ["a", "b"])]


# ---------------------------------------------------------------- the wire encoding

VALUES = st.one_of(st.text(max_size=8), st.integers(min_value=INT_MIN, max_value=INT_MAX),
                   st.floats(allow_nan=False))
RECORD_LISTS = st.lists(st.tuples(st.text(max_size=8), VALUES), max_size=3 * CHUNK_RECORDS)


@SETTINGS
@given(records=RECORD_LISTS)
def test_encode_decode_round_trip(records: Pairs) -> None:
    payload = encode_batch(records)
    assert decode_batch(payload) == records
    assert decode_batch(memoryview(payload)) == records
    assert list(iter_batch(payload)) == records
    assert [type(v) for _, v in decode_batch(payload)] == [type(v) for _, v in records], "a number stays a number"


@pytest.mark.parametrize("value", [True, None, b"x", [1]])
def test_decode_rejects_a_value_that_is_not_str_int_or_float(value: object) -> None:
    with pytest.raises(ProtocolError, match="malformed batch"):
        decode_chunk(msgspec.msgpack.encode([["k", value]]))


def test_a_batch_is_length_prefixed_chunks_of_at_most_chunk_records() -> None:
    records = [(f"k{i:04d}", str(i)) for i in range(CHUNK_RECORDS + 1)]
    payload = encode_batch(records)
    first = encode_chunk(records[:CHUNK_RECORDS])
    assert payload == first + encode_chunk(records[CHUNK_RECORDS:])
    (length,) = struct.unpack("<I", first[:4])
    assert length == len(first) - 4
    assert decode_chunk(first[4:]) == records[:CHUNK_RECORDS]
    assert encode_batch([]) == b"" and decode_batch(b"") == []


@pytest.mark.parametrize("payload", [
    b"\x01",                                        # a truncated length
    b"\x05\x00\x00\x00abc",                         # a chunk longer than the run
    b"\x00\x00\x00\x00",                            # an empty chunk body
    b"\x01\x00\x00\x00\xc1",                        # not msgpack
    struct.pack("<I", 3) + msgspec.msgpack.encode({"a": 1}),           # not an array
    encode_chunk([]) + b"\x02\x00\x00\x00\x91\x01",                    # a record that is not a pair
    struct.pack("<I", 7) + msgspec.msgpack.encode([["k", ["v"]]]),     # a value that is not a str
    struct.pack("<I", 4) + b"\x91\x92\xa1k",                           # truncated inside a record
])
def test_decode_batch_rejects_garbage(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_batch(payload)


def test_chunk_header_checks_the_length_against_the_run_and_names_the_codec() -> None:
    assert chunk_header(struct.pack("<I", 10), 14) == (0, 10)
    assert chunk_header(struct.pack("<I", 10 | 2 << 30), 14) == (2, 10)
    with pytest.raises(ProtocolError):
        chunk_header(struct.pack("<I", 11), 14)
    with pytest.raises(ProtocolError):
        chunk_header(b"\x01\x00", 14)


WORDS = [(f"word{i // 3:05d}", i % 7) for i in range(3 * CHUNK_RECORDS)]   # sorted, compressible


@pytest.mark.parametrize("compression", ["lz4", "zstd"])
def test_compressed_chunks_read_back_as_the_pairs_and_are_smaller(compression: str) -> None:
    packer = Packer(compression)  # type: ignore[arg-type]
    payload = packer.batch(WORDS)
    assert decode_batch(payload) == WORDS
    assert len(payload) < len(encode_batch(WORDS)) // 2
    codecs = {chunk_header(payload, len(payload))[0]}
    assert codecs == {1 if compression == "lz4" else 2}


def test_a_chunk_that_compression_does_not_shrink_stays_raw() -> None:
    draw = random.Random(3)
    noise = [(f"k{i:03d}", "".join(chr(0x4E00 + draw.randrange(20000)) for _ in range(60))) for i in range(30)]
    tiny = [("a", 1)]
    for pairs, compression in [(noise, "lz4"), (tiny, "lz4"), (tiny, "zstd")]:   # no repeats; too small
        chunk = Packer(compression).chunk(pairs)  # type: ignore[arg-type]
        assert chunk == encode_chunk(pairs) and decode_batch(chunk) == pairs


def test_an_unknown_compression_is_refused() -> None:
    with pytest.raises(ValueError, match="compression must be one of"):
        Packer("gzip")  # type: ignore[arg-type]


def _compressed(codec: int, body: bytes) -> bytes:
    return struct.pack("<I", len(body) | codec << 30) + body


@pytest.mark.parametrize("payload", [
    _compressed(1, b"\x05\x00\x00\x00garbage!"),                              # lz4 that does not decode
    _compressed(1, b"\x01"),                                                  # lz4 without its size
    _compressed(1, struct.pack("<I", MAX_CHUNK_BYTES + 1) + b"\x00" * 8),     # a bomb: claims 1 GiB
    _compressed(1, lz4.block.compress(b"\xc1", store_size=True)),             # decodes to garbage
    _compressed(2, b"\x28\xb5\x2f\xfd garbage"),                               # zstd that does not decode
    _compressed(2, zstandard.ZstdCompressor(write_content_size=False).compress(b"\x90")),   # no size
    _compressed(3, b"\x00" * 8),                                              # no such codec
])
def test_compressed_garbage_is_a_protocol_error(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_batch(payload)




def test_decode_batch_rejects_a_string_that_is_not_utf8() -> None:
    body = msgspec.msgpack.encode([["k", "v"]]).replace(b"\xa1k", b"\xa1\x80")
    with pytest.raises(ProtocolError):
        decode_batch(struct.pack("<I", len(body)) + body)


@settings(SETTINGS, max_examples=200)
@given(payload=st.one_of(
    st.binary(max_size=64),
    st.binary(max_size=60).map(lambda b: struct.pack("<I", len(b)) + b),
    RECORD_LISTS.map(encode_batch).flatmap(lambda p: st.tuples(st.just(p), st.integers(0, max(0, len(p) - 1)),
                                                                   st.integers(0, 255))).map(
        lambda t: t[0][:t[1]] + bytes([t[2]]) + t[0][t[1] + 1:]),
))
def test_decode_batch_on_garbage_raises_only_protocol_error(payload: bytes) -> None:
    try:
        records = decode_batch(payload)
    except ProtocolError:
        return
    assert all(type(k) is str and type(v) in (str, int, float) for k, v in records)


def test_a_partition_out_of_range_goes_to_check_partition() -> None:
    def check(key: str, n: int, p: object) -> int:
        if p is True:
            raise ValueError(f"{key}: a bool is not a partition")
        return 0   # accepted, and replaced

    buffers = PartitionBuffers(2, 1000, 1000, lambda k, n: {"a": 1, "b": 7, "c": True}[k], None, check)
    assert list(buffers.add_all([("a", "1"), ("b", "2")])) == [None], "no run due, one tick"
    with pytest.raises(ValueError, match="a bool is not a partition"):
        list(buffers.add_all([("c", "3")]))
    assert buffers.drain() == [(0, [("b", "2")]), (1, [("a", "1")])]
    with pytest.raises(ValueError, match="not an int in range"):
        list(PartitionBuffers(2, 1000, 1000, lambda k, n: 2, None).add_all([("x", "1")]))


def test_auto_compression_backs_off_from_data_it_cannot_shrink_and_packs_what_it_can() -> None:
    """`auto` is lz4 measured as it goes: a chunk that does not shrink makes it leave the next 1, 2, 4 ...
    chunks untried, and one that shrinks starts it over."""
    rng = random.Random(4)
    noise = [(f"{rng.getrandbits(64):016x}", rng.randbytes(40).hex()) for _ in range(CHUNK_RECORDS)]
    text = [(f"k{i:05d}", "the same words again " * 3) for i in range(CHUNK_RECORDS)]
    packer = Packer("auto")
    codecs = [chunk_header(packer.chunk(pairs), 1 << 30)[0] for pairs in [noise] * 8 + [text] * 8]
    # noise: tried, then 1 left untried, tried, 2 untried, tried; the text chunks after the last noise
    # one still wait out its skip of 4 (here: 2 noise + 2 text), then all pack with lz4 (codec 1)
    assert codecs[:8] == [0] * 8
    assert codecs[8:10] == [0, 0] and codecs[10:] == [1] * 6
    assert decode_batch(b"".join(Packer("auto").chunk(p) for p in [noise, text])) == noise + text
