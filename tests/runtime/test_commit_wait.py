"""A reduce awaiting its commit decision acts on a grant only if the worker did not stand still meanwhile."""

from __future__ import annotations

import pytest

from zmr.protocol import messages as m
from zmr.runtime.executor import Cancelled, Executor, Quit, Stalled, _StaleGrant

ASSIGN = m.AssignReduce(attempt=m.AttemptId(job_id="job-0001", kind="reduce", task=0, number=2),
                        output_dir="/unused", n_maps=0, commits_base=0, commits=[])


def _decision(ok: bool, attempt: int = 2) -> m.CommitDecision:
    return m.CommitDecision(attempt=m.AttemptId(job_id="job-0001", kind="reduce", task=0, number=attempt), ok=ok)


def test_the_grant_for_this_attempt_is_taken_and_others_are_skipped(executor: Executor) -> None:
    executor.inbox.put(_decision(True, attempt=1))   # another attempt's decision: not ours
    executor.inbox.put(_decision(True))
    assert executor._await_commit(ASSIGN) is True
    executor.inbox.put(_decision(False))
    assert executor._await_commit(ASSIGN) is False


def test_no_answer_within_the_commit_timeout_means_no_commit(executor: Executor) -> None:
    assert executor._await_commit(ASSIGN) is False


def test_a_grant_read_after_the_worker_stood_still_is_not_acted_on(executor: Executor) -> None:
    executor.inbox.put(Stalled(4.2))       # the worker loop fences before it forwards what the socket holds
    executor.inbox.put(_decision(True))
    with pytest.raises(_StaleGrant, match="stood still for 4.2 s"):
        executor._await_commit(ASSIGN)


def test_a_stopping_worker_gives_up_a_reduce_awaiting_its_commit(executor: Executor) -> None:
    """Stopping cancels the running task; a grant that arrives after the stop is not acted on."""
    executor.stop()
    executor.inbox.put(_decision(True))
    with pytest.raises(Cancelled):
        executor._await_commit(ASSIGN)


def test_the_thread_ends_on_stop_even_when_a_cancelled_task_took_the_stop_item(executor: Executor) -> None:
    executor.stop()
    assert isinstance(executor.inbox.get_nowait(), Quit)   # as `_await_commit` of a task being cancelled takes it
    executor.start()
    executor.join(timeout=5)
    assert not executor.is_alive()
