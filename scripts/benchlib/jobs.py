"""The job registry: each job generates its data, runs its contenders, checks outputs, judges targets.

    wc     word count of a Zipf corpus (8 files): zmr vs every peer
    sort   TeraSort-style sort of 100-byte records (8 files), zmr workers at a 256 MiB memory budget
    modes  the sort in push and in barrier shuffle mode, with the share of the shuffle done by the last map
    tiny   10,000 empty files through apps/identity.py: tasks per second of scheduling overhead
    scale  word count at growing sizes (zmr and single-process Python): is the cost per MB flat?
    overhead  zmr's own CPU per (key, value) pair, with an app that emits pairs and does nothing else
    topwords  word count then the top 100: one multi-step zmr job vs two chained zmr jobs vs the peers

A job returns a JobReport: JSON rows, a printable table, targets (informational PASS/MISS) and notes.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib import data, verify
from benchlib.contenders import APPS, BASELINE, CONTENDERS, RunSpec, child_env
from benchlib.measure import Measurement, run_measured, wait_until_quiet

MiB = 1 << 20


@dataclass
class Context:
    """Flags and places shared by every job."""

    ns: Any                 # the parsed command line
    out: Path

    @property
    def data(self) -> Path:
        return self.out / "data"

    @property
    def runs(self) -> Path:
        return self.out / "runs"

    @property
    def logs(self) -> Path:
        return self.out / "logs"

    def contenders(self, job: str) -> tuple[list[str], dict[str, str]]:
        """Contenders of `job` that can run here (zmr first, baseline second), and why others are skipped."""
        wanted = [n for n in CONTENDERS if job in CONTENDERS[n].jobs
                  and (not self.ns.contenders or n in self.ns.contenders or n in ("zmr", BASELINE))]
        skipped = {n: CONTENDERS[n].unavailable() for n in wanted if CONTENDERS[n].unavailable()}
        return [n for n in wanted if n not in skipped], skipped

    def measure(self, argv: Sequence[str], log_name: str) -> Measurement:
        if self.ns.quiet_wait > 0:
            load = wait_until_quiet(self.ns.quiet_load, self.ns.quiet_wait)
            if load >= self.ns.quiet_load:
                print(f"bench:   machine still busy ({load:.1f} cores used by others); running anyway", flush=True)
        return run_measured(argv, self.logs / f"{log_name}.log", env=child_env(), interval=self.ns.sample_interval,
                            timeout=self.ns.timeout)


@dataclass
class Target:
    name: str
    value: str
    status: str  # PASS, MISS or N/A


@dataclass
class JobReport:
    name: str
    title: str
    headers: list[str]
    table: list[list[str]]
    rows: list[dict[str, Any]]
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------ a race: contenders on one data set


@dataclass
class Outcome:
    """One contender's runs of one job, and their checked outputs."""

    name: str
    runs: list[Measurement] = field(default_factory=list)
    digests: list[verify.Digest | None] = field(default_factory=list)

    @property
    def walls(self) -> list[float]:
        return [m.wall for m in self.runs if m.ok]

    @property
    def wall(self) -> float | None:
        return statistics.median(self.walls) if self.walls else None

    def peaks(self) -> dict[str, int]:
        """Peak RSS per process role, the max over all runs."""
        peaks: dict[str, int] = {}
        for m in self.runs:
            for p in m.procs.values():
                peaks[p.label] = max(peaks.get(p.label, 0), p.peak_rss)
        return peaks

    def worker_footprints(self) -> dict[str, int]:
        """Per zmr worker, the max over runs of its peak RSS plus the peaks of the task processes (and task
        zygote) it ran: what a worker costs a machine, counted high (peaks at different moments added)."""
        footprints: dict[str, int] = {}
        for m in self.runs:
            for worker in m.peak_of("zmr-worker"):
                total = worker.peak_rss + sum(p.peak_rss for p in m.procs.values() if p.serves == worker.pid)
                footprints[worker.label] = max(footprints.get(worker.label, 0), total)
        return footprints

    @property
    def peak_sum(self) -> int:
        return max((m.peak_sum for m in self.runs), default=0)

    @property
    def other_load(self) -> float | None:
        """Median cores' worth of CPU used by other processes during the runs."""
        return statistics.median(m.other_load for m in self.runs) if self.runs else None

    def check(self, reference: verify.Digest | None) -> str:
        """'ok' if every run succeeded with the reference output; otherwise what went wrong first."""
        for m, d in zip(self.runs, self.digests, strict=True):
            if not m.ok:
                return f"FAILED rc={m.returncode} ({m.log})"
            if d is None or d.problem:
                return f"BAD OUTPUT: {d.problem if d else 'unchecked'}"
            if not d.ordered:
                return "NOT SORTED"
            if reference is not None and (d.digest, d.lines) != (reference.digest, reference.lines):
                return f"MISMATCH ({d.lines} lines, {d.digest} vs {reference.digest})"
        return "ok"


def race(ctx: Context, job: str, dataset: data.DataSet, names: list[str], n_reduce: int, tag: str,
         digest: Callable[[Path], verify.Digest], zmr_sets: tuple[str, ...] = ()) -> dict[str, Outcome]:
    """Run every contender `--repeat` times, interleaved (all of round 1, then round 2...)."""
    outcomes = {n: Outcome(n) for n in names}
    for rep in range(ctx.ns.repeat):
        for name in names:
            out = ctx.runs / tag / name
            shutil.rmtree(out, ignore_errors=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            run = RunSpec(job, dataset.path, out, ctx.ns.workers, n_reduce, zmr_sets)
            m = ctx.measure(CONTENDERS[name].command(run), f"{tag}-{name}-r{rep + 1}")
            d = digest(out) if m.ok else None
            outcomes[name].runs.append(m)
            outcomes[name].digests.append(d)
            _progress(tag, name, rep, m, d)
            if not ctx.ns.keep_outputs:
                shutil.rmtree(out, ignore_errors=True)
    return outcomes


def _progress(tag: str, name: str, rep: int, m: Measurement, d: verify.Digest | None) -> None:
    state = f"{m.wall:.2f} s" if m.ok else f"FAILED rc={m.returncode}, log {m.log}"
    check = f", {d.lines} lines {d.digest}{'' if d.ordered else ' UNSORTED'}" if d else ""
    print(f"bench:   {tag:<14} {name:<9} run {rep + 1}: {state}{check}", flush=True)
    if not m.ok:
        print("\n".join("bench:     | " + line for line in m.tail(8).splitlines()), file=sys.stderr, flush=True)


def race_rows(outcomes: dict[str, Outcome], size_bytes: int, reference: verify.Digest | None,
              ) -> tuple[list[dict[str, Any]], list[list[str]]]:
    base = outcomes.get(BASELINE)
    base_wall = base.wall if base else None
    rows, table = [], []
    for o in outcomes.values():
        peaks = o.peaks()
        top = max(peaks.items(), key=lambda kv: kv[1], default=("", 0))
        row = {"contender": o.name, "walls": o.walls, "wall": o.wall,
               "mb_per_s": size_bytes / 1e6 / o.wall if o.wall else None,
               "ratio_to_python": o.wall / base_wall if o.wall and base_wall else None,
               "peak_rss_by_process": peaks, "peak_rss_max_process": top[0], "peak_rss_max": top[1],
               "peak_rss_sum": o.peak_sum, "output": o.check(reference),
               "digest": next((d.digest for d in o.digests if d), None), "logs": [m.log for m in o.runs],
               "other_load_cores": [round(m.other_load, 2) for m in o.runs]}
        rows.append(row)
        table.append([o.name, _f(row["wall"], 2), f"{len(o.walls)}/{len(o.runs)}", _f(row["mb_per_s"], 1),
                      _f(row["ratio_to_python"], 2), f"{_mib(top[1])} {top[0]}", _mib(o.peak_sum),
                      _f(o.other_load, 1), row["output"]])
    return rows, table


RACE_HEADERS = ["contender", "wall s", "ok runs", "MB/s", "x python", "peak RSS max/process", "peak RSS sum",
                "other load", "output"]


def _f(x: float | None, digits: int) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _mib(n: int) -> str:
    return f"{n / MiB:.0f} MiB" if n else "-"


def _secs(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f} s"


def _ratio(x: float | None, base: float | None) -> str:
    return "-" if x is None or not base else f"{x / base:.2f}x"


def _status(ok: bool | None) -> str:
    return "N/A" if ok is None else ("PASS" if ok else "MISS")


def _skip_notes(skipped: dict[str, str]) -> list[str]:
    return [f"{name} skipped: {why}" for name, why in skipped.items()]


# ------------------------------------------------------------------ wc


def job_wc(ctx: Context) -> JobReport:
    """One race per vocabulary size (`--wc-vocab`), in one table: more distinct words mean more distinct
    keys per map, so more of the job is the shuffle's."""
    names, skipped = ctx.contenders("wc")
    rows: list[dict[str, Any]] = []
    table: list[list[str]] = []
    targets: list[Target] = []
    inputs: dict[str, Any] = {}
    for vocab in ctx.ns.wc_vocab:
        ds = data.corpus(ctx.data, ctx.ns.mb, vocabulary=vocab)
        outcomes = race(ctx, "wc", ds, names, ctx.ns.wc_reduce, f"wc-{vocab}w", verify.wordcount_digest)
        reference = _baseline_digest(outcomes)
        vocab_rows, vocab_table = race_rows(outcomes, ds.size_bytes, reference)
        rows += [{"vocabulary": vocab, **row} for row in vocab_rows]
        table += [[f"{vocab:,}", *line] for line in vocab_table]
        targets += _wc_targets(outcomes, f"{vocab:,} words")
        inputs[str(vocab)] = {"input": str(ds.path), "bytes": ds.size_bytes,
                              "reference_lines": reference and reference.lines}
    title = (f"wc: word count, {ctx.ns.mb:g} MB in 8 files over "
             f"{' and '.join(f'{v:,}' for v in ctx.ns.wc_vocab)} distinct words, R={ctx.ns.wc_reduce}")
    return JobReport("wc", title, ["words", *RACE_HEADERS], table, rows, targets, _skip_notes(skipped), inputs)


def _wc_targets(outcomes: dict[str, Outcome], corpus: str) -> list[Target]:
    zmr, base = outcomes["zmr"].wall, outcomes[BASELINE].wall
    ratio = zmr / base if zmr and base else None
    targets = [Target(f"{corpus}: zmr wall <= 0.55 x single-process Python", _f(ratio, 2) + "x",
                      _status(None if ratio is None else ratio <= 0.55))]
    pool = outcomes["pool"].wall if "pool" in outcomes else None
    if pool:
        targets.append(Target(f"{corpus}: zmr no slower than Pool(2)", f"{_f(zmr and zmr / pool, 2)}x pool",
                              _status(None if zmr is None else zmr <= pool)))
    engines = {n: o.wall for n, o in outcomes.items() if n not in ("zmr", BASELINE, "pool") and o.wall}
    if engines and zmr:
        speedups = ", ".join(f"{n} {w / zmr:.2f}x" for n, w in engines.items())
        targets.append(Target(f"{corpus}: zmr >= 1.3x faster than every other engine", speedups,
                              _status(all(w / zmr >= 1.3 for w in engines.values()))))
    return targets


def _baseline_digest(outcomes: dict[str, Outcome]) -> verify.Digest | None:
    """The single-process output if it has one; else the most common output digest."""
    base = outcomes.get(BASELINE)
    first = next((d for d in base.digests if d and not d.problem), None) if base else None
    if first is not None:
        return first
    found = [d for o in outcomes.values() for d in o.digests if d and not d.problem]
    if not found:
        return None
    common, _ = Counter((d.digest, d.lines) for d in found).most_common(1)[0]
    return next(d for d in found if (d.digest, d.lines) == common)


# ------------------------------------------------------------------ topwords


def job_topwords(ctx: Context) -> JobReport:
    """A two-step job, word count then the 100 most frequent words: zmr runs it as one multi-step job
    (the count streamed into the ranking), `zmr-chain` as two zmr jobs through a folder, the peers as one
    program each. The output is a ranking, checked in order."""
    names, skipped = ctx.contenders("topwords")
    vocab = ctx.ns.wc_vocab[0]
    ds = data.corpus(ctx.data, ctx.ns.mb, vocabulary=vocab)
    outcomes = race(ctx, "topwords", ds, names, ctx.ns.wc_reduce, "topwords", verify.ranked_digest)
    reference = _baseline_digest(outcomes)
    rows, table = race_rows(outcomes, ds.size_bytes, reference)
    zmr = outcomes["zmr"].wall
    targets = []
    chain = outcomes["zmr-chain"].wall if "zmr-chain" in outcomes else None
    if zmr and chain:
        targets.append(Target("topwords: one two-step zmr job faster than the same work as two chained zmr jobs",
                              f"{chain / zmr:.2f}x", _status(zmr < chain)))
    engines = {n: o.wall for n, o in outcomes.items() if n not in ("zmr", "zmr-chain", BASELINE) and o.wall}
    if engines and zmr:
        targets.append(Target("topwords: zmr >= 1.3x faster than every other engine",
                              ", ".join(f"{n} {w / zmr:.2f}x" for n, w in engines.items()),
                              _status(all(w / zmr >= 1.3 for w in engines.values()))))
    title = (f"topwords: word count then the top 100, {ctx.ns.mb:g} MB in 8 files over {vocab:,} distinct words, "
             f"R={ctx.ns.wc_reduce}")
    return JobReport("topwords", title, RACE_HEADERS, table, rows, targets, _skip_notes(skipped),
                     {"input": str(ds.path), "bytes": ds.size_bytes, "reference_lines": reference and reference.lines})


# ------------------------------------------------------------------ sort


def job_sort(ctx: Context) -> JobReport:
    ds = data.records(ctx.data, ctx.ns.sort_mb)
    names, skipped = ctx.contenders("sort")
    budget = ctx.ns.budget_mb
    reference = verify.records_reference(ds.files)
    outcomes = race(ctx, "sort", ds, names, ctx.ns.sort_reduce, "sort", verify.sort_digest,
                    (f"worker.memory_budget_mb={budget}",))
    rows, table = race_rows(outcomes, ds.size_bytes, reference)
    zmr = outcomes["zmr"]
    rivals = {n: o.wall for n, o in outcomes.items() if n in ("dask-df", "spark", "pool")}
    slower_than = [n for n, w in rivals.items() if w is not None and zmr.wall is not None and w <= zmr.wall]
    workers = zmr.worker_footprints()
    limit = (budget + 150) * MiB
    python = outcomes["python"].wall
    per_gb = ds.size_bytes / 1e9
    targets = [Target(f"zmr wall <= {8 * per_gb:.1f} s (8 s per GB)", _secs(zmr.wall),
                      _status(None if zmr.wall is None else zmr.wall <= 8 * per_gb)),
               Target("zmr <= 0.5x single-process Python", _ratio(zmr.wall, python),
                      _status(None if zmr.wall is None or not python else zmr.wall <= 0.5 * python)),
               Target("zmr faster than Pool, Dask and PySpark",
                      ("slower than " + ", ".join(slower_than)) if slower_than else
                      "faster than " + (", ".join(n for n, w in rivals.items() if w) or "no rival that ran"),
                      _status(None if zmr.wall is None or not any(rivals.values()) else not slower_than)),
               Target(f"each zmr worker (with its task processes) peak RSS <= {budget} + 150 MiB",
                      ", ".join(f"{k} {_mib(v)}" for k, v in sorted(workers.items())) or "no worker seen",
                      _status(None if not workers else max(workers.values()) <= limit))]
    title = (f"sort: {ds.size_bytes / 1e6:.0f} MB of 100-byte records in {len(ds.files)} files, "
             f"R={ctx.ns.sort_reduce}, zmr worker.memory_budget_mb={budget}")
    notes = _skip_notes(skipped) + [f"reference: input records sorted, {reference.lines} lines, {reference.digest}"]
    return JobReport("sort", title, RACE_HEADERS, table, rows, targets, notes,
                     {"input": str(ds.path), "bytes": ds.size_bytes})


# ------------------------------------------------------------------ modes


def _api_run(ctx: Context, args: list[str], log_name: str) -> tuple[Measurement, dict[str, Any] | None]:
    """Run `python -m benchlib.zmrapi ARGS` measured; its last JSON line is the result."""
    m = ctx.measure([sys.executable, "-m", "benchlib.zmrapi", *args], log_name)
    return m, _last_json(m) if m.ok else None


def _last_json(m: Measurement) -> dict[str, Any] | None:
    """The last JSON object a measured child printed on a line of its own, if any."""
    lines = [ln for ln in Path(m.log).read_text(errors="replace").splitlines() if ln.startswith("{")]
    return dict(json.loads(lines[-1])) if lines else None


def job_modes(ctx: Context) -> JobReport:
    ds = data.records(ctx.data, ctx.ns.modes_mb)
    reference = verify.records_reference(ds.files)
    runs: dict[str, list[tuple[Measurement, dict[str, Any] | None, verify.Digest | None]]] = {"push": [],
                                                                                             "barrier": []}
    for rep in range(ctx.ns.repeat):
        for mode in runs:
            out = ctx.runs / "modes" / mode
            shutil.rmtree(out, ignore_errors=True)
            m, res = _api_run(ctx, ["modes", str(ds.path), str(out), "--mode", mode, "--workers",
                                    str(ctx.ns.workers), "--n-reduce", str(ctx.ns.sort_reduce), "--budget-mb",
                                    str(ctx.ns.budget_mb)], f"modes-{mode}-r{rep + 1}")
            d = verify.sort_digest(out) if m.ok else None
            runs[mode].append((m, res, d))
            _progress("modes", mode, rep, m, d)
            if not ctx.ns.keep_outputs:
                shutil.rmtree(out, ignore_errors=True)
    rows, table = [], []
    for mode, items in runs.items():
        row, line = _modes_row(mode, items, reference)
        rows.append(row)
        table.append(line)
    push, barrier = rows[0], rows[1]
    faster = None if push["job_wall"] is None or barrier["job_wall"] is None else push["job_wall"] <= barrier[
        "job_wall"]
    share = push["fraction_before_last_map_commit"]
    targets = [Target("push not slower than barrier", f"push {_f(push['job_wall'], 2)} s vs barrier "
                      f"{_f(barrier['job_wall'], 2)} s", _status(faster)),
               Target(">= 80% of shuffle bytes at their owner before the last map commit (push)",
                      f"{_pct(share)} (estimate)", _status(None if share is None else share >= 0.8))]
    notes = ["job wall: submit to success through the Python API, cluster start-up excluded; total: the whole "
             "child process",
             "fraction: ESTIMATE from heartbeat-sampled partition stats (bytes_in, first/last batch per "
             "partition), uniform arrival between samples; [lower, upper] bounds; no per-batch arrival "
             "times are exposed (see scripts/benchlib/zmrapi.py)"]
    title = (f"modes: sort of {ds.size_bytes / 1e6:.0f} MB, R={ctx.ns.sort_reduce}, push vs barrier shuffle, "
             f"worker.memory_budget_mb={ctx.ns.budget_mb}")
    headers = ["mode", "job wall s", "total s", "map phase s", "after last map s", "shuffled MB",
               "bytes at owner by last map commit", "worker peak RSS", "other load", "output"]
    return JobReport("modes", title, headers, table, rows, targets, notes, {"input": str(ds.path)})


def _median(results: list[dict[str, Any]], *path: str) -> float | None:
    """The median of one figure of a list of JSON results (`path` walks nested dicts)."""
    values = []
    for r in results:
        for key in path:
            r = r[key]
        values.append(r)
    return _median_of(values)


def _modes_row(mode: str, items: list[tuple[Measurement, dict[str, Any] | None, verify.Digest | None]],
               reference: verify.Digest) -> tuple[dict[str, Any], list[str]]:
    results = [r for _, r, _ in items if r]
    outcome = Outcome(mode, [m for m, _, _ in items], [d for _, _, d in items])
    workers = {k: v for k, v in outcome.peaks().items() if k.startswith("zmr-worker")}
    row = {"mode": mode, **{k: _median(results, k) for k in ("job_wall", "total_wall", "map_phase",
                                                              "after_last_map", "bytes_shuffled")},
           "fraction_before_last_map_commit": _median(results, "fraction", "estimate"),
           "fraction_lower": _median(results, "fraction", "lower"),
           "fraction_upper": _median(results, "fraction", "upper"), "fraction_is_estimate": True,
           "runs": results, "peak_rss_by_process": outcome.peaks(), "output": outcome.check(reference),
           "other_load_cores": [round(m.other_load, 2) for m in outcome.runs]}
    shuffled = row["bytes_shuffled"]
    line = [mode, _f(row["job_wall"], 2), _f(row["total_wall"], 2), _f(row["map_phase"], 2),
            _f(row["after_last_map"], 2), _f(shuffled / 1e6 if shuffled else None, 0),
            f"{_pct(row['fraction_before_last_map_commit'])} est. [{_pct(row['fraction_lower'])}, "
            f"{_pct(row['fraction_upper'])}]",
            " ".join(_mib(v) for _, v in sorted(workers.items())), _f(outcome.other_load, 1), row["output"]]
    return row, line


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


# ------------------------------------------------------------------ tiny


def job_tiny(ctx: Context) -> JobReport:
    ds = data.empty_files(ctx.data, ctx.ns.tiny_files)
    n_reduce = 2
    items = []
    for rep in range(ctx.ns.repeat):
        out = ctx.runs / "tiny"
        shutil.rmtree(out, ignore_errors=True)
        m, res = _api_run(ctx, ["tiny", str(ds.path), str(out), "--workers", str(ctx.ns.workers), "--n-reduce",
                                str(n_reduce), "--poll", "0.02"], f"tiny-r{rep + 1}")
        d = verify.empty_output(out, n_reduce) if m.ok else None
        items.append((m, res, d))
        _progress("tiny", "zmr", rep, m, d)
        shutil.rmtree(out, ignore_errors=True)
    results = [r for _, r, _ in items if r]
    outcome = Outcome("zmr", [m for m, _, _ in items], [d for _, _, d in items])
    job_wall = _median(results, "job_wall")
    rate = ctx.ns.tiny_files / job_wall if job_wall else None
    row = {"files": ctx.ns.tiny_files, "job_wall": job_wall, "tasks_per_s": rate,
           "startup": _median(results, "startup_wall"), "submit": _median(results, "submit_wall"),
           "total_wall": _median(results, "total_wall"), "coordinator_wall": _median(results, "coordinator_wall"),
           "runs": results, "peak_rss_by_process": outcome.peaks(), "output": outcome.check(None),
           "other_load_cores": [round(m.other_load, 2) for m in outcome.runs]}
    top = max(outcome.peaks().items(), key=lambda kv: kv[1], default=("", 0))
    table = [[str(ctx.ns.tiny_files), _f(job_wall, 2), _f(rate, 0), _f(row["startup"], 2), _f(row["submit"], 2),
              _f(row["total_wall"], 2), f"{_mib(top[1])} {top[0]}", _f(outcome.other_load, 1), row["output"]]]
    targets = [Target(">= 1000 tasks/s", f"{_f(rate, 0)} tasks/s", _status(None if rate is None else rate >= 1000))]
    notes = ["tasks/s = files / job wall (submit, including building the job spec, to success; cluster "
             "start-up excluded); total includes start-up and shutdown"]
    headers = ["map tasks", "job wall s", "tasks/s", "start-up s", "submit s", "total s", "peak RSS max/process",
               "other load", "output"]
    return JobReport("tiny", f"tiny: {ctx.ns.tiny_files} empty files through apps/identity.py, R={n_reduce}",
                     headers, table, [row], targets, notes)


# ------------------------------------------------------------------ scale


def job_scale(ctx: Context) -> JobReport:
    sizes = ctx.ns.scale_mb
    names = ["zmr", BASELINE]
    rows, table = [], []
    cost: dict[str, dict[float, float | None]] = {n: {} for n in names}
    for mb in sizes:
        ds = data.corpus(ctx.data, mb)
        outcomes = race(ctx, "wc", ds, names, ctx.ns.wc_reduce, f"scale-{mb:g}", verify.wordcount_digest)
        size_rows, size_table = race_rows(outcomes, ds.size_bytes, _baseline_digest(outcomes))
        for row, line in zip(size_rows, size_table, strict=True):
            per_mb = row["wall"] / (ds.size_bytes / 1e6) if row["wall"] else None
            cost[row["contender"]][mb] = per_mb
            rows.append({"mb": mb, "cost_s_per_mb": per_mb, **row})
            table.append([f"{mb:g}", line[0], line[1], _f(per_mb and per_mb * 1000, 1), *line[3:5], line[5],
                          line[7], line[8]])
    small, large = min(sizes), max(sizes)
    ratios = {n: (c[large] / c[small] if c.get(large) and c.get(small) else None) for n, c in cost.items()}
    for n, r in ratios.items():
        table.append([f"{large:g}/{small:g}", n, "", f"x{_f(r, 2)}", "", "", "", "", "per-MB cost ratio"])
    r = ratios["zmr"]
    targets = [Target(f"zmr per-MB cost at {large:g} MB within 15% of {small:g} MB",
                      f"ratio {_f(r, 2)} (python {_f(ratios[BASELINE], 2)})",
                      _status(None if r is None else abs(r - 1) <= 0.15))]
    headers = ["MB", "contender", "wall s", "ms per MB", "MB/s", "x python", "peak RSS max/process", "other load",
               "output"]
    return JobReport("scale", f"scale: word count at {', '.join(f'{s:g}' for s in sizes)} MB (8 files)", headers,
                     table, rows, targets, ["cost = median wall / MB, start-up included"],
                     {"cost_ratio_largest_to_smallest": ratios})


# ------------------------------------------------------------------ overhead


def job_overhead(ctx: Context) -> JobReport:
    """zmr's own CPU per pair: an app that emits a pair per word and adds them up, run by zmr; what the
    app's functions take alone (`benchlib.appcost`) and what an empty job of as many files takes are
    subtracted from the whole process tree's CPU, and the rest divided by the pairs."""
    ds = data.corpus(ctx.data, ctx.ns.overhead_mb)
    empty = data.empty_files(ctx.data, len(ds.files))
    runs_of: dict[str, list[tuple[Measurement, verify.Digest | None]]] = {"app": [], "zmr": [], "empty": []}
    costs: list[dict[str, Any]] = []
    for rep in range(ctx.ns.repeat):
        out = ctx.runs / "overhead" / "app"
        shutil.rmtree(out, ignore_errors=True)
        m = ctx.measure([sys.executable, "-m", "benchlib.appcost", str(APPS["pairs"]), str(ds.path), str(out)],
                        f"overhead-app-r{rep + 1}")
        cost = _last_json(m) if m.ok else None
        runs_of["app"].append((m, verify.wordcount_digest(out) if m.ok else None))
        if cost:
            costs.append(cost)
        for name, dataset in (("zmr", ds), ("empty", empty)):
            out = ctx.runs / "overhead" / name
            shutil.rmtree(out, ignore_errors=True)
            run = RunSpec("pairs", dataset.path, out, ctx.ns.workers, ctx.ns.wc_reduce)
            m = ctx.measure(CONTENDERS["zmr"].command(run), f"overhead-{name}-r{rep + 1}")
            runs_of[name].append((m, verify.wordcount_digest(out) if m.ok and name == "zmr" else None))
            _progress("overhead", name, rep, m, runs_of[name][-1][1])
            shutil.rmtree(out, ignore_errors=True)
    reference = next((d for _, d in runs_of["app"] if d and not d.problem), None)
    check = Outcome("zmr", [m for m, _ in runs_of["zmr"]], [d for _, d in runs_of["zmr"]]).check(reference)
    app_cpu = _median_of([c["map_cpu"] + c["reduce_cpu"] for c in costs])
    job_cpu = _median_of([m.cpu_tree for m, _ in runs_of["zmr"] if m.ok])
    fixed_cpu = _median_of([m.cpu_tree for m, _ in runs_of["empty"] if m.ok])
    pairs = costs[0]["pairs"] if costs else None
    engine = job_cpu - fixed_cpu - app_cpu if None not in (job_cpu, fixed_cpu, app_cpu) else None
    per_pair = engine / pairs * 1e6 if engine is not None and pairs else None
    row = {"pairs": pairs, "keys": costs[0]["keys"] if costs else None, "app_cpu": app_cpu, "job_cpu": job_cpu,
           "empty_job_cpu": fixed_cpu, "engine_cpu": engine, "engine_us_per_pair": per_pair,
           "job_wall": _median_of([m.wall for m, _ in runs_of["zmr"] if m.ok]), "output": check,
           "app_costs": costs}
    table = [[f"{pairs or 0:,}", f"{row['keys'] or 0:,}", _f(job_cpu, 2), _f(fixed_cpu, 2), _f(app_cpu, 2),
              _f(engine, 2), _f(per_pair, 3), _f(row["job_wall"], 2), check]]
    targets = [Target("zmr CPU per pair, map side plus reduce side, <= 0.4 us", f"{_f(per_pair, 3)} us",
                      _status(None if per_pair is None else per_pair <= 0.4))]
    notes = ["job CPU: user + system CPU of the whole `zmr run` process tree (median); empty job: the same "
             f"command over {len(ds.files)} empty files (start-up, scheduling, shutdown); app: "
             "apps/bench_pairs.py's map and reduce run alone over the same input (median)"]
    headers = ["pairs", "keys", "job CPU s", "empty job CPU s", "app CPU s", "zmr CPU s", "zmr us/pair",
               "job wall s", "output"]
    return JobReport("overhead", f"overhead: apps/bench_pairs.py over {ds.size_bytes / 1e6:.0f} MB "
                     f"({len(ds.files)} files), R={ctx.ns.wc_reduce}", headers, table, [row], targets, notes)


def _median_of(values: list[float]) -> float | None:
    return statistics.median(values) if values else None



JOBS: dict[str, Callable[[Context], JobReport]] = {
    "wc": job_wc, "sort": job_sort, "modes": job_modes, "tiny": job_tiny, "scale": job_scale,
    "overhead": job_overhead, "topwords": job_topwords,
}
