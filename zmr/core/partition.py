"""Stable key partitioning: the same key lands in the same partition in every process, on every host.

Python's built-in `hash()` is salted per process, so it can never decide where a key goes.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Iterable, Iterator

import xxhash

# The hash of a key's UTF-8 (surrogates kept): xxh3, 64 bits, seed 0. Every path that partitions keys
# uses it (the compiled kernel too: zmr/native/kernels.c calls XXH3_64bits).
encoded_hash: Callable[[bytes], int] = xxhash.xxh3_64_intdigest


def stable_hash(key: str) -> int:
    """A 64-bit hash of `key` that is the same in every process and on every platform."""
    return encoded_hash(key.encode("utf-8", "surrogatepass"))


def partition_of(key: str, n_reduce: int) -> int:
    """The default partitioner: `stable_hash(key) % n_reduce`."""
    return stable_hash(key) % n_reduce


def partitions_of_encoded(keys: Iterable[bytes], n_reduce: int) -> Iterator[int]:
    """`partition_of` for many keys given as bytes (a str key as its UTF-8, surrogates kept), in one
    C-level pass: the map side's hot loop."""
    return map(operator.mod, map(encoded_hash, keys), itertools.repeat(n_reduce))
