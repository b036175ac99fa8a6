"""`zmr.remote`: the command lines that start workers on hosts over SSH, and their supervision (with a
stand-in for ssh that exits at once, so a worker "dies" and is started again)."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import pytest

from zmr.config import Config, load_config
from zmr.errors import ConfigError
from zmr.remote import RemoteWorkers, worker_coordinator


def _config(**overrides: str) -> Config:
    return load_config(env={}, overrides={"cluster.hosts": '[{address = "10.0.0.2", workers = 2, ssh = "zmr@h2"}]',
                                          **overrides})


def test_the_hosts_reach_the_coordinator_at_its_bound_address_or_the_one_given() -> None:
    with pytest.raises(ConfigError, match="set worker.coordinator"):
        worker_coordinator(_config())   # bound to loopback: no host reaches that
    for bind in ("tcp://0.0.0.0:5555", "tcp://[::]:5555", "tcp://localhost:5555", "tcp://[::1]:5555",
                 "tcp://10.0.0.1:*"):
        with pytest.raises(ConfigError, match="set worker.coordinator"):
            worker_coordinator(_config(**{"coordinator.bind": bind}))
    assert worker_coordinator(_config(**{"coordinator.bind": "tcp://10.0.0.1:5555"})) == "tcp://10.0.0.1:5555"
    assert worker_coordinator(_config(**{"coordinator.bind": "tcp://0.0.0.0:5555",
                                         "worker.coordinator": "tcp://coord:5555"})) == "tcp://coord:5555"


def test_a_worker_on_a_host_runs_through_ssh_with_the_settings_as_flags(tmp_path: Path) -> None:
    config = _config(**{"coordinator.bind": "tcp://10.0.0.1:5555", "security.keys_dir": "/etc/zmr keys",
                        "shuffle.compression": "lz4", "cluster.worker_command": "/opt/zmr/bin/zmr-worker"})
    workers = RemoteWorkers(config, tmp_path)
    assert len(workers) == 2
    command = workers.command(config.cluster.hosts[0])
    assert command[:command.index("--")] == [*config.cluster.ssh_command, "-tt", "zmr@h2"]
    [remote] = command[command.index("--") + 1:]
    assert shlex.split(remote) == [
        "/opt/zmr/bin/zmr-worker", "--coordinator", "tcp://10.0.0.1:5555", "--data-bind", "tcp://0.0.0.0:*",
        "--set", "worker.advertise=10.0.0.2", "--set", "shuffle.compression=lz4",
        "--set", "security.keys_dir=/etc/zmr keys"]   # a space survives the remote shell


def test_a_worker_whose_connection_ends_is_started_again_after_a_growing_pause(tmp_path: Path) -> None:
    config = _config(**{"coordinator.bind": "tcp://10.0.0.1:5555",
                        "cluster.ssh_command": '["sh", "-c", "echo started; exit 3"]'})
    workers = RemoteWorkers(config, tmp_path)
    workers.start()
    try:
        time.sleep(0.5)
        news = workers.supervise()
        assert len(news) == 2 and all("exited with 3; starting it again in 1 s" in n for n in news), news
        assert workers.supervise() == []   # within the pause: not yet
        time.sleep(1.2)
        assert workers.supervise() == []   # started again (they exit again at once)
        time.sleep(0.5)
        assert all("again in 2 s" in n for n in workers.supervise())   # failing at once: the pause doubles
    finally:
        workers.stop()
    logs = sorted(p.name for p in tmp_path.iterdir())
    assert logs == ["worker-10.0.0.2-0.log", "worker-10.0.0.2-1.log"]
    assert (tmp_path / logs[0]).read_text().count("started") == 2
