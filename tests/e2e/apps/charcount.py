"""Test app: counts what each map task was given, to check how input bytes become text.

Keys: `chars` (characters of the split's text), `fffd` (U+FFFD replacement characters in it), `newlines`,
`splits` (map calls: one per split, or one per piece of at most 16 MiB of a longer split),
`empty_splits` (map calls given no text at all). Values are summed by the reduce, so
the output describes the whole input as the maps saw it: with splits that own whole lines and UTF-8
decoding with replacement, `chars` and `fffd` equal those of each file decoded whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def map(filename: str, contents: str) -> Iterator[tuple[str, str]]:
    yield "chars", str(len(contents))
    yield "fffd", str(contents.count("\ufffd"))
    yield "newlines", str(contents.count("\n"))
    yield "splits", "1"
    yield "empty_splits", "0" if contents else "1"


def combine(key: str, values: Iterable[str]) -> str:
    return str(sum(int(value) for value in values))


def reduce(key: str, values: Iterable[str]) -> str:
    return str(sum(int(value) for value in values))
