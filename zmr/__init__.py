"""zmr: a MapReduce engine for Python on ZeroMQ."""
