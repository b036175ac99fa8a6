"""TeraSort: 100-byte records ordered by their first 10 bytes, written back byte for byte.

A batch app: `map_batch` gets whole records as one bytes object and returns them as two fixed-width
columns, the 10-byte keys and the 90 bytes after them, without a Python loop per record. The range
partitioner cuts the space of two-byte key prefixes over printable ASCII into equal slices in key
order, so `cat mr-out-0 mr-out-1 ... mr-out-<R-1>` (in numeric order) is globally sorted. There is no
reduce: every record is written as it was read (`OUTPUT_FORMAT = "raw"`: key then rest, nothing added),
records with equal keys in the order of the rest of their bytes, so that concatenation equals the
input's records sorted, as TeraValidate checks.

    python scripts/genrecords.py --out data/records --mb 100
    zmr run --app apps/sort.py --input data/records --output out --n-reduce 8
"""

from __future__ import annotations

import numpy as np

RECORD_BYTES = 100
KEY_BYTES = 10
INPUT = f"records:{RECORD_BYTES}"
OUTPUT_FORMAT = "raw"
_LOW, _SPAN = 32, 95   # printable ASCII: ' ' (32) .. '~' (126); bytes outside it go to the ends


def map_batch(filename: str, records: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The records as (keys, rest) columns: views of one (n, 100) array, no copy per record."""
    rows = np.frombuffer(records, np.uint8).reshape(-1, RECORD_BYTES)
    return rows[:, :KEY_BYTES], rows[:, KEY_BYTES:]


def partition_batch(keys: np.ndarray, n_reduce: int) -> np.ndarray:
    """Range partitioner: equal slices of the two-byte key prefix space, in key order."""
    ranks = np.clip(keys[:, :2].astype(np.int64) - _LOW, 0, _SPAN - 1)
    return (ranks[:, 0] * _SPAN + ranks[:, 1]) * n_reduce // (_SPAN * _SPAN)
