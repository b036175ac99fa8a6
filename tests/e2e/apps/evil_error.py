"""Test app: keys that are HTML, and a reduce that raises with one in its message, so a page that shows
the job's error must escape what it shows. Self-contained: the module ships by value."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

HOSTILE = "<img src=x onerror=\"window.__pwned=1\"><script>window.__pwned=2</script>"


def map(filename: str, contents: str) -> Iterator[tuple[str, str]]:
    yield HOSTILE, "1"


def reduce(key: str, values: Iterable[str]) -> str:
    raise ValueError(f"cannot reduce {key}")
