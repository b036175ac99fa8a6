"""TeraSort-style sort: 100-byte records (one per line), ordered by their first 10 bytes.

Each input line is a record: a 10-character key followed by the rest of the line. Partitioning is by range
over a fixed split of the printable-ASCII key space, so `cat mr-out-0 mr-out-1 ... mr-out-<R-1>` (in
numeric order) is globally sorted, and `format_output` writes each record back as it was read (no separator
added, nothing trimmed), so that concatenation equals the input's lines in key order. Records that share a
key keep every payload, joined by " | " in sorted order (with random 10-byte keys that is vanishingly rare).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

KEY_BYTES = 10
_LOW, _SPAN = 32, 95          # printable ASCII: ' ' (32) .. '~' (126)
_PREFIX_SPACE = _SPAN * _SPAN  # the partitioner looks at the first two key characters


def map(filename: str, contents: str) -> Iterator[tuple[str, str]]:
    """Every non-empty line is one record: (its first 10 characters, the rest of the line)."""
    for line in contents.splitlines():
        if line:
            yield line[:KEY_BYTES], line[KEY_BYTES:]


def _rank(ch: str) -> int:
    return min(max(ord(ch) - _LOW, 0), _SPAN - 1)


def partition(key: str, n_reduce: int) -> int:
    """Range partitioner: equal slices of the two-character key prefix space, in key order."""
    prefix = key[:2]
    found = _SLICES.get((prefix, n_reduce))
    if found is None:
        found = _SLICES[(prefix, n_reduce)] = _slice_of(prefix, n_reduce)
    return found


_SLICES: dict[tuple[str, int], int] = {}   # (prefix, n_reduce) -> slice: `partition` runs for every record


def _slice_of(prefix: str, n_reduce: int) -> int:
    padded = (prefix + "  ")[:2]
    rank = _rank(padded[0]) * _SPAN + _rank(padded[1])
    return rank * n_reduce // _PREFIX_SPACE


def reduce(key: str, values: Iterable[str]) -> str:
    """The record's payload (all payloads, sorted, if several records share the key)."""
    payloads = list(values)
    return payloads[0] if len(payloads) == 1 else " | ".join(sorted(payloads))


def format_output(key: str, payload: str) -> str:
    """The record as it was read: its key and the rest of its line, side by side."""
    return key + payload
