"""Test app: maps like a word count, then every reduce raises, so the job must fail with this traceback."""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def map(filename: str, contents: str) -> Iterator[tuple[str, str]]:
    for word in contents.split()[:1000]:
        yield word, "1"


def _explode(key: str) -> str:
    raise RuntimeError(f"zmr-e2e-reduce-boom on key {key!r}")


def reduce(key: str, values: Iterable[str]) -> str:
    return _explode(key)
