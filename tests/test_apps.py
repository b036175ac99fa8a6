"""Apps: loading errors a user can act on, args/first_line passing, contract checks, shipping by value."""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import os
import pickle
import re
import subprocess
import sys
import textwrap
from collections import Counter
from itertools import groupby
from pathlib import Path
from types import ModuleType
from typing import Any

import cloudpickle
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zmr.apps import App, companions, load_app, ship_app, unship_app
from zmr.core.batches import encode_batch
from zmr.core.partition import partition_of
from zmr.errors import AppError
from zmr.seq import run_sequential

REPO = Path(__file__).resolve().parents[1]


def _app_file(tmp_path: Path, source: str, name: str = "myapp.py") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


MINIMAL = textwrap.dedent("""
    def map(filename, contents):
        for word in contents.split():
            yield word, "1"

    def reduce(key, values):
        return str(sum(int(v) for v in values))
""")


# --- loading -------------------------------------------------------------------------------------


def test_load_from_file_path(tmp_path: Path) -> None:
    app = load_app(str(_app_file(tmp_path, MINIMAL)))
    assert list(app.map("f", "a b a", [])) == [("a", "1"), ("b", "1"), ("a", "1")]
    assert app.reduce("a", ["1", "1"], []) == "2"
    assert not app.has_combine and app.module in sys.modules


def test_load_by_module_name_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _app_file(tmp_path / "pkg_here", "", "__init__.py")
    _app_file(tmp_path / "pkg_here", MINIMAL, "counting.py")
    monkeypatch.chdir(tmp_path)
    path_before = list(sys.path)
    try:
        app = load_app("pkg_here.counting")
    finally:
        sys.modules.pop("pkg_here.counting", None)
        sys.modules.pop("pkg_here", None)
    assert app.reduce("k", ["2", "3"], []) == "5"
    assert sys.path == path_before


def test_load_the_bundled_apps_by_name_and_by_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    assert load_app("apps.wc").has_combine
    assert load_app("apps/grep.py").map_takes_first_line


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(AppError, match="does not exist"):
        load_app(str(tmp_path / "nope.py"))


def test_unknown_module_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AppError, match="'no_such_app_module' not found"):
        load_app("no_such_app_module")


def test_spec_that_is_neither_path_nor_module_name() -> None:
    with pytest.raises(AppError, match="neither a path"):
        load_app("not a module!")


def test_import_error_carries_the_traceback(tmp_path: Path) -> None:
    path = _app_file(tmp_path, "x = 1\n\ndef helper():\n    return 1 / 0\n\nhelper()\n", "broken.py")
    with pytest.raises(AppError) as err:
        load_app(str(path))
    message = str(err.value)
    assert "failed to import" in message and "Traceback" in message
    assert "ZeroDivisionError" in message and 'broken.py", line 4, in helper' in message
    assert not any(name.startswith("_zmr_app_broken_") for name in sys.modules)


def test_a_missing_import_inside_the_app_is_an_import_error_not_not_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _app_file(tmp_path, "import surely_not_installed_xyz\n" + MINIMAL, "needs_dep.py")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AppError, match="(?s)failed to import.*surely_not_installed_xyz"):
        load_app("needs_dep")


def test_missing_reduce_is_reported(tmp_path: Path) -> None:
    path = _app_file(tmp_path, "def map(filename, contents):\n    return []\n")
    with pytest.raises(AppError, match="`reduce` is missing"):
        load_app(str(path))


def test_map_that_is_not_a_function_is_reported(tmp_path: Path) -> None:
    path = _app_file(tmp_path, "map = 3\ndef reduce(key, values):\n    return ''\n")
    with pytest.raises(AppError, match="`map` is not a function"):
        load_app(str(path))


def test_combine_that_is_not_a_function_is_reported(tmp_path: Path) -> None:
    path = _app_file(tmp_path, MINIMAL + "\ncombine = 'sum'\n")
    with pytest.raises(AppError, match="`combine` must be a function"):
        load_app(str(path))


# --- calling: args, first_line, contract checks --------------------------------------------------

ARGS_APP = """
    def map(filename, contents, *, args, first_line):
        yield f"{filename}@{first_line}", "|".join(args)

    def reduce(key, values, args=None):
        return ",".join(values) + "/" + "|".join(args)

    def combine(key, values, args):
        return "+".join(values) + "/" + args[0]

    def partition(key, n_reduce):
        return len(key) % n_reduce
"""


def test_args_and_first_line_go_only_where_declared(tmp_path: Path) -> None:
    app = load_app(str(_app_file(tmp_path, ARGS_APP)))
    assert app.takes_args == {"map", "reduce", "combine"} and app.map_takes_first_line
    assert list(app.map("f.txt", "x", ["p", "q"], first_line=41)) == [("f.txt@41", "p|q")]
    assert app.reduce("k", ["a", "b"], ["z"]) == "a,b/z"
    assert app.combine("k", ["a", "b"], ["z"]) == "a+b/z"
    assert app.partition("abcd", 3) == 1


def test_functions_without_args_are_called_without_them() -> None:
    app = App.from_functions("plain", map=lambda f, c: [(f, c)], reduce=lambda k, vs: "".join(vs))
    assert app.takes_args == frozenset() and not app.map_takes_first_line
    assert list(app.map("f", "c", ["ignored"], first_line=9)) == [("f", "c")]
    star = App.from_functions("star", map=lambda f, c, *args: [(f, c)], reduce=lambda k, vs, *args: "")
    assert star.takes_args == frozenset()  # `*args` is positional, not the `args` keyword
    assert star.reduce("k", [], ["ignored"]) == ""


def test_default_partition_is_the_stable_hash() -> None:
    app = App.from_functions("p", map=lambda f, c: [], reduce=lambda k, vs: "")
    assert [app.partition(k, 7) for k in ["a", "b", "zz"]] == [partition_of(k, 7) for k in ["a", "b", "zz"]]


@pytest.mark.parametrize("bad", [5, -1, "0", 1.0, True, None])
def test_custom_partition_out_of_range_or_not_int_is_an_app_error(bad: Any) -> None:
    app = App.from_functions("p", map=lambda f, c: [], reduce=lambda k, vs: "", partition=lambda k, n: bad)
    with pytest.raises(AppError, match="expected an int in range"):
        app.partition("key", 5)


def test_map_and_reduce_are_required_when_building_from_functions() -> None:
    with pytest.raises(AppError, match="`reduce` must be a function, got NoneType"):
        App.from_functions("p", map=lambda f, c: [], reduce=None)  # type: ignore[arg-type]  # on purpose


def test_combine_without_a_combiner_is_an_app_error() -> None:
    app = App.from_functions("p", map=lambda f, c: [], reduce=lambda k, vs: "")
    with pytest.raises(AppError, match="no combine"):
        app.combine("k", ["v"], [])


@pytest.mark.parametrize("result", [None, 3, [("k",)], [("k", True)], [("k", None)], [("k", b"v")], [(1, "v")],
                                    [("k", 2**64)], [("k", -2**63 - 1)], [["k", "v"]]])
def test_map_results_that_are_not_pairs_of_key_and_value_are_app_errors(result: Any) -> None:
    app = App.from_functions("bad", map=lambda f, c: result, reduce=lambda k, vs: "")
    with pytest.raises(AppError, match="map (returned|yielded)"):
        list(app.map("f", "c", []))


def test_values_may_be_str_int_or_float() -> None:
    pairs = [("a", "x"), ("b", 1), ("c", 2.5), ("d", 2**64 - 1), ("e", -2**63)]
    app = App.from_functions("nums", map=lambda f, c: pairs, reduce=lambda k, vs: sum(vs), combine=lambda k, vs: 0.5)
    assert list(app.map("f", "c", [])) == pairs
    assert app.reduce("k", iter([1, 2, 3]), []) == 6
    assert app.combine("k", [1], []) == 0.5


def test_subclasses_of_str_int_and_float_become_the_exact_types_the_wire_carries() -> None:
    class Word(str):
        pass

    class Level(enum.IntEnum):
        HIGH = 3

    class Ratio(float):
        pass

    app = App.from_functions("subs", map=lambda f, c: [(Word("k"), Word("v")), ("k", Level.HIGH), ("k", Ratio(0.5))],
                             reduce=lambda k, vs: Level.HIGH, combine=lambda k, vs: Word("w"))
    pairs = list(app.map("f", "c", []))
    assert pairs == [("k", "v"), ("k", 3), ("k", 0.5)]
    assert [(type(k), type(v)) for k, v in pairs] == [(str, str), (str, int), (str, float)]
    assert type(app.combine("k", [], [])) is str
    assert type(app.reduce("k", [], [])) is int
    assert encode_batch(pairs), "msgspec encodes only the exact types"


@pytest.mark.parametrize(("key", "result"), [("k", None), ("k", True), ("k", b"v"), ("k", [1])])
def test_reduce_results_that_are_not_values_are_app_errors(key: str, result: Any) -> None:
    """(A newline in a key or value is the text output format's to refuse: tests/test_output_formats.py.)"""
    app = App.from_functions("bad", map=lambda f, c: [], reduce=lambda k, vs: result)
    with pytest.raises(AppError, match=r"reduce\('k', ...\) returned .*, expected a str, an int or a float"):
        app.reduce(key, ["v"], [])


@pytest.mark.parametrize("result", [None, True, b"v", 2**64, [1]])
def test_combine_results_that_cannot_travel_are_app_errors(result: Any) -> None:
    app = App.from_functions("bad", map=lambda f, c: [], reduce=lambda k, vs: "", combine=lambda k, vs: result)
    with pytest.raises(AppError, match="combine"):
        app.combine("k", ["v"], [])


# --- shipping ------------------------------------------------------------------------------------

SHIPPED = """
    import re
    from collections import Counter

    _WORD = re.compile(r"[a-z]+")
    SUFFIX = "!"

    def _normalise(word):
        return word.lower() + SUFFIX

    def map(filename, contents, args):
        for word, n in Counter(_WORD.findall(contents.lower())).items():
            yield _normalise(word) + args[0], str(n)

    def reduce(key, values):
        return str(sum(map_int(values)))

    def map_int(values):
        return (int(v) for v in values)
"""

RUN_SHIPPED = """
import json, sys
from zmr.apps import unship_app
app = unship_app(sys.stdin.buffer.read())
pairs = list(app.map("doc", "b a B", ["?"]))
print(json.dumps({
    "pairs": pairs,
    "reduced": app.reduce("b!?", ["1", "2"], []),
    "modules": sorted(m for m in sys.modules if m.startswith(("apps", "_zmr_app"))),
}))
"""


def _run_elsewhere(blob: bytes, cwd: Path) -> dict[str, object]:
    cwd.mkdir(exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-c", RUN_SHIPPED], input=blob, cwd=cwd, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_shipped_file_app_runs_in_a_fresh_process_after_the_file_is_gone(tmp_path: Path) -> None:
    path = _app_file(tmp_path / "src", SHIPPED)
    registry_before = cloudpickle.list_registry_pickle_by_value()
    blob = ship_app(str(path))
    path.unlink()
    assert cloudpickle.list_registry_pickle_by_value() == registry_before
    result = _run_elsewhere(blob, tmp_path / "elsewhere")
    assert result["pairs"] == [["b!?", "2"], ["a!?", "1"]]
    assert result["reduced"] == "3"
    assert result["modules"] == []


def test_shipped_module_app_needs_no_copy_of_the_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    blob = ship_app(load_app("apps.wc"))
    code = (
        "import sys, json; from zmr.apps import unship_app; app = unship_app(sys.stdin.buffer.read());"
        "print(json.dumps([list(app.map('d', 'to be or not to be', [])), app.combine('be', [2, 3], []),"
        "'apps' in sys.modules]))"
    )
    (tmp_path / "elsewhere").mkdir()
    done = subprocess.run(
        [sys.executable, "-c", code], input=blob, cwd=tmp_path / "elsewhere", capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()
    pairs, combined, imported_apps = json.loads(done.stdout)
    assert sorted(map(tuple, pairs)) == [("be", 2), ("not", 1), ("or", 1), ("to", 2)]
    assert combined == 5 and imported_apps is False


CACHED_APP = """
import dataclasses
import enum
import functools

@functools.lru_cache(maxsize=None)
def shout(word):
    return word.upper()

def map(filename, contents):
    for word in contents.split():
        yield shout(word), "1"

def reduce(key, values):
    return str(sum(1 for _ in values))
"""


def test_an_app_a_worker_could_not_unpack_is_refused_at_ship_time(tmp_path: Path) -> None:
    """An lru_cache wrapper is pickled by reference to the app's module, which no worker has."""
    with pytest.raises(AppError, match="cannot be shipped: a worker could not unpack it"):
        ship_app(str(_app_file(tmp_path, CACHED_APP)))


@pytest.mark.parametrize("name", ["wc", "sort", "grep", "indexer", "invert", "identity", "bench_wc"])
def test_every_bundled_app_ships(name: str) -> None:
    assert unship_app(ship_app(str(REPO / "apps" / f"{name}.py"))).name


def test_broken_blob_is_an_app_error() -> None:
    with pytest.raises(AppError, match="cannot unpack"):
        unship_app(b"not a pickle at all")
    with pytest.raises(AppError, match="not an App"):
        unship_app(pickle.dumps({"map": None}))


def test_unshipped_app_keeps_its_flags(tmp_path: Path) -> None:
    app = unship_app(ship_app(str(_app_file(tmp_path, ARGS_APP))))
    assert app.takes_args == {"map", "reduce", "combine"} and app.map_takes_first_line
    assert app.partition("abcd", 3) == 1


# --- the bundled apps ----------------------------------------------------------------------------

SPLIT = 64 * 1024  # several splits per book, so split boundaries and first_line are exercised
TRICKY = "aZé\u0301ß²³½Ⅻ一٣9_ﬁǅ\u02b0\u0300 \n\t-'’Ⅸⅸ𝔘𝟘\u2028"


def _isalpha_runs(text: str) -> list[str]:
    """The word rule, written the slow obvious way: maximal runs of str.isalpha characters."""
    return ["".join(chars) for is_alpha, chars in groupby(text, str.isalpha) if is_alpha]


@functools.cache
def _app(name: str) -> App:
    return load_app(str(REPO / "apps" / f"{name}.py"))


def _module(name: str) -> ModuleType:
    return sys.modules[_app(name).module]


def _output(path: Path) -> dict[str, str]:
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines.pop() == "", "output must end with a newline"
    keys = [line.split(" ", 1)[0] for line in lines]
    assert keys == sorted(keys)
    return dict(line.split(" ", 1) for line in lines)


@pytest.fixture(scope="module")
def books(library: Path) -> dict[str, str]:
    """Each book's text, keyed by the name the job gives it (the typed directory joined with the file)."""
    return {
        os.path.join(str(library), path.name): path.read_bytes().decode("utf-8", errors="replace")
        for path in sorted(library.iterdir())
    }


@pytest.fixture(scope="module")
def book_words(books: dict[str, str]) -> dict[str, list[str]]:
    return {name: _isalpha_runs(text) for name, text in books.items()}


@pytest.fixture(scope="module")
def every_code_point() -> tuple[str, list[str]]:
    everything = "".join(map(chr, range(0x110000)))
    return everything, _isalpha_runs(everything)


@pytest.mark.parametrize("app", ["wc", "indexer", "invert"])
def test_word_rule_matches_isalpha_on_every_code_point(
    app: str, every_code_point: tuple[str, list[str]]
) -> None:
    words = _module(app).words
    everything, expected = every_code_point
    assert words(everything) == expected
    assert words(" ".join(everything)) == [c for c in everything if c.isalpha()]


@given(text=st.text(alphabet=st.characters() | st.sampled_from(TRICKY)))
def test_word_rule_matches_isalpha_on_random_text(text: str) -> None:
    expected = _isalpha_runs(text)
    assert all(_module(app).words(text) == expected for app in ["wc", "indexer", "invert"])


@given(
    docs=st.lists(st.tuples(st.sampled_from(["x", "y", "z"]), st.text(alphabet="ab²é \n")), max_size=6),
    data=st.data(),
)
@settings(max_examples=150, deadline=None)
def test_combining_any_runs_of_values_does_not_change_the_result(
    docs: list[tuple[str, str]], data: Any
) -> None:
    for name in ["wc", "indexer", "invert"]:
        app = _app(name)
        groups: dict[str, list[str]] = {}
        for filename, text in docs:
            for key, value in app.map(filename, text, []):
                groups.setdefault(key, []).append(value)
        for key, values in groups.items():
            cuts = sorted(data.draw(st.sets(st.integers(0, len(values)))))
            runs = [values[a:b] for a, b in zip([0, *cuts], [*cuts, len(values)], strict=True) if b > a]
            combined = [app.combine(key, run, []) for run in runs]
            twice = [app.combine(key, combined, [])] if combined else []
            assert app.reduce(key, combined, []) == app.reduce(key, values, []) == app.reduce(key, twice, [])


def test_wc_on_library(tmp_path: Path, library: Path, book_words: dict[str, list[str]]) -> None:
    out = run_sequential(_app("wc"), [str(library)], str(tmp_path), split_size=SPLIT)
    expected = Counter(word for words in book_words.values() for word in words)
    assert _output(out) == {word: str(count) for word, count in expected.items()}


def test_indexer_on_library(tmp_path: Path, library: Path, book_words: dict[str, list[str]]) -> None:
    out = run_sequential(_app("indexer"), [str(library)], str(tmp_path), split_size=SPLIT)
    files: dict[str, set[str]] = {}
    for name, words in book_words.items():
        for word in words:
            files.setdefault(word, set()).add(name)
    assert _output(out) == {w: f"{len(names)} {','.join(sorted(names))}" for w, names in files.items()}


def test_invert_on_library(tmp_path: Path, library: Path, book_words: dict[str, list[str]]) -> None:
    out = run_sequential(_app("invert"), [str(library)], str(tmp_path), split_size=SPLIT)
    per_word: dict[str, Counter[str]] = {}
    for name, words in book_words.items():
        for word in words:
            per_word.setdefault(word, Counter())[name] += 1
    expected = {
        word: ",".join(f"{n}:{c}" for n, c in sorted(counts.items(), key=lambda nc: (-nc[1], nc[0]))[:3])
        for word, counts in per_word.items()
    }
    output = _output(out)
    assert output == expected
    assert any(value.count(",") == 2 for value in output.values())


def test_grep_on_library(tmp_path: Path, library: Path, books: dict[str, str]) -> None:
    pattern = r"\b(Watson|Huck)\b"
    out = run_sequential(_app("grep"), [str(library)], str(tmp_path), args=[pattern], split_size=SPLIT)
    expected = {
        f"{name}:{number}": line
        for name, text in books.items()
        for number, line in enumerate(text.split("\n"), start=1)
        if re.search(pattern, line)
    }
    assert len(expected) > 100
    assert _output(out) == expected


def test_grep_edges(tmp_path: Path) -> None:
    grep = _app("grep")
    assert list(grep.map("f", "a\r\nb\n", [""], first_line=10)) == [("f:10", "a"), ("f:11", "b")]
    assert list(grep.map("f", "x\nlast", ["t$"], first_line=1)) == [("f:2", "last")]
    assert list(grep.map("f", "", [""], first_line=3)) == []
    with pytest.raises(ValueError, match="needs a regular expression"):
        list(grep.map("f", "x", []))
    with pytest.raises(ValueError, match="not a valid regular expression"):
        list(grep.map("f", "x", ["("]))


RAISES_DEEP = """
class Scorer:
    @staticmethod
    def score(key):
        def inner():
            raise ValueError("boom-" + key)
        return inner()


def map(filename, contents):
    yield contents, "1"


def reduce(key, values):
    return Scorer.score(key)
"""

RUN_RAISING = """
import sys, traceback
from zmr.apps import unship_app
app = unship_app(sys.stdin.buffer.read())
try:
    app.reduce("k", ["1"], [])
except ValueError:
    print(traceback.format_exc())
"""


def test_a_shipped_app_s_traceback_names_its_file(tmp_path: Path) -> None:
    """Code shipped by value keeps its file name, down to nested functions and methods."""
    path = _app_file(tmp_path / "src", RAISES_DEEP)
    blob = ship_app(str(path))
    done = subprocess.run([sys.executable, "-c", RUN_RAISING], input=blob, cwd=tmp_path, capture_output=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode()
    frames = [line for line in done.stdout.decode().splitlines() if line.strip().startswith("File ")]
    app_frames = [line for line in frames if str(path) in line]
    assert [line.rsplit(" in ", 1)[1] for line in app_frames] == ["reduce", "score", "inner"], frames
    assert "boom-k" in done.stdout.decode()


def test_only_the_modules_beside_the_app_that_it_uses_travel_with_it(tmp_path: Path) -> None:
    name = f"helper_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text("import json\n\ndef shout(s):\n    return s.upper()\n")
    (tmp_path / f"unused_{name}.py").write_text("X = 1\n")
    (tmp_path / "app.py").write_text(
        f"import re\nimport zmr\nfrom zmr.apps import App\nfrom {name} import shout\n\n"
        "def map(filename, contents):\n    return [(shout(w), 1) for w in re.findall('[a-z]+', contents)]\n\n"
        "def reduce(key, values):\n    return sum(values)\n")
    app = load_app(str(tmp_path / "app.py"))
    assert str(tmp_path) not in sys.path   # only while the app was imported
    assert [m.__name__ for m in companions(sys.modules[app.module])] == [name]
    blob = ship_app(app)
    del sys.modules[name]   # as on a worker that never saw the folder
    shipped = unship_app(blob)
    assert list(shipped.map("f", "ab cd", [])) == [("AB", 1), ("CD", 1)]


FORMATTED_APP = '''
def map(filename, contents):
    return ((w, 1) for w in contents.split())


def reduce(key, values):
    return sum(values)


def format_output(key, value):
    return f"{value:>5}\\t{key}"
'''


def test_an_app_writes_its_own_output_lines_with_format_output(tmp_path: Path) -> None:
    app = _app_file(tmp_path, FORMATTED_APP)
    (tmp_path / "in.txt").write_text("b a b\n")
    out = run_sequential(str(app), [str(tmp_path / "in.txt")], tmp_path / "out")
    assert out.read_text() == "    1\ta\n    2\tb\n"
    shipped = unship_app(ship_app(str(app)))
    formatter = shipped.output_formatter()
    assert formatter is not None and formatter("k", 3) == "    3\tk"


@pytest.mark.parametrize(("returned", "message"), [(3, "returned 3, expected a str"),
                                                   ("two\nlines", "returned a line with a newline")])
def test_a_format_output_that_breaks_the_line_is_an_app_error(returned: object, message: str) -> None:
    app = dataclasses.replace(App.from_functions("bad", map=lambda f, c: [], reduce=lambda k, vs: 1),
                              format_fn=lambda key, value: returned)
    formatter = app.output_formatter()
    assert formatter is not None
    with pytest.raises(AppError, match=message):
        formatter("k", 1)


def test_the_sort_app_writes_back_each_record_as_it_was_read(tmp_path: Path) -> None:
    starts = [b"zzzzzzzzzz  two spaces", b"aaaaaaaaaa payload", b"mmmmmmmmmm\ttab", b"aaaaaaaaaa another",
              b"\x00\xff binary key", b"aaaaaaaaa\x00 a NUL in the key"]
    records = [start.ljust(99, b"-") + b"\n" for start in starts]
    (tmp_path / "in.dat").write_bytes(b"".join(records))
    out = run_sequential(str(REPO / "apps" / "sort.py"), [str(tmp_path / "in.dat")], tmp_path / "out")
    assert out.read_bytes() == b"".join(sorted(records))


def test_a_batch_app_partitions_by_partition_batch_else_partition_per_key_else_the_stable_hash(
        tmp_path: Path) -> None:
    from zmr.core.partition import partition_of

    body = "def map_batch(filename, contents):\n    return contents.split(), [1] * len(contents.split())\n"
    keys = ["apple", "banana", "cherry", "apple"]
    hashed = load_app(str(_app_file(tmp_path, body)))
    batch, raw = hashed.map_columns("f", " ".join(keys), [])
    assert hashed.partitions_of(batch, raw, 5, []).tolist() == [partition_of(k, 5) for k in keys]
    per_key = load_app(str(_app_file(tmp_path, body + "def partition(key, n):\n    return len(key) % n\n",
                                     name="per_key.py")))
    assert per_key.partitions_of(batch, raw, 4, []).tolist() == [1, 2, 2, 1]
    bulk = load_app(str(_app_file(tmp_path, body + "def partition_batch(keys, n):\n    return [0] * len(keys)\n",
                                  name="bulk.py")))
    assert bulk.partitions_of(batch, raw, 4, []).tolist() == [0, 0, 0, 0]
    broken = load_app(str(_app_file(tmp_path, body + "def partition(key, n):\n    return n\n", name="broken.py")))
    with pytest.raises(AppError, match="partition\\('apple', 4\\) returned 4"):
        broken.partitions_of(batch, raw, 4, [])
