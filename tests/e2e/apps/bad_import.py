"""Test app whose import fails: loading it must give a clear error with this module's traceback."""

from __future__ import annotations


def _refuse() -> None:
    raise RuntimeError("zmr-e2e-import-boom: this app refuses to be imported")


_refuse()


def map(filename: str, contents: str):  # pragma: no cover - never reached
    yield filename, contents


def reduce(key: str, values: object) -> str:  # pragma: no cover - never reached
    return ""
