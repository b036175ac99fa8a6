#!/usr/bin/env python3
"""Generate deterministic TeraSort-style records for `apps/sort.py` (stdlib only).

Each record is one 100-byte line: a 10-character random printable key, a space, an 88-character payload
(the record number and filler) and a newline. The same flags always give byte-identical files.

    python scripts/genrecords.py --out data/records --mb 100 --files 8
"""

from __future__ import annotations

import argparse
import random
import string
from pathlib import Path

RECORD_BYTES = 100
_KEY_CHARS = "".join(chr(c) for c in range(33, 127))  # printable, no space: keys never end in blanks
_FILL = string.ascii_uppercase


def write_file(path: Path, first: int, count: int, rng: random.Random) -> None:
    with open(path, "w", encoding="ascii", newline="\n") as f:
        batch: list[str] = []
        for n in range(first, first + count):
            key = "".join(rng.choices(_KEY_CHARS, k=10))
            payload = f"{n:020d}" + _FILL[n % 26] * 68
            batch.append(f"{key} {payload}\n")
            if len(batch) == 4096:
                f.write("".join(batch))
                batch.clear()
        f.write("".join(batch))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--mb", type=float, default=100, help="total size in MB (10^6 bytes)")
    parser.add_argument("--files", type=int, default=8, help="number of files")
    parser.add_argument("--seed", type=int, default=7)
    ns = parser.parse_args()
    if ns.mb <= 0 or ns.files < 1:
        parser.error("--mb must be above 0 and --files at least 1")
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    total = int(ns.mb * 1_000_000) // RECORD_BYTES
    per_file = total // ns.files
    for i in range(ns.files):
        count = per_file if i < ns.files - 1 else total - per_file * (ns.files - 1)
        write_file(out / f"records-{i:03d}.txt", i * per_file, count, random.Random(ns.seed * 1000 + i))
    print(f"wrote {total} records in {ns.files} files to {out}")


if __name__ == "__main__":
    main()
