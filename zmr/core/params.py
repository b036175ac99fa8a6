"""The scheduler's settings, and the retry backoff rule that uses them."""

from __future__ import annotations

import math
from dataclasses import dataclass

from zmr.core.specs import SpecLimits
from zmr.protocol.messages import Compression


@dataclass(frozen=True)
class SchedulerParams:
    python: str                    # major.minor every worker must run (cloudpickle needs it)
    heartbeat_interval: float = 0.5
    heartbeat_liveness: int = 6
    task_timeout: float = 10.0
    max_attempts: int = 4
    retry_base: float = 0.5
    retry_cap: float = 10.0
    max_worker_losses: int = 8
    push: bool = True
    replicate: bool = False        # second copies of the output a mapper makes for the partitions it owns
    check_addresses: bool = False  # have the shell check each new worker's data address (CheckAddress)
    batch_bytes: int = 1 << 20
    window_bytes: int = 8 << 20
    compression: Compression = "none"   # of map output chunks (zmr.core.batches.Packer)
    first_job_number: int = 1
    speculation: bool = True       # backup attempts for stragglers near the end of a phase
    slow_factor: float = 3.0       # ... running this many times longer than the phase's median task
    min_elapsed: float = 2.0       # ... and at least this many seconds
    lease_ttl: float = 30.0        # a worker drops a job's data if its leases are not renewed within this
    recovery_grace: float = 10.0   # after a restart, how long workers named in the journal have to come back
    timeline_points: int = 2000    # samples kept per job (older ones are thinned)
    limits: SpecLimits = SpecLimits()   # the largest job this coordinator queues

    def retry_delay(self, failures: int) -> float:
        """Seconds before a task that failed `failures` times (from 1) runs again: retry_base doubled
        with each failure after the first, and never more than retry_cap (the retry.* config keys)."""
        if failures < 1:
            raise ValueError(f"failure counts start at 1, got {failures}")
        try:
            return min(self.retry_cap, math.ldexp(self.retry_base, failures - 1))
        except OverflowError:
            return self.retry_cap
