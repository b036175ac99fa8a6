"""The contender registry: who runs which job, with what command, and whether it can run on this machine.

A contender is a command line per job; `scripts/bench` runs it as a measured child process. zmr runs as
`zmr run --workers N`; the peers run their code in `benchlib.peers`. A peer whose modules (or, for
Spark, `java`) are missing is skipped with a note instead of failing the benchmark.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"

APPS = {"wc": REPO / "apps/bench_wc.py", "sort": REPO / "apps/sort.py", "pairs": REPO / "apps/bench_pairs.py",
        "topwords": REPO / "apps/bench_topwords.py"}
APP_ARGS = {"topwords": ["--arg", "100"]}   # the 100 most frequent words


@dataclass(frozen=True)
class RunSpec:
    """What one measured run needs to know."""

    job: str              # "wc", "sort", "topwords" or "pairs" (the overhead job)
    input: Path
    output: Path
    workers: int
    n_reduce: int
    zmr_sets: tuple[str, ...] = ()   # extra `--set SECTION.KEY=VALUE` for zmr


@dataclass(frozen=True)
class Contender:
    name: str
    description: str
    jobs: tuple[str, ...]
    modules: tuple[str, ...] = ()
    binaries: tuple[str, ...] = ()

    def unavailable(self) -> str:
        """Why this contender cannot run here, or '' if it can."""
        missing = [m for m in self.modules if not _importable(m)]
        missing += [f"{b} (not on PATH)" for b in self.binaries if shutil.which(b) is None]
        return f"not importable: {', '.join(missing)}" if missing else ""

    def command(self, run: RunSpec) -> list[str]:
        return [sys.executable, "-m", "benchlib.peers", self.name, run.job, str(run.input), str(run.output),
                "--workers", str(run.workers), "--n-reduce", str(run.n_reduce)]


class Zmr(Contender):
    def command(self, run: RunSpec) -> list[str]:
        exe = Path(sys.executable).with_name("zmr")
        launcher = [str(exe)] if exe.exists() else [sys.executable, "-m", "zmr"]
        sets = [arg for s in run.zmr_sets for arg in ("--set", s)]
        return [*launcher, "run", "--app", str(APPS[run.job]), "--input", str(run.input), "--output",
                str(run.output), "--n-reduce", str(run.n_reduce), "--workers", str(run.workers), "--overwrite",
                *APP_ARGS.get(run.job, []), *sets]


CONTENDERS: dict[str, Contender] = {c.name: c for c in [
    Zmr("zmr", "zmr run --workers N (coordinator + N worker processes, started per run)",
        ("wc", "sort", "topwords"), ("zmr",)),
    Contender("zmr-chain", "topwords as two zmr run jobs chained through a folder, as by hand", ("topwords",),
              ("zmr",)),
    Contender("python", "single process, no parallelism (the baseline of every ratio)", ("wc", "sort", "topwords")),
    Contender("pool", "multiprocessing.Pool(N); sort: bucket by key range, then sort each bucket",
              ("wc", "sort")),
    Contender("dask-bag", "Dask bag, LocalCluster(N workers, 1 thread, processes)", ("wc", "topwords"),
              ("dask.bag", "distributed")),
    Contender("dask-df", "Dask dataframe, P2P shuffle, LocalCluster(N workers, 1 thread, processes)",
              ("wc", "sort"), ("dask.dataframe", "distributed", "pandas", "pyarrow")),
    Contender("spark", "PySpark RDD API on local[N]", ("wc", "sort", "topwords"), ("pyspark",), ("java",)),
    Contender("ray", "Ray tasks, ray.init(num_cpus=N): a map task per file, N reduce tasks", ("wc",), ("ray",)),
]}

BASELINE = "python"


def child_env() -> dict[str, str]:
    """The environment of measured children: `benchlib` importable, no stray Spark settings."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(SCRIPTS), env.get("PYTHONPATH", "")] if p)
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    env.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    return env


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
