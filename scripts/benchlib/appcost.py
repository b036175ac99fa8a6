"""The CPU an app's own functions take over an input, run alone: `python -m benchlib.appcost APP INPUT OUTPUT`.

Calls `map(filename, text)` once per input file (each file whole: the overhead job's files are smaller
than a split) and keeps every pair, groups the pairs by key outside the clock, then calls
`reduce(key, values)` once per key, and writes `key result` lines to OUTPUT/part-00000 (outside the clock
too), for the bench to check zmr's output against. Prints one JSON object: pairs, keys, map and reduce
CPU seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchlib.peers import input_files, write_counts
from zmr.apps import load_app
from zmr.runtime.gctune import tune_for_data


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("app")
    p.add_argument("input")
    p.add_argument("output", type=Path)
    ns = p.parse_args(argv)
    app = load_app(ns.app)   # zmr's own loader; its map and reduce are the module's functions as they are
    tune_for_data()   # collect as zmr's task processes do: the app's cost, not the collector's
    map_cpu = reduce_cpu = 0.0
    groups: dict[str, list[object]] = {}
    pairs = 0
    for path in input_files(ns.input):
        text = Path(path).read_text(encoding="utf-8")
        started = time.process_time()
        out = list(app.map_fn(Path(path).name, text))
        map_cpu += time.process_time() - started
        pairs += len(out)
        for key, value in out:
            groups.setdefault(key, []).append(value)
        del out, text
    started = time.process_time()
    results = [app.reduce_fn(key, iter(values)) for key, values in groups.items()]
    reduce_cpu = time.process_time() - started
    write_counts(zip(groups, results, strict=True), ns.output)
    print(json.dumps({"pairs": pairs, "keys": len(groups), "map_cpu": map_cpu, "reduce_cpu": reduce_cpu}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
