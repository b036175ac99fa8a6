"""Test app: little map output, big reduce output. Each map emits the first `keys=N` distinct words of
its split (default 200) once; each is reduced to `width=W` characters (default 10000), so mr-out-* grows
to about N * W bytes while the shuffle stays small. Used to make writing the output fail (past a
file-size limit) and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence


def _options(args: Sequence[str]) -> dict[str, str]:
    return dict(arg.split("=", 1) for arg in args)


def map(filename: str, contents: str, args: Sequence[str] = ()) -> Iterator[tuple[str, str]]:
    limit = int(_options(args).get("keys", 200))
    seen: set[str] = set()
    for word in contents.split():
        if word.isalpha() and word not in seen:
            seen.add(word)
            yield word, "1"
            if len(seen) >= limit:
                return


def reduce(key: str, values: Iterable[str], args: Sequence[str] = ()) -> str:
    return "x" * int(_options(args).get("width", 10_000))
