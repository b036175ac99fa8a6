"""The one exception tree of zmr.

    ZmrError
     +-- ConfigError        a config file, environment variable or flag is wrong
     +-- AppError           an app module cannot be loaded, lacks map/reduce, or cannot be shipped
     +-- JobSpecError       a job spec is invalid (missing input, n_reduce < 1, output exists, ...)
     +-- InputError         an input cannot be read as text (binary, or a damaged compressed file)
     +-- ProtocolError      a peer sent a malformed, oversized or wrong-version message
     |    +-- OversizedMessage  ... one over the size limit, refused before it is parsed
     +-- JobFailed          a job ended in failure; carries the reason (and the app's traceback)
     +-- ClusterError       the cluster could not be reached or started
          +-- NoAnswer          the coordinator did not answer in time (it may be restarting)
          +-- JournalDamaged    the coordinator's journal is damaged before its end; it will not guess
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


class InputError(ZmrError):
    """An input file is not text (it holds a NUL byte) or is a damaged compressed file: reading it again
    gives the same answer, so a task that meets it fails its job at once."""


class ProtocolError(ZmrError):
    """A peer sent a malformed, oversized or wrong-version message.

    `peer` is the sender's ROUTER identity when a ROUTER received it (b'' otherwise), so the server
    that catches it can log, answer or shun that peer.
    """

    def __init__(self, *args: object, peer: bytes = b"") -> None:
        super().__init__(*args)
        self.peer = peer


class OversizedMessage(ProtocolError):
    """A peer sent a message over the size limit. Unlike garbage it may come from a well-meaning but
    misconfigured peer (an app too big, an old client), so a server may tell the sender why."""


class JobFailed(ZmrError):
    """A job ended without its output: it failed, or was cancelled (`state`). `reason` is for people;
    `job_id` names the job."""

    def __init__(self, job_id: str, reason: str, state: str = "failed") -> None:
        self.job_id = job_id
        self.reason = reason
        self.state = state
        super().__init__(f"job {job_id} {self.ended}: {reason}")

    @property
    def ended(self) -> str:
        """How the job ended, in words: 'failed' or 'was cancelled'."""
        return "was cancelled" if self.state == "cancelled" else "failed"


class ClusterError(ZmrError):
    """The cluster could not be reached or started."""


class NoAnswer(ClusterError):
    """The coordinator did not answer within the timeout; a waiting client tries again."""


class JournalDamaged(ClusterError):
    """The journal holds a bad record with records after it, so it is not a torn last write.

    Recovering would drop records that were written, and so re-run or forget work that was done: the
    coordinator refuses to start, and leaves the file as it is, unless the operator says to go on.
    """

    def __init__(self, path: str, offset: int, problem: str) -> None:
        super().__init__(f"the journal {path} is damaged at byte {offset} ({problem}), with records after "
                         "the damage; it is left as it is. To start from the intact records before byte "
                         f"{offset} (the file is kept aside), start the coordinator once with "
                         "--recover-damaged-journal (zmr-coord), or with --set "
                         "coordinator.recover_damaged_journal=true (zmr cluster up: then remove it again)")
        self.path = path
        self.offset = offset
        self.problem = problem


class AuthenticationFailed(ClusterError):
    """The coordinator's ZAP handler refused this client's key: no retry can help, so none is made."""
