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

import ctypes
import gc

YOUNG_THRESHOLD = 50_000   # new containers between young collections (CPython's default: 700)
OLDER_THRESHOLDS = (20, 100)  # young collections per middle one, middle ones per full one (default: 10, 10)


def tune_for_data() -> None:
    """Collect rarely, and never scan what start-up created (the interpreter, zmr, pyzmq)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3   # glibc's mallopt parameters
MMAP_THRESHOLD = 32 << 20   # glibc's largest: blocks under it come from the heap
TRIM_THRESHOLD = 64 << 20   # free memory the heap keeps before handing it back


def reuse_large_blocks() -> None:
    """Let glibc's malloc reuse freed blocks of up to 32 MiB instead of mapping fresh zeroed pages for each.

    A task of a batch app allocates arrays of megabytes per piece of its split. By default glibc serves
    each from a new mmap and unmaps it on free, so every array page-faults its way in again: on a 1 GB
    sort, 1.25 million faults and more kernel time than numpy's own. Served from the heap, freed arrays
    are reused; the heap gives memory back once 64 MiB of it is free. Does nothing where the C library is
    not glibc.
    """
    try:   # the process's own symbols, the C library's among them (`find_library` would run ldconfig)
        mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    except OSError:
        return
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
