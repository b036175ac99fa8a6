"""Resident memory of a process and its descendants, read from /proc, for heartbeats and the dashboard.

A worker's memory is its own process, its zygote and the task process the zygote forked: what the
machine spends on it. Forked processes share pages until they write them, so the sum can overstate a
little; it never understates. Where /proc is missing (not Linux) the answer is 0: unknown, not none.
"""

from __future__ import annotations

import os
from pathlib import Path

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_MOST_PROCESSES = 64   # a worker has three; a bound keeps a runaway fork tree from costing a heartbeat


def tree_rss(pid: int) -> int:
    """Resident bytes of `pid` and every process below it (0 where it cannot be read)."""
    total, seen, todo = 0, 0, [pid]
    while todo and seen < _MOST_PROCESSES:
        current = todo.pop()
        seen += 1
        total += _rss(current)
        todo.extend(_children(current))
    return total


def _rss(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/statm").read_bytes().split()
        return int(fields[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _children(pid: int) -> list[int]:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    found: list[int] = []
    for tid in tasks:
        try:
            found += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_bytes().split()]
        except (OSError, ValueError):
            continue
    return found
