"""A journal damaged at any single byte never makes a restart redo committed work.

The journal here is a job's whole history as the scheduler journals it, written by the journal writer
the coordinator uses, and its output directory holds the `_SUCCESS` the coordinator writes. One byte at
a time is flipped, and a restart is run as `zmr-coord` runs it (read, check `_SUCCESS`, replay): either
it refuses, naming the file and the damage's offset and leaving the file as it was, or it recovers a
state that runs nothing of the job again and neither rewrites nor removes its output. Where it refuses,
the operator's way out (recovering from the intact records) must be just as safe.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog

from zmr.core.scheduler import Action, JobFinished, Received, Scheduler, Send, Tick
from zmr.core.state import JobState
from zmr.errors import JournalDamaged
from zmr.protocol import journal as jr
from zmr.protocol import messages as m
from zmr.runtime import outputs
from zmr.runtime.coordinator import recover
from zmr.runtime.journal import JournalFile
from zmr.testing import SimCluster, check_invariants, sim_with

LOG = structlog.get_logger()


def run_one_job(out: Path) -> tuple[SimCluster, str]:
    """Two workers run a job of 3 maps and 2 reduces to success, writing into `out`."""
    sim = sim_with("w1", "w2")
    spec = sim.spec(n_splits=3, n_reduce=2, output_dir=str(out))
    [accepted] = [r for r in sim.client_send(m.SubmitJob(spec=spec)) if isinstance(r, m.JobAccepted)]
    sim.run()
    assert sim.finished[accepted.job_id] is JobState.SUCCEEDED
    return sim, accepted.job_id


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimCluster, str, Path, bytes]:
    """The job's output directory (with its `_SUCCESS`) and its journal, as the coordinator writes both."""
    base = tmp_path_factory.mktemp("history")
    out = base / "out"
    out.mkdir()
    sim, job = run_one_job(out)
    marker = sim.scheduler.success_marker(job)
    assert marker is not None
    outputs.write_success(str(out), marker)
    journal = JournalFile(base / "state", LOG)
    journal.open()
    journal.rewrite(Scheduler(sim.params).snapshot())   # what a coordinator writes when it starts
    journal.append(sim.journal)
    journal.close()
    data = (base / "state" / "journal").read_bytes()
    assert jr.parse(data).records[1:] == sim.journal
    return sim, job, out, data


def runs_nothing_of(scheduler: Scheduler, actions: list[Action], job: str) -> str:
    """Why this recovered state would redo part of the committed job or touch its output, or ''."""
    if any(isinstance(a, JobFinished) and a.job_id == job for a in actions):
        return "its output step is done again (rewrites _SUCCESS or removes the output)"
    if job in scheduler.jobs:
        state = scheduler.jobs[job]
        if state.state is not JobState.SUCCEEDED or not state.output_done:
            return f"it is {state.state.value}, output done: {state.output_done}"
    elif job in scheduler.archived and scheduler.archived[job].state != "succeeded":
        return f"it is archived as {scheduler.archived[job].state}"
    check_invariants(scheduler)
    register = m.Register(worker_id="w9", data_addr="tcp://w9.sim:1", python=scheduler.params.python, pid=9,
                          host="sim")
    later = scheduler.handle(Received(b"w9", register), 2000.0) + scheduler.handle(Tick(), 2001.0)
    assigned = [a.msg for a in later if isinstance(a, Send) and isinstance(a.msg, m.AssignMap | m.AssignReduce)]
    return f"it runs again: {assigned}" if assigned else ""


def restart(state: Path, sim: SimCluster, recover_damaged: bool) -> tuple[Scheduler, list[Action]]:
    scheduler = Scheduler(sim.params)
    journal = JournalFile(state, LOG)
    try:
        return scheduler, recover(journal, scheduler, 1500.0, recover_damaged)
    finally:
        journal.close()


def leftovers(state: Path) -> list[Path]:
    return [p for p in state.iterdir() if p.name not in ("journal", "lock")]


def test_the_undamaged_journal_recovers_the_job_as_it_ended(history: tuple[SimCluster, str, Path, bytes],
                                                             tmp_path: Path) -> None:
    sim, job, _, data = history
    (tmp_path / "journal").write_bytes(data)
    scheduler, actions = restart(tmp_path, sim, recover_damaged=False)
    assert runs_nothing_of(scheduler, actions, job) == ""
    assert scheduler.jobs[job].records_out == sim.job(job).records_out


def test_a_byte_flipped_anywhere_is_refused_or_recovered_without_redoing_the_job(
        history: tuple[SimCluster, str, Path, bytes], tmp_path: Path) -> None:
    sim, job, _, data = history
    path = tmp_path / "journal"
    outcomes = {"refused": 0, "torn": 0}
    for offset in range(len(data)):
        damaged = bytearray(data)
        damaged[offset] ^= 0xFF
        path.write_bytes(bytes(damaged))
        try:
            scheduler, actions = restart(tmp_path, sim, recover_damaged=False)
        except JournalDamaged as exc:
            message = str(exc)
            assert str(path) in message and f"at byte {exc.offset}" in message and exc.offset <= offset, message
            assert path.read_bytes() == damaged and leftovers(tmp_path) == [], f"offset {offset}: file touched"
            outcomes["refused"] += 1
            scheduler, actions = restart(tmp_path, sim, recover_damaged=True)   # the operator's way out
            [aside] = leftovers(tmp_path)
            assert aside.name.startswith("journal.damaged-") and aside.read_bytes() == damaged
        else:
            outcomes["torn"] += 1
            [aside] = leftovers(tmp_path)   # the dropped last record, kept
            assert aside.name.startswith("journal.torn-") and damaged.endswith(aside.read_bytes())
        problem = runs_nothing_of(scheduler, actions, job)
        assert problem == "", f"byte {offset} flipped: {problem}"
        aside.unlink()
    last = len(jr.frame(jr.parse(data).records[-1]))
    assert outcomes["torn"] >= last - 4 and outcomes["refused"] >= len(data) - last, outcomes


def test_the_last_record_torn_off_does_not_redo_the_output_step(history: tuple[SimCluster, str, Path, bytes],
                                                                 tmp_path: Path) -> None:
    """The job's end is journaled, its OutputFinished is not: its _SUCCESS says the step was done."""
    sim, job, _, data = history
    records = jr.parse(data).records
    assert isinstance(records[-1], jr.OutputFinished)
    (tmp_path / "journal").write_bytes(data[:-3])
    scheduler, actions = restart(tmp_path, sim, recover_damaged=False)
    assert runs_nothing_of(scheduler, actions, job) == ""
