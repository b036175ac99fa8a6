"""Benchmark inputs, generated deterministically under `bench-out/data/` and reused while unchanged.

A data set is a directory of files made by one generator command; a stamp file beside it (not in it,
so no engine ever reads it) records the command, and the set is regenerated whenever it differs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class DataSet:
    """Input files of one job: `path` is the directory, `files` its inputs in sorted order."""

    name: str
    path: Path
    mb: float

    @property
    def files(self) -> list[str]:
        return sorted(str(p) for p in self.path.iterdir() if p.is_file() and not p.name.startswith("."))

    @property
    def size_bytes(self) -> int:
        return sum(Path(f).stat().st_size for f in self.files)


CORPUS_VOCABULARY = 50_000   # gencorpus.py's default: the corpus every earlier figure was measured on


def corpus(root: Path, mb: float, files: int = 8, vocabulary: int = CORPUS_VOCABULARY) -> DataSet:
    """Zipf-distributed text from `scripts/gencorpus.py` over `vocabulary` distinct words."""
    name = f"corpus-{mb:g}mb-{files}f" + ("" if vocabulary == CORPUS_VOCABULARY else f"-{vocabulary}w")
    cmd = [sys.executable, str(REPO / "scripts/gencorpus.py"), "--mb", f"{mb:g}", "--files", str(files)]
    if vocabulary != CORPUS_VOCABULARY:   # (the default's command, so its stamp, stays as it was)
        cmd += ["--vocab", str(vocabulary)]
    return _generated(root, name, mb, cmd)


def records(root: Path, mb: float, files: int = 8) -> DataSet:
    """100-byte TeraSort-style records from `scripts/genrecords.py`."""
    name = f"records-{mb:g}mb-{files}f"
    cmd = [sys.executable, str(REPO / "scripts/genrecords.py"), "--mb", f"{mb:g}", "--files", str(files)]
    return _generated(root, name, mb, cmd)


def empty_files(root: Path, count: int) -> DataSet:
    """`count` empty files (the per-task overhead job)."""
    path = root / f"empty-{count}"
    stamp = root / f"{path.name}.stamp"
    want = {"empty_files": count}
    if not _stamp_matches(stamp, want):
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        for i in range(count):
            (path / f"empty-{i:06d}.txt").touch()
        stamp.write_text(json.dumps(want))
    return DataSet(path.name, path, 0.0)


def _generated(root: Path, name: str, mb: float, cmd: list[str]) -> DataSet:
    path = root / name
    stamp = root / f"{name}.stamp"
    want = {"command": [Path(c).name for c in cmd]}
    if not _stamp_matches(stamp, want):
        shutil.rmtree(path, ignore_errors=True)
        started = time.perf_counter()
        print(f"bench: generating {name} ...", flush=True)
        subprocess.run([*cmd, "--out", str(path)], check=True, stdout=subprocess.DEVNULL)
        print(f"bench: generated {name} in {time.perf_counter() - started:.1f} s", flush=True)
        stamp.write_text(json.dumps(want))
    return DataSet(name, path, mb)


def _stamp_matches(stamp: Path, want: dict[str, object]) -> bool:
    try:
        return bool(json.loads(stamp.read_text()) == want)
    except (OSError, ValueError):
        return False
