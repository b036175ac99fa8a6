"""One change path: the journal a live scheduler writes rebuilds exactly its durable state.

The scheduler changes its durable state only by applying the records it journals, and replay applies
the same records with the same code. The property test checks it after every random step
(`check_replay` in test_scheduler_properties); these cases pin down snapshots and repeated records.
"""

from __future__ import annotations

from typing import get_args

from zmr.core import durable
from zmr.core.durable import Ledger
from zmr.protocol import journal as jr
from zmr.testing import check_replay, durable_view, sim_with


def replayed(records: list[jr.Record]) -> Ledger:
    ledger = Ledger(1)
    for record in records:
        ledger.apply(record)
    return ledger


def test_a_snapshot_replays_to_the_state_it_was_taken_of() -> None:
    sim = sim_with("w1", "w2", "w3")
    sim.submit(n_splits=4, n_reduce=2)
    sim.submit(n_splits=2, n_reduce=1)
    sim.finish(sim.busy()[0])
    sim.fail(sim.busy()[0])
    sim.kill("w3")
    sim.advance(sim.liveness_timeout + 1)
    check_replay(sim.journal, sim.scheduler)
    check_replay(sim.scheduler.snapshot(), sim.scheduler)


def test_replaying_each_record_twice_changes_nothing() -> None:
    sim = sim_with("w1", "w2")
    sim.submit(n_splits=3, n_reduce=2)
    sim.fail(sim.busy()[0])
    sim.finish(sim.busy()[0])
    sim.kill("w2")
    sim.run()
    twice = [r for record in sim.journal for r in (record, record)]
    assert durable_view(replayed(twice)) == durable_view(replayed(sim.journal)) == durable_view(sim.scheduler.book)


def test_a_journal_that_misses_a_change_is_caught() -> None:
    sim = sim_with("w1")
    sim.submit(n_splits=2, n_reduce=1)
    sim.finish("w1")
    lost = [r for r in sim.journal if not isinstance(r, jr.MapCommitted)]
    try:
        check_replay(lost, sim.scheduler)
    except AssertionError as exc:
        assert "job-0001" in str(exc)
    else:
        raise AssertionError("a journal without its map commit replayed to the live state")


def test_every_record_type_has_a_change() -> None:
    handled = {jr.Header, jr.WorkerJoined, jr.JobSubmitted, jr.EndedJob} | set(durable._JOB_CHANGES)
    assert handled == set(get_args(jr.Record))
