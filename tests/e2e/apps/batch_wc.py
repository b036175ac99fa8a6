"""Word count as a batch app: map_batch returns the words and their counts as two columns."""

from collections import Counter

import numpy as np


def map_batch(filename, contents):
    counts = Counter(contents.lower().split())
    return list(counts), np.fromiter(counts.values(), np.int64, len(counts))


def reduce(key, values):
    return sum(values)
