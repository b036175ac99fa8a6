"""A pytest plugin: with `--strict-skips`, a test skipped for a reason not on the allow-list fails the run.

A skip hides a test that did not run, so each one must be expected, with its reason written down in
the allow-list (`--skips-allowed FILE`, default tests/skips-allowed.txt): one regular expression a line,
searched for in the skip reason; `#` starts a comment line. scripts/test passes `--strict-skips`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DEFAULT_ALLOW_LIST = Path(__file__).resolve().parent / "skips-allowed.txt"
_UNEXPECTED = pytest.StashKey[list[str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("zmr")
    group.addoption("--strict-skips", action="store_true",
                    help="fail the run if a test is skipped for a reason the allow-list does not name")
    group.addoption("--skips-allowed", type=Path, default=DEFAULT_ALLOW_LIST, metavar="FILE",
                    help="the allow-list of skip reasons (default: tests/skips-allowed.txt)")


def allowed_patterns(path: Path) -> list[re.Pattern[str]]:
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [re.compile(line.strip()) for line in lines if line.strip() and not line.lstrip().startswith("#")]


def skip_reason(report: pytest.TestReport) -> str:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    return reason.removeprefix("Skipped: ")


def unexpected_skips(reports: list[pytest.TestReport], patterns: list[re.Pattern[str]]) -> list[str]:
    """`test id: reason` for each skipped test whose reason no pattern matches."""
    return [f"{report.nodeid}: {skip_reason(report)}" for report in reports
            if not any(p.search(skip_reason(report)) for p in patterns)]


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Runs before the terminal summary is written, so the summary can list what this finds."""
    config = session.config
    if not config.getoption("--strict-skips"):
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    unexpected = unexpected_skips(skipped, allowed_patterns(config.getoption("--skips-allowed")))
    config.stash[_UNEXPECTED] = unexpected
    if unexpected and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int,
                            config: pytest.Config) -> None:
    unexpected = config.stash.get(_UNEXPECTED, [])
    if unexpected:
        terminalreporter.section("skips not on the allow-list", red=True)
        for line in unexpected:
            terminalreporter.write_line(line)
        terminalreporter.write_line(f"{len(unexpected)} unexpected skip(s) fail this run: make the test run, "
                                    f"or list its reason in {config.getoption('--skips-allowed')}")
