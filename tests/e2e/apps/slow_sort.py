"""apps/sort.py's TeraSort, slowed down per map call so that a test can kill a worker mid-job."""

import time

import numpy as np

INPUT = "records:100"
OUTPUT_FORMAT = "raw"


def map_batch(filename, records):
    time.sleep(0.15)
    rows = np.frombuffer(records, np.uint8).reshape(-1, 100)
    return rows[:, :10], rows[:, 10:]


def partition_batch(keys, n_reduce):
    return keys[:, 0].astype(np.int64) * n_reduce // 256
