"""Identity: every input line becomes a key with an empty value; used by `scripts/bench` (job `tiny`).

With empty input files it does no work at all, so a job of many tiny files measures the engine's
per-task overhead: scheduling, dispatch, commits. Output: `line ` (the line, a space, nothing).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def map(filename: str, contents: str) -> Iterator[tuple[str, str]]:
    """Each line of the split as a key."""
    for line in contents.splitlines():
        yield line, ""


def reduce(key: str, values: Iterable[str]) -> str:
    """Nothing: only the key matters."""
    return ""
