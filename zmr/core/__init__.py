"""The pure core: scheduler state machine, partitioner, splits. No I/O, no clock, no sockets."""
