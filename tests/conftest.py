"""Fixtures every test folder shares, and the rule that no test is skipped without a listed reason.

`library` is the suite's own text corpus (tests/sample_books.py), written once a session: the tests need
nothing outside the repository. The skip rule is the plugin in tests/skipcheck.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sample_books import write_books

pytest_plugins = ["skipcheck"]


@pytest.fixture(scope="session")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of eight text books, about 3.3 MB in all (see sample_books.py for what they hold)."""
    return write_books(tmp_path_factory.mktemp("library"))
