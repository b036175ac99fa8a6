"""`zmr report`: one job's timeline (live leases and progress over its life) as a table, a plot or a page.

The coordinator samples a job's timeline on its ticks (see `JobInfo.timeline`); this module only reads
that record, so a report of a job that ended shows the same thing as one taken while it ran. Leases
should ramp up during map, plateau through the shuffle, ramp down as partitions commit and end at zero:
a report that does not end at zero points at leaked intermediate data.

matplotlib is optional (`pip install 'zmr[plot]'`) and imported only when a plot is drawn.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from zmr.errors import ZmrError
from zmr.protocol import messages as m

PLOT_SUFFIXES = (".png", ".svg")
PLOT_HINT = "zmr report --plot needs matplotlib: pip install 'zmr[plot]'"


class PlotUnavailable(ZmrError):
    """matplotlib is not installed; a usage problem, not a cluster one."""


@dataclass(frozen=True)
class Phases:
    """Phase boundaries in seconds since the job started.

    The map phase runs from 0 to `map_end`; the reduce phase from `map_end` to `end`. `map_end` is when
    the last map finished, from the task records when the reply has them (samples are taken on coordinator
    ticks, often coarser than a short job), else the first sample with every map done; None if the maps
    never were all done (the job failed or was cancelled during map, or is still mapping). `end` is when
    the job finished, or its last sample while it still runs; samples may go on past it while leases drain.
    """

    map_end: float | None
    end: float


def origin(info: m.JobInfo) -> float:
    """Wall-clock time every report time is relative to: the job's start (its first sample if unknown)."""
    _require_timeline(info)
    return info.started if info.started is not None else info.timeline[0].t


def phases(info: m.JobInfo) -> Phases:
    """Where the map and reduce phases lie, for the table's summary and the plot's shading."""
    t0 = origin(info)
    end = (info.finished if info.finished is not None else info.timeline[-1].t) - t0
    map_end: float | None
    maps_finished = [t.finished for t in info.tasks if t.kind == "map"]
    if info.maps_total and len(maps_finished) == info.maps_total and None not in maps_finished:
        map_end = max(t for t in maps_finished if t is not None) - t0
    else:
        map_end = next((p.t - t0 for p in info.timeline if p.maps_done >= info.maps_total), None)
    return Phases(map_end=None if map_end is None else min(map_end, end), end=end)


def format_timeline(info: m.JobInfo) -> str:
    """The timeline as a text table, one line per sample (a sample is taken only when something changed)."""
    t0 = origin(info)
    ph = phases(info)
    lines = [f"job {info.job_id} ({info.app_name}): {info.state}; {len(info.timeline)} samples, "
             f"peak {max(p.leases for p in info.timeline)} leases, {info.leases} live now",
             _phase_text(ph),
             "t is seconds since the job started",
             f"{'T':>9} {'LEASES':>7} {'MAPS':>11} {'REDUCES':>9} {'MB SHUFFLED':>12}"]
    for p in info.timeline:
        lines.append(f"{p.t - t0:>9.3f} {p.leases:>7} {p.maps_done:>5}/{info.maps_total:<5} "
                     f"{p.reduces_done:>4}/{info.reduces_total:<4} {p.bytes_shuffled / 1e6:>12.3f}")
    return "\n".join(lines)


def format_steps(info: m.JobInfo, steps: list[m.JobInfo]) -> str:
    """A multi-step job's report: each step's timeline table in turn (its job's), times since the job began."""
    t0 = origin(info)
    parts = [f"job {info.job_id} ({info.app_name}): {info.state}; {len(steps)} steps, "
             f"{sum(s.leases for s in steps)} leases live now"]
    for plan, step in zip(info.steps, steps, strict=True):
        if not step.timeline:
            parts.append(f"\nstep {plan.name} ({step.job_id}): no samples")
            continue
        parts.append(f"\nstep {plan.name} (wave {plan.wave}, {step.job_id}), t in seconds since the job started")
        parts.append(f"{'T':>9} {'LEASES':>7} {'MAPS':>11} {'REDUCES':>9} {'MB SHUFFLED':>12}")
        parts += [f"{p.t - t0:>9.3f} {p.leases:>7} {p.maps_done:>5}/{step.maps_total:<5} "
                  f"{p.reduces_done:>4}/{step.reduces_total:<4} {p.bytes_shuffled / 1e6:>12.3f}" for p in step.timeline]
    return "\n".join(parts)


def _phase_text(ph: Phases) -> str:
    if ph.map_end is None:
        return f"map phase 0.000-{ph.end:.3f} s (maps never all done)"
    return f"map phase 0.000-{ph.map_end:.3f} s, reduce phase {ph.map_end:.3f}-{ph.end:.3f} s"


HTML_SUFFIXES = (".html", ".htm")


def write_html(info: m.JobInfo, path: str | Path, now: float) -> Path:
    """The dashboard's page of one job (timeline of attempts, lease graph, tasks, its error) as one
    self-contained file: the page's script and style inlined, the job's record inside, nothing fetched."""
    from zmr.core.views import status_document
    from zmr.runtime.dashboard import web_asset

    path = Path(path)
    if path.suffix.lower() not in HTML_SUFFIXES:
        raise ZmrError(f"report file must end in .html, got {str(path)!r}")
    doc = status_document(m.StatusReply(now=now, jobs=[info], workers=[]))
    # inside <script>, "<" is the one character that can end the element early (`</script>`, `<!--`)
    data = msgspec.json.encode(doc).decode().replace("<", "\\u003c")
    style = web_asset("dashboard.css").decode()
    script = web_asset("dashboard.js").decode().replace("</script", "<\\/script")
    title = html.escape(f"zmr job {info.job_id} ({info.app_name}): {info.state}")
    path.write_text(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{title}</title><style>{style}</style></head>\n"
        f"<body><main id=\"app\"></main>\n<script>window.ZMR_REPORT = {data};</script>\n"
        f"<script>{script}</script></body></html>\n", encoding="utf-8")
    return path


def check_plotting() -> None:
    """Fail before contacting the cluster when a plot could not be drawn anyway."""
    _figure_class()


def plot_timeline(info: m.JobInfo, path: str | Path) -> Path:
    """Draw the timeline to `path` (.png or .svg): live leases on top, map/reduce fractions below.

    Uses matplotlib's Figure directly, never pyplot: nothing global (backend, open figures) changes,
    and no display is needed, so it works headless and inside other programs alike.
    """
    path = Path(path)
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise ZmrError(f"plot file must end in .png or .svg, got {str(path)!r}")
    figure_class = _figure_class()
    from matplotlib.ticker import MaxNLocator
    t0 = origin(info)
    ph = phases(info)
    ts = [p.t - t0 for p in info.timeline]
    left = min(0.0, ts[0])
    last = max(ts[-1], ph.end)
    right = last + 0.03 * (last - left) if last > left else left + 1.0
    xs = [*ts, right]     # hold the last sample a little past the end, so a step line shows its final value

    def held(values: list[float]) -> list[float]:
        return [*values, values[-1]]

    fig = figure_class(figsize=(10, 6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    leases = held([p.leases for p in info.timeline])
    top.step(xs, leases, where="post", color="C2", label="live leases")
    top.fill_between(xs, leases, step="post", color="C2", alpha=0.3)
    top.set_ylabel("live leases")
    top.set_ylim(0, max(1, *leases) * 1.08)
    bottom.step(xs, held([_fraction(p.maps_done, info.maps_total) for p in info.timeline]), where="post",
                color="C0", label=f"maps done (of {info.maps_total})")
    bottom.step(xs, held([_fraction(p.reduces_done, info.reduces_total) for p in info.timeline]), where="post",
                color="C1", label=f"reduces done (of {info.reduces_total})")
    bottom.set_ylim(-0.02, 1.05)
    bottom.set_ylabel("fraction done")
    bottom.set_xlabel("seconds since the job started")
    bottom.set_xlim(left, right)
    for ax in (top, bottom):
        ax.axvspan(0, ph.map_end if ph.map_end is not None else ph.end, color="C0", alpha=0.08,
                   label="map phase")
        if ph.map_end is not None:
            ax.axvspan(ph.map_end, ph.end, color="C1", alpha=0.08, label="reduce phase")
            ax.axvline(ph.map_end, color="0.4", linestyle="--", linewidth=0.8)
        ax.axvline(ph.end, color="0.2", linestyle=":", linewidth=0.8)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")   # outside: never hides a line
    top.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"{info.job_id} ({info.app_name}): {info.state}")
    fig.savefig(path)
    return path


def plot_steps(info: m.JobInfo, steps: list[m.JobInfo], path: str | Path) -> Path:
    """A multi-step job's plot: each step's live leases stacked on top (so the graph rises and falls step
    by step, and should end at zero), each step's reduces done below, on one time axis."""
    path = Path(path)
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise ZmrError(f"plot file must end in .png or .svg, got {str(path)!r}")
    figure_class = _figure_class()
    t0 = origin(info)
    times = sorted({p.t - t0 for step in steps for p in step.timeline} | {0.0})
    fig = figure_class(figsize=(10, 6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    stacks = [[_at(step, t + t0, "leases") for t in times] for step in steps]
    names = [plan.name for plan in info.steps]
    top.stackplot(times, *stacks, labels=names, step="post", alpha=0.6)
    top.set_ylabel("live leases")
    for k, (plan, step) in enumerate(zip(info.steps, steps, strict=True)):
        bottom.step(times, [_at(step, t + t0, "reduces_done") / max(1, step.reduces_total) for t in times],
                    where="post", color=f"C{k % 10}", label=f"{plan.name}: reduces done (of {step.reduces_total})")
    bottom.set_ylim(-0.02, 1.05)
    bottom.set_ylabel("fraction done")
    bottom.set_xlabel("seconds since the job started")
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    fig.suptitle(f"{info.job_id} ({info.app_name}): {info.state}, {len(steps)} steps")
    fig.savefig(path)
    return path


def _at(step: m.JobInfo, t: float, field: str) -> float:
    """A step's sampled value at wall time t: its last sample at or before t (0 before its first)."""
    value = 0
    for p in step.timeline:
        if p.t > t:
            break
        value = getattr(p, field)
    return float(value)


def _fraction(done: int, total: int) -> float:
    return done / total if total else 1.0


def _require_timeline(info: m.JobInfo) -> None:
    if not info.timeline and info.state in ("succeeded", "failed", "cancelled"):
        why = ("it never started" if info.started is None else "a coordinator keeps a job's samples in memory "
               "only, so a job that ended before the coordinator last started has none")
        raise ZmrError(f"job {info.job_id} has no timeline ({info.state}): {why}")
    if not info.timeline:
        raise ZmrError(f"job {info.job_id} has no timeline yet ({info.state}): it is sampled once the job "
                       "starts, and only the detailed status of one job carries it")


def _figure_class() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise PlotUnavailable(PLOT_HINT) from exc
    return Figure
