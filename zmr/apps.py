"""Apps: load a user's map/reduce module, check it against the contract, and ship it to workers.

The contract (any function may also declare a keyword parameter `args` to receive the job's arguments):

    map(filename: str, contents: str) -> Iterable[tuple[str, Value]]   # may declare `first_line`
    reduce(key: str, values: Iterable[Value]) -> Value
    combine(key: str, values: Iterable[Value]) -> Value                # optional, map-side, associative
    partition(key: str, n_reduce: int) -> int                          # optional, default stable hash
    format_output(key: str, value: Value) -> str                       # optional: the text output's line

A batch app does a split's per-pair work in array passes (see zmr.core.columns):

    map_batch(filename: str, contents) -> (keys, values)               # instead of map: whole columns
    partition_batch(keys, n_reduce: int) -> int array                  # optional: every key's partition
    reduce                                                             # optional: without it, every pair
                                                                       # is output, in (key, value) order

A multi-step app defines `steps()` (or `steps(args)`) returning a list of `zmr.Step`, each with its own
map, combine, reduce, partition and n_reduce (see zmr.steps); its module-level map and reduce are then
optional.

A Value is a str, an int (64-bit: -2**63 .. 2**64-1; not a bool) or a float, so counts and sums travel as
numbers, with no str() on the map side and int() per value on the reduce side. Keys are str.

An app is shipped by value (cloudpickle), so workers need no copy of its file. Modules the app uses that
live beside it (in its folder, or its package's, and not installed) travel by value with it; installed
modules it imports must be importable on the workers. A file app is imported with its folder first on
sys.path, as Python runs a script, so `import helper` finds `helper.py` next to it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import importlib.util
import inspect
import os
import re
import secrets
import sys
import sysconfig
import traceback
import types
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any

import cloudpickle

from zmr.core.batches import INT_MAX, INT_MIN, Value, is_value
from zmr.core.partition import partition_of
from zmr.errors import AppError
from zmr.formats import TEXT, InputFormat, input_format

if TYPE_CHECKING:   # numpy is imported by batch apps' jobs only
    import numpy as np

    from zmr.core.columns import Columns

__all__ = ["App", "app_of", "load_app", "ship_app", "unship_app"]

MapFn = Callable[..., Iterable[tuple[str, Value]]]
FoldFn = Callable[..., Value]
PartitionFn = Callable[..., int]

_VALUE_KINDS = "a str, a float or an int in -2**63 .. 2**64-1 (not a bool)"
_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


@dataclass(frozen=True)
class App:
    """A checked app. Call it through these methods: they pass `args`/`first_line` only where declared."""

    name: str
    module: str
    map_fn: MapFn | None
    reduce_fn: FoldFn | None
    combine_fn: FoldFn | None = None
    partition_fn: PartitionFn | None = None
    format_fn: Callable[..., Any] | None = None   # the module's format_output, if any
    takes_args: frozenset[str] = frozenset()
    map_takes_first_line: bool = False
    input: InputFormat = TEXT   # what map receives (the module's INPUT; see zmr.formats)
    map_batch_fn: Callable[..., Any] | None = None        # a batch app's map_batch
    partition_batch_fn: Callable[..., Any] | None = None  # and its partition_batch
    output_format: str = ""   # the module's OUTPUT_FORMAT: the job's when none is given ("": text)
    source_file: str = ""   # the app module's file, when shipped by value: tracebacks name it
    steps_fn: Callable[..., Any] | None = None   # a multi-step app's steps() (see zmr.steps)

    @classmethod
    def from_functions(
        cls,
        name: str,
        map: MapFn,
        reduce: FoldFn,
        combine: FoldFn | None = None,
        partition: PartitionFn | None = None,
    ) -> App:
        """Build an App from plain functions, working out once which accept `args` and `first_line`."""
        fns = {"map": map, "reduce": reduce, "combine": combine, "partition": partition}
        for role, fn in fns.items():
            if not callable(fn) and (fn is not None or role in ("map", "reduce")):
                raise AppError(f"app {name!r}: `{role}` must be a function, got {type(fn).__name__}")
        return cls(
            name=name,
            module=getattr(map, "__module__", None) or "__main__",
            map_fn=map,
            reduce_fn=reduce,
            combine_fn=combine,
            partition_fn=partition,
            takes_args=frozenset(
                role for role, fn in fns.items() if fn is not None and _declares(fn, "args")
            ),
            map_takes_first_line=_declares(map, "first_line"),
        )

    @property
    def has_combine(self) -> bool:
        return self.combine_fn is not None

    @property
    def is_batch(self) -> bool:
        """Whether map output travels as columns (`map_batch`) rather than as pairs."""
        return self.map_batch_fn is not None

    def map_columns(self, filename: str, contents: Any, args: Sequence[str]) -> tuple[Columns, Any]:
        """`map_batch`'s columns for one piece of a split, and the keys as it returned them (for
        `partition_batch`); anything else than two columns of one length is an AppError."""
        from zmr.core.columns import ColumnError, columns_of

        fn = self.map_batch_fn
        assert fn is not None
        result = fn(filename, contents, args=args) if "map_batch" in self.takes_args else fn(filename, contents)
        try:
            return columns_of(result), result[0]
        except ColumnError as exc:
            raise AppError(f"app {self.name!r}: map_batch returned what is not (keys, values) columns: {exc}") from None

    def partitions_of(self, batch: Columns, keys: Any, n_reduce: int, args: Sequence[str]) -> np.ndarray:
        """Each pair's reduce partition: `partition_batch`, else `partition` per key, else the stable hash."""
        from zmr.core.columns import ColumnError, checked_partitions, hash_partitions

        fn = self.partition_batch_fn
        if fn is not None:
            result = fn(keys, n_reduce, args=args) if "partition_batch" in self.takes_args else fn(keys, n_reduce)
            try:
                return checked_partitions(result, len(batch), n_reduce)
            except ColumnError as exc:
                raise AppError(f"app {self.name!r}: partition_batch returned {exc}") from None
        bound = self.partitioner(args)
        if bound is not None:
            import numpy

            keys = batch.keys.tolist()
            return numpy.array([self.check_partition(k, n_reduce, bound(k, n_reduce)) for k in keys], numpy.int64)
        return hash_partitions(batch.keys, n_reduce)

    def map(
        self, filename: str, contents: Any, args: Sequence[str], first_line: int = 1
    ) -> Iterator[tuple[str, Value]]:
        """The app's (key, value) pairs for one split, each checked (see `check_pair`)."""
        return _checked_pairs(self, self.map_iter(filename, contents, args, first_line))

    def map_iter(self, filename: str, contents: Any, args: Sequence[str], first_line: int = 1) -> Iterator[Any]:
        """What `map` yields, not yet checked: a hot loop checks each item itself (see `check_pair`).
        `contents` is a piece of the split, or for a per-record input format a list of records, each of
        which `map` gets on its own (see `zmr.formats.map_inputs`)."""
        if self.map_fn is None:
            raise AppError(f"app {self.name!r} has no map function (it is a batch app: see map_batch)")
        kwargs: dict[str, Any] = {}
        if "map" in self.takes_args:
            kwargs["args"] = args
        if self.input.per_record:
            return self._each_record(filename, contents, kwargs, first_line)
        if self.map_takes_first_line:
            kwargs["first_line"] = first_line
        return self._iterable(self.map_fn(filename, contents, **kwargs))

    def _each_record(self, filename: str, records: list[Any], kwargs: dict[str, Any],
                     first_line: int) -> Iterator[Any]:
        numbered = self.map_takes_first_line and self.input.kind == "lines"   # one record a line
        for index, record in enumerate(records):
            if numbered:
                kwargs["first_line"] = first_line + index if first_line else 0
            elif self.map_takes_first_line:
                kwargs["first_line"] = first_line
            yield from self._iterable(self.map_fn(filename, record, **kwargs))  # type: ignore[misc]  # checked

    def _iterable(self, pairs: Any) -> Iterator[Any]:
        try:
            return iter(pairs)
        except TypeError:
            raise AppError(
                f"app {self.name!r}: map returned {pairs!r}, expected an iterable of (key, value) pairs"
            ) from None

    def check_pair(self, pair: object) -> tuple[str, Value]:
        """`pair` if map may yield it (a str key and a value), else an AppError that says what was expected."""
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise AppError(f"app {self.name!r}: map yielded {pair!r}, expected a (key, value) tuple")
        key, value = pair
        exact = _as_value(value)
        if not isinstance(key, str) or exact is None:
            raise AppError(f"app {self.name!r}: map yielded {pair!r}, expected a str key and a value that is "
                           f"{_VALUE_KINDS}")
        return str(key), exact

    def reduce(self, key: str, values: Iterable[Value], args: Sequence[str]) -> Value:
        """The output value for `key`: a str, an int or a float (the output format decides how it is written)."""
        return self.reducer(args)(key, values)

    def reducer(self, args: Sequence[str]) -> Callable[[str, Iterable[Value]], Value]:
        """`reduce` with `args` bound once, for the reducer's per-key loop."""
        if self.reduce_fn is None:
            raise AppError(f"app {self.name!r} has no reduce function")
        fn = functools.partial(self.reduce_fn, args=args) if "reduce" in self.takes_args else self.reduce_fn

        def reduce(key: str, values: Iterable[Value]) -> Value:
            result = fn(key, values)
            kind = type(result)
            if kind is not str and kind is not int and kind is not float:
                result = _as_output(self.name, key, result)
            return result   # the output format checks what it can hold (zmr.output_formats)

        return reduce

    def combine(self, key: str, values: Iterable[Value], args: Sequence[str]) -> Value:
        """Fold some of `key`'s values map-side; only valid when `has_combine`."""
        combine = self.combiner(args)
        if combine is None:
            raise AppError(f"app {self.name!r} has no combine function")
        return combine(key, values)

    def combiner(self, args: Sequence[str]) -> Callable[[str, Iterable[Value]], Value] | None:
        """`combine` with `args` bound once, for the map side's buffers; None when the app has none."""
        if self.combine_fn is None:
            return None
        fn = functools.partial(self.combine_fn, args=args) if "combine" in self.takes_args else self.combine_fn

        def combine(key: str, values: Iterable[Value]) -> Value:
            result = fn(key, values)
            if is_value(result):
                return result
            exact = _as_value(result)
            if exact is None:
                raise AppError(f"app {self.name!r}: combine({key!r}, ...) returned {result!r}, expected a value "
                               f"that is {_VALUE_KINDS}")
            return exact

        return combine

    def output_formatter(self) -> Callable[[str, Value], str] | None:
        """The app's `format_output`, checked: the text output's line for a result (without its line end);
        None when the app has none (lines are then `key value`)."""
        fn = self.format_fn
        if fn is None:
            return None

        def format_output(key: str, value: Value) -> str:
            line = fn(key, value)
            if type(line) is not str:
                raise AppError(f"app {self.name!r}: format_output({key!r}, ...) returned {line!r}, expected a str")
            if "\n" in line:
                raise AppError(f"app {self.name!r}: format_output({key!r}, ...) returned a line with a newline: "
                               f"{line!r}")
            return line

        return format_output

    def partition(self, key: str, n_reduce: int, args: Sequence[str] = ()) -> int:
        """The reduce partition of `key`: the app's partition function if it has one, else the stable hash."""
        bound = self.partitioner(args)
        return partition_of(key, n_reduce) if bound is None else self.check_partition(key, n_reduce,
                                                                                      bound(key, n_reduce))

    def partitioner(self, args: Sequence[str]) -> Callable[[str, int], Any] | None:
        """The app's `partition` with `args` bound once, unchecked (see `check_partition`), for the map
        side's hot loop; None when the app has none (the loop computes the default, `partition_of`)."""
        if self.partition_fn is None:
            return None
        if "partition" in self.takes_args:
            return functools.partial(self.partition_fn, args=args)
        return self.partition_fn

    def check_partition(self, key: str, n_reduce: int, result: object) -> int:
        """`result` if `partition` may return it (an int in range), else an AppError that says so."""
        if not isinstance(result, int) or isinstance(result, bool) or not 0 <= result < n_reduce:
            raise AppError(
                f"app {self.name!r}: partition({key!r}, {n_reduce}) returned {result!r}, "
                f"expected an int in range(0, {n_reduce})"
            )
        return result


def _as_value(value: object) -> Value | None:
    """`value` as an exact str, int or float (subclasses, such as an IntEnum, converted: the wire encodes
    only the exact types), or None when it cannot be one: a bool, an int beyond 64 bits, anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value) if INT_MIN <= value <= INT_MAX else None
    if isinstance(value, float):
        return float(value)
    return None


def _as_output(name: str, key: str, result: object) -> Value:
    """A reduce result of a subclass of str, int or float, as the exact type (it is only written out, so
    any int will do); anything else is an AppError."""
    if isinstance(result, bool) or not isinstance(result, str | int | float):
        raise AppError(f"app {name!r}: reduce({key!r}, ...) returned {result!r}, expected a str, an int or a float")
    return str(result) if isinstance(result, str) else int(result) if isinstance(result, int) else float(result)


def _declares(fn: Callable[..., object], param: str) -> bool:
    """Whether `fn` has a parameter `param` that can be passed by keyword."""
    try:
        found = inspect.signature(fn).parameters.get(param)
    except (TypeError, ValueError):
        return False
    return found is not None and found.kind in (found.POSITIONAL_OR_KEYWORD, found.KEYWORD_ONLY)


def _checked_pairs(app: App, pairs: Iterator[Any]) -> Iterator[tuple[str, Value]]:
    """Turn a broken map result into an AppError that says what was expected, not a crash far away."""
    for pair in pairs:
        yield app.check_pair(pair)


def load_app(spec: str) -> App:
    """Load and check the app named by `spec`: a path ending in .py, or an importable module name."""
    module = _import_file(spec) if _is_path(spec) else _import_name(spec)
    return _app_from_module(spec, module)


def _is_path(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or os.sep in spec


def _import_file(spec: str) -> ModuleType:
    """Run the file as a module under a fresh unique name, kept in sys.modules so it can ship by value."""
    if not os.path.isfile(spec):
        raise AppError(f"app file {spec!r} does not exist (or is not a file)")
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(spec))[0])
    name = f"_zmr_app_{stem}_{secrets.token_hex(6)}"
    loader_spec = importlib.util.spec_from_file_location(name, os.path.abspath(spec))
    if loader_spec is None or loader_spec.loader is None:
        raise AppError(f"app file {spec!r} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module
    folder = os.path.dirname(os.path.abspath(spec))
    sys.path.insert(0, folder)
    try:
        loader_spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        del sys.modules[name]
        raise _import_failure(spec, exc) from exc
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
    return module


def _import_name(spec: str) -> ModuleType:
    """Import a module by name with the working directory first on sys.path, as `python -m` would."""
    if not _MODULE_NAME.fullmatch(spec):
        raise AppError(f"app {spec!r} is neither a path ending in .py nor a module name like apps.wc")
    cwd = os.getcwd()
    sys.path.insert(0, cwd)
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (spec == exc.name or spec.startswith(exc.name + ".")):
            raise AppError(f"app module {spec!r} not found (looked in {cwd} and on sys.path)") from exc
        raise _import_failure(spec, exc) from exc
    except (Exception, SystemExit) as exc:
        raise _import_failure(spec, exc) from exc
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(cwd)


def _import_failure(spec: str, exc: BaseException) -> AppError:
    """An AppError carrying the app's traceback, without the import machinery's frames in front."""
    text = "".join(traceback.format_exception(type(exc), exc, first_frame_not(exc.__traceback__, _is_loader_frame)))
    return AppError(f"app {spec!r} failed to import:\n{text}")


def first_frame_not(tb: TracebackType | None, skipped: Callable[[str], bool]) -> TracebackType | None:
    """The traceback from its first frame whose file `skipped` does not match: where the app's code begins,
    past the frames of the machinery that called it (None if every frame is the machinery's)."""
    while tb is not None and skipped(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return tb


def _is_loader_frame(filename: str) -> bool:
    return filename == __file__ or "importlib" in filename


def app_of(app: App | str | ModuleType) -> App:
    """An app from what a user passes: an App, a spec for `load_app`, or an imported module object."""
    if isinstance(app, App):
        return app
    if isinstance(app, str):
        return load_app(app)
    if isinstance(app, ModuleType):
        return _app_from_module(app.__name__, app)
    raise AppError(f"an app is a module, a path ending in .py or a module name, got {type(app).__name__} {app!r}")


def _app_from_module(spec: str, module: ModuleType) -> App:
    optional = {name: _function(spec, module, name)
                for name in ("map_batch", "partition_batch", "combine", "partition", "format_output", "steps")}
    batch, steps = optional.pop("map_batch"), optional.pop("steps")
    if steps is not None and batch is not None:
        raise AppError(f"app {spec!r}: a multi-step app (steps) has no map_batch; its steps map pairs")
    optional["map_batch"] = batch
    for required in ("map", "reduce"):
        fn = getattr(module, required, None)
        if (batch is not None or steps is not None) and fn is None:
            continue
        if fn is None or not callable(fn):
            what = "is missing" if fn is None else f"is not a function ({type(fn).__name__})"
            raise AppError(
                f"app {spec!r}: `{required}` {what}; an app defines map(filename, contents) "
                "-> iterable of (key, value) and reduce(key, values) -> value (or a batch app "
                "map_batch(filename, contents) -> (keys, values), and reduce if it reduces)"
            )
    if batch is not None and optional["combine"] is not None:
        raise AppError(f"app {spec!r}: a batch app (map_batch) has no combine; its reduce runs on the whole group")
    if optional["partition_batch"] is not None and batch is None:
        raise AppError(f"app {spec!r}: partition_batch goes with map_batch; a pair app defines partition(key, n)")
    fns = {"map": getattr(module, "map", None), "reduce": getattr(module, "reduce", None),
           **{name: fn for name, fn in optional.items() if name != "format_output"}}
    return App(
        name=spec,
        module=module.__name__,
        map_fn=fns["map"],
        reduce_fn=fns["reduce"],
        combine_fn=optional["combine"],
        partition_fn=optional["partition"],
        format_fn=optional["format_output"],
        map_batch_fn=batch,
        partition_batch_fn=optional["partition_batch"],
        takes_args=frozenset(role for role, fn in {**fns, "steps": steps}.items()
                             if fn is not None and _declares(fn, "args")),
        map_takes_first_line=fns["map"] is not None and _declares(fns["map"], "first_line"),
        input=input_format(getattr(module, "INPUT", None), spec),
        output_format=_output_format(spec, module),
        steps_fn=steps,
    )


def _function(spec: str, module: ModuleType, name: str) -> Callable[..., Any] | None:
    fn = getattr(module, name, None)
    if fn is not None and not callable(fn):
        raise AppError(f"app {spec!r}: `{name}` must be a function, got {type(fn).__name__}")
    return fn


def _output_format(spec: str, module: ModuleType) -> str:
    from zmr.output_formats import OUTPUT_FORMATS

    value = getattr(module, "OUTPUT_FORMAT", "")
    if value and value not in OUTPUT_FORMATS:
        raise AppError(f"app {spec!r}: OUTPUT_FORMAT = {value!r} is not one of {', '.join(OUTPUT_FORMATS)}")
    return str(value)


def ship_app(app_or_spec: App | str) -> bytes:
    """Pickle the app by value, with the modules beside it that it uses (see `companions`), so a worker
    without the app's files (or modules) can run it."""
    app = load_app(app_or_spec) if isinstance(app_or_spec, str) else app_or_spec
    module = sys.modules.get(app.module)
    registered = set(cloudpickle.list_registry_pickle_by_value())
    travelling = [] if module is None or app.module == "__main__" else [module, *companions(module)]
    by_value = [m for m in travelling if m.__name__ not in registered]
    for mod in by_value:
        cloudpickle.register_pickle_by_value(mod)
    if module is not None and module in by_value:
        app = dataclasses.replace(app, source_file=getattr(module, "__file__", None) or "")
    try:
        blob: bytes = cloudpickle.dumps(app)
    except Exception as exc:
        raise AppError(f"app {app.name!r} cannot be shipped: {exc}") from exc
    finally:
        for mod in by_value:
            cloudpickle.unregister_pickle_by_value(mod)
    if by_value:
        _check_unpacks_alone(app, blob, [m.__name__ for m in by_value])
    return blob


def companions(module: ModuleType) -> list[ModuleType]:
    """The modules an app module uses, directly or through one another, that live in its own folder (for
    a module of a package, the package's folder) and are not installed: a worker has no copy of them, so
    they travel by value with the app. Found through the module's globals: a module imported (`import
    helper`) or a function or class taken from one (`from helper import tokenize`)."""
    if not module.__file__:
        return []
    home = _package_home(module) if module.__package__ else os.path.dirname(os.path.abspath(module.__file__))
    if not home:
        return []
    installed = {os.path.abspath(p) for key in ("purelib", "platlib", "stdlib", "platstdlib")
                 if (p := sysconfig.get_paths().get(key))}
    found: dict[str, ModuleType] = {}
    todo = [module]
    while todo:
        for value in list(vars(todo.pop()).values()):
            name = value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", None)
            used = sys.modules.get(name) if isinstance(name, str) else None
            if (used is None or used is module or name in found or name == "zmr" or str(name).startswith("zmr.")
                    or not _lives_in(used, home, installed)):
                continue
            found[str(name)] = used
            todo.append(used)
    return list(found.values())


def _package_home(module: ModuleType) -> str:
    """The folder of the top package of a module such as `apps.wc` (where its siblings live)."""
    top = sys.modules.get((module.__package__ or "").split(".")[0])
    file = getattr(top, "__file__", None)
    return os.path.dirname(os.path.abspath(file)) if file else ""


def _lives_in(module: ModuleType, home: str, installed: set[str]) -> bool:
    file = getattr(module, "__file__", None)
    if not file:
        return False
    path = os.path.abspath(file)
    return _inside(path, home) and not any(_inside(path, place) for place in installed)


def _inside(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip(os.sep) + os.sep)


def _check_unpacks_alone(app: App, blob: bytes, names: list[str]) -> None:
    """Fail at submit, not on every worker, when the blob still needs the app's module or its companions.

    Some objects are pickled by reference even when their module is shipped by value, for example a
    function wrapped in `functools.lru_cache`; a worker has no such module to find them in. Here those
    modules are hidden (an import of one fails) while the blob is unpacked.
    """
    hidden = {name: sys.modules.get(name) for name in names}
    for name in names:
        sys.modules[name] = None  # type: ignore[assignment]   # import fails, as on a worker without it
    try:
        cloudpickle.loads(blob)
    except Exception as exc:
        raise AppError(f"app {app.name!r} cannot be shipped: a worker could not unpack it ({type(exc).__name__}: "
                       f"{exc}); objects such as functools.lru_cache wrappers travel by reference, so "
                       "define them inside a function or use a plain dict") from exc
    finally:
        for name, mod in hidden.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod


def unship_app(blob: bytes) -> App:
    """Rebuild an app from `ship_app`'s bytes; a broken blob is an AppError, never a crash."""
    try:
        app = cloudpickle.loads(blob)
    except Exception as exc:
        raise AppError(f"cannot unpack the shipped app: {type(exc).__name__}: {exc}") from exc
    if not isinstance(app, App):
        raise AppError(f"shipped app unpacked to a {type(app).__name__}, not an App")
    if app.source_file:
        _name_source_file(app)
    return app


_SHIPPED_CODE = "<dynamic-code>"   # the file name cloudpickle (3.1.3 on) gives all code it ships by value


def _name_source_file(app: App) -> None:
    """Give the app's shipped code its file name back, so a traceback from the app points into its file."""

    def code_of(code: types.CodeType) -> types.CodeType:
        if code.co_filename != _SHIPPED_CODE:
            return code
        consts = tuple(code_of(c) if isinstance(c, types.CodeType) else c for c in code.co_consts)
        return code.replace(co_filename=app.source_file, co_consts=consts)

    seen: set[int] = set()
    todo: list[Any] = [app.map_fn, app.reduce_fn, app.combine_fn, app.partition_fn, app.format_fn, app.map_batch_fn,
                       app.partition_batch_fn, app.steps_fn]
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, staticmethod | classmethod):
            todo.append(obj.__func__)
        elif isinstance(obj, functools.partial):
            todo.append(obj.func)
        elif isinstance(obj, types.FunctionType) and obj.__code__.co_filename == _SHIPPED_CODE:
            obj.__code__ = code_of(obj.__code__)
            todo.extend(obj.__globals__.values())
            todo.extend(cell.cell_contents for cell in obj.__closure__ or () if _filled(cell))
        elif isinstance(obj, type) and obj.__module__ == app.module:
            todo.extend(vars(obj).values())
        elif isinstance(obj, property):
            todo.extend((obj.fget, obj.fset, obj.fdel))


def _filled(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True
