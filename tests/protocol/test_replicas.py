"""Second copies of the output a mapper makes for its own partitions: where they go, and how a
MapLocations names them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zmr.protocol import messages as m


def test_the_replica_is_the_next_partitions_owner_that_is_another_worker() -> None:
    owners = ["a", "b", "c", "a", "b", "c"]
    assert [m.replica_owner(owners, p) for p in range(6)] == ["b", "c", "a", "b", "c", "a"]
    assert m.replica_owner(["a", "a", "b", "a"], 0) == "b"    # skips its own partitions
    assert m.replica_owner(["a", "a", "b", "a"], 3) == "b"    # wraps around
    assert m.replica_owner(["a", "a"], 1) is None              # one owner of all: no second copy
    assert m.replica_owner(["a", "b"], 2) is None              # no such partition


@given(st.lists(st.sampled_from("abcd"), min_size=1, max_size=40), st.data())
def test_a_replica_is_never_the_owner_itself(owners: list[str], data: st.DataObject) -> None:
    p = data.draw(st.integers(0, len(owners) - 1))
    replica = m.replica_owner(owners, p)
    assert (replica is None) == (len(set(owners)) == 1)
    assert replica != owners[p]


def _attempt() -> m.AttemptId:
    return m.AttemptId(job_id="job-1", kind="reduce", task=0, number=1)


def test_a_reducer_asks_replicas_for_what_they_received_before_it_asks_the_mappers() -> None:
    located = m.MapLocations(attempt=_attempt(), peers=["tcp://p1"], counts=[7], replicas=["tcp://r"],
                             replica_runs=[[(3, 5), (9, 10)]])
    assert m.peer_requests(located, [(0, 20)]) == [m.PeerRequest("tcp://r", [(3, 5), (9, 10)], 3, received=True),
                                                    m.PeerRequest("tcp://p1", [(0, 20)], 7)]


def test_a_map_locations_whose_replicas_and_their_maps_do_not_match_is_refused() -> None:
    bad = m.MapLocations(attempt=_attempt(), peers=[], replicas=["tcp://r"], replica_runs=[])
    with pytest.raises(ValueError, match="replicas"):
        m.check_locations(bad)
