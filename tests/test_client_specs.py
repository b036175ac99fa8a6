"""The client refuses a spec it can tell is bad before sending anything: over a limit, input and output
overlapping, or a submit message over the coordinator's size cap. Nobody listens at the address used
here, so a check that let the spec through would show as a timeout."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from zmr.client import Client, build_spec
from zmr.core.specs import SpecLimits
from zmr.errors import JobSpecError

APPS = Path(__file__).resolve().parents[1] / "apps"
NOBODY = "tcp://127.0.0.1:9"


@pytest.fixture
def books(tmp_path: Path) -> Path:
    (tmp_path / "books").mkdir()
    for i in range(3):
        (tmp_path / "books" / f"b{i}.txt").write_text(f"words of book {i}\n")
    return tmp_path / "books"


def test_a_huge_n_reduce_is_refused_before_the_app_is_even_loaded(books: Path, tmp_path: Path) -> None:
    started = time.perf_counter()
    with pytest.raises(JobSpecError, match=r"n_reduce is 1,000,000,000, over the limit of 10,000 \(job.max_n_reduce\)"):
        build_spec(str(tmp_path / "no-such-app.py"), [str(books)], str(tmp_path / "out"), 10**9)
    assert time.perf_counter() - started < 1


def test_an_app_over_the_limit_is_refused(books: Path, tmp_path: Path) -> None:
    expected = r"app's size in bytes is [\d,]+, over the limit of 100 \(job.max_app_bytes\)"
    with pytest.raises(JobSpecError, match=expected):
        build_spec(str(APPS / "wc.py"), [str(books)], str(tmp_path / "out"), 2, limits=SpecLimits(max_app_bytes=100))


def test_more_map_tasks_than_the_limit_are_refused(books: Path, tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_bytes(b"word\n" * ((3 << 20) // 5 + 1))   # just over 3 MiB: four 1 MiB splits at least
    with pytest.raises(JobSpecError, match=r"map tasks is \d+, over the limit of 3 \(job.max_map_tasks\)"):
        build_spec(str(APPS / "wc.py"), [str(big)], str(tmp_path / "out"), 2, split_size=1 << 20,
                   limits=SpecLimits(max_map_tasks=3))


def test_output_inside_an_input_directory_is_refused_and_nothing_is_touched(books: Path) -> None:
    out = books / "out"
    out.mkdir()
    (out / "mr-out-0").write_text("old 1\n")
    with pytest.raises(JobSpecError, match="inside the input directory .*must not overlap"):
        build_spec(str(APPS / "wc.py"), [str(books)], str(out), 2, overwrite=True)
    assert (out / "mr-out-0").read_text() == "old 1\n"


def test_a_submit_message_over_the_cap_is_refused_without_waiting(books: Path, tmp_path: Path) -> None:
    spec = build_spec(str(APPS / "wc.py"), [str(books)], str(tmp_path / "out"), 2)
    with Client(NOBODY, timeout=10, max_message_bytes=1024) as client:
        started = time.perf_counter()
        with pytest.raises(JobSpecError, match=r"over the limit of 1,024 \(coordinator.max_message_bytes\)"):
            client.submit_spec(spec)
        assert time.perf_counter() - started < 1


def test_the_client_checks_with_its_own_limits(books: Path, tmp_path: Path) -> None:
    with Client(NOBODY, timeout=10, limits=SpecLimits(max_n_reduce=4)) as client, \
            pytest.raises(JobSpecError, match=r"limit of 4 \(job.max_n_reduce\)"):
        client.submit(str(APPS / "wc.py"), [str(books)], str(tmp_path / "out"), n_reduce=5)
