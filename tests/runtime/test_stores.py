"""Worker stores keep data only under a lease: an open job, a partition in range, not yet released."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from zmr.runtime.stores import MapOutputStore, ReceiveStore


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_received_batches_are_stored_only_for_an_open_job_and_a_partition_in_range(tmp_path: Path) -> None:
    store = ReceiveStore(tmp_path)
    assert not store.add_batch("job-9", 0, 1, 0, 0, b"x", 1.0)          # no lease: never stored
    store.open_job("job-1", n_partitions=2)
    assert not store.add_batch("job-1", 0, 1, 2, 0, b"x", 1.0)          # no such partition
    assert not store.add_batch("job-1", 0, 1, -1, 0, b"x", 1.0)
    assert store.add_batch("job-1", 0, 1, 1, 0, b"abc", 1.0)
    assert not store.add_batch("job-1", 0, 1, 1, 0, b"abc", 1.0)        # a duplicate
    assert files(tmp_path) == ["job-1/recv/p1.data"]
    assert store.lease_counts() == {"job-1": 1}
    store.drop_partition("job-1", 1)
    assert files(tmp_path) == [] and store.lease_counts() == {}
    assert not store.add_batch("job-1", 3, 1, 1, 0, b"late", 1.0)       # released: a late batch is refused
    store.drop_job("job-1")
    assert not (tmp_path / "job-1").exists()


def test_kept_map_output_is_deleted_per_partition_and_refused_once_released(tmp_path: Path) -> None:
    kept = MapOutputStore(tmp_path)
    with pytest.raises(OSError, match="no lease"):
        kept.append("job-1", 0, 1, 0, b"x")
    kept.open_job("job-1")
    kept.begin("job-1", 2, 1)
    assert kept.batches("job-1", 2, 1, 0) == []                          # held, and empty
    assert kept.append("job-1", 0, 1, 0, b"a") == 0
    assert kept.append("job-1", 0, 1, 0, b"b") == 1
    assert kept.append("job-1", 0, 1, 1, b"c") == 0
    assert kept.counts("job-1", 0, 1) == {0: 2, 1: 1}
    assert kept.batches("job-1", 0, 1, 0) == [b"a", b"b"]
    assert kept.attempts("job-1") == [(0, 1), (2, 1)]
    kept.drop_partition("job-1", 0)
    assert files(tmp_path) == ["job-1/maps/p1.data"]
    assert kept.batches("job-1", 0, 1, 0) is None
    assert kept.append("job-1", 1, 1, 0, b"d") is None                  # nobody will read it: not kept
    assert kept.lease_counts() == {"job-1": 1}
    kept.drop_job("job-1")
    assert files(tmp_path) == []


def test_a_reducer_waits_for_streams_still_arriving_but_not_for_silence(tmp_path: Path) -> None:
    store = ReceiveStore(tmp_path)
    store.open_job("job-1", n_partitions=1)
    store.add_batch("job-1", 0, 1, 0, 0, b"a", 1.0)
    store.add_end("job-1", 0, 1, {0: 1})                                 # map 0: complete

    def late_stream() -> None:                                           # map 1: lands in pieces, 0.1 s apart
        for seq in range(3):
            time.sleep(0.1)
            store.add_batch("job-1", 1, 1, 0, seq, b"b", 1.0)
        time.sleep(0.1)
        store.add_end("job-1", 1, 1, {0: 3})

    sender = threading.Thread(target=late_stream)
    started = time.monotonic()
    sender.start()
    store.await_streams("job-1", 0, [(0, 1), (1, 1)], settle=0.5, limit=5.0)
    waited = time.monotonic() - started
    sender.join()
    assert store.complete("job-1", 0, 1, 1) and 0.35 <= waited < 2.0, "returned as soon as the stream was whole"

    started = time.monotonic()   # map 2 never sends anything: give up after `settle`, and pull it
    store.await_streams("job-1", 0, [(0, 1), (2, 1)], settle=0.2, limit=5.0)
    assert 0.15 <= time.monotonic() - started < 1.0
    assert not store.complete("job-1", 0, 2, 1)
