"""The attempt log a job's timeline is drawn from: spans open at assignment, close with their outcome."""

from __future__ import annotations

from zmr.core.state import AttemptLog


def test_spans_close_with_their_outcome_and_backups_are_marked() -> None:
    log = AttemptLog(limit=10)
    log.begin("map", 0, 1, "w-1", 10.0, backup=False)
    log.begin("map", 0, 2, "w-2", 11.0, backup=True)
    log.begin("reduce", 0, 1, "w-1", 12.0, backup=False)
    log.end("map", 0, 2, 13.0, "ok")
    log.end("map", 0, 1, 13.5, "cancelled")
    log.end("map", 0, 1, 14.0, "failed")   # already closed: the first outcome stands
    assert [(s.kind, s.number, s.worker, s.started, s.ended, s.outcome, s.backup) for s in log.spans] == [
        ("map", 1, "w-1", 10.0, 13.5, "cancelled", False),
        ("map", 2, "w-2", 11.0, 13.0, "ok", True),
        ("reduce", 1, "w-1", 12.0, None, "running", False),
    ]
    log.end_all(20.0, "cancelled")
    assert log.spans[2].ended == 20.0 and log.spans[2].outcome == "cancelled"


def test_past_its_limit_attempts_are_only_counted() -> None:
    log = AttemptLog(limit=2)
    for number in (1, 2, 3, 4):
        log.begin("map", 7, number, "w-1", float(number), backup=False)
    assert [s.number for s in log.spans] == [1, 2] and log.dropped == 2
    log.end("map", 7, 3, 9.0, "ok")   # not kept: nothing to close, nothing breaks
    assert all(s.outcome == "running" for s in log.spans)
