"""The dependency rule (docs/architecture.md section 2, Layers): every module of zmr sits on a floor, and no
module imports one on a floor above its own.

Floors, lowest first (a module may import its own floor and any below it):

    errors    zmr.errors: the exception tree every layer raises
    protocol  zmr/protocol: messages, codec, journal records, the output contract (pure)
    core      zmr/core: scheduler and worker state machines, batches, splits, spec checks (pure)
    common    config, log, apps, inputs, storage, compressed, formats, output_formats, pyfiles: what every
              process uses to configure itself, log, load an app, read its input (local or at a URL) and
              write its output; they do I/O, so they sit above the pure floors, yet below the runtime
    runtime   zmr/runtime: sockets, files, processes: the coordinator and worker shells
    client    client, local (the local cluster launcher, which asks a client when its workers are up),
              remote (workers on hosts over SSH), runfile (which launcher runs a config), seq, report,
              progress, testing: what a user's program or a test drives
    cli       cli, __main__ and the package itself (`zmr/__init__`, which names the public API)

Moreover zmr/core and zmr/protocol are pure: they import nothing that does I/O, reads the clock, draws
randomness or touches processes, and call no I/O builtins. And no module imports itself back through
another (no import cycles, which would make the floors meaningless). Everything is checked on the
source with `ast` over the whole tree, so a lazy import inside a function counts, and a module no test
imports is checked all the same.
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

# The floors, lowest first: a package name covers every module in it, any other name one module.
FLOORS: list[tuple[str, set[str]]] = [
    ("errors", {"zmr.errors"}),
    ("protocol", {"zmr.protocol"}),
    ("core", {"zmr.core"}),
    ("common", {"zmr.config", "zmr.log", "zmr.apps", "zmr.inputs", "zmr.compressed", "zmr.formats",
                "zmr.output_formats", "zmr.pyfiles", "zmr.storage", "zmr.steps"}),
    ("runtime", {"zmr.runtime"}),
    ("client", {"zmr.client", "zmr.local", "zmr.remote", "zmr.runfile", "zmr.seq", "zmr.report", "zmr.progress",
                "zmr.testing", "zmr.simulation"}),
    ("cli", {"zmr.cli", "zmr.__main__", "zmr"}),
]
PACKAGES = {"zmr", *(f"zmr.{p.parent.name}" for p in ZMR.glob("*/__init__.py"))}
ALL_MODULES = sorted(ZMR.rglob("*.py"))


def module_of(path: Path) -> str:
    """`zmr/core/state.py` -> `zmr.core.state`; a package's `__init__.py` -> the package."""
    parts = path.relative_to(ZMR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.Module, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, absolute name) of every module `tree` imports, relative imports resolved from `module`
    (a package when `is_package`); `from PACKAGE import NAME` counts as importing `PACKAGE.NAME`."""
    here = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
            if base in PACKAGES:      # `from zmr import runtime` names a module
                found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, base))
    return found


def problems(layer: str, path: Path) -> list[str]:
    """Every import and call in `path` that breaks the purity rule for `layer` (core or protocol)."""
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


def floor_of(module: str) -> int | None:
    """The floor a zmr module sits on (its index in FLOORS), or None if no floor names it."""
    for number, (_, names) in enumerate(FLOORS):
        if any(module == n or (n != "zmr" and n in PACKAGES and module.startswith(n + ".")) for n in names):
            return number
    return None


def target_floor(name: str) -> int:
    """The floor of an imported zmr name; a name no floor lists (`from zmr import Client`) comes from
    the package itself, on the top floor."""
    found = floor_of(name)
    return len(FLOORS) - 1 if found is None else found


def upward_imports(module: str, source: str, is_package: bool = False) -> list[str]:
    """Every import in `source`, as module `module`, of a zmr module on a floor above the module's."""
    own = floor_of(module)
    assert own is not None, f"{module} is on no floor: add it to FLOORS"
    found = []
    for line, name in imported(ast.parse(source), module, is_package):
        if name.split(".")[0] == "zmr" and (theirs := target_floor(name)) > own:
            found.append(f"{module}:{line} ({FLOORS[own][0]}) imports {name} ({FLOORS[theirs][0]})")
    return found


def zmr_imports(path: Path) -> set[str]:
    """The zmr modules `path` imports, each as the module (or package) that defines it."""
    module = module_of(path)
    names = {n for _, n in imported(ast.parse(path.read_text(encoding="utf-8")), module, path.stem == "__init__")}
    known = {module_of(p) for p in ALL_MODULES}
    out = set()
    for name in names:
        while name and name not in known:   # `zmr.protocol.messages.JobSpec` -> `zmr.protocol.messages`
            name = name.rpartition(".")[0]
        if name.startswith("zmr") and name != module:
            out.add(name)
    return out


def a_cycle(graph: dict[str, set[str]]) -> list[str]:
    """Some import cycle in `graph` (module -> modules it imports), as a path back to its start, or []."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str]:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return []
        for nxt in sorted(graph.get(node, ())):
            if cycle := visit(nxt, [*path, node]):
                return cycle
        done.add(node)
        return []

    for start in sorted(graph):
        if cycle := visit(start, []):
            return cycle
    return []


# ------------------------------------------------------------------ every floor


def test_every_module_has_a_floor() -> None:
    assert [module_of(p) for p in ALL_MODULES if floor_of(module_of(p)) is None] == []


def test_every_floor_names_modules_that_exist() -> None:
    known = {module_of(p) for p in ALL_MODULES}
    assert [n for _, names in FLOORS for n in names if n not in known] == []


@pytest.mark.parametrize("path", ALL_MODULES, ids=[str(p.relative_to(ZMR)) for p in ALL_MODULES])
def test_no_module_imports_a_floor_above_its_own(path: Path) -> None:
    assert upward_imports(module_of(path), path.read_text(encoding="utf-8"), path.stem == "__init__") == []


def test_there_is_no_import_cycle() -> None:
    assert a_cycle({module_of(p): zmr_imports(p) for p in ALL_MODULES}) == []


@pytest.mark.parametrize(("module", "source"), [
    ("zmr.runtime.bad", "from zmr.cli import main"),
    ("zmr.core.bad", "from zmr.runtime import worker"),
    ("zmr.runtime.bad", "def start():\n    from zmr.local import LocalCluster\n"),
    ("zmr.runtime.bad", "import zmr.client"),
    ("zmr.runtime.bad", "from zmr import Client"),
    ("zmr.runtime.bad", "import zmr"),
    ("zmr.protocol.bad", "from ..core import state"),
    ("zmr.core.bad", "from .. import config"),
    ("zmr.config", "from zmr.runtime.security import Keyring"),
    ("zmr.errors", "from zmr.protocol import messages"),
    ("zmr.client", "from zmr.cli import run_command"),
    ("zmr.testing", "if True:\n    import zmr.cli\n"),
])
def test_the_layer_check_catches_an_upward_import(module: str, source: str) -> None:
    assert upward_imports(module, source)


def test_the_layer_check_passes_imports_down_and_level() -> None:
    assert upward_imports("zmr.runtime.bad", "from zmr.protocol import messages as m\nfrom zmr.config import Config\n"
                          "from . import transport\nfrom zmr.runtime.stores import Store\nimport zmr.errors\n") == []
    assert upward_imports("zmr.cli", "from zmr.local import LocalCluster\nfrom zmr.runtime import security\n") == []
    assert upward_imports("zmr.core", "from . import state\nfrom .specs import SpecLimits\n", is_package=True) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert a_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert a_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_a_module_off_every_floor_is_refused() -> None:
    with pytest.raises(AssertionError, match="on no floor"):
        upward_imports("zmr.newthing", "import heapq")


# ------------------------------------------------------------------ the pure floors


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
