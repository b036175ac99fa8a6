"""The suite's own tools: the generated library holds the edges it promises, and a stray skip fails a run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sample_books import BOOKS, book_bytes, write_books

TESTS = Path(__file__).resolve().parent


def test_the_library_is_deterministic_and_sized_as_promised(tmp_path: Path) -> None:
    folder = write_books(tmp_path / "a")
    assert sorted(p.name for p in folder.iterdir()) == sorted(BOOKS)
    for name, (size, names) in BOOKS.items():
        data = (folder / name).read_bytes()
        assert len(data) == size and data == book_bytes.__wrapped__(name)   # made afresh: the same bytes
        assert all(n.encode() in data for n in names)


def test_the_library_carries_the_edges_real_files_have() -> None:
    texts = {name: book_bytes(name) for name in BOOKS}
    assert texts["pg-being_ernest.txt"].startswith(b"\xef\xbb\xbf")
    assert texts["pg-grimm.txt"].count(b"\r\n") > 1000
    assert max(map(len, texts["pg-huckleberry_finn.txt"].split(b"\n"))) > 100_000
    assert texts["pg-frankenstein.txt"].decode("utf-8", errors="replace").count("\ufffd") >= 4
    assert not texts["pg-metamorphosis.txt"].endswith(b"\n")
    for name, data in texts.items():
        text = data.decode("utf-8", errors="replace")
        assert max(text) > "\uffff", name          # letters outside the BMP
        assert "\u0301" in text and "東京" in text, name
        assert "\u2028" in text and "\t" in text, name


def _run_pytest(tmp_path: Path, test_body: str, allowed: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_stray.py").write_text(f"import pytest\n\n\ndef test_it():\n    {test_body}\n")
    (tmp_path / "allowed.txt").write_text(allowed)
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "skipcheck", "-p", "no:cacheprovider",
                           "--strict-skips", "--skips-allowed", str(tmp_path / "allowed.txt"),
                           "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path / "test_stray.py")],
                          capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)


def test_a_skip_not_on_the_allow_list_fails_the_run(tmp_path: Path) -> None:
    done = _run_pytest(tmp_path, 'pytest.skip("no such tool here")', "# nothing allowed\n")
    assert done.returncode == 1, done.stdout
    assert "test_stray.py::test_it: no such tool here" in done.stdout
    assert "1 unexpected skip(s) fail this run" in done.stdout


def test_a_listed_skip_and_a_pass_do_not_fail_it(tmp_path: Path) -> None:
    assert _run_pytest(tmp_path, 'pytest.skip("no such tool here")', "^no such tool\n").returncode == 0
    assert _run_pytest(tmp_path, "pass", "").returncode == 0
