"""scripts/chaos, briefly: half a minute of jobs while workers and task processes are killed and some jobs
hang, and its JSON summary must count every fault kind and find nothing wrong, lost, left or stuck.

The run makes its own corpus (scripts/gencorpus.py) and cluster in a folder of this test; the script
stops every process it started, so nothing outlives it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO, clean_env

pytestmark = pytest.mark.e2e

FAULTS = ["worker-kill", "task-kill", "hung-app"]
TIMEOUT = 150.0   # the run takes about a minute on 2 busy cores: 30 s of jobs, then the last ones end


def _run_chaos(work: Path, *flags: str) -> tuple[int, str]:
    cmd = [sys.executable, str(REPO / "scripts" / "chaos"), "--work", str(work), *flags]
    proc = subprocess.Popen(cmd, cwd=REPO, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)   # the script stops its cluster and says what it had
        out, _ = proc.communicate(timeout=60)
        pytest.fail(f"scripts/chaos did not end within {TIMEOUT} s:\n{out}")
    return proc.returncode, out


def _summary(output: str) -> dict[str, Any]:
    """The run's one line of JSON (the last line that is one)."""
    line = next((line for line in reversed(output.splitlines()) if line.startswith("{")), "")
    assert line, f"no JSON summary in the output:\n{output}"
    found: dict[str, Any] = json.loads(line)
    return found


def test_a_short_chaos_run_counts_each_fault_and_finds_nothing_wrong(tmp_path: Path) -> None:
    code, output = _run_chaos(tmp_path / "chaos", "--minutes", "0.5", "--faults", ",".join(FAULTS),
                              "--workers", "3", "--corpus-mb", "1", "--seed", "7")
    figures = _summary(output)
    problems = {key: figures[key] for key in ("wrong_outputs", "lost_jobs", "leftover_files", "stuck_workers",
                                              "coordinator_crashes")}
    assert problems == dict.fromkeys(problems, 0), output
    assert code == 0, output
    assert {kind: figures["faults"].get(kind, 0) > 0 for kind in FAULTS} == dict.fromkeys(FAULTS, True), output
    assert figures["expected_failures"] == figures["faults"]["hung-app"], output
    assert figures["succeeded"] + figures["expected_failures"] == figures["jobs_submitted"], output
    assert figures["restarts"]["worker"] >= figures["faults"]["worker-kill"], output
