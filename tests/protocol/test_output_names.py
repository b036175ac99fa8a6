"""Output file names: committed names parse back, temporary ones never pass for committed output."""

from __future__ import annotations

from fnmatch import fnmatch

from zmr.protocol.messages import AttemptId
from zmr.protocol.output_names import (
    OUTPUT_GLOB,
    is_job_file,
    output_name,
    output_partition,
    temp_name,
    temp_output_name,
    temp_outputs_glob,
)


def test_committed_names_parse_back_to_their_partition() -> None:
    assert output_name(7) == "mr-out-7"
    assert [output_partition(output_name(r)) for r in (0, 7, 1234)] == [0, 7, 1234]
    assert [output_partition(n) for n in ("mr-out-", "mr-out-x", ".mr-out-1.j.a1.tmp", "_SUCCESS")] == [None] * 4


def reduce_attempt(job_id: str, partition: int, number: int) -> AttemptId:
    return AttemptId(job_id=job_id, kind="reduce", task=partition, number=number)


def test_temporary_names_are_hidden_attempt_specific_and_found_by_their_job() -> None:
    tmp = temp_output_name(reduce_attempt("job-0001", 3, 2))
    assert tmp == ".mr-out-3.job-0001.a2.tmp"
    assert not fnmatch(tmp, OUTPUT_GLOB) and tmp != temp_output_name(reduce_attempt("job-0001", 3, 3))
    assert fnmatch(tmp, temp_outputs_glob("job-0001")) and not fnmatch(tmp, temp_outputs_glob("job-0002"))


def test_job_files_are_told_from_anything_else() -> None:
    temp = temp_output_name(reduce_attempt("job-0001", 1, 1))
    mine = [output_name(0), "_SUCCESS", temp, temp_name("_SUCCESS", "ab12")]
    assert all(is_job_file(n) for n in mine)
    assert not any(is_job_file(n) for n in ["notes.txt", "mr-out-x", "_SUCCESS.bak", ".mr-out-1"])
