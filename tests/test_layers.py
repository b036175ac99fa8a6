"""The dependency rule (design.md section 6): zmr/core and zmr/protocol are pure.

They import nothing that does I/O, reads the clock, draws randomness or touches processes, and call no
I/O builtins; from zmr, core imports only core, protocol and errors, and protocol only protocol and errors.
Checked on the source with `ast`, so a module no test imports is checked all the same.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ZMR = Path(__file__).resolve().parents[1] / "zmr"
PURE = {"core": {"zmr.core", "zmr.protocol", "zmr.errors"}, "protocol": {"zmr.protocol", "zmr.errors"}}
FORBIDDEN = {
    "zmq", "os", "io", "socket", "select", "selectors", "ssl", "pathlib", "shutil", "tempfile", "glob",
    "time", "datetime", "threading", "multiprocessing", "concurrent", "asyncio", "subprocess", "signal",
    "sys", "logging", "structlog", "pickle", "cloudpickle", "importlib", "random", "uuid",
}
IO_CALLS = {"open", "print", "input", "exec", "eval", "compile", "__import__", "breakpoint"}
MODULES = [(layer, path) for layer in PURE for path in sorted((ZMR / layer).glob("*.py"))]


def imported(tree: ast.Module, module: str) -> list[tuple[int, str]]:
    """(line, absolute name) of every module `tree` imports, relative imports resolved from `module`."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(module.split(".")[: -node.level] + ([base] if base else []))
            if base in ("zmr", "zmr.core", "zmr.protocol"):      # `from zmr import runtime` names a module
                found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, base))
    return found


def problems(layer: str, path: Path) -> list[str]:
    """Every import and call in `path` that breaks the rule for `layer`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    allowed = PURE[layer]
    found = []
    for line, name in imported(tree, f"zmr.{layer}.{path.stem}"):
        top = name.split(".")[0]
        if top in FORBIDDEN or (top == "zmr" and not any(name == a or name.startswith(a + ".") for a in allowed)):
            found.append(f"{path.name}:{line} imports {name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in IO_CALLS:
            found.append(f"{path.name}:{node.lineno} calls {node.func.id}()")
    return found


def test_the_pure_layers_exist() -> None:
    names = {(layer, path.stem) for layer, path in MODULES}
    assert {("core", "scheduler"), ("core", "state"), ("core", "batches"), ("core", "worker_machine"),
            ("core", "worker_events"), ("protocol", "codec"),
            ("protocol", "messages")} <= names


@pytest.mark.parametrize(("layer", "path"), MODULES, ids=[f"{layer}/{p.name}" for layer, p in MODULES])
def test_pure_modules_do_no_io(layer: str, path: Path) -> None:
    assert problems(layer, path) == []


@pytest.mark.parametrize("source", [
    "import zmq",
    "import os.path",
    "from pathlib import Path",
    "from time import monotonic",
    "import threading as t",
    "from zmr.runtime import transport",
    "from zmr import runtime",
    "from zmr.config import Config",
    "from ..runtime import coordinator",
    "from .. import config",
    "import zmr",
    "x = open('f')",
    "print('hi')",
])
def test_the_checker_catches(source: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.py"
    path.write_text(source + "\n", encoding="utf-8")
    assert problems("core", path)


def test_the_protocol_may_not_import_the_core(tmp_path: Path) -> None:
    path = tmp_path / "bad.py"
    path.write_text("from zmr.core.state import Job\nfrom . import state\n", encoding="utf-8")
    assert len(problems("protocol", path)) == 1 and not problems("core", path)


def test_allowed_imports_pass(tmp_path: Path) -> None:
    path = tmp_path / "fine.py"
    path.write_text("import heapq\nfrom zmr.errors import ProtocolError\nfrom zmr.protocol import messages as m\n"
                    "from . import state\nfrom .partition import partition_of\nimport msgspec\n", encoding="utf-8")
    assert problems("core", path) == []
