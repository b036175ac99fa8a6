"""PageRank: a fixed number of rounds over an edge list (a multi-step app: one step, then one per round).

The input is lines `source target` (whitespace-separated node names; blank lines and lines starting
with `#` are skipped; a repeated edge counts once). The number of rounds is the job's first `--arg`
(10 without one). Each round sets every node's rank to `(1 - d) + d * sum(rank(q) / outdegree(q))` over
the nodes q linking to it, with d = 0.85, starting from 1 (the form of the original paper without the
division by the number of nodes, which no step has to count first). A node without out-links passes
its rank to no one. The output is `node rank` for every node, the rank with 10 decimals.

Sums use `math.fsum` over the contributions in sorted order, so a rank does not depend on the order in
which a reducer received them: the cluster and `zmr seq` agree to the last bit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence

import zmr

DAMPING = 0.85
LINKS = "L"   # a value holding a node's rank and out-links: "L<rank>\t<target>,<target>..."
SHARE = "S"   # a value holding one share of a neighbour's rank: "S<float>"


def edges(filename: str, contents: str) -> Iterator[tuple[str, str]]:
    for line in contents.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 2:
            raise ValueError(f"{filename}: expected 'source target', got {line!r}")
        source, target = fields
        yield source, target
        yield target, ""   # every node appears, even one nothing leaves


def adjacency(node: str, targets: Iterable[str]) -> str:
    return f"{LINKS}1.0\t" + ",".join(sorted({t for t in targets if t}))


def spread(node: str, value: str) -> Iterator[tuple[str, str]]:
    rank_text, _, links = value[1:].partition("\t")
    yield node, value   # the graph travels with the ranks
    targets = links.split(",") if links else []
    share = float(rank_text) / len(targets) if targets else 0.0
    for target in targets:
        yield target, f"{SHARE}{share!r}"


def _rank_and_links(node: str, values: Iterable[str]) -> tuple[float, str]:
    shares, links = [], ""
    for value in values:
        if value.startswith(SHARE):
            shares.append(float(value[1:]))
        else:
            links = value[1:].partition("\t")[2]
    return (1 - DAMPING) + DAMPING * math.fsum(sorted(shares)), links


def gather(node: str, values: Iterable[str]) -> str:
    rank, links = _rank_and_links(node, values)
    return f"{LINKS}{rank!r}\t{links}"


def final(node: str, values: Iterable[str]) -> float:
    return _rank_and_links(node, values)[0]


def format_output(node: str, rank: float) -> str:
    return f"{node} {rank:.10f}"


def rounds(args: Sequence[str]) -> int:
    return int(args[0]) if args else 10


def steps(args: Sequence[str]) -> list[zmr.Step]:
    n = rounds(args)
    if n < 1:
        raise ValueError(f"the number of rounds must be at least 1, got {args[0]!r}")
    return [zmr.Step(name="links", map=edges, reduce=adjacency),
            *(zmr.Step(name=f"round-{i}", map=spread, reduce=gather if i < n else final) for i in range(1, n + 1))]
