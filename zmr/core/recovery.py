"""What a restart decides from the `_SUCCESS` files the shell found: committed output is never redone.

The journal is the coordinator's memory, but a job's output directory is the truth about its output.
When the journal has lost a job's end (a dropped torn tail, or the intact prefix of a damaged journal
that the operator chose to recover), replay alone would put the job back in the queue and run it again,
rewriting output that was committed and confirmed. So before anything runs, the shell reads `_SUCCESS`
in the output directory of every replayed job and hands it in; these pure rules turn it into journal
records, applied by the same code as every other record. The rule underneath: recovery never writes
into or removes from an output directory that holds a `_SUCCESS` it did not see through to the end.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from zmr.core.state import Job, JobState
from zmr.protocol import journal as j
from zmr.protocol.success import SUCCESS_NAME, SuccessMarker

# output dir -> what its `_SUCCESS` says: a marker, or None for a file that names no job (empty, foreign)
Found = Mapping[str, SuccessMarker | None]


@dataclass(frozen=True)
class Finding:
    """The records one found `_SUCCESS` adds to a job's replayed history, and how to log it."""

    job_id: str
    records: list[j.Record]
    event: str
    level: str
    reason: str


def findings(jobs: Iterable[Job], found: Found, now: float) -> list[Finding]:
    """A Finding for every job whose output step is not done and whose output directory holds `_SUCCESS`."""
    out = []
    for job in jobs:
        if not job.output_done and job.spec.output_dir in found:
            out.append(_finding(job, found[job.spec.output_dir], now))
    return out


def _finding(job: Job, marker: SuccessMarker | None, now: float) -> Finding:
    done = j.OutputFinished(job_id=job.id)
    if marker is not None and written_by(marker, job):
        if job.state.ended:
            return Finding(job.id, [done], "job_output_found_done", "info",
                           f"the {SUCCESS_NAME} of this job is already in place")
        ended = j.JobConcluded(job_id=job.id, state=JobState.SUCCEEDED.value, error="", finished=marker.finished)
        return Finding(job.id, [ended, done], "job_found_committed", "warning",
                       f"the journal lost this job's end, but its {SUCCESS_NAME} is in place: it succeeded")
    why = (f"its output directory {job.spec.output_dir} holds a {SUCCESS_NAME} that {_author(marker)}, "
           "not this job; that output is left as it is")
    if job.state.ended:
        return Finding(job.id, [done], "job_output_left_alone", "warning", why)
    failed = j.JobConcluded(job_id=job.id, state=JobState.FAILED.value, finished=now,
                        error=f"not run again after a coordinator restart: {why}")
    return Finding(job.id, [failed, done], "job_not_run_again", "error", why)


def written_by(marker: SuccessMarker, job: Job) -> bool:
    """Did this very job write the marker? (A job id alone may name a job of an earlier journal.)"""
    return marker.job_id == job.id and marker.submitted == job.submitted


def _author(marker: SuccessMarker | None) -> str:
    return "names no job" if marker is None else f"job {marker.job_id} submitted at {marker.submitted} wrote"


def success_marker(job: Job) -> SuccessMarker:
    """What the job's `_SUCCESS` says: written when it succeeded, read by `findings` after a restart."""
    return SuccessMarker(job_id=job.id, submitted=job.submitted, finished=job.finished or 0.0)
