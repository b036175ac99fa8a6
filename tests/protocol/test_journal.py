"""The journal's framing: intact records are read back, a torn or damaged tail is found and dropped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zmr.errors import ClusterError
from zmr.protocol import journal as jr
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


@given(st.binary(max_size=300))
def test_parse_never_raises_on_garbage(data: bytes) -> None:
    parsed = jr.parse(data)
    assert parsed.good_bytes <= len(data)
    assert (parsed.problem == "") == (parsed.good_bytes == len(data))


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
