"""The journal's framing: intact records are read back; a torn last write is told apart from damage before the end."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any, get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zmr.errors import ClusterError
from zmr.protocol import journal as jr
from zmr.protocol import messages as m
from zmr.protocol.messages import InputSplit, JobSpec
from zmr.runtime.journal import JournalFile

SPEC = JobSpec(app_name="wc", app_blob=b"\x80blob", splits=[InputSplit("a", "/a", 0, 10)], output_dir="/o",
               n_reduce=2)
RECORDS: list[jr.Record] = [
    jr.Header(version=jr.JOURNAL_VERSION, next_job=1),
    jr.JobSubmitted(job_id="job-0001", number=1, spec=SPEC, submitted=1.5),
    jr.JobStarted(job_id="job-0001", started=2.0, owners=["w1", "w2"]),
    jr.TaskAssigned(job_id="job-0001", kind="map", task=0, attempt=1, worker_id="w1"),
    jr.MapCommitted(job_id="job-0001", task=0, attempt=1, worker_id="w1", records_out=3, bytes_out=40,
                    finished=2.5),
]


def framed(records: list[jr.Record]) -> bytes:
    return b"".join(jr.frame(r) for r in records)


def test_records_round_trip() -> None:
    parsed = jr.parse(framed(RECORDS))
    assert parsed.records == RECORDS and parsed.problem == "" and parsed.good_bytes == len(framed(RECORDS))


@pytest.mark.parametrize("cut", [1, 4, 7, 8, 9])
def test_a_torn_last_record_is_dropped_and_reported(cut: int) -> None:
    data = framed(RECORDS)[:-cut]
    parsed = jr.parse(data)
    assert parsed.records == RECORDS[:-1]
    assert "torn" in parsed.problem
    assert parsed.good_bytes == len(framed(RECORDS[:-1]))


def test_a_flipped_byte_in_the_last_record_fails_its_checksum() -> None:
    data = bytearray(framed(RECORDS))
    data[-3] ^= 0x40
    parsed = jr.parse(bytes(data))
    assert parsed.records == RECORDS[:-1] and "checksum" in parsed.problem


def test_nothing_after_a_damaged_record_is_trusted() -> None:
    middle = bytearray(framed(RECORDS[2:3]))
    middle[10] ^= 1
    parsed = jr.parse(framed(RECORDS[:2]) + bytes(middle) + framed(RECORDS[3:]))
    assert parsed.records == RECORDS[:2]


def test_a_torn_last_record_is_torn_not_damage() -> None:
    data = framed(RECORDS)
    for cut in range(1, len(jr.frame(RECORDS[-1]))):
        parsed = jr.parse(data[:-cut])
        assert parsed.torn and not parsed.damaged, (cut, parsed.problem)
        assert parsed.records == RECORDS[:-1]


def test_a_bad_checksum_on_the_frame_that_ends_the_file_is_a_torn_tail() -> None:
    data = bytearray(framed(RECORDS))
    data[-3] ^= 0x40
    parsed = jr.parse(bytes(data))
    assert parsed.torn and parsed.records == RECORDS[:-1]


@pytest.mark.parametrize("zeros", [1, 8, 100])
def test_zero_bytes_after_the_last_record_are_a_torn_tail(zeros: int) -> None:
    """A file extended but never written (power lost before its pages were) reads back as zeros."""
    parsed = jr.parse(framed(RECORDS) + bytes(zeros))
    assert parsed.torn and parsed.records == RECORDS and parsed.good_bytes == len(framed(RECORDS))


def test_a_bad_frame_with_records_after_it_is_damage_with_its_offset() -> None:
    middle = bytearray(framed(RECORDS[2:3]))
    middle[10] ^= 1
    offset = len(framed(RECORDS[:2]))
    parsed = jr.parse(framed(RECORDS[:2]) + bytes(middle) + framed(RECORDS[3:]))
    assert parsed.damaged and not parsed.torn
    assert parsed.good_bytes == offset and f"at byte {offset}" in parsed.problem


def test_eight_bytes_overwritten_half_way_are_damage() -> None:
    data = bytearray(framed(RECORDS))
    half = len(data) // 2
    data[half:half + 8] = b"\xde\xad\xbe\xef" * 2
    parsed = jr.parse(bytes(data))
    assert parsed.damaged and parsed.good_bytes <= half


def test_a_length_grown_to_swallow_the_last_record_is_still_damage() -> None:
    """The second-to-last frame claims to end at the end of the file: the last record is intact inside it."""
    head, last = framed(RECORDS[:-2]), framed(RECORDS[-1:])
    second = bytearray(jr.frame(RECORDS[-2]))
    length = int.from_bytes(second[:4], "little") + len(last)
    second[:4] = length.to_bytes(4, "little")
    parsed = jr.parse(head + bytes(second) + last)
    assert parsed.damaged and parsed.good_bytes == len(head)


def test_a_length_that_runs_past_the_end_with_records_inside_is_damage() -> None:
    data = bytearray(framed(RECORDS))
    at = len(framed(RECORDS[:2]))
    data[at + 3] = 0x7F   # the third record now claims about 2 GB
    parsed = jr.parse(bytes(data))
    assert parsed.damaged and parsed.good_bytes == at


def test_output_dirs_are_those_of_submitted_jobs() -> None:
    assert jr.output_dirs(RECORDS) == {"/o"}


@given(st.binary(max_size=300))
def test_parse_never_raises_on_garbage(data: bytes) -> None:
    parsed = jr.parse(data)
    assert parsed.good_bytes <= len(data)
    assert (parsed.problem == "") == (parsed.good_bytes == len(data))
    assert not (parsed.torn and parsed.damaged) and (parsed.torn or parsed.damaged) == bool(parsed.problem)


class _Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.events.append((event, fields))

    warning = info


def test_the_journal_file_appends_rewrites_and_survives_a_torn_tail(tmp_path: Path) -> None:
    journal = JournalFile(tmp_path / "state", _Log())
    assert journal.open() == []
    journal.rewrite(RECORDS[:1])
    journal.append(RECORDS[1:])
    journal.close()
    path = tmp_path / "state" / "journal"
    with open(path, "ab") as f:
        f.write(jr.frame(RECORDS[1])[:-5])   # a crash mid-write
    log = _Log()
    again = JournalFile(tmp_path / "state", log)
    assert again.open() == RECORDS
    assert [e for e, _ in log.events].count("journal_damaged") == 1
    again.rewrite(RECORDS)
    assert jr.parse(path.read_bytes()).problem == ""
    again.close()


def test_two_coordinators_cannot_share_a_state_directory(tmp_path: Path) -> None:
    first = JournalFile(tmp_path, _Log())
    first.open()
    with pytest.raises(ClusterError, match="in use by another coordinator"):
        JournalFile(tmp_path, _Log()).open()
    first.close()
    JournalFile(tmp_path, _Log()).open()


def test_records_keep_the_tags_of_journal_version_1() -> None:
    """Renaming a record class must not change what it is called on disk. (Version 2 changed only
    OwnersMoved, which now carries the moved partitions instead of every owner; a record added since,
    ReduceReopened, leaves every journal written before it readable.)"""
    tags = {cls.__struct_config__.tag for cls in get_args(jr.Record)}
    assert jr.JOURNAL_VERSION == 2
    assert tags == {"Header", "WorkerJoined", "JobSubmitted", "JobStarted", "OwnersMoved", "TaskAssigned",
                    "MapCommitted", "MapUncommitted", "CommitGranted", "CommitRevoked", "ReduceCommitted",
                    "ReduceReopened", "TaskSetback", "JobEnded", "OutputFinished", "EndedJob"}
    old = b"\x95\xa8JobEnded\xa1a\xa6failed\xa1x\xcb@\x00\x00\x00\x00\x00\x00\x00"   # as version 1 wrote it
    assert jr.parse(jr._HEAD.pack(len(old), zlib.crc32(old)) + old).records == [
        jr.JobConcluded(job_id="a", state="failed", error="x", finished=2.0)]


def test_no_record_shares_a_name_with_a_message() -> None:
    assert not {cls.__name__ for cls in get_args(jr.Record)} & {
        name for name, value in vars(m).items() if isinstance(value, type)}
