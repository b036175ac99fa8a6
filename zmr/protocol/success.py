"""What a job's `_SUCCESS` file says: which job wrote it.

A restarted coordinator whose journal lost a job's end reads the job's output directory: a `_SUCCESS`
naming that very job proves the output was committed, so the job is not run again. A job id alone does
not name a job for sure (a coordinator started without its old journal numbers jobs from 1 again), so the
time the job was submitted goes with it.
"""

from __future__ import annotations

import msgspec

SUCCESS_NAME = "_SUCCESS"
MAX_MARKER_BYTES = 4096   # a marker is one short line: anything longer was not written by zmr


class SuccessMarker(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    job_id: str
    submitted: float   # when the coordinator accepted the job: with the id, names one job for sure
    finished: float    # when the job succeeded


_DECODER = msgspec.json.Decoder(SuccessMarker)


def encode(marker: SuccessMarker) -> str:
    return msgspec.json.encode(marker).decode() + "\n"


def decode(data: bytes) -> SuccessMarker | None:
    """The marker in a `_SUCCESS` file, or None if it holds none (empty, or written by something else)."""
    if len(data) > MAX_MARKER_BYTES:
        return None
    try:
        return _DECODER.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
