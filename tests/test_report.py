"""`zmr report` and the lease columns of `zmr status`, on synthetic status records (no processes)."""

from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import msgspec
import pytest

import zmr
from zmr import cli, report
from zmr.core.views import STATUS_JSON_VERSION
from zmr.errors import ClusterError, ZmrError
from zmr.progress import format_status, status_json
from zmr.protocol import messages as m

T0 = 1_700_000_000.0
MB = 1_000_000


def point(t: float, leases: int, maps: int, reduces: int, shuffled: int) -> m.TimelinePoint:
    return m.TimelinePoint(t=T0 + t, leases=leases, maps_done=maps, reduces_done=reduces, bytes_shuffled=shuffled)


# 4 maps, 2 reduces: leases ramp up with the maps, plateau through the shuffle, fall as partitions commit,
# and the last one drains after the job finished at +4.0 s
TIMELINE = [
    point(0.0, 0, 0, 0, 0),
    point(0.5, 2, 1, 0, 1 * MB),
    point(1.0, 4, 2, 0, 2 * MB),
    point(1.5, 6, 3, 0, 3 * MB),
    point(2.0, 8, 4, 0, 4 * MB),
    point(2.5, 8, 4, 0, 4 * MB + MB // 2),
    point(3.5, 4, 4, 1, 4 * MB + MB // 2),
    point(4.0, 1, 4, 2, 4 * MB + MB // 2),
    point(4.3, 0, 4, 2, 4 * MB + MB // 2),
]


def job_info(**changes: object) -> m.JobInfo:
    info = m.JobInfo(job_id="job-0007", app_name="wc", state="succeeded", submitted=T0 - 0.2, started=T0,
                     finished=T0 + 4.0, maps_done=4, maps_total=4, reduces_done=2, reduces_total=2,
                     bytes_shuffled=4 * MB + MB // 2, records_out=123, output_dir="/tmp/out", leases=0,
                     timeline=TIMELINE)
    return msgspec.structs.replace(info, **changes)


# ------------------------------------------------------------------ phases and the text table


def assert_phases(ph: report.Phases, map_end: float | None, end: float) -> None:
    """Times are differences of wall-clock times (about 1.7e9): equal to a few microseconds."""
    assert (ph.map_end is None) == (map_end is None), ph
    assert ph.map_end == pytest.approx(map_end, abs=1e-5), ph
    assert ph.end == pytest.approx(end, abs=1e-5), ph


def test_phases_are_map_until_every_map_is_done_then_reduce_until_the_job_finished() -> None:
    assert_phases(report.phases(job_info()), 2.0, 4.0)


def map_tasks(*finished: float | None) -> list[m.TaskInfo]:
    return [m.TaskInfo(kind="map", index=i, state="done" if f is not None else "running", attempts=1, worker="w-1",
                       started=T0, finished=None if f is None else T0 + f) for i, f in enumerate(finished)]


def test_the_map_phase_ends_when_the_last_map_task_finished() -> None:
    """Samples are taken on coordinator ticks; the task records are exact."""
    assert_phases(report.phases(job_info(tasks=map_tasks(0.4, 1.8, 0.9, 1.2))), 1.8, 4.0)
    # a map running again (its output was lost) has no finish time: the samples decide
    assert_phases(report.phases(job_info(tasks=map_tasks(0.4, 1.8, None, 1.2))), 2.0, 4.0)


def test_a_short_job_sampled_after_it_finished_has_phases_within_its_life() -> None:
    """A job shorter than a tick: the sample showing every map done comes after the job finished."""
    short = job_info(finished=T0 + 1.4, timeline=[point(0.0, 0, 0, 0, 0), point(1.5, 16, 4, 2, 1000),
                                                  point(2.0, 0, 4, 2, 1000)])
    assert_phases(report.phases(short), 1.4, 1.4)


def test_a_job_that_never_finished_its_maps_has_no_reduce_phase() -> None:
    failed = job_info(state="failed", finished=T0 + 1.2, maps_done=2, reduces_done=0, timeline=TIMELINE[:3])
    assert_phases(report.phases(failed), None, 1.2)
    assert "maps never all done" in report.format_timeline(failed)


def test_a_running_job_ends_at_its_last_sample() -> None:
    running = job_info(state="running", finished=None, timeline=TIMELINE[:6])
    assert_phases(report.phases(running), 2.0, 2.5)


def test_without_a_start_time_the_first_sample_is_the_origin() -> None:
    shifted = [msgspec.structs.replace(p, t=p.t + 10) for p in TIMELINE]
    assert_phases(report.phases(job_info(started=None, finished=T0 + 14.0, timeline=shifted)), 2.0, 4.0)


def test_the_table_has_one_row_per_sample_relative_to_the_start() -> None:
    lines = report.format_timeline(job_info()).splitlines()
    assert lines[0] == "job job-0007 (wc): succeeded; 9 samples, peak 8 leases, 0 live now"
    assert lines[1] == "map phase 0.000-2.000 s, reduce phase 2.000-4.000 s"
    assert re.fullmatch(r"\s+T\s+LEASES\s+MAPS\s+REDUCES\s+MB SHUFFLED", lines[3])
    rows = [line.split() for line in lines[4:]]
    assert len(rows) == len(TIMELINE)
    assert rows[0] == ["0.000", "0", "0/4", "0/2", "0.000"]
    assert rows[4] == ["2.000", "8", "4/4", "0/2", "4.000"]
    assert rows[-1] == ["4.300", "0", "4/4", "2/2", "4.500"]
    assert [int(r[1]) for r in rows] == [p.leases for p in TIMELINE]


def test_an_empty_timeline_is_a_clear_error() -> None:
    queued = job_info(state="queued", started=None, finished=None, maps_done=0, reduces_done=0, timeline=[])
    for call in (report.format_timeline, report.phases):
        with pytest.raises(ZmrError, match="job job-0007 has no timeline yet"):
            call(queued)


def test_a_job_that_ended_without_a_timeline_is_not_said_to_get_one() -> None:
    ended = job_info(timeline=[])   # it ended before the coordinator restarted: its samples are gone
    with pytest.raises(ZmrError, match=r"has no timeline \(succeeded\): .* ended before the coordinator last "
                                       "started") as caught:
        report.format_timeline(ended)
    assert "yet" not in str(caught.value)
    never = job_info(state="cancelled", started=None, maps_done=0, reduces_done=0, timeline=[])   # while queued
    with pytest.raises(ZmrError, match=r"has no timeline \(cancelled\): it never started$"):
        report.format_timeline(never)


# ------------------------------------------------------------------ plots


def test_png_plot(tmp_path: Path) -> None:
    out = report.plot_timeline(job_info(), tmp_path / "job-0007.png")
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000


def test_svg_plot(tmp_path: Path) -> None:
    out = report.plot_timeline(job_info(), tmp_path / "job-0007.svg")
    assert out.stat().st_size > 10_000
    root = ET.parse(out).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "job-0007 (wc): succeeded" in out.read_text()


def test_plots_of_a_failed_and_a_running_job(tmp_path: Path) -> None:
    failed = job_info(state="failed", finished=T0 + 1.2, maps_done=2, reduces_done=0, timeline=TIMELINE[:3])
    running = job_info(state="running", finished=None, timeline=TIMELINE[:1])
    for name, info in (("failed.png", failed), ("running.svg", running)):
        assert (report.plot_timeline(info, tmp_path / name)).stat().st_size > 1000


def test_plot_errors(tmp_path: Path) -> None:
    with pytest.raises(ZmrError, match="no timeline"):
        report.plot_timeline(job_info(timeline=[]), tmp_path / "empty.png")
    with pytest.raises(ZmrError, match=r"\.png or \.svg"):
        report.plot_timeline(job_info(), tmp_path / "job-0007.pdf")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ the command line


class FakeClient:
    """Stands in for `zmr.client.Client`: answers `job()` from a dict, like a coordinator would."""

    jobs: dict[str, m.JobInfo] = {}
    opened: list[tuple[str, str]] = []

    def __init__(self, coordinator: str, keys_dir: str = "", **bounds: object) -> None:   # as Client takes them
        FakeClient.opened.append((coordinator, keys_dir))

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def job(self, job_id: str) -> m.JobInfo:
        if job_id not in self.jobs:
            raise ClusterError(f"no job {job_id}")
        return self.jobs[job_id]


@pytest.fixture
def fake_client(monkeypatch: pytest.MonkeyPatch) -> type[FakeClient]:
    monkeypatch.setattr(FakeClient, "jobs", {"job-0007": job_info()})
    monkeypatch.setattr(FakeClient, "opened", [])
    monkeypatch.setattr(cli, "Client", FakeClient)
    return FakeClient


def run_cli(*argv: str) -> int:
    with pytest.raises(SystemExit) as exit_:
        cli.main(list(argv))
    return int(exit_.value.code or 0)


def test_report_prints_the_table(fake_client: type[FakeClient], capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("report", "job-0007", "--coordinator", "tcp://127.0.0.1:7") == 0
    assert capsys.readouterr().out == report.format_timeline(job_info()) + "\n"
    assert fake_client.opened == [("tcp://127.0.0.1:7", "")]


def test_status_tasks_without_a_job_is_refused_before_asking_the_cluster(
        fake_client: type[FakeClient], capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("status", "--tasks", "--coordinator", "tcp://127.0.0.1:7") == 1
    assert capsys.readouterr().err == ("zmr: --tasks lists one job's tasks: name the job, as in "
                                       "`zmr status JOB --tasks`\n")
    assert fake_client.opened == []


def test_report_plots(fake_client: type[FakeClient], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "job-0007.svg"
    assert run_cli("report", "job-0007", "--plot", str(out)) == 0
    assert capsys.readouterr().out == f"{out}\n"
    assert out.stat().st_size > 10_000


def test_report_of_no_such_job(fake_client: type[FakeClient], capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("report", "job-0009") == 1
    assert capsys.readouterr().err == "zmr: no job job-0009\n"


def test_report_rejects_other_plot_formats(fake_client: type[FakeClient], capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("report", "job-0007", "--plot", "job-0007.pdf") == 2
    assert "must end in .png or .svg" in capsys.readouterr().err
    assert fake_client.opened == []


def test_report_without_matplotlib(fake_client: type[FakeClient], monkeypatch: pytest.MonkeyPatch,
                                   tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)     # makes the import fail
    assert run_cli("report", "job-0007", "--plot", str(tmp_path / "job-0007.png")) == 2
    assert capsys.readouterr().err == "zmr report --plot needs matplotlib: pip install 'zmr[plot]'\n"
    assert fake_client.opened == [], "fails before asking the cluster"
    assert run_cli("report", "job-0007") == 0, "the table needs no matplotlib"


# ------------------------------------------------------------------ leases in zmr status


def status_reply(detail: bool) -> m.StatusReply:
    running = job_info(job_id="job-0008", state="running", finished=None, maps_done=4, reduces_done=1, leases=4,
                       timeline=TIMELINE[:7] if detail else [])
    workers = [m.WorkerInfo(worker_id="w-1", data_addr="tcp://127.0.0.1:40001", state="busy",
                            last_heartbeat=T0 + 3.4, task="job-0008/reduce-1", leases=3),
               m.WorkerInfo(worker_id="w-2", data_addr="tcp://127.0.0.1:40002", state="idle",
                            last_heartbeat=T0 + 3.3, task="", leases=1)]
    return m.StatusReply(now=T0 + 3.5, jobs=[running] if detail else [job_info(timeline=[]), running],
                         workers=workers)


def test_status_shows_live_leases_per_job_and_per_worker() -> None:
    text = format_status(status_reply(detail=False), detail=False)
    lines = text.splitlines()
    assert re.match(r"JOB\s+APP\s+STATE\s+MAPS\s+REDUCES\s+SHUFFLED\s+ELAPSED\s+LEASES$", lines[0])
    assert re.search(r"^job-0007\s+wc\s+succeeded\s+4/4\s+2/2\s+4\.5 MB\s+4\.0s\s+0$", text, re.M), text
    assert re.search(r"^job-0008\s+wc\s+running\s+4/4\s+1/2\s+4\.5 MB\s+3\.5s\s+4$", text, re.M), text
    assert re.search(r"^WORKER\s+ADDRESS\s+STATE\s+HEARTBEAT\s+TASK\s+LEASES$", text, re.M), text
    assert re.search(r"^w-1\s+tcp://127\.0\.0\.1:40001\s+busy\s+0\.1s ago\s+job-0008/reduce-1\s+3$", text, re.M), text
    assert re.search(r"^w-2\s+tcp://127\.0\.0\.1:40002\s+idle\s+0\.2s ago\s+1$", text, re.M), text
    worker_lines = [line for line in lines if line.startswith(("WORKER", "w-"))]
    assert len({line.rindex("S") if line.startswith("W") else len(line) - 1 for line in worker_lines}) == 1, \
        "the LEASES column is aligned"


def test_the_status_row_of_a_multi_step_job_counts_all_its_steps() -> None:
    steps = [m.StepInfo(name="count", job_id="job-0010", wave=0, state="succeeded", maps_done=8, maps_total=8,
                        reduces_done=4, reduces_total=4, bytes_shuffled=3 * MB, leases=2),
             m.StepInfo(name="rank", job_id="job-0009", wave=1, state="running", maps_done=4, maps_total=4,
                        reduces_done=0, reduces_total=1, bytes_shuffled=MB // 2, leases=5)]
    head = job_info(job_id="job-0009", state="running", finished=None, maps_done=4, maps_total=4, reduces_done=0,
                    reduces_total=1, bytes_shuffled=MB // 2, leases=5, steps=steps, timeline=[])
    text = format_status(m.StatusReply(now=T0 + 3.5, jobs=[head], workers=[]), detail=False)
    assert re.search(r"^job-0009\s+wc\s+running\s+12/12\s+4/5\s+3\.5 MB\s+3\.5s\s+7$", text, re.M), text


def test_status_of_one_job_shows_its_live_leases() -> None:
    text = format_status(status_reply(detail=True), detail=True)
    assert "job job-0008: running, output /tmp/out, 123 records out, 4 live leases" in text.splitlines()


def test_status_json_names_every_field_and_carries_its_version() -> None:
    reply = status_reply(detail=True)
    doc = json.loads(status_json(reply))
    assert doc["version"] == STATUS_JSON_VERSION == 1 and doc["now"] == reply.now
    [job] = doc["jobs"]
    assert set(job) == set(m.JobInfo.__struct_fields__)
    assert (job["job_id"], job["state"], job["maps_done"], job["leases"]) == ("job-0008", "running", 4, 4)
    assert job["timeline"][0] == {name: getattr(TIMELINE[0], name) for name in m.TimelinePoint.__struct_fields__}
    assert [w["worker_id"] for w in doc["workers"]] == ["w-1", "w-2"]
    assert doc["workers"][0]["task"] == "job-0008/reduce-1"


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("--version") == 0
    assert capsys.readouterr().out == f"zmr {zmr.__version__}\n"


def test_status_of_a_job_says_how_many_inputs_were_read_whole_as_compressed_files() -> None:
    reply = status_reply(detail=True)
    one = msgspec.structs.replace(reply, jobs=[msgspec.structs.replace(reply.jobs[0], compressed_inputs=3)])
    text = format_status(one, detail=True)
    assert "3 compressed input files, each read whole by one map task (compressed files cannot be split)" in text
    assert "compressed" not in format_status(reply, detail=True)


def test_the_html_report_is_one_file_that_holds_the_job_and_cannot_be_broken_out_of(tmp_path: Path) -> None:
    reply = status_reply(detail=True)
    hostile = "</script><script>alert(1)</script><!--"
    info = msgspec.structs.replace(reply.jobs[0], app_name=hostile, error=f"map-1 failed: KeyError: {hostile!r}",
                                   attempts=[m.AttemptSpan(kind="map", task=1, number=1, worker="w-1", started=1.0,
                                                           ended=2.0, outcome="failed")])
    page = report.write_html(info, tmp_path / "job.html", now=5.0).read_text(encoding="utf-8")
    assert page.count("<script>") == 2 and page.count("</script>") == 2   # the data and the page's own script
    assert hostile not in page and "<\\/script" not in page.split("window.ZMR_REPORT = ", 1)[1].split(";</script>")[0]
    data = page.split("window.ZMR_REPORT = ", 1)[1].split(";</script>", 1)[0]
    doc = json.loads(data)
    assert doc["jobs"][0]["app_name"] == hostile and doc["jobs"][0]["attempts"][0]["outcome"] == "failed"
    assert doc["now"] == 5.0
    assert "fetch(" in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")   # nothing remote
    with pytest.raises(ZmrError, match=r"must end in \.html"):
        report.write_html(info, tmp_path / "job.txt", now=5.0)


# ------------------------------------------------------------------ multi-step jobs


def two_steps() -> tuple[m.JobInfo, list[m.JobInfo]]:
    """A word count whose 2 partitions feed a one-partition ranking: the count's leases fall only as
    the job ends, the ranking's rise while the count still reduces."""
    count = job_info(job_id="job-0008", timeline=TIMELINE[:-1] + [point(4.3, 8, 4, 2, 4 * MB), point(5.0, 0, 4, 2, 0)])
    top = job_info(job_id="job-0007", maps_total=2, reduces_total=1, reduces_done=1, finished=T0 + 5.0,
                   timeline=[point(3.5, 1, 1, 0, MB), point(4.0, 2, 2, 0, 2 * MB), point(4.8, 1, 2, 1, 2 * MB),
                             point(5.0, 0, 2, 1, 2 * MB)])
    head = msgspec.structs.replace(top, steps=[
        m.StepInfo(name="count", job_id="job-0008", wave=0, state="succeeded", maps_done=4, maps_total=4,
                   reduces_done=2, reduces_total=2, bytes_shuffled=4 * MB),
        m.StepInfo(name="top", job_id="job-0007", wave=1, state="succeeded", maps_done=2, maps_total=2,
                   reduces_done=1, reduces_total=1, bytes_shuffled=2 * MB)])
    return head, [count, top]


def test_a_multi_step_report_has_each_steps_table_on_the_jobs_clock() -> None:
    head, steps = two_steps()
    text = report.format_steps(head, steps)
    assert text.splitlines()[0] == "job job-0007 (wc): succeeded; 2 steps, 0 leases live now"
    assert "step count (wave 0, job-0008)" in text and "step top (wave 1, job-0007)" in text
    top_rows = text.split("step top")[1].splitlines()[2:]
    assert top_rows[0].split() == ["3.500", "1", "1/2", "0/1", "1.000"]
    assert len(top_rows) == 4


def test_a_multi_step_plot_stacks_each_steps_leases(tmp_path: Path) -> None:
    head, steps = two_steps()
    out = report.plot_steps(head, steps, tmp_path / "steps.svg")
    text = out.read_text()
    assert "job-0007 (wc): succeeded, 2 steps" in text
    assert "count: reduces done (of 2)" in text and "top: reduces done (of 1)" in text
    assert report._at(steps[1], T0 + 4.5, "leases") == 2 and report._at(steps[1], T0 + 1.0, "leases") == 0
