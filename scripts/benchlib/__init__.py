"""Helpers of `scripts/bench`: data generation, measured runs, contenders, jobs, checks and reports.

    data.py        deterministic inputs under bench-out/data/, generated once and reused
    measure.py     run one command, timing it and sampling the memory of its whole process tree
    contenders.py  the contender registry: how zmr and each peer run a job, and whether it can run here
    peers.py       the peers' own code (single-process Python, Pool, Dask, PySpark), run as `-m benchlib.peers`
    zmrapi.py      jobs that need zmr's Python API (modes, tiny), run as `-m benchlib.zmrapi`
    verify.py      normalise each contender's output to a digest, check sort order and completeness
    jobs.py        the job registry: wc, sort, modes, tiny, scale
    report.py      tables, targets (PASS/MISS) and the JSON report

Every measured run is a fresh child process, so engine start-up (interpreter, imports, JVM, cluster)
is inside the wall time and the child's process tree is exactly what the memory sampler sees.
"""
