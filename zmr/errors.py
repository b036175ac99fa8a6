"""The one exception tree of zmr.

    ZmrError
     +-- ConfigError        a config file, environment variable or flag is wrong
     +-- AppError           an app module cannot be loaded, lacks map/reduce, or cannot be shipped
     +-- JobSpecError       a job spec is invalid (missing input, n_reduce < 1, output exists, ...)
     +-- ProtocolError      a peer sent a malformed, oversized or wrong-version message
     +-- JobFailed          a job ended in failure; carries the reason (and the app's traceback)
     +-- ClusterError       the cluster could not be reached or started
          +-- NoAnswer          the coordinator did not answer in time (it may be restarting)
          +-- AuthenticationFailed   the coordinator refused this peer's CURVE key

Local errors (you misused the API) and remote errors (a peer sent garbage) are kept apart: a
ProtocolError is never fatal to a process, the peer's message is dropped.
"""

from __future__ import annotations


class ZmrError(Exception):
    """Root of every error zmr raises on purpose."""


class ConfigError(ZmrError):
    """A config file, ZMR_* environment variable or command-line flag is invalid."""


class AppError(ZmrError):
    """An app module cannot be loaded, lacks `map`/`reduce`, or cannot be shipped."""


class JobSpecError(ZmrError):
    """A job spec is invalid; the job is not queued."""


class ProtocolError(ZmrError):
    """A peer sent a malformed, oversized or wrong-version message."""


class JobFailed(ZmrError):
    """A job ended in failure. `reason` is for people; `job_id` names the job."""

    def __init__(self, job_id: str, reason: str) -> None:
        super().__init__(f"job {job_id} failed: {reason}")
        self.job_id = job_id
        self.reason = reason


class ClusterError(ZmrError):
    """The cluster could not be reached or started."""


class NoAnswer(ClusterError):
    """The coordinator did not answer within the timeout; a waiting client tries again."""


class AuthenticationFailed(ClusterError):
    """The coordinator's ZAP handler refused this client's key: no retry can help, so none is made."""
