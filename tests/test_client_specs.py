"""The client refuses a spec it can tell is bad before sending anything: over a limit, input and output
overlapping, or a submit message over the coordinator's size cap. Nobody listens at the address used
here, so a check that let the spec through would show as a timeout."""

from __future__ import annotations

import random
import re
import time
from pathlib import Path

import pytest

from zmr.client import Client, build_spec
from zmr.core.specs import SpecLimits
from zmr.errors import AppError, ClusterError, JobSpecError, NoAnswer

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


def test_a_missing_py_file_is_named_before_the_app_that_imports_it_fails_to_load(books: Path,
                                                                                   tmp_path: Path) -> None:
    app = tmp_path / "uses_lib.py"
    app.write_text("import zmr_test_missing_lib\n\ndef map(f, c):\n    return []\n\ndef reduce(k, vs):\n    return 0\n")
    missing = tmp_path / "zmr_test_missing_lib.py"
    with pytest.raises(JobSpecError, match=rf"--py-files: '{re.escape(str(missing))}' does not exist"):
        build_spec(str(app), [str(books)], str(tmp_path / "out"), 2, py_files=[str(missing)])
    missing.write_text("")   # there now: the app loads
    assert build_spec(str(app), [str(books)], str(tmp_path / "out"), 2, py_files=[str(missing)]).py_files


def test_an_app_over_the_limit_is_refused(books: Path, tmp_path: Path) -> None:
    expected = r"app's size in bytes \(with its --py-files\) is [\d,]+, over the limit of 100 \(job.max_app_bytes\)"
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


def test_an_unknown_compression_is_refused(books: Path, tmp_path: Path) -> None:
    with pytest.raises(JobSpecError, match="compression must be one of none, lz4, zstd, auto, got 'gzip'"):
        build_spec(str(APPS / "wc.py"), [str(books)], str(tmp_path / "out"), 2, compression="gzip")  # type: ignore[arg-type]


def test_a_job_attempt_limit_out_of_range_is_refused(books: Path, tmp_path: Path) -> None:
    with pytest.raises(JobSpecError, match="max_attempts must be from 1 to 100, got 101"):
        build_spec(str(APPS / "wc.py"), [str(books)], str(tmp_path / "out"), 2, max_attempts=101)
    assert build_spec(str(APPS / "wc.py"), [str(books)], str(tmp_path / "out"), 2, max_attempts=7).max_attempts == 7


def test_an_arg_for_an_app_that_takes_none_is_refused(books: Path, tmp_path: Path) -> None:
    with pytest.raises(JobSpecError, match=r"app '.*wc.py' takes no arguments .* so --arg 'x' would be ignored"):
        build_spec(str(APPS / "wc.py"), [str(books)], str(tmp_path / "out"), 2, args=["x"])
    assert build_spec(str(APPS / "grep.py"), [str(books)], str(tmp_path / "out"), 2, args=["book"]).args == ["book"]


def test_an_imported_module_is_an_app_and_anything_else_a_clear_error(books: Path, tmp_path: Path) -> None:
    import apps.wc

    spec = build_spec(apps.wc, [str(books)], str(tmp_path / "out"), 2)   # type: ignore[arg-type]
    assert spec.app_name == "apps.wc" and spec.app_blob
    with pytest.raises(AppError, match="an app is a module, a path ending in .py or a module name, got int 42"):
        build_spec(42, [str(books)], str(tmp_path / "out"), 2)  # type: ignore[arg-type]


@pytest.mark.parametrize(("address", "message"), [
    ("127.0.0.1:5555", "did you mean 'tcp://127.0.0.1:5555'"),
    ("tcp://127.0.0.1:99999", "a port from 1 to 65535"),
    ("tcp://127.0.0.1:*", "a port from 1 to 65535"),
    ("tcp://:5555", "'tcp://host:port'"),
    ("localhost", "must be a ZeroMQ endpoint like 'tcp://host:port', got 'localhost'"),
])
def test_a_malformed_coordinator_address_is_one_clear_error(address: str, message: str) -> None:
    with pytest.raises(ClusterError, match=re.escape(message)):
        Client(address)


def test_an_address_where_nothing_listens_is_reported_within_seconds_with_a_hint() -> None:
    with Client(NOBODY, timeout=10) as client:
        started = time.perf_counter()
        with pytest.raises(NoAnswer, match=re.escape(f"nothing accepted a connection at {NOBODY} within 2 s: "
                                                     "is a coordinator running there?")):
            client.status()
        assert time.perf_counter() - started < 3.5


def test_py_files_count_against_the_app_size_limit(books: Path, tmp_path: Path) -> None:
    big = tmp_path / "big_helper.py"
    big.write_text("DATA = " + repr(random.Random(1).randbytes(150_000).hex()) + "\n")   # zips to ~150 KB
    limits = SpecLimits(max_app_bytes=100_000)
    assert build_spec(str(APPS / "wc.py"), [str(books)], str(tmp_path / "out"), 2, limits=limits)
    with pytest.raises(JobSpecError, match=r"app's size in bytes \(with its --py-files\) is [\d,]+, over the limit "
                                           r"of 100,000 \(job.max_app_bytes\)"):
        build_spec(str(APPS / "wc.py"), [str(books)], str(tmp_path / "out"), 2, limits=limits, py_files=[str(big)])
