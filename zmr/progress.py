"""What people see: the live progress line, the end-of-job summary and the status tables."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import TextIO

import msgspec

from zmr.core.views import status_document
from zmr.protocol import messages as m


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} GB"


def progress_text(info: m.JobInfo, width: int = 24) -> str:
    steps: list[m.StepInfo | m.JobInfo] = [*info.steps] or [info]
    total = sum(s.maps_total + s.reduces_total for s in steps)
    done = sum(s.maps_done + s.reduces_done for s in steps)
    filled = int(width * done / total) if total else width
    bar = "#" * filled + "." * (width - filled)
    if info.steps:   # a multi-step job: each step's reduces (its maps are the step before's)
        running = ", ".join(f"{s.name} {s.reduces_done}/{s.reduces_total}" for s in info.steps)
        return (f"[{bar}] {info.job_id} {info.state:<9} steps: {running}  "
                f"shuffled {human_bytes(sum(s.bytes_shuffled for s in info.steps))}")
    return (f"[{bar}] {info.job_id} {info.state:<9} map {info.maps_done}/{info.maps_total}  "
            f"reduce {info.reduces_done}/{info.reduces_total}  shuffled {human_bytes(info.bytes_shuffled)}")


class ProgressLine:
    """A line redrawn in place on a terminal; on a pipe or file, a new line at most every few seconds."""

    def __init__(self, stream: TextIO, every: float = 5.0) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._every = every
        self._last_text = ""
        self._last_time = 0.0

    def update(self, info: m.JobInfo) -> None:
        text = progress_text(info)
        if text == self._last_text:
            return
        now = time.monotonic()
        if self._tty:
            self._stream.write("\r\x1b[2K" + text)
        elif now - self._last_time >= self._every or info.state != "running":
            self._stream.write(text + "\n")
        else:
            return
        self._stream.flush()
        self._last_text, self._last_time = text, now

    def close(self) -> None:
        if self._tty and self._last_text:
            self._stream.write("\n")
            self._stream.flush()


@dataclass(frozen=True)
class Totals:
    """A job's counts over all its steps (a one-step job's own), as the user's commands show a job."""

    maps_done: int
    maps_total: int
    reduces_done: int
    reduces_total: int
    bytes_shuffled: int
    leases: int


def totals(info: m.JobInfo) -> Totals:
    """Summed over the steps a head job lists (each step job's own counts), or the job's own."""
    steps: list[m.StepInfo | m.JobInfo] = [*info.steps] or [info]
    return Totals(*(sum(getattr(s, f.name) for s in steps) for f in dataclasses.fields(Totals)))


def format_summary(info: m.JobInfo, wall: float) -> str:
    t = totals(info)
    tasks = (f"{t.maps_total} map and {t.reduces_total} reduce tasks"
             + (f" in {len(info.steps)} step{'s' if len(info.steps) > 1 else ''}" if info.steps else ""))
    return (f"{info.job_id} {info.state} in {wall:.2f} s: {tasks}, {info.records_out} records out, "
            f"{human_bytes(t.bytes_shuffled)} shuffled; output in {info.output_dir}")


def _ago(now: float, t: float | None) -> str:
    return "-" if t is None else f"{now - t:.1f}s ago"


def _elapsed(info: m.JobInfo, now: float) -> str:
    if info.started is None:
        return "-"
    return f"{(info.finished or now) - info.started:.1f}s"


def format_status(reply: m.StatusReply, detail: bool) -> str:
    lines = [f"{'JOB':<10} {'APP':<10} {'STATE':<10} {'MAPS':>11} {'REDUCES':>9} {'SHUFFLED':>10} {'ELAPSED':>8} "
             f"{'LEASES':>6}"]
    for job in reply.jobs:   # a multi-step job's row counts all its steps, as its summary does
        t = totals(job)
        lines.append(f"{job.job_id:<10} {job.app_name[:10]:<10} {job.state:<10} "
                     f"{t.maps_done:>5}/{t.maps_total:<5} {t.reduces_done:>4}/{t.reduces_total:<4} "
                     f"{human_bytes(t.bytes_shuffled):>10} {_elapsed(job, reply.now):>8} {t.leases:>6}")
    if detail:
        for job in reply.jobs:
            lines += _job_detail(job, reply.now)
    else:
        # TASK stays right after HEARTBEAT, where readers of this table find it; padded so LEASES can follow
        task_width = max([len("TASK"), *(len(w.task) for w in reply.workers)])
        lines.append("")
        lines.append(f"{'WORKER':<34} {'ADDRESS':<24} {'STATE':<6} {'HEARTBEAT':>10}  {'TASK':<{task_width}} "
                     f"{'LEASES':>6}")
        for w in reply.workers:
            lines.append(f"{w.worker_id:<34} {w.data_addr:<24} {w.state:<6} "
                         f"{_ago(reply.now, w.last_heartbeat):>10}  {w.task:<{task_width}} {w.leases:>6}")
    return "\n".join(lines)


def _rel(job: m.JobInfo, t: float | None) -> str:
    return "-" if t is None or job.started is None else f"{t - job.started:+.3f}s"


def _job_detail(job: m.JobInfo, now: float) -> list[str]:
    lines = ["", f"job {job.job_id}: {job.state}, output {job.output_dir}, {job.records_out} records out, "
             f"{totals(job).leases} live leases"]
    if job.compressed_inputs:
        lines.append(f"{job.compressed_inputs} compressed input file{'s' if job.compressed_inputs > 1 else ''}, "
                     "each read whole by one map task (compressed files cannot be split)")
    if job.error:
        lines += ["error:", *("  " + line for line in job.error.splitlines())]
    if job.steps:
        lines += ["", f"{'STEP':<16} {'WAVE':>4} {'JOB':<10} {'STATE':<10} {'MAPS':>11} {'REDUCES':>11} "
                  f"{'SHUFFLED':>10} {'LEASES':>6}"]
        lines += [f"{s.name[:16]:<16} {s.wave:>4} {s.job_id:<10} {s.state:<10} {s.maps_done:>5}/{s.maps_total:<5} "
                  f"{s.reduces_done:>5}/{s.reduces_total:<5} {human_bytes(s.bytes_shuffled):>10} {s.leases:>6}"
                  for s in job.steps]
        lines.append("(the tables below are the last step's; another step's: zmr status <its JOB> --tasks)")
    if not job.tasks:
        return lines + ["", f"(its {job.maps_total + job.reduces_total} tasks and {job.reduces_total} partitions, "
                        f"one line each: zmr status {job.job_id} --tasks)"]
    lines += ["", "times are relative to the job's start", f"{'TASK':<12} {'STATE':<10} {'ATTEMPTS':>8} "
              f"{'STARTED':>10} {'FINISHED':>10}  WORKER"]
    for t in job.tasks:
        lines.append(f"{t.kind + '-' + str(t.index):<12} {t.state:<10} {t.attempts:>8} {_rel(job, t.started):>10} "
                     f"{_rel(job, t.finished):>10}  {t.worker}")
    lines += ["", f"{'PARTITION':<10} {'BYTES IN':>10} {'BATCHES':>8} {'FIRST BATCH':>12} {'LAST BATCH':>12}  OWNER"]
    for p in job.partitions:
        lines.append(f"{p.partition:<10} {human_bytes(p.bytes_in):>10} {p.batches_in:>8} "
                     f"{_rel(job, p.first_batch):>12} {_rel(job, p.last_batch):>12}  {p.owner}")
    return lines


def status_json(reply: m.StatusReply) -> str:
    """The status reply as one JSON document (see `zmr.core.views.status_document`)."""
    return msgspec.json.encode(status_document(reply)).decode()
