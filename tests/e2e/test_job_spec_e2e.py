"""Job specs refused with a clear message, and refused jobs touch nothing: not the queue, not the output.

test_cli_e2e.py covers `zmr run` with a missing input, an empty input directory, bad apps, `n_reduce < 1`
and an output directory that already holds output. Here: inputs that exist but cannot be read as files
(a FIFO, a broken symbolic link, a directory holding nothing but those and hidden files), and the
coordinator's own checks of a submitted spec, seen from a client of a running cluster.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from zmr.client import build_spec
from zmr.errors import ClusterError

from .conftest import APPS, Cluster, SeqOracle, read_output

pytestmark = pytest.mark.e2e


def _submit_args(inputs: list[Path], out: Path) -> list[str | Path]:
    """`zmr submit` to an address where nobody listens: a spec refused locally never gets that far."""
    return ["submit", "--coordinator", "tcp://127.0.0.1:9", "--app", APPS / "wc.py", "--input", *inputs,
            "--output", out, "--n-reduce", "2"]


@pytest.mark.parametrize(("case", "message"), [
    ("fifo", r"input '.*fifo' is neither a regular file nor a directory"),
    ("broken-symlink", r"input '.*dangling' does not exist"),
    ("fifo-among-books", r"input '.*fifo' is neither a regular file nor a directory"),
    ("dir-of-unreadables", r"input directory '.*unreadables' holds no \(non-hidden\) files"),
])
def test_an_input_that_cannot_be_read_as_a_file_is_refused_clearly(case: str, message: str, library: Path,
                                                                    tmp_path: Path, run_zmr) -> None:
    fifo, dangling, folder = tmp_path / "fifo", tmp_path / "dangling", tmp_path / "unreadables"
    os.mkfifo(fifo)   # opening it would block: it must be refused, never read
    dangling.symlink_to(tmp_path / "gone.txt")
    folder.mkdir()
    os.mkfifo(folder / "pipe")
    (folder / "nowhere.txt").symlink_to(tmp_path / "gone.txt")
    (folder / ".hidden.txt").write_text("hidden words are skipped\n")
    (folder / "sub").mkdir()
    inputs = {"fifo": [fifo], "broken-symlink": [dangling], "fifo-among-books": [library, fifo],
              "dir-of-unreadables": [folder]}[case]
    out = tmp_path / "out"
    result = run_zmr(*_submit_args(inputs, out), timeout=30)
    assert result.returncode == 1, str(result)
    assert result.stderr.startswith("zmr: ") and result.stderr.count("\n") == 1, str(result)
    assert re.search(message, result.stderr), str(result)
    assert not out.exists()


# ------------------------------------------------------------------ the coordinator's checks


def _job_ids(c: Cluster) -> list[str]:
    assert c.client is not None
    return [j.job_id for j in c.client.status().jobs]


def _old_output(out: Path) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    files = {"mr-out-0": "old 1\n", "mr-out-7": "older 2\n", "_SUCCESS": "", "notes.txt": "mine\n"}
    for name, text in files.items():
        (out / name).write_text(text)
    return files


def _contents(out: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in out.iterdir()}


def test_the_coordinator_refuses_output_in_the_way_and_the_queue_is_untouched(
        library: Path, tmp_path: Path, cluster, seq_oracle: SeqOracle) -> None:
    c: Cluster = cluster(1)
    assert c.client is not None
    out, a_file = tmp_path / "out", tmp_path / "a-file"
    old = _old_output(out)
    a_file.write_text("not a directory\n")
    with pytest.raises(ClusterError, match=r"already holds output .*--overwrite"):
        c.client.submit(str(APPS / "wc.py"), [str(library)], str(out), n_reduce=2)
    with pytest.raises(ClusterError, match="exists and is not a directory"):
        c.client.submit(str(APPS / "wc.py"), [str(library)], str(a_file), n_reduce=2)
    assert _job_ids(c) == []
    assert _contents(out) == old and a_file.read_text() == "not a directory\n"

    job = c.client.submit(str(APPS / "wc.py"), [str(library)], str(out), n_reduce=2, overwrite=True)
    c.client.wait(job, timeout=120)
    assert _job_ids(c) == [job]
    assert (out / "notes.txt").read_text() == "mine\n"   # only zmr's own files are replaced
    (out / "notes.txt").unlink()
    assert read_output(out, 2) == seq_oracle(APPS / "wc.py", [library])


@pytest.mark.parametrize("flaw", ["n_reduce=0", "no splits", "no app"])
def test_a_refused_spec_never_touches_the_output_directory(flaw: str, library: Path, tmp_path: Path,
                                                           cluster) -> None:
    c: Cluster = cluster(1)
    assert c.client is not None
    out = tmp_path / "out"
    old = _old_output(out)
    spec = build_spec(str(APPS / "wc.py"), [str(library)], str(out), 2, overwrite=True)
    flaws: dict[str, dict[str, Any]] = {"n_reduce=0": {"n_reduce": 0}, "no splits": {"splits": []},
                                        "no app": {"app_blob": b""}}
    changes = flaws[flaw]
    with pytest.raises(ClusterError):
        c.client.submit_spec(msgspec.structs.replace(spec, **changes))
    assert _job_ids(c) == []
    assert _contents(out) == old
