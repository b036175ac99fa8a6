"""Distributed grep: every line that matches a regular expression (job argument 1).

Output: `file:line_number line`, the line number 1-based in the whole file (a big file is read in several
splits, and `first_line` says where each starts). Lines are split on "\\n"; a trailing "\\r" is dropped
before matching, so CRLF files behave. Keys sort as strings, so `f:10` comes before `f:2`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence


def _pattern(args: Sequence[str]) -> re.Pattern[str]:
    if not args:
        raise ValueError("grep needs a regular expression as its first job argument, e.g. 'Watson'")
    try:
        return re.compile(args[0])
    except re.error as exc:
        raise ValueError(f"grep: {args[0]!r} is not a valid regular expression: {exc}") from exc


def map(
    filename: str, contents: str, args: Sequence[str] = (), first_line: int = 1
) -> Iterator[tuple[str, str]]:
    """(file:line, line) for each matching line of this split."""
    pattern = _pattern(args)
    lines = contents.split("\n")
    if lines[-1] == "":
        lines.pop()  # contents end with a newline (or are empty): no line after it
    for offset, line in enumerate(lines):
        line = line.removesuffix("\r")
        if pattern.search(line):
            yield f"{filename}:{first_line + offset}", line


def reduce(key: str, values: Iterable[str]) -> str:
    """A key names one line, so every value is that line (twice only if a file was given twice)."""
    return next(iter(values))
