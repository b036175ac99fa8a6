"""Runs on disk and the memory-bounded merge: same result as grouping in memory, at any fan-in."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zmr.core.batches import CHUNK_RECORDS, Packer, encode_batch
from zmr.errors import ProtocolError
from zmr.protocol.messages import Compression
from zmr.runtime.runs import merged, read_run, write_run

keys = st.text(alphabet="abcdefgh", min_size=1, max_size=4)
runs_strategy = st.lists(st.dictionaries(keys, st.lists(st.text(max_size=3), min_size=1, max_size=3), max_size=40),
                         max_size=12)


def _write_batches(path: Path, batches: list[dict[str, list[str]]]) -> list[tuple[str, int, int]]:
    runs = []
    with open(path, "wb") as f:
        for batch in batches:
            payload = encode_batch(sorted((key, value) for key, values in batch.items() for value in values))
            runs.append((str(path), f.tell(), len(payload)))
            f.write(payload)
    return runs


@settings(max_examples=60, deadline=None)
@given(batches=runs_strategy, fan_in=st.integers(min_value=2, max_value=5))
def test_bounded_merge_equals_grouping_in_memory(tmp_path_factory: pytest.TempPathFactory,
                                                 batches: list[dict[str, list[str]]], fan_in: int) -> None:
    folder = tmp_path_factory.mktemp("runs")
    runs = _write_batches(folder / "p0.data", batches)
    expected: dict[str, list[str]] = defaultdict(list)
    for batch in batches:
        for key, values in batch.items():
            expected[key] += values
    got = [(key, list(values)) for key, values in merged(runs, fan_in, folder / "scratch")]
    assert [k for k, _ in got] == sorted(expected)                       # each key once, in order
    assert {k: sorted(v) for k, v in got} == {k: sorted(v) for k, v in expected.items()}


def test_a_run_streams_many_chunks(tmp_path: Path) -> None:
    records = [(f"k{i:06d}", str(i)) for i in range(CHUNK_RECORDS * 5 + 7)]
    run = write_run(tmp_path / "r.run", records)
    assert list(read_run(run)) == records


def test_a_truncated_run_is_a_protocol_error(tmp_path: Path) -> None:
    path = tmp_path / "p.data"
    payload = encode_batch([("a", "1"), ("b", "2")])
    path.write_bytes(payload)
    with pytest.raises(ProtocolError):
        list(read_run((str(path), 0, len(payload) - 2)))


@settings(max_examples=25, deadline=None)
@given(runs=st.lists(st.lists(st.tuples(st.sampled_from("abc"), st.text(max_size=2)), max_size=3 * CHUNK_RECORDS)
                     .map(lambda pairs: sorted(pairs, key=lambda pair: pair[0])), max_size=7),
       fan_in=st.integers(min_value=2, max_value=3),
       compression=st.sampled_from(["none", "lz4", "zstd"]))
def test_keys_spanning_chunks_survive_merges_on_disk(tmp_path_factory: pytest.TempPathFactory,
                                                     runs: list[list[tuple[str, str]]], fan_in: int,
                                                     compression: Compression) -> None:
    """Runs where one key fills many chunks, merged in levels through files: each key once, no value lost;
    the same with compressed chunks, received and merged on disk."""
    folder = tmp_path_factory.mktemp("dups")
    path = folder / "p0.data"
    segments = []
    packer = Packer(compression)
    with open(path, "wb") as f:
        for run in runs:
            payload = packer.batch(run)
            segments.append((str(path), f.tell(), len(payload)))
            f.write(payload)
    expected: dict[str, list[str]] = defaultdict(list)
    for run in runs:
        for key, value in run:
            expected[key].append(value)
    got = [(key, list(values)) for key, values in merged(segments, fan_in, folder / "scratch", packer)]
    assert [k for k, _ in got] == sorted(expected)
    assert {k: sorted(v) for k, v in got} == {k: sorted(v) for k, v in expected.items()}


def test_a_merge_on_disk_reports_progress_as_it_writes(tmp_path: Path) -> None:
    """A reducer with more runs than its fan-in merges for a long time before its first result: it must
    tick meanwhile, or the coordinator takes it for a hung task."""
    records = [(f"k{i:06d}", str(i)) for i in range(CHUNK_RECORDS * 200)]
    path = tmp_path / "p0.data"
    runs = []
    with open(path, "ab") as f:
        for start in range(0, len(records), len(records) // 4):
            payload = encode_batch(records[start:start + len(records) // 4])
            runs.append((str(path), f.tell(), len(payload)))
            f.write(payload)
    ticks: list[int] = []
    groups = merged(runs, 2, tmp_path / "scratch", tick=lambda: ticks.append(1))
    assert len(ticks) == 2   # two merged runs of 100 chunks: a tick each 64 chunks written
    assert [(key, list(values)) for key, values in groups] == [(k, [v]) for k, v in records]


@pytest.mark.parametrize("codec", ["none", "lz4"])
def test_grouped_merges_column_runs_as_columns_and_any_run_of_pairs_as_pairs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, codec: Compression) -> None:
    """Runs that all start with column chunks of one kind (an empty run says nothing) merge as columns;
    one run of pairs, or of another kind of value, sends them all to the merge of pairs. Both give each
    key once with its values, in order."""
    from zmr.core import columns
    from zmr.runtime import runs as runs_module

    packer = Packer(codec)
    path = tmp_path / "runs.data"
    payloads = {
        "ints": packer.columns(columns.columns_of((["a", "b"], [1, 2]))),
        "more ints": packer.columns(columns.columns_of((["a", "c"], [3, 4]))),
        "floats": packer.columns(columns.columns_of((["a"], [0.5]))),
        "pairs": packer.batch([("b", 5)]),
    }
    at: dict[str, tuple[str, int, int]] = {}
    with open(path, "wb") as out:
        for name, payload in payloads.items():
            at[name] = (str(path), out.tell(), len(payload))
            out.write(payload)
    empty = (str(path), 0, 0)
    pair_merges: list[int] = []
    real_merged = runs_module.merged

    def counted(*args: object, **kwargs: object) -> object:
        pair_merges.append(1)
        return real_merged(*args, **kwargs)   # type: ignore[arg-type]

    monkeypatch.setattr(runs_module, "merged", counted)

    def grouped(names: list[str], *extra: tuple[str, int, int]) -> dict[str, list[object]]:
        return {key: list(values) for key, values in runs_module.grouped(
            [at[name] for name in names] + list(extra), 16, tmp_path / "scratch", packer)}

    assert grouped(["ints", "more ints"], empty) == {"a": [1, 3], "b": [2], "c": [4]}
    assert pair_merges == []
    assert grouped(["ints", "pairs"]) == {"a": [1], "b": [2, 5]}
    assert grouped(["ints", "floats"]) == {"a": [1, 0.5], "b": [2]}
    assert pair_merges == [1, 1]


_MANY = 400_000


def _swallowing_reduce(values: Iterator[object]) -> list[object]:
    """An app's reduce that catches whatever its values loop raises and returns what it read."""
    got: list[object] = []
    try:
        for value in values:
            got.append(value)
    except Exception:   # noqa: BLE001 - what some apps do; the watch must still see the failure
        pass
    return got


@pytest.mark.parametrize("kind", ["pairs", "columns", "columns then pairs"])
def test_a_failed_read_inside_reduce_is_seen_even_if_the_app_catches_it(tmp_path: Path, kind: str) -> None:
    """One key's values go on into a run's second chunk, which is damaged (or, for a column merge, holds
    pairs): the read fails inside the app's reduce. An app that catches it must not make the merge look
    complete: the watch holds the failure, and `check` raises it."""
    from zmr.core import columns
    from zmr.runtime.runs import Watch, grouped

    packer = Packer()
    many = [("k", i) for i in range(_MANY)] + [("z", 1)]   # more of k than a merge reads ahead
    if kind == "pairs":
        body = encode_batch(many)
    else:
        batch = columns.columns_of(([k for k, _ in many], [v for _, v in many]))
        first, second = batch.slice(0, _MANY - 1000), batch.slice(_MANY - 1000, len(batch))
        body = packer.columns(first) + (packer.batch(second.pairs()) if kind == "columns then pairs"
                                        else packer.columns(second))
    if kind != "columns then pairs":
        damaged = bytearray(body)
        damaged[-3] ^= 0xFF   # a byte of the run's last chunk
        body = bytes(damaged[:-1])   # and cut short: its length no longer adds up
    path = tmp_path / "run.data"
    path.write_bytes(body)
    run = (str(path), 0, len(body))
    watch = Watch()
    merge = merged if kind == "pairs" else grouped
    results = {}
    try:
        for key, values in merge([run], 4, tmp_path / "scratch", watch=watch):
            results[key] = _swallowing_reduce(values)
    except (ProtocolError, ValueError):
        pass   # raised between keys: the task fails there in any case
    assert watch.error is not None
    with pytest.raises((ProtocolError, ValueError)):
        watch.check()
    assert 0 < len(results["k"]) < _MANY, "the failure must come inside the reduce, and be caught there"
