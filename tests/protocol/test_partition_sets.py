"""Partition sets as bitmaps: what ReleasePartitions and JobSetup carry."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from zmr.protocol import messages as m


def test_a_set_is_a_bitmap_from_its_first_member_on() -> None:
    s = m.PartitionSet.of([9, 2, 3, 2, 17])
    assert s.first == 2 and s.bits == bytes([0b1000_0011, 0b1000_0000])   # offsets 0, 1, 7 and 15
    assert s.members(100) == [2, 3, 9, 17]
    assert m.PartitionSet.of([]) == m.PartitionSet() and m.PartitionSet().members(10) == []


def test_members_stop_at_the_limit() -> None:
    assert m.PartitionSet.of([0, 5, 8, 9, 40]).members(9) == [0, 5, 8]
    assert m.PartitionSet(first=0, bits=b"\xff" * 10_000).members(3) == [0, 1, 2]
    assert m.PartitionSet(first=50, bits=b"\xff").members(10) == []


@given(st.sets(st.integers(0, 5000)))
def test_sets_give_back_their_members(partitions: set[int]) -> None:
    s = m.PartitionSet.of(partitions)
    assert s.members(5001) == sorted(partitions)
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(s), type=m.PartitionSet) == s


def test_a_set_costs_about_a_bit_per_partition_of_its_span() -> None:
    scattered = range(0, 10_000, 11)   # 910 commits spread over 10,000 partitions
    assert len(msgspec.msgpack.encode(m.PartitionSet.of(scattered))) < 1260
    assert len(msgspec.msgpack.encode(list(scattered))) > 2500
