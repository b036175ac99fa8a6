"""Awkward inputs on a real cluster: empty files, random bytes, text that is not UTF-8, one 50 MB line.

The README's contract: text is read as UTF-8 with undecodable bytes replaced by U+FFFD; a split owns the
lines that start inside it; an empty file is one (empty) map task; output equals `zmr seq`'s. Besides
word counts, tests/e2e/apps/charcount.py reports what the map tasks were given (characters, U+FFFD,
newlines, empty splits), which must equal each file decoded whole.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import random
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard

from zmr.errors import JobFailed, JobSpecError

from .conftest import (
    APPS,
    FAST,
    REPO,
    TEST_APPS,
    Cluster,
    SeqOracle,
    clean_env,
    independent_word_count,
    output_lines,
    read_output,
)
from .peers import peak_rss_kib, zmr_command

pytestmark = pytest.mark.e2e

CHARCOUNT_APP = TEST_APPS / "charcount.py"
LONG_LINE = 50 << 20


@pytest.fixture(scope="module")
def shared() -> Iterator[Cluster]:
    c = Cluster(2, dict(FAST))
    try:
        c.start()
        c.wait_for_workers(2)
        yield c
    finally:
        c.stop()


def _run(c: Cluster, app: Path, inputs: list[Path], out: Path, n_reduce: int, split_size: int = 64 << 20):
    assert c.client is not None
    job = c.client.submit(str(app), [str(i) for i in inputs], str(out), n_reduce=n_reduce, split_size=split_size)
    return c.client.wait(job, timeout=180)


def _charcount(c: Cluster, inputs: list[Path], out: Path, split_size: int) -> dict[str, int]:
    _run(c, CHARCOUNT_APP, inputs, out, 1, split_size)
    return {key: int(value) for key, value in (line.split(" ") for line in read_output(out, 1))}


def _str_width(path: Path) -> int:
    """Bytes a character of the file's text takes in a Python str: set by its widest character."""
    widest = max(path.read_bytes().decode("utf-8", errors="replace"), default="\0")
    return 4 if widest > "\uffff" else 2 if widest > "\xff" else 1


def _decoded_whole(paths: list[Path]) -> dict[str, int]:
    texts = [p.read_bytes().decode("utf-8", errors="replace") for p in paths]
    return {"chars": sum(map(len, texts)), "fffd": sum(t.count("\ufffd") for t in texts),
            "newlines": sum(t.count("\n") for t in texts)}


def test_empty_files_give_empty_partitions_and_success(shared: Cluster, tmp_path: Path,
                                                       seq_oracle: SeqOracle) -> None:
    folder = tmp_path / "empty"
    (folder / "sub").mkdir(parents=True)
    files = [folder / "a.txt", folder / "b.txt", folder / "sub" / "c.txt", tmp_path / "alone.txt"]
    for f in files:
        f.write_bytes(b"")
    inputs = [folder, tmp_path / "alone.txt"]
    out = tmp_path / "out"
    info = _run(shared, APPS / "wc.py", inputs, out, 3)
    assert read_output(out, 3) == [] == seq_oracle(APPS / "wc.py", inputs)
    assert all((out / f"mr-out-{r}").stat().st_size == 0 for r in range(3))
    assert (out / "_SUCCESS").exists()
    assert info.maps_total == 4 and info.records_out == 0
    counts = _charcount(shared, inputs, tmp_path / "chars", 1 << 20)
    assert counts == {"chars": 0, "fffd": 0, "newlines": 0, "splits": 4, "empty_splits": 4}


def test_random_bytes_are_decoded_with_replacement_and_counted_like_the_reference(
        shared: Cluster, tmp_path: Path, seq_oracle: SeqOracle) -> None:
    binary = tmp_path / "random.bin"
    binary.write_bytes(random.Random(7).randbytes(3 << 20).replace(b"\0", b"\1"))   # NUL: see the next test
    out = tmp_path / "out"
    _run(shared, APPS / "wc.py", [binary], out, 3, split_size=1 << 20)
    lines = read_output(out, 3)
    assert lines == seq_oracle(APPS / "wc.py", [binary]) == independent_word_count([binary])
    assert len(lines) > 1000
    counts = _charcount(shared, [binary], tmp_path / "chars", 1 << 20)
    expected = _decoded_whole([binary])
    assert expected["fffd"] > 1 << 20   # random bytes are mostly not UTF-8
    assert counts == {**expected, "splits": 3, "empty_splits": 0}


def test_binary_input_is_refused_at_submit_or_fails_the_job_at_once(shared: Cluster, tmp_path: Path) -> None:
    """A NUL byte marks a file that is not text: refused when the job is submitted if it lies in the first
    block, else the map that meets it fails the job at once, naming the file (never garbage output)."""
    assert shared.client is not None
    early = tmp_path / "early.bin"
    early.write_bytes(b"\0" + random.Random(8).randbytes(1 << 20))
    with pytest.raises(JobSpecError, match=r"early.bin' is not text: it holds a NUL byte at byte 0"):
        shared.client.submit(str(APPS / "wc.py"), [str(early)], str(tmp_path / "out-early"), n_reduce=2)
    late = tmp_path / "late.txt"
    late.write_bytes(b"words and more words\n" * 200_000 + b"a NUL \0 here\n")
    job = shared.client.submit(str(APPS / "wc.py"), [str(late)], str(tmp_path / "out-late"), n_reduce=2)
    with pytest.raises(JobFailed, match=r"map-\d+ failed: input '.*late.txt' is not text: it holds a NUL byte"):
        shared.client.wait(job, timeout=60)
    assert not (tmp_path / "out-late").exists()
    [info] = shared.client.status(job, tasks=True).jobs
    assert max(task.attempts for task in info.tasks) == 1   # no retries of a file that is not text


def _not_utf8() -> bytes:
    """Latin-1 and UTF-8 side by side, with every kind of broken sequence, over several splits."""
    lines = [
        "café naïve Ærø déjà vu".encode("latin-1"),               # single high bytes
        "café naïve Ærø déjà vu".encode(),                        # the same words in UTF-8
        "日本語 Ελληνικά кириллица".encode(),
        b"lone \x80\xbf continuation bytes",
        b"truncated \xe6\x97 sequence \xf0\x9f\x98 here",
        b"overlong \xc0\xaf slash and \xe0\x80\xaf too",
        b"surrogate \xed\xa0\x80 half",
        b"never \xfe\xff valid",
        "end of line café".encode("latin-1"),
        "end of line 日本".encode()[:-1],                           # cut in the middle of a character
    ]
    text = b"\n".join(lines) + b"\n"
    return text * ((2 << 20) // len(text))


def test_text_that_is_not_utf8_gives_the_reference_output(shared: Cluster, tmp_path: Path,
                                                         seq_oracle: SeqOracle) -> None:
    mixed = tmp_path / "mixed.txt"
    mixed.write_bytes(_not_utf8())
    out = tmp_path / "out"
    _run(shared, APPS / "wc.py", [mixed], out, 4, split_size=512 << 10)
    lines = read_output(out, 4)
    assert lines == seq_oracle(APPS / "wc.py", [mixed]) == independent_word_count([mixed])
    keys = {line.split(" ")[0] for line in lines}
    assert {"caf", "café", "na", "naïve", "Ærø", "r", "日本語", "Ελληνικά", "кириллица", "日"} <= keys
    assert not any("\ufffd" in key for key in keys)
    counts = _charcount(shared, [mixed], tmp_path / "chars", 512 << 10)
    assert counts == {**_decoded_whole([mixed]), "splits": 4, "empty_splits": 0}


# ------------------------------------------------------------------ one very long line


@pytest.fixture(scope="module")
def long_line(library: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """50 MB of book text with every line break replaced by a space: one line, no newline at all."""
    text = b" ".join(p.read_bytes() for p in sorted(library.glob("*.txt")))
    text = text.replace(b"\r", b" ").replace(b"\n", b" ")
    path = tmp_path_factory.mktemp("long") / "one-line.txt"
    path.write_bytes((text * (LONG_LINE // len(text) + 1))[:LONG_LINE])
    return path


class PeakWatcher(threading.Thread):
    """Polls VmHWM of some processes (and their children) until stopped; keeps the largest seen."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.peaks: dict[int, int] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(0.2)

    def sample(self) -> None:
        for pid, kib in peak_rss_kib(self.pids).items():
            self.peaks[pid] = max(kib, self.peaks.get(pid, 0))

    def stop(self) -> dict[int, int]:
        self._halt.set()
        self.join(timeout=5)
        self.sample()
        return self.peaks


def _sequential_with_peak(app: Path, inputs: list[Path], out: Path) -> tuple[list[str], int]:
    """`zmr seq` in a child process: its sorted output lines and its peak RSS in bytes (from wait4)."""
    proc = subprocess.Popen(zmr_command("seq", "--app", app, "--input", *inputs, "--output", out), cwd=REPO,
                            env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        proc.returncode = proc.returncode if proc.returncode is not None else -1
        if proc.stderr is not None:
            proc.stderr.close()
    assert os.waitstatus_to_exitcode(status) == 0, "zmr seq failed"
    return sorted(output_lines(out / "mr-out-0")), usage.ru_maxrss << 10


def _peak_during(c: Cluster, run: Callable[[], Any]) -> tuple[Any, int]:
    """Run `run()` and return (its result, the largest VmHWM of the cluster's workers, in bytes)."""
    workers = [p.pid for p in c.local.workers]
    watcher = PeakWatcher(workers)
    watcher.start()
    try:
        result = run()
    finally:
        peaks = watcher.stop()
    return result, max(peaks[pid] for pid in workers) << 10


def test_one_50mb_line_gives_the_reference_output_in_bounded_memory(
        long_line: Path, tmp_path: Path, cluster) -> None:
    """The engine's own cost of a 50 MB line is a few 16 MiB map pieces; the app's is what it is in `zmr seq`.

    wc's map runs one regex over the whole line, holding the GIL for seconds with no progress to report:
    its worker must not be declared dead meanwhile (test_worker_liveness_e2e.py). This test is about
    memory and output, so its timing is the default one (not the 0.1 s heartbeats of the other tests,
    whose 0.3 s connection timeout a loaded machine can miss; see test_task_requests_e2e.py for what a
    worker that reconnects may then run into) and the task timeout is generous.
    """
    c: Cluster = cluster(2, coordinator__heartbeat_interval=0.5, coordinator__task_timeout=120)
    idle = max(peak_rss_kib([p.pid for p in c.local.workers]).values()) << 10
    # the engine alone: reading, splitting and decoding the line (charcount keeps no per-word data)
    counts, engine_peak = _peak_during(c, lambda: _charcount(c, [long_line], tmp_path / "chars", 8 << 20))
    # 13 splits (7 of about 7 MiB, the last two cut in quarters): the first owns the line and hands it to
    # map in 50/16 -> 4 pieces; the other twelve own nothing
    whole = _decoded_whole([long_line])   # the books' non-ASCII letters and stray bytes, decoded at once
    assert whole["newlines"] == 0 and whole["chars"] > LONG_LINE * 0.9
    assert counts == {**whole, "splits": 4 + 12, "empty_splits": 12}
    # word count: the first split owns the whole line, the other twelve own nothing
    out = tmp_path / "out"
    info, wc_peak = _peak_during(c, lambda: _run(c, APPS / "wc.py", [long_line], out, 3, split_size=8 << 20))
    assert info.maps_total == 13
    reference, seq_peak = _sequential_with_peak(APPS / "wc.py", [long_line], tmp_path / "seq")
    assert read_output(out, 3) == reference
    mib = 1 << 20
    print(f"\n50 MiB line, worker peak RSS: idle {idle / mib:.0f} MiB; charcount {engine_peak / mib:.0f} MiB "
          f"({engine_peak / LONG_LINE:.1f}x); wc {wc_peak / mib:.0f} MiB ({wc_peak / LONG_LINE:.1f}x); "
          f"zmr seq wc {seq_peak / mib:.0f} MiB ({seq_peak / LONG_LINE:.1f}x)")
    # map gets pieces of at most 16 MiB of bytes, so the engine's cost is a few pieces, not a multiple of the
    # line; as a str a piece takes 1, 2 or 4 bytes a character, by its widest character (PEP 393)
    width = _str_width(long_line)
    assert engine_peak < idle + (4 + 4 * width) * (16 * mib), \
        f"a worker peaked at {engine_peak // mib} MiB reading a 50 MiB line ({width} bytes a character)"
    assert wc_peak < 1.25 * seq_peak + 64 * mib, (wc_peak // mib, seq_peak // mib)


def test_compressed_inputs_are_read_as_their_text(shared: Cluster, tmp_path: Path, library: Path,
                                                  seq_oracle: SeqOracle) -> None:
    """gzip, bzip2, xz and zstd files, named as such or not, each a map task of its decompressed text."""
    books = sorted(p for p in library.iterdir() if p.is_file())[:4]
    packers = [gzip.compress, bz2.compress, lzma.compress, zstandard.ZstdCompressor().compress]
    folder = tmp_path / "packed"
    folder.mkdir()
    for i, (book, pack) in enumerate(zip(books, packers, strict=True)):
        (folder / f"{book.name}.{i}").write_bytes(pack(book.read_bytes()))
    out = tmp_path / "out"
    info = _run(shared, APPS / "wc.py", [folder], out, 3, split_size=1 << 16)   # small splits: still 1 per file
    assert info.maps_total == 4 and info.compressed_inputs == 4
    assert read_output(out, 3) == independent_word_count(books) == seq_oracle(APPS / "wc.py", [folder])
