"""The sequential oracle: grouping, ordering, args and line numbers, and its output-directory rules."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from zmr.apps import App, load_app
from zmr.errors import AppError, JobSpecError
from zmr.seq import run_sequential

# Records every value with where it came from, so the tests can see order, args and first_line.
TRACE_APP = """
    def map(filename, contents, args, first_line):
        for offset, line in enumerate(contents.splitlines()):
            for word in line.split():
                yield word, f"{filename}:{first_line + offset}{args[0]}"

    def reduce(key, values, args):
        return "|".join(values) + args[1]

    def combine(key, values):
        raise AssertionError("the sequential run never combines")
"""


@pytest.fixture
def trace_app(tmp_path: Path) -> str:
    path = tmp_path / "trace.py"
    path.write_text(textwrap.dedent(TRACE_APP))
    return str(path)


@pytest.fixture
def books(tmp_path: Path) -> list[str]:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("b a\nc\n\nb\n")
    (tmp_path / "in" / "b.txt").write_text("a c\nb")
    return [str(tmp_path / "in" / "a.txt"), str(tmp_path / "in" / "b.txt")]


def test_keys_sorted_values_in_map_order_with_args_and_line_numbers(
    tmp_path: Path, trace_app: str, books: list[str]
) -> None:
    a, b = books
    out = run_sequential(trace_app, books, str(tmp_path / "out"), args=["!", "."], split_size=3)
    assert out == tmp_path / "out" / "mr-out-0"
    assert out.read_text() == (f"a {a}:1!|{b}:1!.\nb {a}:1!|{a}:4!|{b}:2!.\nc {a}:2!|{b}:1!.\n")
    assert sorted(p.name for p in out.parent.iterdir()) == ["mr-out-0"]


@pytest.mark.parametrize("split_size", [1, 2, 5, 1 << 20])
def test_output_does_not_depend_on_the_split_size(
    tmp_path: Path, trace_app: str, books: list[str], split_size: int
) -> None:
    expected = run_sequential(trace_app, books, str(tmp_path / "ref"), args=["", ""]).read_text()
    out = run_sequential(trace_app, books, str(tmp_path / "out"), args=["", ""], split_size=split_size)
    assert out.read_text() == expected


def test_accepts_a_loaded_app(tmp_path: Path, trace_app: str, books: list[str]) -> None:
    app = load_app(trace_app)
    assert isinstance(app, App)
    out = run_sequential(app, books[1:], str(tmp_path / "out"), args=["", ""])
    assert out.read_text().split("\n")[0] == f"a {books[1]}:1"


def test_creates_missing_output_directories(tmp_path: Path, trace_app: str, books: list[str]) -> None:
    out = run_sequential(trace_app, books, str(tmp_path / "x" / "y"), args=["", ""])
    assert out.is_file()


def test_refuses_to_mix_with_earlier_output(tmp_path: Path, trace_app: str, books: list[str]) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "mr-out-3").write_text("old\n")
    with pytest.raises(JobSpecError, match="already holds mr-out-3; pass --overwrite"):
        run_sequential(trace_app, books, str(out_dir), args=["", ""])
    assert (out_dir / "mr-out-3").read_text() == "old\n"


def test_overwrite_replaces_old_output_and_success_marker(
    tmp_path: Path, trace_app: str, books: list[str]
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for name in ["mr-out-0", "mr-out-7", "_SUCCESS", "notes.txt"]:
        (out_dir / name).write_text("old\n")
    run_sequential(trace_app, books, str(out_dir), args=["", ""], overwrite=True)
    assert sorted(p.name for p in out_dir.iterdir()) == ["mr-out-0", "notes.txt"]
    assert (out_dir / "mr-out-0").read_text().startswith("a ")


def test_bad_input_fails_before_touching_the_output(tmp_path: Path, trace_app: str) -> None:
    with pytest.raises(JobSpecError, match="does not exist"):
        run_sequential(trace_app, [str(tmp_path / "missing")], str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_a_failing_reduce_leaves_no_output_and_no_temp_file(tmp_path: Path, books: list[str]) -> None:
    app = App.from_functions("broken", map=lambda f, c: [("k", "v")], reduce=lambda k, vs: str(1 / 0))
    with pytest.raises(ZeroDivisionError):
        run_sequential(app, books, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists(), "the folder it made is gone, as a failed job's"


def test_a_failure_in_a_folder_that_was_there_leaves_the_folder_and_what_else_it_held(
        tmp_path: Path, books: list[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    app = App.from_functions("broken", map=lambda f, c: [("k", "v")], reduce=lambda k, vs: str(1 / 0))
    with pytest.raises(ZeroDivisionError):
        run_sequential(app, books, str(out))
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_an_argument_for_an_app_that_takes_none_is_refused(tmp_path: Path, books: list[str]) -> None:
    app = App.from_functions("noargs", map=lambda f, c: [("k", "v")], reduce=lambda k, vs: "1")
    with pytest.raises(JobSpecError, match="takes no arguments .* --arg 'x' would be ignored"):
        run_sequential(app, books, str(tmp_path / "out"), args=["x"])
    assert not (tmp_path / "out").exists()


def test_a_reduce_value_with_a_newline_is_refused(tmp_path: Path, books: list[str]) -> None:
    app = App.from_functions("nl", map=lambda f, c: [("k", "v")], reduce=lambda k, vs: "two\nlines")
    with pytest.raises(AppError, match="newline"):
        run_sequential(app, books, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_unicode_keys_and_values_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "u.txt"
    src.write_bytes("héllo wörld\n\xff".encode() + b"\xff\n")
    app = App.from_functions(
        "u", map=lambda f, c: [(w, w) for w in c.split()], reduce=lambda k, vs: "+".join(vs)
    )
    out = run_sequential(app, [str(src)], str(tmp_path / "out"))
    assert out.read_text(encoding="utf-8") == "héllo héllo\nwörld wörld\nÿ\ufffd ÿ\ufffd\n"


def test_an_output_directory_inside_the_input_is_refused_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "a.txt").write_text("a b\n")
    out = tmp_path / "books" / "out"
    out.mkdir()
    (out / "mr-out-0").write_text("old 1\n")
    with pytest.raises(JobSpecError, match="inside the input directory"):
        run_sequential(str(Path(__file__).resolve().parents[1] / "apps" / "wc.py"), [str(tmp_path / "books")], out,
                       overwrite=True)
    assert (out / "mr-out-0").read_text() == "old 1\n"
