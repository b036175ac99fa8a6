"""The pure core: the scheduler and worker state machines, partitioner, splits. No I/O, no clock, no sockets."""
