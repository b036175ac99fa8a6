"""The journal file on disk: damage before the end stops a start and leaves the file alone; a torn
tail, or damage the operator chose to recover from, is dropped only with its bytes kept aside."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from zmr.errors import ClusterError, JournalDamaged
from zmr.protocol import journal as jr
from zmr.protocol.messages import InputSplit, JobSpec
from zmr.runtime.journal import JournalFile

SPEC = JobSpec(app_name="wc", app_blob=b"\x80blob", splits=[InputSplit("a", "/a", 0, 10)], output_dir="/o",
               n_reduce=1)
RECORDS: list[jr.Record] = [
    jr.Header(version=jr.JOURNAL_VERSION, next_job=1),
    jr.JobSubmitted(job_id="job-0001", number=1, spec=SPEC, submitted=1.5),
    jr.JobStarted(job_id="job-0001", started=2.0, owners=["w1"]),
    jr.TaskAssigned(job_id="job-0001", kind="map", task=0, attempt=1, worker_id="w1"),
    jr.MapCommitted(job_id="job-0001", task=0, attempt=1, worker_id="w1", records_out=3, bytes_out=40,
                    finished=2.5),
]


class Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.events.append(("info", event, fields))

    def warning(self, event: str, **fields: Any) -> None:
        self.events.append(("warning", event, fields))

    def named(self, event: str) -> list[dict[str, Any]]:
        return [fields for _, name, fields in self.events if name == event]


def framed(records: list[jr.Record]) -> bytes:
    return b"".join(jr.frame(r) for r in records)


def damaged_in_the_middle() -> tuple[bytes, int]:
    """The journal with one byte of its third record changed, and that record's offset."""
    data = bytearray(framed(RECORDS))
    offset = len(framed(RECORDS[:2]))
    data[offset + 12] ^= 0x20
    return bytes(data), offset


def state_dir_with(tmp_path: Path, data: bytes) -> Path:
    state = tmp_path / "state"
    state.mkdir()
    (state / "journal").write_bytes(data)
    return state


def asides(state: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in state.iterdir() if p.name.startswith("journal.")}


def test_damage_before_the_end_refuses_naming_the_file_and_offset_and_leaves_it_alone(tmp_path: Path) -> None:
    data, offset = damaged_in_the_middle()
    state = state_dir_with(tmp_path, data)
    with pytest.raises(JournalDamaged) as caught:
        JournalFile(state, Log()).open()
    message = str(caught.value)
    assert str(state / "journal") in message and f"at byte {offset}" in message, message
    assert "--recover-damaged-journal" in message and "\n" not in message
    assert isinstance(caught.value, ClusterError) and caught.value.offset == offset
    assert (state / "journal").read_bytes() == data
    assert asides(state) == {} and sorted(p.name for p in state.iterdir()) == ["journal", "lock"]
    JournalFile(state, Log()).open(recover_damaged=True).clear()   # the refusal let go of the lock


def test_recovering_damage_keeps_the_intact_prefix_and_the_whole_file_aside(tmp_path: Path) -> None:
    data, offset = damaged_in_the_middle()
    state = state_dir_with(tmp_path, data)
    log = Log()
    journal = JournalFile(state, log)
    assert journal.open(recover_damaged=True) == RECORDS[:2]
    [(name, kept)] = asides(state).items()
    assert name.startswith("journal.damaged-") and kept == data
    [event] = log.named("journal_damaged")
    assert (event["offset"], event["kept_records"], event["torn"]) == (offset, 2, False)
    assert event["copy"] == str(state / name) and event["path"] == str(state / "journal")
    assert ("warning", "journal_damaged", event) in log.events
    journal.rewrite(RECORDS[:2])
    journal.close()
    assert asides(state) == {name: data}, "the rewrite touched the damaged copy"
    assert jr.parse((state / "journal").read_bytes()).records == RECORDS[:2]


def test_a_torn_tail_is_dropped_and_its_bytes_kept_aside(tmp_path: Path) -> None:
    torn = jr.frame(RECORDS[-1])[:-4]
    state = state_dir_with(tmp_path, framed(RECORDS[:-1]) + torn)
    log = Log()
    journal = JournalFile(state, log)
    assert journal.open() == RECORDS[:-1]
    [(name, kept)] = asides(state).items()
    assert name.startswith("journal.torn-") and kept == torn
    [event] = log.named("journal_damaged")
    assert event["torn"] and event["dropped_bytes"] == len(torn) and event["copy"] == str(state / name)
    journal.close()


def test_a_second_copy_aside_in_the_same_second_gets_its_own_name(tmp_path: Path) -> None:
    data, _ = damaged_in_the_middle()
    state = state_dir_with(tmp_path, data)
    for _ in range(2):
        journal = JournalFile(state, Log())
        journal.open(recover_damaged=True)
        journal.close()
    assert list(asides(state).values()) == [data, data]


def test_a_clean_journal_keeps_nothing_aside(tmp_path: Path) -> None:
    state = state_dir_with(tmp_path, framed(RECORDS))
    log = Log()
    journal = JournalFile(state, log)
    assert journal.open() == RECORDS
    journal.rewrite(RECORDS)
    journal.close()
    assert asides(state) == {} and not log.named("journal_damaged")
    assert sorted(p.name for p in state.iterdir()) == ["journal", "lock"], "a rewrite left its temporary file"


@pytest.mark.parametrize("version", [0, jr.JOURNAL_VERSION + 1])
def test_a_journal_of_another_format_version_is_refused_and_left_alone(tmp_path: Path, version: int) -> None:
    data = framed([jr.Header(version=version, next_job=1), *RECORDS[1:]])
    state = state_dir_with(tmp_path, data)
    with pytest.raises(ClusterError, match=f"format version {version}, and this zmr reads version"):
        JournalFile(state, Log()).open()
    assert (state / "journal").read_bytes() == data and asides(state) == {}
    (tmp_path / "current").mkdir()
    journal = JournalFile(state_dir_with(tmp_path / "current", framed(RECORDS)), Log())
    assert journal.open() == RECORDS   # the version this zmr writes opens
    journal.close()
