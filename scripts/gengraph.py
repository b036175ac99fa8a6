#!/usr/bin/env python3
"""Generate a deterministic directed graph as an edge list for apps/pagerank.py (stdlib only).

Each line is `source target`. Sources are uniform over the nodes; targets follow a power law (a few
nodes get most links, as on the web), so ranks spread out. The same flags always give byte-identical
files.

    python scripts/gengraph.py --out data/graph --nodes 100000 --edges 1000000 --files 4
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path


def write_edges(path: Path, n_edges: int, n_nodes: int, rng: random.Random, alpha: float) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for start in range(0, n_edges, 4096):
            count = min(4096, n_edges - start)
            f.write("".join(f"n{rng.randrange(n_nodes)} n{int(rng.paretovariate(alpha)) % n_nodes}\n"
                            for _ in range(count)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--edges", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=4, help="number of files")
    parser.add_argument("--alpha", type=float, default=1.2, help="the power law of the targets (smaller: more skew)")
    parser.add_argument("--seed", type=int, default=42)
    ns = parser.parse_args()
    if ns.nodes < 1 or ns.edges < 0 or ns.files < 1:
        parser.error("--nodes and --files must be at least 1, --edges at least 0")
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(ns.files):
        share = ns.edges // ns.files + (i < ns.edges % ns.files)
        write_edges(out / f"edges-{i:03d}.txt", share, ns.nodes, random.Random(ns.seed * 1000 + i), ns.alpha)
    print(f"wrote {ns.edges} edges over {ns.nodes} nodes in {ns.files} files to {out}")


if __name__ == "__main__":
    main()
