"""Configuration: the one typed, validated `Config` every zmr process runs on.

A `Config` is built from four layers, later ones winning: the dataclass defaults, a TOML file, `ZMR_*`
environment variables and command-line flags. Every setting is declared exactly once, as a field of a frozen
section dataclass with its documentation in the field metadata; TOML keys, environment variable names,
`settings()` and `render_toml()` are all derived from those fields, so they cannot drift apart.

Values are validated when a section is constructed, so an invalid `Config` cannot exist. Errors are
`ConfigError`s that name the setting and, when loading, where the bad value came from.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import textwrap
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeAlias, get_args, get_origin, get_type_hints

import msgspec

from zmr.core.specs import (
    DEFAULT_MAX_APP_BYTES,
    DEFAULT_MAX_MAP_TASKS,
    DEFAULT_MAX_N_REDUCE,
    DEFAULT_N_REDUCE,
    SpecLimits,
    n_reduce_below_one,
)
from zmr.core.splits import DEFAULT_SPLIT_SIZE
from zmr.errors import ConfigError
from zmr.protocol.messages import Compression

KiB = 1024
MiB = 1024 * KiB

ShuffleMode = Literal["push", "barrier"]
LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["console", "json"]

Check: TypeAlias = Callable[[Any], str | None]
"""A range check: returns what is wrong with a (well-typed) value, or None."""

# Keys that no longer exist, and why: a config that still sets one fails like any unknown key, saying so.
_REMOVED: dict[str, str] = {}

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def _positive(value: float) -> str | None:
    return None if value > 0 else f"must be > 0, got {value!r}"


def _at_least(bound: int) -> Check:
    def check(value: float) -> str | None:
        return None if value >= bound else f"must be >= {bound}, got {value!r}"

    return check


def _endpoint(value: str) -> str | None:
    return endpoint_problem(value)


def endpoint_problem(value: str, connect: bool = False) -> str | None:
    """What is wrong with a ZeroMQ endpoint (None: nothing), with the likely fix; `connect`: it is
    connected to, so a tcp port must be a number (a bind may say '*')."""
    transport, sep, address = value.partition("://")
    if not (sep and address and transport in {"tcp", "ipc", "inproc"}):
        hint = f" (did you mean 'tcp://{value}'?)" if not sep and ":" in value else ""
        return f"must be a ZeroMQ endpoint like 'tcp://host:port', got {value!r}{hint}"
    if transport == "tcp":
        host, colon, port = address.rpartition(":")
        if not (colon and host) or not (port == "*" and not connect or port.isdigit() and 0 < int(port) < 65536):
            return (f"must be 'tcp://host:port' with a port from 1 to 65535{'' if connect else ' or *'}, "
                    f"got {value!r}")
    return None


def advertise_problem(value: str) -> str | None:
    """What is wrong with `worker.advertise` (a host, or an endpoint to connect to), or None."""
    if "://" in value:
        return endpoint_problem(value, connect=True)
    if value and (any(c in value for c in " /*") or value.startswith(":")):
        return f"must be a host ('10.0.0.5', 'node1.example') or an endpoint 'tcp://host:port', got {value!r}"
    return None


def dashboard_problem(value: str) -> str | None:
    """What is wrong with a dashboard address ('' turns it off), or None."""
    if not value:
        return None
    scheme, sep, rest = value.partition("://")
    host, colon, port = rest.rstrip("/").rpartition(":")
    if scheme != "http" or not sep or not colon or not host or not (port.isdigit() and int(port) < 65536):
        return f"must be 'http://host:port' (port 0 picks a free one) or '' for no dashboard, got {value!r}"
    return None


def _setting(default: Any, doc: str, unit: str = "", check: Check | None = None) -> Any:
    """Declare one setting: its default, what it means, its unit and its range check."""
    return field(default=default, metadata={"doc": doc, "unit": unit, "check": check})


class _FieldError(ConfigError):
    """A validation error that knows which setting it is about, so the loader can say where it came from."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name} {problem}")
        self.name = name


@dataclass(frozen=True)
class _Section:
    """Checks types and ranges of every field on construction; subclasses add cross-field rules."""

    SECTION: ClassVar[str]

    def __post_init__(self) -> None:
        hints = get_type_hints(type(self))
        for f in dataclasses.fields(self):
            name = f"{self.SECTION}.{f.name}"
            value = getattr(self, f.name)
            if hints[f.name] is float and _is_int(value):
                value = float(value)
                object.__setattr__(self, f.name, value)
            if get_origin(hints[f.name]) is tuple:   # a list (from TOML, say): checked and made immutable
                try:
                    value = msgspec.convert(value, hints[f.name], strict=True)
                except msgspec.ValidationError as exc:
                    raise _FieldError(name, f"must be {_describe(hints[f.name])}: {exc}") from None
                object.__setattr__(self, f.name, value)
            check: Check | None = f.metadata["check"]
            problem = _type_problem(value, hints[f.name]) or (check(value) if check else None)
            if problem:
                raise _FieldError(name, problem)
        self._check()

    def _check(self) -> None:
        """Rules that involve more than one field of the section."""


@dataclass(frozen=True)
class CoordinatorConfig(_Section):
    """The coordinator: control-plane endpoint and failure detection."""

    SECTION: ClassVar[str] = "coordinator"
    bind: str = _setting(
        "tcp://127.0.0.1:5555",
        "Control-plane endpoint the coordinator binds; clients and workers connect to it. Loopback by "
        "default: jobs carry code, so any other address needs CurveZMQ keys.",
        check=_endpoint,
    )
    heartbeat_interval: float = _setting(
        0.5, "Time between heartbeats, sent both ways between coordinator and each worker.", "s", _positive
    )
    heartbeat_liveness: int = _setting(
        6, "Heartbeats missed in a row before a peer is declared dead.", "beats", _at_least(1)
    )
    task_timeout: float = _setting(
        10.0, "Time without a progress report before a running task is rescheduled.", "s", _positive
    )
    max_message_bytes: int = _setting(
        16 * MiB, "Largest control-plane message accepted; larger ones are dropped.", "bytes", _at_least(KiB)
    )
    state_dir: str = _setting(
        "",
        "Directory of the coordinator's journal. A coordinator restarted with the same directory recovers "
        "every job; empty keeps state in memory only (a restart forgets all jobs).",
    )
    recover_damaged_journal: bool = _setting(
        False,
        "Start even if the journal in state_dir is damaged before its end (not just a torn last write): keep "
        "the intact records before the damage and move the damaged file aside as journal.damaged-<time> in "
        "state_dir. What was recorded after the damage is forgotten (a job whose _SUCCESS is in its output "
        "directory is still never run again): turn this on for one start, after looking at the file.",
    )
    lease_ttl: float = _setting(
        30.0,
        "Lifetime of a job's leases on a worker unless the coordinator renews them (it does, every "
        "heartbeat). A worker that stops hearing renewals deletes the job's intermediate data after this.",
        "s", _positive,
    )
    recovery_grace: float = _setting(
        10.0,
        "After a restart, how long the coordinator waits for a worker named in its journal to come back "
        "before its work is redone elsewhere.",
        "s", _positive,
    )
    check_worker_addresses: bool = _setting(
        True,
        "Try each new worker's data address from the coordinator's host when it registers; a worker it "
        "cannot connect to is refused (it is told why and shown as unreachable in zmr status) instead of "
        "hanging the shuffles of its peers.",
    )

    dashboard: str = _setting(
        "http://127.0.0.1:8787",
        "Where the coordinator serves its web dashboard, JSON status and Prometheus metrics: "
        "'http://host:port' (port 0 or a busy port: a free one, which is logged), or '' for none. Beyond "
        "loopback every request needs the dashboard token (see `zmr keys init`) unless security.insecure.",
        check=lambda value: dashboard_problem(value),
    )

    @property
    def dead_after(self) -> float:
        """Seconds of silence after which a peer is declared dead."""
        return self.heartbeat_interval * self.heartbeat_liveness


@dataclass(frozen=True)
class WorkerConfig(_Section):
    """A worker: where it finds the coordinator, where it keeps data, how much memory it may use."""

    SECTION: ClassVar[str] = "worker"
    coordinator: str = _setting(
        "tcp://127.0.0.1:5555", "Coordinator endpoint to connect to.", check=_endpoint
    )
    work_dir: str = _setting(
        "", "Directory for spill files and scratch data; empty means a fresh temporary directory."
    )
    data_bind: str = _setting(
        "tcp://127.0.0.1:*",
        "Data-plane endpoint for the peer-to-peer shuffle; port '*' picks a free port, which the worker "
        "advertises when it registers.",
        check=_endpoint,
    )
    advertise: str = _setting(
        "",
        "Address peers reach the data endpoint at, when it is not the bound one (bound to 0.0.0.0, or behind "
        "NAT): a host ('10.0.0.5', keeping the bound port) or a whole endpoint ('tcp://203.0.113.7:7000'). "
        "Empty: the bound address (a wildcard bind names this host's hostname).",
        check=advertise_problem,
    )
    memory_budget_mb: int = _setting(
        256, "Shuffle buffer memory; past it, sorted runs are spilled to work_dir.", "MiB", _at_least(1)
    )
    max_message_bytes: int = _setting(
        64 * MiB, "Largest data-plane frame accepted from a peer.", "bytes", _at_least(KiB)
    )
    task_memory_mb: int = _setting(
        0, "Address-space cap (RLIMIT_AS) of the worker's task process, where app code runs; over it the "
        "attempt fails with a MemoryError naming this key and the worker goes on. 0 means no cap.",
        "MiB", _at_least(0)
    )


@dataclass(frozen=True)
class ShuffleConfig(_Section):
    """How map output travels to the owners of reduce partitions."""

    SECTION: ClassVar[str] = "shuffle"
    mode: ShuffleMode = _setting(
        "push",
        "push: mappers stream batches to partition owners while maps run; barrier: the shuffle starts "
        "only when every map task has committed.",
    )
    batch_bytes: int = _setting(
        1 * MiB,
        "A partition's buffered map output is sent once it reaches this size.",
        "bytes",
        _at_least(KiB),
    )
    window_bytes: int = _setting(
        8 * MiB,
        "Unacknowledged bytes in flight from one sender to one receiver (credit window); at least "
        "batch_bytes.",
        "bytes",
        _at_least(KiB),
    )
    compression: Compression = _setting(
        "auto",
        "How map output is compressed on the wire and on disk: auto (lz4 while it pays: a map stops "
        "trying for a while after a chunk it does not shrink), none, lz4 (cheap; pays on links slower "
        "than about 1 Gbit/s, and on disks a job's data outgrows the page cache of) or zstd (smaller, "
        "slower; for slow links). A chunk that compression does not shrink by an eighth stays raw.",
    )
    replicate: bool = _setting(
        False,
        "A mapper also pushes the output of the partitions it owns itself to a second worker, so that when "
        "it dies the new owners of its partitions need not wait for its maps to run again (they run all the "
        "same, for the next death). Costs 1/workers more shuffle bytes.",
    )

    def _check(self) -> None:
        if self.window_bytes < self.batch_bytes:
            raise _FieldError(
                "shuffle.window_bytes",
                f"must be >= shuffle.batch_bytes ({self.batch_bytes}), got {self.window_bytes}",
            )


@dataclass(frozen=True)
class JobConfig(_Section):
    """Defaults for jobs submitted from the command line."""

    SECTION: ClassVar[str] = "job"
    split_size_mb: int = _setting(
        DEFAULT_SPLIT_SIZE >> 20,
        "Input files larger than this are cut into equal map tasks no larger than it (the last two of a job "
        "in quarters).",
        "MiB",
        _at_least(1),
    )
    n_reduce: int = _setting(
        DEFAULT_N_REDUCE, "Number of reduce partitions when a job does not say.", check=n_reduce_below_one
    )
    max_n_reduce: int = _setting(
        DEFAULT_MAX_N_REDUCE,
        "Most reduce partitions a job may have. Each costs the coordinator a task record, a status row and "
        "an entry in the owner table every worker is sent; a job over it is refused when submitted.",
        check=_at_least(1),
    )
    max_map_tasks: int = _setting(
        DEFAULT_MAX_MAP_TASKS,
        "Most map tasks a job may have (each input file is at least one, a large file one per split). Each "
        "costs the coordinator a task record and a line of the submitted spec; a job over it is refused "
        "when submitted, before its files are opened.",
        check=_at_least(1),
    )
    max_app_bytes: int = _setting(
        DEFAULT_MAX_APP_BYTES,
        "Largest shipped (pickled) app; a larger one is refused when submitted. The app travels inside the "
        "submit message and each worker's job set-up, so keep it well under coordinator.max_message_bytes "
        "(the smaller of the two bounds an app).",
        "bytes",
        _at_least(KiB),
    )

    @property
    def limits(self) -> SpecLimits:
        """The bounds a job spec is checked against, on the client and on the coordinator."""
        return SpecLimits(self.max_n_reduce, self.max_map_tasks, self.max_app_bytes)


@dataclass(frozen=True)
class RetryPolicy(_Section):
    """When a failed task is tried again, and when the job gives up on it.

    Only the numbers: the backoff rule that uses them is SchedulerParams.retry_delay in zmr.core.params.
    """

    SECTION: ClassVar[str] = "retry"
    max_attempts: int = _setting(
        4, "Attempts of a task whose app code fails before the job fails.", check=_at_least(1)
    )
    base: float = _setting(
        0.5, "Backoff after the first failure; it doubles with each further one.", "s", _positive
    )
    cap: float = _setting(10.0, "Longest backoff between attempts.", "s", _positive)
    max_worker_losses: int = _setting(
        8, "Times the workers running a task may die before the job fails.", check=_at_least(1)
    )

    def _check(self) -> None:
        if self.cap < self.base:
            raise _FieldError("retry.cap", f"must be >= retry.base ({self.base}), got {self.cap}")


@dataclass(frozen=True)
class SpeculationConfig(_Section):
    """Stragglers: backup attempts near the end of a phase (the first attempt to commit wins), and
    restarts of maps far slower than the rest while every worker is busy."""

    SECTION: ClassVar[str] = "speculation"
    enabled: bool = _setting(True, "Start backup attempts of slow tasks, and restart slow maps.")
    slow_factor: float = _setting(
        3.0,
        "A task running longer than this times the median time of its phase's finished tasks may get a "
        "backup; a map moving at under 1/this of the median pace of its job's finished maps may be "
        "restarted.",
        "x median",
        _at_least(1),
    )
    min_elapsed: float = _setting(
        2.0, "A task that has run less than this never gets a backup or a restart.", "s", _at_least(0)
    )


class ClusterHost(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One worker host of `cluster.hosts`, started over SSH by `zmr cluster up`."""

    address: str   # where its peers reach it: its workers advertise it (worker.advertise)
    workers: Annotated[int, msgspec.Meta(ge=1)] = 1
    data_bind: str = "tcp://0.0.0.0:*"   # its workers' data endpoint (port '*': each picks a free one)
    ssh: str = ""   # the ssh destination, [user@]host (default: address)

    def problem(self) -> str | None:
        if self.workers > 1 and self.data_bind.startswith("tcp://") and not self.data_bind.endswith(":*"):
            return f"has {self.workers} workers but a fixed data port ({self.data_bind}): use port '*'"
        return ((advertise_problem(self.address) if self.address else "needs an address")
                or endpoint_problem(self.data_bind))

    def destination(self) -> str:
        return self.ssh or self.address


def _hosts_problem(hosts: tuple[ClusterHost, ...]) -> str | None:
    return next((f"host {h.address or i} {problem}" for i, h in enumerate(hosts) if (problem := h.problem())), None)


@dataclass(frozen=True)
class ClusterConfig(_Section):
    """A cluster started by `zmr cluster up` (or `zmr run`): workers here, and on hosts over SSH."""

    SECTION: ClassVar[str] = "cluster"
    workers: int = _setting(
        0, "Workers to start on this machine; 0 means one per CPU core, or none when hosts are listed.",
        check=_at_least(0))
    hosts: tuple[ClusterHost, ...] = _setting(
        (), "Worker hosts that `zmr cluster up` starts workers on over SSH, each a table: address (where "
        "peers reach it), workers (default 1), data_bind (default 'tcp://0.0.0.0:*'), ssh (the destination, "
        "default the address). Each runs worker_command with this config's settings as flags.",
        check=_hosts_problem)
    ssh_command: tuple[str, ...] = _setting(
        ("ssh", "-o", "BatchMode=yes", "-o", "ServerAliveInterval=5"),
        "The OpenSSH client and its options, run as SSH_COMMAND -tt DESTINATION -- COMMAND for each worker on "
        "a host.", check=lambda value: None if value else "must name the ssh client")
    worker_command: str = _setting(
        "zmr-worker", "The worker command on the hosts (an absolute path if it is not on their PATH).",
        check=lambda value: None if value.strip() else "must not be empty")

    def worker_count(self, with_hosts: bool = True) -> int:
        """Workers to start on this machine: `workers`, 0 resolved to one per CPU core, or to none when
        hosts are listed and will be started too (`with_hosts`)."""
        return self.workers or (0 if self.hosts and with_hosts else os.cpu_count() or 1)


@dataclass(frozen=True)
class LogConfig(_Section):
    """Logging, set up by `zmr.log.configure_logging`."""

    SECTION: ClassVar[str] = "log"
    level: LogLevel = _setting("info", "Lowest level logged.")
    format: LogFormat = _setting("console", "console for people, json (one object per line) for machines.")


@dataclass(frozen=True)
class SecurityConfig(_Section):
    """Who may talk to the cluster: CurveZMQ keys, and the loopback-only default."""

    SECTION: ClassVar[str] = "security"
    keys_dir: str = _setting(
        "", "Directory made by `zmr keys init`; when set, every socket encrypts and accepts only listed keys."
    )
    insecure: bool = _setting(
        False, "Allow binding a non-loopback address without keys: anyone who reaches it can run code."
    )
    worker_key: str = _setting(
        "", "A worker's key pair in keys_dir, e.g. worker-host1 (default: worker, else the one worker-* pair there)."
    )


@dataclass(frozen=True)
class Config:
    """Everything a zmr process is configured with; one field per TOML section."""

    coordinator: CoordinatorConfig = field(default_factory=CoordinatorConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    shuffle: ShuffleConfig = field(default_factory=ShuffleConfig)
    job: JobConfig = field(default_factory=JobConfig)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    speculation: SpeculationConfig = field(default_factory=SpeculationConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    log: LogConfig = field(default_factory=LogConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)

    def __post_init__(self) -> None:
        for section, cls in _sections().items():
            if not isinstance(getattr(self, section), cls):
                raise ConfigError(
                    f"Config.{section} must be a {cls.__name__}, got {getattr(self, section)!r}"
                )
        if self.shuffle.batch_bytes >= self.worker.max_message_bytes:
            raise _FieldError(
                "shuffle.batch_bytes",
                f"must be < worker.max_message_bytes ({self.worker.max_message_bytes}) since a batch "
                f"travels in one data-plane frame, got {self.shuffle.batch_bytes}",
            )

    def with_overrides(self, overrides: Mapping[str, Any]) -> Config:
        """A new validated config with `"section.key"` values replaced; None values are skipped."""
        layers = {s.name: (getattr(getattr(self, s.section), s.key), "") for s in settings()}
        layers.update(_from_overrides(overrides))
        return _build(layers)


@dataclass(frozen=True)
class Setting:
    """One configurable value, described from its dataclass field."""

    section: str
    key: str
    type: Any
    default: Any
    doc: str
    unit: str

    @property
    def name(self) -> str:
        """The dotted name used for flag overrides and in error messages, e.g. 'worker.work_dir'."""
        return f"{self.section}.{self.key}"

    @property
    def env_var(self) -> str:
        """The environment variable that sets it, e.g. 'ZMR_WORKER_WORK_DIR'."""
        return f"ZMR_{self.section}_{self.key}".upper()


def setting_flags(config: Config, skip: frozenset[str] = frozenset()) -> list[str]:
    """`--set name=value` flags that give another process this config's settings where they are not the
    defaults (but for the names in `skip` and the [cluster] section, which only a launcher reads)."""
    flags = []
    for s in settings():
        value = getattr(getattr(config, s.section), s.key)
        if s.section != "cluster" and s.name not in skip and value != s.default:
            flags += ["--set", f"{s.name}={value if isinstance(value, str) else _toml_value(value)}"]
    return flags


def settings() -> tuple[Setting, ...]:
    """Every setting, in declaration order, derived from the section dataclasses."""
    return tuple(s for cls in _sections().values() for s in _section_settings(cls))


def load_config(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the config. Precedence: flags > environment > file > defaults.

    `env` defaults to os.environ; `overrides` are flag values keyed 'section.key', None meaning "not given".
    """
    layers: dict[str, tuple[Any, str]] = {}
    if path is not None:
        layers.update(_from_file(Path(path)))
    layers.update(_from_env(os.environ if env is None else env))
    layers.update(_from_overrides(overrides or {}))
    return _build(layers)


def render_toml(config: Config | None = None) -> str:
    """A TOML document of `config` (default: the defaults) documenting every key: meaning, unit, default."""
    config = Config() if config is None else config
    lines: list[str] = []
    for section, cls in _sections().items():
        lines += ["", f"# {_docstring(cls)}", f"[{section}]"]
        for s in _section_settings(cls):
            lines += textwrap.wrap(s.doc, 106, initial_indent="# ", subsequent_indent="# ")
            lines.append(f"#   {_facts(s)}")
            lines.append(f"{s.key} = {_toml_value(getattr(getattr(config, section), s.key))}")
    return "\n".join(lines).lstrip("\n") + "\n"


def _facts(s: Setting) -> str:
    facts = [f"unit: {s.unit}"] if s.unit else []
    if get_origin(s.type) is Literal:
        facts.append("one of: " + ", ".join(map(_toml_value, get_args(s.type))))
    default = _toml_value(s.default)
    if s.unit == "bytes" and s.default % KiB == 0:
        default += f" ({s.default // MiB} MiB)" if s.default % MiB == 0 else f" ({s.default // KiB} KiB)"
    facts += [f"default: {default}", f"env: {s.env_var}"]
    return "; ".join(facts)


# --- layers -------------------------------------------------------------------------------------------------


def _from_file(path: Path) -> Iterator[tuple[str, tuple[Any, str]]]:
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML in {path}: {exc}") from exc
    known = {s.name: s for s in settings()}
    for section, table in doc.items():
        if section not in _sections():
            raise ConfigError(f"unknown section [{section}] in {path}{_suggest(section, _sections())}")
        if not isinstance(table, dict):
            raise ConfigError(f"'{section}' in {path} must be a [{section}] table, got {table!r}")
        for key, value in table.items():
            name = f"{section}.{key}"
            if name not in known:
                raise ConfigError(f"unknown key '{name}' in {path}{_suggest(name, known)}")
            yield name, (value, str(path))


def _from_env(env: Mapping[str, str]) -> Iterator[tuple[str, tuple[Any, str]]]:
    for s in settings():
        if s.env_var in env:
            yield s.name, (_parse_text(env[s.env_var], s, s.env_var), s.env_var)


def _from_overrides(overrides: Mapping[str, Any]) -> Iterator[tuple[str, tuple[Any, str]]]:
    known = {s.name: s for s in settings()}
    for name, value in overrides.items():
        if name not in known:
            raise ConfigError(f"unknown setting '{name}'{_suggest(name, known)}")
        if value is None:
            continue
        origin = f"flag {name}"
        if isinstance(value, str):
            value = _parse_text(value, known[name], origin)
        yield name, (value, origin)


def _build(layers: Mapping[str, tuple[Any, str]]) -> Config:
    """Construct (and so validate) the config; a validation error names the layer the bad value came from."""
    try:
        sections: dict[str, Any] = {
            section: cls(**{k: v for k, (v, _) in _in_section(layers, section)})
            for section, cls in _sections().items()
        }
        return Config(**sections)
    except _FieldError as exc:
        origin = layers.get(exc.name, (None, ""))[1]
        if not origin:
            raise
        raise ConfigError(f"{exc} (from {origin})") from None


def _in_section(layers: Mapping[str, tuple[Any, str]], section: str) -> Iterator[tuple[str, tuple[Any, str]]]:
    for name, entry in layers.items():
        head, _, key = name.partition(".")
        if head == section:
            yield key, entry


# --- types --------------------------------------------------------------------------------------------------


def _parse_text(text: str, setting: Setting, origin: str) -> Any:
    """Convert a string from the environment or a flag to the setting's type."""
    t = setting.type
    try:
        if t is bool:
            word = text.strip().lower()
            if word not in _TRUE | _FALSE:
                raise ValueError(text)
            return word in _TRUE
        if t is int:
            return int(text.strip())
        if t is float:
            return float(text.strip())
        if get_origin(t) is tuple:   # a TOML array, e.g. ["ssh", "-p", "2222"] or [{address = "10.0.0.2"}]
            return tomllib.loads(f"value = {text}")["value"]
    except (ValueError, tomllib.TOMLDecodeError):
        raise ConfigError(f"{origin}={text!r}: expected {_describe(t)} for {setting.name}") from None
    return text


def _type_problem(value: Any, t: Any) -> str | None:
    if get_origin(t) is Literal:
        allowed = get_args(t)
        return None if value in allowed else f"must be one of {', '.join(map(repr, allowed))}, got {value!r}"
    if t is float:
        ok = isinstance(value, float) and math.isfinite(value)
    elif t is int:
        ok = _is_int(value)
    elif get_origin(t) is tuple:
        ok = isinstance(value, tuple)   # its items were converted and checked in __post_init__
    else:
        ok = isinstance(value, t)
    return None if ok else f"must be {_describe(t)}, got {type(value).__name__} {value!r}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _describe(t: Any) -> str:
    if get_origin(t) is Literal:
        return "one of " + ", ".join(map(repr, get_args(t)))
    if get_origin(t) is tuple:
        return "a list of tables" if get_args(t)[0] is ClusterHost else "a list of strings"
    names = {bool: "a boolean (true/false/1/0/yes/no)", int: "an integer", float: "a finite number"}
    return names.get(t, "a string")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:_}"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, ClusterHost):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in msgspec.structs.asdict(value).items()) + "}"
    if isinstance(value, tuple):
        return "[" + ", ".join(map(_toml_value, value)) + "]"
    return json.dumps(value)


# --- reflection ---------------------------------------------------------------------------------------------


def _sections() -> dict[str, type[_Section]]:
    """Section name -> dataclass, in the order of `Config`'s fields."""
    hints = get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


def _section_settings(cls: type[_Section]) -> Iterator[Setting]:
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        yield Setting(cls.SECTION, f.name, hints[f.name], f.default, f.metadata["doc"], f.metadata["unit"])


def _docstring(cls: type) -> str:
    return (cls.__doc__ or cls.__name__).strip().splitlines()[0]


def _suggest(name: str, known: Mapping[str, Any]) -> str:
    """What to tell a user who named the unknown setting `name`: why it is gone, or a close known one."""
    if name in _REMOVED:
        return f" (it was removed: {_REMOVED[name]}; delete it)"
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
