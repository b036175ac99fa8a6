"""Cyclic garbage collector settings for a worker or a coordinator, which allocate records by the million.

CPython starts a young collection every 700 new container objects (tuples, lists, dicts) and a full one
whenever enough of them survive; decoding a batch creates thousands of records, so with the defaults
the collector walks the worker's whole heap again and again and takes more time than the decoding
itself. A coordinator running a job of 100,000 tasks holds that many long-lived records and makes
several more per message: with the defaults it spends about as long collecting as scheduling. Records
hold no reference cycles, so collecting rarely loses nothing; cycles an app makes are still collected,
later.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000   # new containers between young collections (CPython's default: 700)
OLDER_THRESHOLDS = (20, 100)  # young collections per middle one, middle ones per full one (default: 10, 10)


def tune_for_data() -> None:
    """Collect rarely, and never scan what start-up created (the interpreter, zmr, pyzmq)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
