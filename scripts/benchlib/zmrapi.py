"""Jobs measured through zmr's Python API, run in a fresh process: `python -m benchlib.zmrapi JOB ...`.

    modes  the sort app on a LocalCluster in one shuffle mode; polls the job's partition stats to find
           how much of the shuffle reached its owners before the last map task committed
    tiny   many empty files through apps/identity.py; times the job apart from cluster start-up

Each prints one JSON object as its last stdout line.

How the shuffle fraction is found: an owner reports, per partition, the bytes received so far and the
times of the first and the latest batch, and only in its heartbeats (every 0.5 s by default); no
per-batch arrival time is exposed. Each poll therefore yields a point "by time `last_batch`, `bytes_in`
bytes had arrived" per partition. At the last map commit T, a partition's arrived bytes lie between the
latest point at or before T (lower bound) and the earliest point after it (upper bound), and are 0 if its
first batch came after T; the estimate interpolates linearly between those two points (uniform arrival).
Bytes that no poll saw (a job ending between heartbeats) count in the upper bound only and, in the
estimate, are spread uniformly from the last point seen to the end of the job.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zmr import Client, LocalCluster

REPO = Path(__file__).resolve().parents[2]
TERMINAL = ("succeeded", "failed", "cancelled")


@dataclass
class PartitionTrace:
    """Everything the polls saw of one partition: (time of latest batch, bytes by then) points."""

    first: float | None = None
    points: dict[float, int] = field(default_factory=dict)

    def add(self, first: float | None, last: float | None, bytes_in: int) -> None:
        if first:
            self.first = first if self.first is None else min(self.first, first)
        if last:
            self.points[last] = max(self.points.get(last, 0), bytes_in)

    @property
    def seen(self) -> int:
        return max(self.points.values(), default=0)

    def at(self, t: float) -> tuple[int, int, float, float | None]:
        """(lower bound, upper bound or -1 if unknown, estimate, time of the last point) of bytes by `t`."""
        if self.first is None or self.first > t:
            return 0, 0, 0.0, max(self.points, default=None)
        times = sorted(self.points)
        i = bisect_right(times, t)
        lo_t, lo_b = (times[i - 1], self.points[times[i - 1]]) if i else (self.first, 0)
        if i == len(times):
            return lo_b, -1, float(lo_b), times[-1] if times else None
        hi_t, hi_b = times[i], self.points[times[i]]
        share = (t - lo_t) / (hi_t - lo_t) if hi_t > lo_t else 1.0
        return lo_b, hi_b, lo_b + share * (hi_b - lo_b), times[-1]


def shuffle_fraction(traces: dict[int, PartitionTrace], last_map_commit: float, job_end: float,
                     total_bytes: int) -> dict[str, Any]:
    """Fraction of `total_bytes` at their owners by `last_map_commit`: estimate and bounds."""
    lower = upper = 0
    estimate = 0.0
    unseen_total = max(0, total_bytes - sum(tr.seen for tr in traces.values()))
    last_seen = 0.0
    for trace in traces.values():
        lo, hi, est, last = trace.at(last_map_commit)
        lower += lo
        upper += trace.seen if hi < 0 else hi
        estimate += est
        last_seen = max(last_seen, last or 0.0)
    upper += unseen_total
    if unseen_total and job_end > last_seen:
        estimate += unseen_total * min(1.0, max(0.0, (last_map_commit - last_seen) / (job_end - last_seen)))
    total = max(total_bytes, 1)
    return {"estimate": estimate / total, "lower": lower / total, "upper": min(1.0, upper / total),
            "unseen_bytes": unseen_total, "is_estimate": True}


def run_modes(ns: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    overrides = {"shuffle.mode": ns.mode, "worker.memory_budget_mb": ns.budget_mb}
    traces: dict[int, PartitionTrace] = {}
    polls = 0
    with LocalCluster(ns.workers, overrides=overrides) as cluster, Client(cluster.address, timeout=60) as client:
        ready = time.perf_counter()
        job_id = client.submit(str(REPO / "apps/sort.py"), [ns.input], ns.output, n_reduce=ns.n_reduce,
                               overwrite=True)
        while True:
            info = client.job(job_id)
            polls += 1
            for p in info.partitions:
                traces.setdefault(p.partition, PartitionTrace()).add(p.first_batch, p.last_batch, p.bytes_in)
            if info.state in TERMINAL:
                break
            time.sleep(ns.poll)
        done = time.perf_counter()
    if info.state != "succeeded":
        raise SystemExit(f"job {job_id} {info.state}: {info.error}")
    map_ends = [t.finished for t in info.tasks if t.kind == "map" and t.finished]
    last_commit = max(map_ends)
    job_end = info.finished or last_commit
    fraction = shuffle_fraction(traces, last_commit, job_end, info.bytes_shuffled)
    return {"mode": ns.mode, "job_wall": done - ready, "total_wall": time.perf_counter() - started,
            "coordinator_wall": (info.finished or 0) - info.submitted,
            "map_phase": last_commit - (info.started or info.submitted), "after_last_map": job_end - last_commit,
            "bytes_shuffled": info.bytes_shuffled, "bytes_seen_in_stats": sum(t.seen for t in traces.values()),
            "polls": polls, "fraction": fraction, "maps": info.maps_total, "reduces": info.reduces_total}


def run_tiny(ns: argparse.Namespace) -> dict[str, Any]:
    """Polls the job list without task detail, so 10,000 task rows are not shipped on every poll."""
    started = time.perf_counter()
    with LocalCluster(ns.workers) as cluster, Client(cluster.address, timeout=60) as client:
        ready = time.perf_counter()
        job_id = client.submit(str(REPO / "apps/identity.py"), [ns.input], ns.output, n_reduce=ns.n_reduce,
                               overwrite=True)
        submitted = time.perf_counter()
        while True:
            info = next(j for j in client.status().jobs if j.job_id == job_id)
            if info.state in TERMINAL:
                break
            time.sleep(ns.poll)
        done = time.perf_counter()
    if info.state != "succeeded":
        raise SystemExit(f"job {job_id} {info.state}: {info.error}")
    return {"job_wall": done - ready, "submit_wall": submitted - ready, "startup_wall": ready - started,
            "total_wall": time.perf_counter() - started, "coordinator_wall": (info.finished or 0) - info.submitted,
            "maps": info.maps_total, "reduces": info.reduces_total}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("job", choices=["modes", "tiny"])
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--mode", choices=["push", "barrier"], default="push")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--n-reduce", type=int, default=8)
    parser.add_argument("--budget-mb", type=int, default=256)
    parser.add_argument("--poll", type=float, default=0.1, help="status poll interval, s")
    ns = parser.parse_args(argv)
    result = run_modes(ns) if ns.job == "modes" else run_tiny(ns)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
