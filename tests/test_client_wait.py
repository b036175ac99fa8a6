"""`Client.wait` rides through a coordinator restart at every step, the last one included."""

from __future__ import annotations

from zmr.client import Client
from zmr.errors import NoAnswer
from zmr.protocol import messages as m


def _info(state: str, records_out: int = 0) -> m.JobInfo:
    return m.JobInfo(job_id="job-0001", app_name="wc", state=state, submitted=0.0, started=0.0, finished=None,
                     maps_done=1, maps_total=1, reduces_done=1, reduces_total=1, bytes_shuffled=0,
                     records_out=records_out, output_dir="/out")


class _RestartingCoordinator(Client):
    """Answers that the job succeeded, then goes silent once (killed, restarting) when asked for the
    job's details, and answers again after."""

    def __init__(self) -> None:
        super().__init__("tcp://127.0.0.1:9", timeout=0.1)
        self.silences = 1

    def _wait_once(self, job_id: str, hold: float) -> m.JobInfo:
        return _info("succeeded")

    def job(self, job_id: str) -> m.JobInfo:
        if self.silences:
            self.silences -= 1
            raise NoAnswer("no answer from the coordinator (restarting)")
        return _info("succeeded", records_out=42)


def test_wait_keeps_waiting_when_the_coordinator_restarts_as_the_job_ends() -> None:
    with _RestartingCoordinator() as client:
        info = client.wait("job-0001", poll=0.01, patience=5.0)
    assert (info.state, info.records_out) == ("succeeded", 42)
