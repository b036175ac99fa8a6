"""The names of the files a job writes in its output directory: part of the output contract.

Committed output is `mr-out-<r>`, one file per reduce partition, and `_SUCCESS` (see `success`) comes
last. Anything is first written under a hidden temporary name beside its final one and renamed into
place (docs/architecture.md section 4), so a reader of `mr-out-*` never sees a partial file; a reduce
attempt's temporary name names its job and attempt, so two attempts never collide and a job's leftovers
can be found. Writers, cleaners and the sequential reference all spell the names here.
"""

from __future__ import annotations

import re

from zmr.protocol.messages import AttemptId
from zmr.protocol.success import SUCCESS_NAME

OUTPUT_PREFIX = "mr-out-"
OUTPUT_GLOB = f"{OUTPUT_PREFIX}*"

_OUTPUT = re.compile(rf"{re.escape(OUTPUT_PREFIX)}(\d+)")
_JOB_FILE = re.compile(rf"{_OUTPUT.pattern}|{re.escape(SUCCESS_NAME)}"
                       rf"|\.(?:{re.escape(OUTPUT_PREFIX)}|{re.escape(SUCCESS_NAME)}\.).+\.tmp")


def output_name(partition: int) -> str:
    """The committed output file of reduce partition `partition`."""
    return f"{OUTPUT_PREFIX}{partition}"


def output_partition(name: str) -> int | None:
    """The partition whose committed output file is called `name`, or None if it is no such file."""
    found = _OUTPUT.fullmatch(name)
    return int(found.group(1)) if found else None


def temp_name(final: str, tag: str) -> str:
    """A hidden temporary name beside `final`, made unique by `tag`: never matches `mr-out-*`."""
    return f".{final}.{tag}.tmp"


def temp_output_name(attempt: AttemptId) -> str:
    """Where a reduce attempt writes before the coordinator lets it rename to `output_name`."""
    return temp_name(output_name(attempt.task), f"{attempt.job_id}.a{attempt.number}")


def temp_outputs_glob(job_id: str) -> str:
    """A glob matching the temporary output files of every attempt of the job."""
    return temp_name(OUTPUT_GLOB, f"{job_id}.a*")


def is_temp_output_of(name: str, job_id: str) -> bool:
    """Is `name` the temporary output file of some attempt of job `job_id`?"""
    return re.fullmatch(rf"\.{re.escape(OUTPUT_PREFIX)}\d+\.{re.escape(job_id)}\.a\d+\.tmp", name) is not None


def is_job_file(name: str) -> bool:
    """Could a job have written `name` (committed, `_SUCCESS`, or a temporary file of either)?"""
    return _JOB_FILE.fullmatch(name) is not None
