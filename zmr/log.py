"""Logging: the only place that touches structlog's global configuration.

One event per line, with an ISO UTC timestamp and the level: JSON for machines, a plain console format for
people. Context (job, task, attempt, worker ids) is bound to loggers with `get_logger(**ids)` or `.bind()`,
never formatted into the message, so it stays searchable.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO, cast

import structlog
import structlog.tracebacks
from structlog.typing import FilteringBoundLogger, Processor

from zmr.errors import ConfigError

FORMATS = ("console", "json")


def configure_logging(level: str = "info", fmt: str = "console", stream: TextIO | None = None) -> None:
    """Route every zmr logger to `stream` (default: whatever `sys.stderr` is when a line is written, so
    logging set up once survives a swap of sys.stderr, such as a test's capture ending); callable again to
    reconfigure (e.g. in tests)."""
    out: TextIO = cast(TextIO, _CurrentStderr()) if stream is None else stream
    structlog.configure(
        processors=[*_shared_processors(), *_renderer(fmt, out)],
        wrapper_class=structlog.make_filtering_bound_logger(_level_number(level)),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def get_logger(**initial: object) -> FilteringBoundLogger:
    """A logger with `initial` context bound (job, task, attempt, worker ids).

    It is a lazy proxy that reads the configuration on every call, so a module-level logger made at import
    follows a later `configure_logging`. Until someone configures logging, it goes to stderr as console text.
    """
    if not structlog.is_configured():
        configure_logging()
    return cast(FilteringBoundLogger, structlog.get_logger(**initial))


def bound_logger(**initial: object) -> FilteringBoundLogger:
    """Like `get_logger`, but fixed to the configuration of now: for a role's long-lived logger, made once
    logging is configured. A call costs a tenth of the proxy's (which rebuilds the logger each time), and
    the coordinator and workers log on every task."""
    return get_logger(**initial).bind()


def _level_number(level: str) -> int:
    number = logging.getLevelNamesMapping().get(level.upper(), logging.NOTSET)
    if number == logging.NOTSET:
        raise ConfigError(f"unknown log level {level!r}: use debug, info, warning or error")
    return number


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]


class _CurrentStderr:
    """Writes to the `sys.stderr` of the moment."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def _renderer(fmt: str, stream: TextIO) -> list[Processor]:
    """The last processors: JSON with structured exceptions, or console text (it renders exceptions)."""
    if fmt == "json":
        # No locals in tracebacks: they hold job data, and logs travel further than the data should.
        tracebacks = structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        return [structlog.processors.ExceptionRenderer(tracebacks), structlog.processors.JSONRenderer()]
    if fmt == "console":
        return [structlog.dev.ConsoleRenderer(colors=_is_tty(stream))]
    raise ConfigError(f"unknown log format {fmt!r}: use one of {', '.join(FORMATS)}")


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
