"""Multi-step apps: the Step contract, the graph checks, and `zmr seq` running chains and graphs, checked
against computations done here (word counts, PageRank by power iteration, a join)."""

from __future__ import annotations

import math
import random
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from sample_books import write_books

from zmr.apps import load_app
from zmr.client import build_spec
from zmr.errors import AppError, JobSpecError
from zmr.seq import run_sequential
from zmr.steps import plan_steps

APPS = Path(__file__).resolve().parents[1] / "apps"
words = load_app(str(APPS / "wc.py")).map_fn.__globals__["words"]   # type: ignore[union-attr]  # wc's own words


def write_app(tmp_path: Path, source: str, name: str = "stepped.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return str(path)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


@pytest.mark.parametrize("n", [10, 3])
def test_topwords_gives_the_n_most_frequent_words_most_frequent_first(tmp_path: Path, n: int) -> None:
    books = write_books(tmp_path / "books")
    counts = Counter(w for f in sorted(books.iterdir()) for w in words(f.read_text(errors="replace")))
    expected = sorted(counts.items(), key=lambda wc: (-wc[1], wc[0]))[:n]
    out = run_sequential(str(APPS / "topwords.py"), [str(books)], tmp_path / "out", args=[str(n)])
    assert lines(out) == [f"{word} {count}" for word, count in expected]


def pagerank(edges: list[tuple[str, str]], rounds: int) -> dict[str, float]:
    """Power iteration of apps/pagerank.py's formula, written out plainly."""
    nodes = {n for edge in edges for n in edge}
    out = {n: sorted({t for s, t in edges if s == n}) for n in nodes}
    rank = dict.fromkeys(nodes, 1.0)
    for _ in range(rounds):
        shares: dict[str, list[float]] = {n: [] for n in nodes}
        for node, targets in out.items():
            for target in targets:
                shares[target].append(rank[node] / len(targets))
        rank = {n: 0.15 + 0.85 * math.fsum(sorted(shares[n])) for n in nodes}
    return rank


def test_pagerank_matches_power_iteration_for_the_number_of_rounds_asked(tmp_path: Path) -> None:
    rng = random.Random(7)
    edges = [(f"n{rng.randrange(60)}", f"n{rng.randrange(60)}") for _ in range(400)]
    edges.append(("lonely", "n1"))   # no in-link
    edges.append(("n2", "sink"))     # no out-link
    graph = tmp_path / "graph.txt"
    graph.write_text("# source target\n" + "".join(f"{s} {t}\n" if k % 7 else f"{s}\t{t}\n\n"
                                                  for k, (s, t) in enumerate(edges)))
    for rounds in (1, 6):
        out = run_sequential(str(APPS / "pagerank.py"), [str(graph)], tmp_path / f"out{rounds}", args=[str(rounds)])
        expected = pagerank(edges, rounds)
        assert lines(out) == [f"{node} {expected[node]:.10f}" for node in sorted(expected)]
    assert dict(line.split() for line in lines(out))["lonely"] == "0.1500000000"


def test_each_step_gets_typed_pairs_and_args_and_may_leave_out_map_or_reduce(tmp_path: Path) -> None:
    app = write_app(tmp_path, """
        import zmr

        def split(filename, contents):
            for word in contents.split():
                yield word, 1

        def total(key, values):
            return sum(values)

        def by_length(word, count, args):
            assert isinstance(count, int)
            yield str(len(word)), count * int(args[0])
            yield str(len(word)), 0.5

        def steps(args):
            return [zmr.Step(name="count", map=split, reduce=total),
                    zmr.Step(name="scale", map=by_length),                 # no reduce: every value, in order
                    zmr.Step(name="sum", reduce=lambda k, vs: repr(sorted(vs)), n_reduce=1)]   # no map
    """)
    (tmp_path / "in.txt").write_text("aa b aa ccc b aa\n")
    out = run_sequential(app, [str(tmp_path / "in.txt")], tmp_path / "out", args=["10"])
    assert lines(out) == ["1 [0.5, 20]", "2 [0.5, 30]", "3 [0.5, 10]"]


def test_a_reduce_side_join_of_two_map_only_steps(tmp_path: Path) -> None:
    app = write_app(tmp_path, """
        import zmr

        def users(filename, contents):
            if filename.endswith("users.txt"):
                for line in contents.splitlines():
                    uid, name = line.split()
                    yield uid, "name=" + name

        def orders(filename, contents):
            if filename.endswith("orders.txt"):
                for line in contents.splitlines():
                    uid, amount = line.split()
                    yield uid, int(amount)

        def join(uid, values):
            values = list(values)
            names = [v[5:] for v in values if isinstance(v, str)]
            return [(name, sum(v for v in values if isinstance(v, int))) for name in names]

        def steps():
            return [zmr.Step(name="users", map=users, inputs=(zmr.FILES,)),
                    zmr.Step(name="orders", map=orders, inputs=(zmr.FILES,)),
                    zmr.Step(name="join", reduce=join, inputs=("users", "orders"))]
    """)
    (tmp_path / "users.txt").write_text("1 ada\n2 bob\n3 cy\n")
    (tmp_path / "orders.txt").write_text("1 5\n2 7\n1 10\n9 100\n")
    out = run_sequential(app, [str(tmp_path / "users.txt"), str(tmp_path / "orders.txt")], tmp_path / "out")
    assert lines(out) == ["ada 15", "bob 7", "cy 0"]


@pytest.mark.parametrize(("body", "message"), [
    ("def steps():\n    return 'count'", "steps() returned str, expected a list of zmr.Step"),
    ("def steps():\n    return [zmr.Step(map=m, reduce=r), m]", "steps()[1] is a function, expected a zmr.Step"),
    ("def steps():\n    raise KeyError('rounds')", "steps() raised KeyError: 'rounds'"),
    ("def steps():\n    return [zmr.Step(map=m, reduce=r, n_reduce='4')]", "n_reduce must be an int, got '4'"),
    ("def steps():\n    return [zmr.Step(map=m, reduce=5)]", "`reduce` must be a function, got int"),
    ("def steps():\n    return [zmr.Step(map=m, reduce=r), zmr.Step(name='x', n_reduce=1)]",
     "step 'x' has nothing to do"),
    ("def steps():\n    return [zmr.Step(map=m, reduce=r), zmr.Step(map=m, reduce=r, inputs='step-1')]",
     "inputs must be a tuple of step names"),
])
def test_a_broken_steps_is_an_app_error_naming_what_is_wrong(tmp_path: Path, body: str, message: str) -> None:
    app = load_app(write_app(tmp_path, "import zmr\n\ndef m(f, c):\n    yield c, 1\n\ndef r(k, vs):\n    return 1\n\n"
                             + body + "\n"))
    with pytest.raises(AppError) as err:
        plan_steps(app, [], 2)
    assert message in str(err.value)


@pytest.mark.parametrize(("reduce", "message"), [
    ("lambda k, vs: None", "returned None, expected a str, an int, a float or an iterable of (key, value) pairs"),
    ("lambda k, vs: True", "returned True"),
    ("lambda k, vs: (k, 1)", "reduce gave 'w', expected a (key, value) tuple"),
    ("lambda k, vs: [(1, 2)]", "expected a str key and a value"),
])
def test_a_step_reduce_that_breaks_the_contract_is_named(tmp_path: Path, reduce: str, message: str) -> None:
    app = write_app(tmp_path, f"""
        import zmr

        def steps():
            return [zmr.Step(map=lambda f, c: [("w", 1)], reduce=lambda k, vs: 2),
                    zmr.Step(reduce={reduce}, n_reduce=1)]
    """)
    (tmp_path / "in.txt").write_text("x\n")
    with pytest.raises(AppError) as err:
        run_sequential(app, [str(tmp_path / "in.txt")], tmp_path / "out")
    assert message in str(err.value)
    assert not (tmp_path / "out" / "mr-out-0").exists()


def test_the_spec_carries_the_planned_steps_and_a_bad_plan_fails_before_it_is_queued(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("a b\n")
    spec = build_spec(str(APPS / "topwords.py"), [str(tmp_path / "in.txt")], str(tmp_path / "out"), 4, args=["3"])
    assert [(s.name, s.n_reduce, s.inputs, s.has_map, s.has_reduce) for s in spec.steps] == [
        ("count", 4, ["<files>"], True, True), ("top", 1, ["count"], True, True)]
    assert spec.step == -1 and not spec.head and not spec.feeds and not spec.fed_maps
    broken = write_app(tmp_path, "import zmr\n\ndef steps():\n    return []\n")
    with pytest.raises(AppError, match="steps\\(\\) gave no step"):
        build_spec(broken, [str(tmp_path / "in.txt")], str(tmp_path / "out"), 4)
    wide = write_app(tmp_path, "import zmr\n\ndef steps():\n"
                               "    return [zmr.Step(name='w', map=print, n_reduce=10**6)]\n", "wide.py")
    with pytest.raises(JobSpecError, match="step 'w': n_reduce .* over the limit"):
        build_spec(wide, [str(tmp_path / "in.txt")], str(tmp_path / "out"), 4)
