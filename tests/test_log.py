"""Logging: one JSON object per line with bound ids, level filtering, plain console text off a tty."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import datetime

import pytest
import structlog

from zmr.errors import ConfigError
from zmr.log import bound_logger, configure_logging, get_logger


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def events(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_is_one_object_per_line_with_bound_ids() -> None:
    stream = io.StringIO()
    configure_logging("debug", "json", stream)
    log = get_logger(job="j1", worker="w7")
    log.bind(task=3, attempt=2).info("task started", records=10)
    log.debug("heartbeat\nsent")

    first, second = events(stream)
    assert first["event"] == "task started"
    assert first["level"] == "info"
    assert {k: first[k] for k in ("job", "worker", "task", "attempt", "records")} == {
        "job": "j1",
        "worker": "w7",
        "task": 3,
        "attempt": 2,
        "records": 10,
    }
    assert second["event"] == "heartbeat\nsent" and "task" not in second
    stamp = str(first["timestamp"])
    assert stamp.endswith("Z")  # ISO 8601, UTC
    assert datetime.fromisoformat(stamp.removesuffix("Z") + "+00:00").tzinfo is not None


def test_json_exception_is_structured_without_locals() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    secret = "do-not-log"  # noqa: F841 - a local that must not reach the log
    try:
        raise ZeroDivisionError("boom")
    except ZeroDivisionError:
        get_logger(task=1).exception("task failed")
    (event,) = events(stream)
    assert event["level"] == "error" and event["task"] == 1
    assert "ZeroDivisionError" in json.dumps(event["exception"])
    assert "do-not-log" not in stream.getvalue()


def test_level_filtering() -> None:
    stream = io.StringIO()
    configure_logging("warning", "json", stream)
    log = get_logger()
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    assert [e["event"] for e in events(stream)] == ["w", "e"]


def test_logger_made_before_configuring_follows_the_new_config() -> None:
    log = get_logger(job="j")
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    log.info("after")
    (event,) = events(stream)
    assert (event["event"], event["job"]) == ("after", "j")


def test_bound_logger_keeps_the_config_it_was_made_under() -> None:
    stream, later = io.StringIO(), io.StringIO()
    configure_logging("info", "json", stream)
    log = bound_logger(worker="w1")
    log.debug("filtered")
    log.info("kept", n=2)
    configure_logging("debug", "json", later)
    log.info("still here")
    assert [(e["event"], e["worker"]) for e in events(stream)] == [("kept", "w1"), ("still here", "w1")]
    assert later.getvalue() == ""


def test_console_has_no_colours_off_a_tty() -> None:
    stream = io.StringIO()
    configure_logging("info", "console", stream)
    get_logger(job="j1").info("hello", n=1)
    (line,) = stream.getvalue().splitlines()
    assert "\x1b[" not in line
    assert "hello" in line and "job=j1" in line and "n=1" in line and "info" in line


@pytest.mark.parametrize(("level", "fmt"), [("loud", "json"), ("info", "xml")])
def test_bad_level_or_format(level: str, fmt: str) -> None:
    with pytest.raises(ConfigError):
        configure_logging(level, fmt, io.StringIO())
