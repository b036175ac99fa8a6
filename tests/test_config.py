"""Config: layers and precedence, strict file keys, environment parsing, validation, the example file."""

from __future__ import annotations

import dataclasses
import re
import socket
from pathlib import Path
from typing import get_type_hints

import pytest

import zmr.config as config_module
from zmr.config import (
    ClusterConfig,
    Config,
    MiB,
    RetryPolicy,
    ShuffleConfig,
    load_config,
    render_toml,
    settings,
)
from zmr.errors import ConfigError
from zmr.runtime.coordinator import scheduler_params

LOCAL_TOML = Path(__file__).resolve().parents[1] / "configs" / "local.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "zmr.toml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    config = load_config(env={})
    assert config == Config()
    assert config.coordinator.bind == "tcp://127.0.0.1:5555"
    assert config.coordinator.heartbeat_interval == 0.5
    assert config.coordinator.heartbeat_liveness == 6
    assert config.coordinator.task_timeout == 10.0
    assert config.coordinator.max_message_bytes == 16 * MiB
    assert config.worker.work_dir == ""
    assert config.worker.data_bind == "tcp://127.0.0.1:*"
    assert config.worker.memory_budget_mb == 256
    assert config.worker.max_message_bytes == 64 * MiB
    assert config.shuffle == ShuffleConfig("push", MiB, 8 * MiB)
    assert (config.job.split_size_mb, config.job.n_reduce) == (16, 4)
    assert config.retry == RetryPolicy(4, 0.5, 10.0, 8)
    assert config.speculation.enabled is True
    assert (config.speculation.slow_factor, config.speculation.min_elapsed) == (3.0, 2.0)
    assert config.cluster.workers == 0
    assert (config.log.level, config.log.format) == ("info", "console")


def test_config_is_frozen() -> None:
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.log.level = "debug"  # type: ignore[misc]  # writing a frozen section, on purpose


def test_file_values_are_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[worker]\nwork_dir = "/data/zmr"\nmemory_budget_mb = 512\n'
        '[shuffle]\nmode = "barrier"\n[speculation]\nenabled = false\n',
    )
    config = load_config(path, env={})
    assert config.worker.work_dir == "/data/zmr"
    assert config.worker.memory_budget_mb == 512
    assert config.shuffle.mode == "barrier"
    assert config.speculation.enabled is False
    assert config.coordinator == Config().coordinator


def test_integer_in_file_is_accepted_for_a_float(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "[coordinator]\ntask_timeout = 30\n"), env={})
    assert config.coordinator.task_timeout == 30.0
    assert isinstance(config.coordinator.task_timeout, float)


def test_env_values_are_converted() -> None:
    env = {
        "ZMR_WORKER_WORK_DIR": "/tmp/w",
        "ZMR_COORDINATOR_BIND": "tcp://127.0.0.1:6000",
        "ZMR_COORDINATOR_HEARTBEAT_LIVENESS": "3",
        "ZMR_RETRY_BASE": "0.25",
        "ZMR_SPECULATION_ENABLED": "no",
        "ZMR_LOG_LEVEL": "debug",
    }
    config = load_config(env=env)
    assert config.worker.work_dir == "/tmp/w"
    assert config.coordinator.bind == "tcp://127.0.0.1:6000"
    assert config.coordinator.heartbeat_liveness == 3
    assert config.retry.base == 0.25
    assert config.speculation.enabled is False
    assert config.log.level == "debug"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("1", True), ("YES", True), ("false", False), ("0", False), ("no", False)],
)
def test_env_booleans(text: str, expected: bool) -> None:
    assert load_config(env={"ZMR_SPECULATION_ENABLED": text}).speculation.enabled is expected


def test_flags_are_applied_and_none_means_not_given() -> None:
    config = load_config(env={}, overrides={"cluster.workers": 3, "job.n_reduce": None, "log.format": "json"})
    assert config.cluster.workers == 3
    assert config.job.n_reduce == 4
    assert config.log.format == "json"


def test_string_flags_are_converted() -> None:
    config = load_config(env={}, overrides={"shuffle.batch_bytes": "4096", "speculation.enabled": "false"})
    assert config.shuffle.batch_bytes == 4096
    assert config.speculation.enabled is False


def test_precedence_flags_over_env_over_file_over_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "[job]\nn_reduce = 2\nsplit_size_mb = 8\n[cluster]\nworkers = 5\n")
    env = {"ZMR_JOB_N_REDUCE": "7", "ZMR_JOB_SPLIT_SIZE_MB": "16"}
    config = load_config(path, env=env, overrides={"job.n_reduce": 9})
    assert config.job.n_reduce == 9  # flag beats env and file
    assert config.job.split_size_mb == 16  # env beats file
    assert config.cluster.workers == 5  # file beats default
    assert config.log.level == "info"  # default


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, '[worker]\nwrk_dir = "/x"\n')
    with pytest.raises(ConfigError, match=re.escape(f"unknown key 'worker.wrk_dir' in {path}")) as info:
        load_config(path, env={})
    assert "did you mean 'worker.work_dir'" in str(info.value)


def test_a_removed_key_is_refused_saying_it_was_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(config_module._REMOVED, "shuffle.codec", "see shuffle.compression")
    path = write(tmp_path, '[shuffle]\ncodec = "none"\n')
    with pytest.raises(ConfigError, match=re.escape(f"unknown key 'shuffle.codec' in {path} (it was removed")):
        load_config(path, env={})
    with pytest.raises(ConfigError, match=re.escape("unknown setting 'shuffle.codec' (it was removed")):
        load_config(env={}, overrides={"shuffle.codec": "zlib"})


def test_shuffle_compression_names_a_codec() -> None:
    assert load_config(env={"ZMR_SHUFFLE_COMPRESSION": "lz4"}).shuffle.compression == "lz4"
    assert load_config(env={}, overrides={"shuffle.compression": "zstd"}).shuffle.compression == "zstd"
    with pytest.raises(ConfigError, match="shuffle.compression"):
        load_config(env={}, overrides={"shuffle.compression": "zlib"})


def test_unknown_section_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "[wrker]\nwork_dir = 1\n")
    with pytest.raises(ConfigError, match=re.escape(f"unknown section [wrker] in {path}")):
        load_config(path, env={})


def test_section_that_is_not_a_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'worker' in .* must be a \\[worker\\] table"):
        load_config(write(tmp_path, "worker = 3\n"), env={})


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ('[worker]\nmemory_budget_mb = "lots"', "worker.memory_budget_mb must be an integer"),
        ("[speculation]\nenabled = 1", "speculation.enabled must be a boolean"),
        ("[job]\nn_reduce = true", "job.n_reduce must be an integer"),
        ("[worker]\nwork_dir = 3", "worker.work_dir must be a string"),
        ("[coordinator]\ntask_timeout = nan", "coordinator.task_timeout must be a finite number"),
    ],
)
def test_wrong_type_in_file(tmp_path: Path, line: str, name: str) -> None:
    path = write(tmp_path, line + "\n")
    with pytest.raises(ConfigError, match=re.escape(name) + f".*\\(from {re.escape(str(path))}\\)"):
        load_config(path, env={})


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        load_config(path, env={})


def test_toml_syntax_error_names_the_path(tmp_path: Path) -> None:
    path = write(tmp_path, "[worker\nwork_dir = \n")
    with pytest.raises(ConfigError, match=f"invalid TOML in {re.escape(str(path))}"):
        load_config(path, env={})


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("ZMR_COORDINATOR_HEARTBEAT_LIVENESS", "six"),
        ("ZMR_RETRY_CAP", "ten"),
        ("ZMR_SPECULATION_ENABLED", "maybe"),
    ],
)
def test_bad_env_value_names_the_variable(var: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{var}='{value}'"):
        load_config(env={var: value})


def test_env_range_error_names_the_variable() -> None:
    with pytest.raises(
        ConfigError, match="heartbeat_interval must be > 0.*ZMR_COORDINATOR_HEARTBEAT_INTERVAL"
    ):
        load_config(env={"ZMR_COORDINATOR_HEARTBEAT_INTERVAL": "-1"})


def test_unrelated_zmr_variables_are_ignored() -> None:
    env = {"ZMR_FOO": "1", "ZMR_HOME": "/nowhere", "ZMR_WORKER": "x", "ZMR_WORKER_WRK_DIR": "/x"}
    assert load_config(env=env) == Config()


def test_unknown_flag_is_an_error() -> None:
    with pytest.raises(ConfigError, match="unknown setting 'cluster.wokers'"):
        load_config(env={}, overrides={"cluster.wokers": 2})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"coordinator.heartbeat_interval": 0.0}, "coordinator.heartbeat_interval must be > 0"),
        ({"coordinator.heartbeat_liveness": 0}, "coordinator.heartbeat_liveness must be >= 1"),
        ({"coordinator.task_timeout": -1.0}, "coordinator.task_timeout must be > 0"),
        ({"coordinator.bind": "localhost:5555"}, "coordinator.bind must be a ZeroMQ endpoint"),
        ({"shuffle.batch_bytes": 512}, "shuffle.batch_bytes must be >= 1024"),
        ({"shuffle.window_bytes": 4096}, "shuffle.window_bytes must be >= shuffle.batch_bytes"),
        ({"shuffle.mode": "pull"}, "shuffle.mode must be one of 'push', 'barrier'"),
        ({"log.level": "verbose"}, "log.level must be one of"),
        ({"log.format": "xml"}, "log.format must be one of 'console', 'json'"),
        ({"job.n_reduce": 0}, "job.n_reduce must be at least 1, got 0"),
        ({"retry.max_attempts": 0}, "retry.max_attempts must be >= 1"),
        ({"retry.cap": 0.1}, "retry.cap must be >= retry.base"),
        ({"cluster.workers": -1}, "cluster.workers must be >= 0"),
        ({"worker.memory_budget_mb": 0}, "worker.memory_budget_mb must be >= 1"),
        ({"worker.max_message_bytes": 1024 * 1024}, "shuffle.batch_bytes must be < worker.max_message_bytes"),
        ({"speculation.slow_factor": 0.5}, "speculation.slow_factor must be >= 1"),
    ],
)
def test_validation_errors(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(env={}, overrides=overrides)


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(ConfigError, match="retry.max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ConfigError, match="Config.cluster must be a ClusterConfig"):
        Config(cluster=3)  # type: ignore[arg-type]  # a wrong type, on purpose


def test_with_overrides_returns_a_new_validated_config() -> None:
    base = Config()
    changed = base.with_overrides({"cluster.workers": 4, "log.level": None})
    assert changed.cluster == ClusterConfig(workers=4)
    assert changed.log == base.log
    assert base.cluster.workers == 0
    with pytest.raises(ConfigError, match="cluster.workers must be >= 0"):
        base.with_overrides({"cluster.workers": -2})


def test_retry_delay_doubles_and_is_capped() -> None:
    """The config holds the numbers; the scheduler's rule uses them."""
    params = scheduler_params(Config(retry=RetryPolicy(max_attempts=4, base=0.5, cap=3.0)))
    assert [params.retry_delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert params.retry_delay(10**6) == 3.0
    with pytest.raises(ValueError):
        params.retry_delay(0)


def test_worker_count_resolves_zero_to_cpus() -> None:
    assert ClusterConfig(workers=3).worker_count() == 3
    assert ClusterConfig(workers=0).worker_count() >= 1


def test_settings_are_derived_from_the_dataclasses() -> None:
    sections = get_type_hints(Config)
    expected = {f"{name}.{f.name}" for name, cls in sections.items() for f in dataclasses.fields(cls)}
    assert {s.name for s in settings()} == expected
    assert all(cls.SECTION == name for name, cls in sections.items())
    by_name = {s.name: s for s in settings()}
    assert by_name["worker.work_dir"].env_var == "ZMR_WORKER_WORK_DIR"
    assert all(s.doc for s in settings())


def test_rendered_toml_round_trips(tmp_path: Path) -> None:
    config = Config().with_overrides(
        {"cluster.workers": 3, "shuffle.mode": "barrier", "worker.work_dir": 'a"b\\c é'}
    )
    path = write(tmp_path, render_toml(config))
    assert load_config(path, env={}) == config


def comments_above_keys(text: str) -> dict[str, str]:
    """'section.key' -> the comment block right above the key's line."""
    blocks: dict[str, str] = {}
    section, comment = "", list[str]()
    for line in text.splitlines():
        if line.startswith("["):
            section, comment = line.strip("[]"), []
        elif line.startswith("#"):
            comment.append(line)
        elif "=" in line:
            blocks[f"{section}.{line.split('=')[0].strip()}"] = "\n".join(comment)
            comment = []
        else:
            comment = []
    return blocks


def test_local_toml_documents_every_key_and_loads() -> None:
    text = LOCAL_TOML.read_text()
    docs = comments_above_keys(text)
    for s in settings():
        assert s.name in docs, f"{s.name} missing from {LOCAL_TOML}"
        block = " ".join(docs[s.name].replace("#", " ").split())
        assert " ".join(s.doc.split()) in block, f"{s.name}: meaning not documented"
        assert "default: " in block and s.env_var in block, f"{s.name}: default or env var not documented"
        if s.unit:
            assert f"unit: {s.unit}" in block, f"{s.name}: unit not documented"
    config = load_config(LOCAL_TOML, env={})
    assert config.cluster.workers == 2


@pytest.mark.parametrize("value", ["", "http://127.0.0.1:8787", "http://0.0.0.0:0", "http://[::1]:9000/"])
def test_dashboard_addresses_that_are_taken(value: str) -> None:
    assert load_config(None, overrides={"coordinator.dashboard": value}).coordinator.dashboard == value


@pytest.mark.parametrize("value", ["127.0.0.1:8787", "https://127.0.0.1:8787", "http://127.0.0.1", "http://:80",
                                   "http://host:99999", "tcp://127.0.0.1:8787"])
def test_dashboard_addresses_that_are_refused_say_the_form(value: str) -> None:
    with pytest.raises(ConfigError, match=r"coordinator.dashboard must be 'http://host:port'"):
        load_config(None, overrides={"coordinator.dashboard": value})


@pytest.mark.parametrize("value", ["tcp://10.0.0.5:*", "a host", "10.0.0.5/24", ":7000"])
def test_a_bad_advertised_address_is_refused_by_name(value: str) -> None:
    with pytest.raises(ConfigError, match="advertise must be"):
        load_config(env={"ZMR_WORKER_ADVERTISE": value})


def test_the_advertised_address_replaces_the_bound_one() -> None:
    import zmq

    from zmr.runtime import transport

    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    try:
        sock.bind("tcp://0.0.0.0:*")
        port = transport.bound_address(sock).rpartition(":")[2]
        assert transport.advertised_address(sock, "10.0.0.5") == f"tcp://10.0.0.5:{port}"
        assert transport.advertised_address(sock, "fd00::5") == f"tcp://[fd00::5]:{port}"
        assert transport.advertised_address(sock, "[fd00::5]") == f"tcp://[fd00::5]:{port}"
        assert transport.advertised_address(sock, "tcp://203.0.113.7:7000") == "tcp://203.0.113.7:7000"
        assert transport.advertised_address(sock) == f"tcp://{socket.gethostname()}:{port}"   # a wildcard bind
    finally:
        sock.close(linger=0)
        ctx.term()


def test_the_multi_host_example_loads_and_lists_its_hosts() -> None:
    config = load_config(LOCAL_TOML.with_name("hosts.toml"), env={})
    assert [h.address for h in config.cluster.hosts] == ["10.0.0.2", "10.0.0.3", "10.0.0.4"]
    assert config.cluster.worker_count() == 0 and config.cluster.worker_count(with_hosts=False) >= 1


def test_cluster_hosts_from_a_file_the_environment_and_flags(tmp_path: Path) -> None:
    path = write(tmp_path, '[cluster]\nssh_command = ["ssh", "-p", "2222"]\n'
                           '[[cluster.hosts]]\naddress = "10.0.0.2"\nworkers = 3\n'
                           '[[cluster.hosts]]\naddress = "h3"\nssh = "me@h3"\n')
    config = load_config(path, env={})
    assert config.cluster.ssh_command == ("ssh", "-p", "2222")
    assert [(h.address, h.workers, h.destination()) for h in config.cluster.hosts] == [
        ("10.0.0.2", 3, "10.0.0.2"), ("h3", 1, "me@h3")]
    flagged = load_config(env={}, overrides={"cluster.hosts": '[{address = "10.9.9.9"}]'})
    assert [h.address for h in flagged.cluster.hosts] == ["10.9.9.9"]
    assert load_config(env={"ZMR_CLUSTER_HOSTS": '[{address = "a"}]'}).cluster.hosts[0].data_bind == "tcp://0.0.0.0:*"


@pytest.mark.parametrize(("hosts", "problem"), [
    ('[{address = ""}]', "host 0 needs an address"),
    ('[{address = "a", workers = 0}]', "must be a list of tables"),
    ('[{addr = "a"}]', "unknown field `addr`"),
    ('[{address = "a", data_bind = "10.0.0.1"}]', "must be a ZeroMQ endpoint"),
    ('[{address = "a", workers = 2, data_bind = "tcp://0.0.0.0:7000"}]', "fixed data port"),
    ("not a list", "expected a list of tables"),
])
def test_bad_cluster_hosts_are_refused_saying_what_is_wrong(hosts: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)):
        load_config(env={"ZMR_CLUSTER_HOSTS": hosts})


def test_settings_travel_to_another_process_as_flags() -> None:
    config = load_config(env={}, overrides={"shuffle.compression": "zstd", "coordinator.heartbeat_interval": "0.2",
                                            "security.keys_dir": "/etc/zmr/keys", "cluster.workers": "3"})
    flags = config_module.setting_flags(config)
    assert flags == ["--set", "coordinator.heartbeat_interval=0.2", "--set", "shuffle.compression=zstd",
                     "--set", "security.keys_dir=/etc/zmr/keys"]   # the cluster section stays with the launcher
    pairs = dict(flag.split("=", 1) for flag in flags[1::2])
    assert load_config(env={}, overrides=pairs) == config.with_overrides({"cluster.workers": 0})
