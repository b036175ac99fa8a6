"""Printing and saving results: one plain-text table per job, its targets, and bench.json."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

from benchlib.jobs import JobReport

PACKAGES = ["zmr", "pyzmq", "dask", "distributed", "pandas", "pyarrow", "pyspark", "psutil", "numpy"]


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=False)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def print_report(report: JobReport, stream: TextIO = sys.stdout) -> None:
    print(f"\n== {report.title}", file=stream)
    print(format_table(report.headers, report.table), file=stream)
    for t in report.targets:
        print(f"   target: {t.name:<72} {t.value:<40} {t.status}", file=stream)
    for note in report.notes:
        print(f"   note: {note}", file=stream)
    stream.flush()


def meta(argv: list[str]) -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"command": argv, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "python": sys.version.split()[0],
            "platform": platform.platform(), "cpus": os.cpu_count(), "mem_bytes": _mem_total(),
            "java": _java_version(), "git_commit": _git_commit(), "git_modified": _git_modified(),
            "packages": versions}


def save_json(path: Path, meta_info: dict[str, Any], reports: list[JobReport]) -> None:
    doc = {"meta": meta_info, "jobs": {r.name: dataclasses.asdict(r) for r in reports}}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str))
    tmp.replace(path)


def _mem_total() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None


def _java_version() -> str | None:
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stderr or out.stdout).splitlines()[0] if (out.stderr or out.stdout) else None


def _git_modified() -> list[str]:
    """Tracked files changed in the work tree: the engine measured is the commit plus these."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                             text=True, timeout=10, cwd=Path(__file__).resolve().parents[2])
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line[3:] for line in out.stdout.splitlines()]


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parents[2])
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None
