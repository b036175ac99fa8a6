"""The data generators refuse sizes no corpus can have, with a usage error rather than a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.mark.parametrize(("script", "flags"), [
    ("gencorpus.py", ["--files", "0"]), ("gencorpus.py", ["--vocab", "0"]), ("gencorpus.py", ["--mb", "0"]),
    ("genrecords.py", ["--files", "0"]), ("genrecords.py", ["--mb", "-1"]),
])
def test_a_size_no_corpus_can_have_is_a_usage_error_and_writes_nothing(script: str, flags: list[str],
                                                                       tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(SCRIPTS / script), "--out", str(out), *flags],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "error: --mb must be above 0" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()
