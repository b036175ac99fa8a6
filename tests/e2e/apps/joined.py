"""Test app: a graph of steps, not a chain. Two map-only steps read the files (users.txt: `uid name`,
orders.txt: `uid amount`), a reduce-side join reads both, and its output feeds two steps (totals per
name's initial, and the names that spent over 100), which one final step reads. Values of one key mix
str and int. Self-contained: the module ships by value."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import zmr


def users(filename: str, contents: str) -> Iterator[tuple[str, str]]:
    if filename.endswith("users.txt"):
        for line in contents.splitlines():
            uid, name = line.split()
            yield uid, "name=" + name


def orders(filename: str, contents: str) -> Iterator[tuple[str, int]]:
    if filename.endswith("orders.txt"):
        for line in contents.splitlines():
            uid, amount = line.split()
            yield uid, int(amount)


def join(uid: str, values: Iterable[str | int]) -> list[tuple[str, int]]:
    seen = list(values)
    spent = sum(v for v in seen if isinstance(v, int))
    return [(v[5:], spent) for v in seen if isinstance(v, str)]


def by_initial(name: str, total: int) -> Iterator[tuple[str, int]]:
    yield "initial-" + name[0], total


def big(name: str, total: int) -> list[tuple[str, int]]:
    return [("big-" + name, total)] if total > 100 else []


def largest(key: str, values: Iterable[int]) -> int:
    return max(values)


def steps() -> list[zmr.Step]:
    return [zmr.Step(name="users", map=users, inputs=(zmr.FILES,)),
            zmr.Step(name="orders", map=orders, inputs=(zmr.FILES,)),
            zmr.Step(name="join", reduce=join, inputs=("users", "orders")),
            zmr.Step(name="initials", map=by_initial, reduce=sum_of, inputs=("join",), n_reduce=2),
            zmr.Step(name="big", map=big, inputs=("join",)),
            zmr.Step(name="report", reduce=largest, inputs=("initials", "big"), n_reduce=1)]


def sum_of(key: str, values: Iterable[int]) -> int:
    return sum(values)
