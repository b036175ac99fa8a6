#!/usr/bin/env python3
"""Generate a deterministic Zipf-distributed English-like text corpus (stdlib only).

Used by `scripts/demo` and `scripts/bench`: the same flags always give byte-identical files.

    python scripts/gencorpus.py --out data/corpus --mb 20 --files 8
"""

from __future__ import annotations

import argparse
import itertools
import random
from pathlib import Path

_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "an", "el", "is", "or", "um", "th",
              "st", "qu", "br", "ch", "dr"]


def vocabulary(size: int, rng: random.Random) -> list[str]:
    """`size` distinct made-up words, a few capitalised, a few with non-ASCII letters."""
    words: dict[str, None] = {}
    while len(words) < size:
        word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4)))
        roll = rng.random()
        if roll < 0.05:
            word = word.capitalize()
        elif roll < 0.07:
            word = word + rng.choice("éüøñç")
        words[word] = None
    return list(words)


def write_file(path: Path, n_bytes: int, words: list[str], weights: list[float], rng: random.Random) -> None:
    with open(path, "w", encoding="utf-8") as f:
        written = 0
        while written < n_bytes:
            line_words = rng.choices(words, cum_weights=weights, k=12 * 64)
            lines = [" ".join(line_words[i:i + 12]) + ".\n" for i in range(0, len(line_words), 12)]
            chunk = "".join(lines)
            f.write(chunk)
            written += len(chunk.encode("utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--mb", type=float, default=20, help="total size in MB (10^6 bytes)")
    parser.add_argument("--files", type=int, default=8, help="number of files")
    parser.add_argument("--vocab", type=int, default=50_000, help="distinct words")
    parser.add_argument("--seed", type=int, default=42)
    ns = parser.parse_args()
    if ns.mb <= 0 or ns.files < 1 or ns.vocab < 1:
        parser.error("--mb must be above 0, --files and --vocab at least 1")
    rng = random.Random(ns.seed)
    words = vocabulary(ns.vocab, rng)
    weights = list(itertools.accumulate(1.0 / (rank + 1) for rank in range(len(words))))
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    per_file = int(ns.mb * 1_000_000 / ns.files)
    for i in range(ns.files):
        write_file(out / f"part-{i:03d}.txt", per_file, words, weights, random.Random(ns.seed * 1000 + i))
    print(f"wrote {ns.files} files, {ns.mb:g} MB, to {out}")


if __name__ == "__main__":
    main()
