"""The pieces of `scripts/chaos`: processes found through /proc, a cluster started by hand, private
network namespaces, the fault injectors, and the end-of-run audit (leftover files, stuck workers)."""
