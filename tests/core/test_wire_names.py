"""The closed sets of names on the wire are exactly the scheduler's, and a decoder refuses any other."""

from __future__ import annotations

from typing import get_args

import pytest

from zmr.core.state import MAP, REDUCE, JobState, TaskState
from zmr.errors import ProtocolError
from zmr.protocol import messages as m
from zmr.protocol.codec import encode, peer_decoder


def test_the_wire_names_are_the_scheduler_states() -> None:
    assert set(get_args(m.TaskStateName)) == {s.value for s in TaskState}
    assert set(get_args(m.JobStateName)) == {s.value for s in JobState}
    assert set(get_args(m.TaskKind)) == {MAP, REDUCE}


def _job(state: str) -> m.JobInfo:
    task = m.TaskInfo(kind="map", index=0, state="done", attempts=1, worker="w", started=None, finished=None)
    return m.JobInfo(job_id="job-0001", app_name="wc",
                     state=state,  # type: ignore[arg-type]  # any str: the test sends one out of the set
                     submitted=0.0, started=None, finished=None, maps_done=0, maps_total=1, reduces_done=0,
                     reduces_total=1, bytes_shuffled=0, records_out=0, output_dir="/out", tasks=[task])


def test_a_status_reply_with_a_state_out_of_the_set_is_refused() -> None:
    decoder = peer_decoder(1 << 20)
    good = m.StatusReply(now=0.0, jobs=[_job("running")], workers=[])
    assert decoder.decode(encode(good))[0] == good
    with pytest.raises(ProtocolError):
        decoder.decode(encode(m.StatusReply(now=0.0, jobs=[_job("exploded")], workers=[])))
