"""`zmr completion bash|zsh`: scripts generated from the argparse parser, so they never fall behind it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from zmr.output_formats import OUTPUT_FORMATS

REPO = Path(__file__).resolve().parents[1]


def _script(shell: str) -> str:
    done = subprocess.run([sys.executable, "-m", "zmr", "completion", shell], capture_output=True, text=True,
                          cwd=REPO, check=True)
    return done.stdout


def _bash_complete(script: Path, *words: str) -> list[str]:
    """What bash offers after `zmr WORDS...` (the last word being completed)."""
    line = " ".join(words)
    program = (f"source {script}; COMP_WORDS=(zmr {line}); COMP_CWORD={len(words)}; COMP_LINE='zmr {line}'; "
               f"COMP_POINT=${{#COMP_LINE}}; _shtab_zmr; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True, cwd=REPO)
    return done.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completes_commands_and_flags(tmp_path: Path) -> None:
    script = tmp_path / "zmr.bash"
    script.write_text(_script("bash"))
    assert {"run", "submit", "status", "cancel", "completion"} <= set(_bash_complete(script, ""))
    assert _bash_complete(script, "su") == ["submit"]
    offered = set(_bash_complete(script, "run", "--"))
    assert {"--app", "--input", "--py-files", "--output-format", "--max-attempts", "--keep-logs"} <= offered
    assert set(_bash_complete(script, "run", "--output-format", "")) == set(OUTPUT_FORMATS)


def test_zsh_script_names_its_command_and_the_flags() -> None:
    script = _script("zsh")
    assert script.startswith("#compdef zmr")
    assert "--py-files" in script and "--output-format" in script and "jsonl" in script
