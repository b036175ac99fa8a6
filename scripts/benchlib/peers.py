"""The peers' side of every job, run in a fresh process: `python -m benchlib.peers PEER JOB IN OUT`.

Word count everywhere uses the same tokenizer as `apps/bench_wc.py`: `re.findall(r"[A-Za-z]+", text)`
and one `collections.Counter` per task (a file, or an engine's input partition). Sort orders 100-byte
records by their first 10 bytes. Every peer writes its result under OUT as text files whose
concatenation in name order is its output (`word count` lines; sorted records), for `verify.py`.

Peers:
    python      one process, no parallelism: the baseline every ratio is taken against
    pool        multiprocessing.Pool(workers)
    dask-bag    Dask bag on LocalCluster(n_workers, threads_per_worker=1, processes=True)
    dask-df     Dask dataframe with the P2P shuffle on the same LocalCluster
    spark       PySpark RDD API on local[workers]
    ray         Ray tasks on ray.init(num_cpus=workers): map tasks count and split, reduce tasks merge
    zmr-chain   top words as two `zmr run` jobs, the word count written to a folder the second one reads

Top words is the word count, then the 100 most frequent words (ties in word order), `word count` lines
most frequent first.
"""

from __future__ import annotations

import argparse
import heapq
import operator
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from multiprocessing import Pool
from pathlib import Path
from typing import Any

WORD = re.compile(r"[A-Za-z]+")
KEY_BYTES = 10
_LOW, _SPAN = 32, 95  # the range partitioner of apps/sort.py: two-character key prefix, printable ASCII


# ------------------------------------------------------------------ shared pieces


def input_files(folder: str) -> list[str]:
    """The inputs as zmr sees a directory: regular, non-hidden files in sorted order."""
    return sorted(str(p) for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith("."))


def count_words(text: str) -> Counter[str]:
    return Counter(WORD.findall(text))


def count_file(path: str) -> Counter[str]:
    with open(path, encoding="utf-8", errors="replace") as f:
        return count_words(f.read())


def write_counts(counts: Iterable[tuple[str, int]], out: Path, name: str = "part-00000") -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / name, "w", encoding="utf-8") as f:
        f.writelines(f"{word} {n}\n" for word, n in sorted(counts))


def read_records(path: str) -> list[bytes]:
    with open(path, "rb") as f:
        return f.read().splitlines(keepends=True)


def record_key(record: bytes) -> bytes:
    return record[:KEY_BYTES]


def range_partition(record: bytes, n: int) -> int:
    """apps/sort.py's partitioner on bytes: equal slices of the two-byte key prefix space, in key order."""
    a = min(max(record[0] - _LOW, 0), _SPAN - 1)
    b = min(max(record[1] - _LOW, 0), _SPAN - 1)
    return (a * _SPAN + b) * n // (_SPAN * _SPAN)


# ------------------------------------------------------------------ single process


def python_wc(files: list[str], out: Path, workers: int, n_reduce: int) -> None:
    total: Counter[str] = Counter()
    for path in files:
        total.update(count_file(path))
    write_counts(total.items(), out)


def python_sort(files: list[str], out: Path, workers: int, n_reduce: int) -> None:
    records = [r for path in files for r in read_records(path)]
    records.sort(key=record_key)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "part-00000", "wb") as f:
        f.writelines(records)


# ------------------------------------------------------------------ multiprocessing.Pool


def pool_wc(files: list[str], out: Path, workers: int, n_reduce: int) -> None:
    with Pool(workers) as pool:
        total: Counter[str] = Counter()
        for counts in pool.imap_unordered(count_file, files):
            total.update(counts)
    write_counts(total.items(), out)


def _bucket_file(job: tuple[str, str, int, int]) -> None:
    """Sort phase 1: split one input file into range buckets, one scratch file per bucket."""
    path, scratch, index, n = job
    buckets: list[list[bytes]] = [[] for _ in range(n)]
    for record in read_records(path):
        buckets[range_partition(record, n)].append(record)
    for r, bucket in enumerate(buckets):
        with open(Path(scratch) / f"b{r}-m{index}", "wb") as f:
            f.writelines(bucket)


def _sort_bucket(job: tuple[str, str, int, int]) -> None:
    """Sort phase 2: gather one bucket from every input, sort it, write output part r."""
    scratch, out, r, n_maps = job
    records = [rec for m in range(n_maps) for rec in read_records(str(Path(scratch) / f"b{r}-m{m}"))]
    records.sort(key=record_key)
    with open(Path(out) / f"part-{r:05d}", "wb") as f:
        f.writelines(records)


def pool_sort(files: list[str], out: Path, workers: int, n_reduce: int) -> None:
    """A two-phase range sort (bucket, then sort each bucket) through scratch files."""
    out.mkdir(parents=True, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="bench-pool-", dir=out.parent)
    try:
        with Pool(workers) as pool:
            pool.map(_bucket_file, [(f, scratch, i, n_reduce) for i, f in enumerate(files)], chunksize=1)
            pool.map(_sort_bucket, [(scratch, str(out), r, len(files)) for r in range(n_reduce)], chunksize=1)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ------------------------------------------------------------------ Dask


def _dask_cluster(workers: int):  # type: ignore[no-untyped-def]  # dask is optional
    import dask
    from dask.distributed import Client, LocalCluster

    dask.config.set({"dataframe.shuffle.method": "p2p", "distributed.admin.system-monitor.gil.enabled": False})
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    return cluster, Client(cluster)


def merge_counts(counters: Iterable[Counter[str]]) -> Counter[str]:
    total: Counter[str] = Counter()
    for counts in counters:
        total.update(counts)
    return total


def dask_bag_wc(files: list[str], out: Path, workers: int, n_reduce: int) -> None:
    """A Counter per file (one bag partition each), merged by Dask's tree reduction.

    (`Bag.foldby` over the flattened (word, count) pairs was tried first: some 15x slower.)
    """
    import dask.bag as db

    cluster, client = _dask_cluster(workers)
    with cluster, client:
        totals = db.from_sequence(files, npartitions=len(files)).map(count_file).reduction(merge_counts,
                                                                                          merge_counts)
        write_counts(totals.compute().items(), out)


def _counts_frame(path: str):  # type: ignore[no-untyped-def]  # pandas is optional
    import pandas as pd

    counts = count_file(path)
    return pd.DataFrame({"word": pd.Series(list(counts.keys()), dtype="string"),
                         "count": pd.Series(list(counts.values()), dtype="int64")})


def dask_df_wc(files: list[str], out: Path, workers: int, n_reduce: int) -> None:
    import dask.dataframe as dd

    cluster, client = _dask_cluster(workers)
    with cluster, client:
        frame = dd.from_map(_counts_frame, files)
        totals = frame.groupby("word")["count"].sum(split_out=n_reduce, shuffle_method="p2p").compute()
        write_counts(zip(totals.index.tolist(), totals.tolist(), strict=True), out)


def _records_frame(path: str):  # type: ignore[no-untyped-def]  # pandas is optional
    import pandas as pd

    with open(path, "rb") as f:
        lines = f.read().decode("ascii").splitlines()
    return pd.DataFrame({"key": pd.Series([line[:KEY_BYTES] for line in lines], dtype="string"),
                         "line": pd.Series(lines, dtype="string")})


def _write_lines(frame, path: str) -> int:  # type: ignore[no-untyped-def]  # pandas is optional
    with open(path, "w", encoding="ascii", newline="\n") as f:
        f.writelines(line + "\n" for line in frame["line"].tolist())
    return len(frame)


def dask_df_sort(files: list[str], out: Path, workers: int, n_reduce: int) -> None:
    import dask
    import dask.dataframe as dd

    cluster, client = _dask_cluster(workers)
    with cluster, client:
        frame = dd.from_map(_records_frame, files)
        ordered = frame.sort_values("key", npartitions=n_reduce, shuffle_method="p2p")
        out.mkdir(parents=True, exist_ok=True)
        writes = [dask.delayed(_write_lines)(part, str(out / f"part-{i:05d}"))
                  for i, part in enumerate(ordered.to_delayed())]
        dask.compute(*writes)


# ------------------------------------------------------------------ Ray


def _ray(workers: int):  # type: ignore[no-untyped-def]  # ray is optional
    import ray

    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             configure_logging=False)
    return ray


def ray_wc(files: list[str], out: Path, workers: int, n_reduce: int) -> None:
    """MapReduce on Ray tasks: one map task per file counts it and splits the Counter into `n_reduce`
    parts by a stable hash of the word; reduce task r merges part r of every map and writes it."""
    ray = _ray(workers)
    try:
        split = ray.remote(num_returns=n_reduce)(_count_and_split) if n_reduce > 1 else ray.remote(_count_and_split)
        merge = ray.remote(_merge_and_write)
        parts = [split.remote(path, n_reduce) for path in files]
        parts = [p if n_reduce > 1 else [p] for p in parts]
        ray.get([merge.remote(str(out), r, *[p[r] for p in parts]) for r in range(n_reduce)])
    finally:
        ray.shutdown()


def _count_and_split(path: str, n: int) -> Any:
    parts: list[Counter[str]] = [Counter() for _ in range(n)]
    for word, count in count_file(path).items():
        parts[zlib.crc32(word.encode()) % n][word] = count
    return parts if n > 1 else parts[0]


def _merge_and_write(out: str, r: int, *parts: Counter[str]) -> int:
    total = merge_counts(parts)
    write_counts(total.items(), Path(out), f"part-{r:05d}")
    return len(total)


# ------------------------------------------------------------------ PySpark


def _spark(workers: int):  # type: ignore[no-untyped-def]  # pyspark is optional
    from pyspark import SparkConf, SparkContext

    conf = (SparkConf().setMaster(f"local[{workers}]").setAppName("zmr-bench")
            .set("spark.ui.enabled", "false").set("spark.driver.memory", os.environ.get("BENCH_SPARK_MEM", "4g"))
            .set("spark.ui.showConsoleProgress", "false"))
    sc = SparkContext(conf=conf)
    sc.setLogLevel("ERROR")
    return sc


def _count_partition(lines: Iterator[str]) -> Iterator[tuple[str, int]]:
    return iter(count_words("\n".join(lines)).items())


def spark_wc(files: list[str], out: Path, workers: int, n_reduce: int) -> None:
    sc = _spark(workers)
    try:
        totals = (sc.textFile(",".join(files), minPartitions=len(files)).mapPartitions(_count_partition)
                  .reduceByKey(operator.add, numPartitions=n_reduce).collect())
        write_counts(totals, out)
    finally:
        sc.stop()


def spark_sort(files: list[str], out: Path, workers: int, n_reduce: int) -> None:
    sc = _spark(workers)
    try:
        (sc.textFile(",".join(files), minPartitions=len(files)).map(lambda line: (line[:KEY_BYTES], line))
         .sortByKey(numPartitions=n_reduce).values().saveAsTextFile(str(out)))
    finally:
        sc.stop()


# ------------------------------------------------------------------ top words (word count, then the top N)

TOP_N = 100


def top_words(counts: Iterable[tuple[str, int]], n: int = TOP_N) -> list[tuple[str, int]]:
    """The n most frequent words, ties in word order (as apps/bench_topwords.py ranks them)."""
    return heapq.nsmallest(n, counts, key=lambda wc: (-wc[1], wc[0]))


def write_ranked(ranked: list[tuple[str, int]], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "part-00000", "w", encoding="utf-8") as f:
        f.writelines(f"{word} {n}\n" for word, n in ranked)


def python_topwords(files: list[str], out: Path, workers: int, n_reduce: int) -> None:
    total: Counter[str] = Counter()
    for path in files:
        total.update(count_file(path))
    write_ranked(top_words(total.items()), out)


def _top_of_counter(counts: Counter[str]) -> list[tuple[str, int]]:
    return top_words(counts.items())


def dask_bag_topwords(files: list[str], out: Path, workers: int, n_reduce: int) -> None:
    """The word count of `dask_bag_wc`, then the top N of the merged counts as one more task."""
    import dask.bag as db

    cluster, client = _dask_cluster(workers)
    with cluster, client:
        totals = db.from_sequence(files, npartitions=len(files)).map(count_file).reduction(merge_counts,
                                                                                          merge_counts)
        write_ranked(totals.apply(_top_of_counter).compute(), out)


def spark_topwords(files: list[str], out: Path, workers: int, n_reduce: int) -> None:
    """reduceByKey, then takeOrdered: each partition's top N, merged by the driver."""
    sc = _spark(workers)
    try:
        ranked = (sc.textFile(",".join(files), minPartitions=len(files)).mapPartitions(_count_partition)
                  .reduceByKey(operator.add, numPartitions=n_reduce).takeOrdered(TOP_N, key=lambda wc: (-wc[1], wc[0])))
        write_ranked(ranked, out)
    finally:
        sc.stop()


def zmr_chain_topwords(files: list[str], out: Path, workers: int, n_reduce: int) -> None:
    """The same work as two zmr jobs, as a user chains them by hand: the word count to a folder, then the
    top N of that folder (its `_SUCCESS` is skipped as hidden); the folder is deleted at the end."""
    app = str(Path(__file__).resolve().parents[2] / "apps" / "bench_topwords.py")
    exe = Path(sys.executable).with_name("zmr")
    zmr = [str(exe)] if exe.exists() else [sys.executable, "-m", "zmr"]
    between = Path(tempfile.mkdtemp(prefix="bench-chain-", dir=out.parent)) / "counts"
    try:
        common = ["--workers", str(workers), "--arg", str(TOP_N)]
        subprocess.run([*zmr, "run", "--app", app, "--input", *files, "--output", str(between), "--n-reduce",
                        str(n_reduce), *common, "--arg", "count"], check=True)
        subprocess.run([*zmr, "run", "--app", app, "--input", str(between), "--output", str(out), "--n-reduce", "1",
                        *common, "--arg", "top"], check=True)
    finally:
        shutil.rmtree(between.parent, ignore_errors=True)


# ------------------------------------------------------------------ registry and entry point

Runner = Callable[[list[str], Path, int, int], None]

RUNNERS: dict[tuple[str, str], Runner] = {
    ("python", "wc"): python_wc,
    ("python", "sort"): python_sort,
    ("pool", "wc"): pool_wc,
    ("pool", "sort"): pool_sort,
    ("dask-bag", "wc"): dask_bag_wc,
    ("dask-df", "wc"): dask_df_wc,
    ("dask-df", "sort"): dask_df_sort,
    ("spark", "wc"): spark_wc,
    ("spark", "sort"): spark_sort,
    ("ray", "wc"): ray_wc,
    ("python", "topwords"): python_topwords,
    ("dask-bag", "topwords"): dask_bag_topwords,
    ("spark", "topwords"): spark_topwords,
    ("zmr-chain", "topwords"): zmr_chain_topwords,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("peer", choices=sorted({p for p, _ in RUNNERS}))
    parser.add_argument("job", choices=sorted({j for _, j in RUNNERS}))
    parser.add_argument("input", help="input directory")
    parser.add_argument("output", help="output directory (must not exist)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--n-reduce", type=int, default=8, help="output partitions, where the peer has them")
    ns = parser.parse_args(argv)
    runner = RUNNERS.get((ns.peer, ns.job))
    if runner is None:
        parser.error(f"{ns.peer} has no {ns.job} job")
    runner(input_files(ns.input), Path(ns.output), ns.workers, ns.n_reduce)
    return 0


if __name__ == "__main__":
    sys.exit(main())
