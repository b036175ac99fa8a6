"""`zmr.runtime.security.init_keys`: the key files it makes, and how private the secret ones are."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
import zmq.auth

from zmr.errors import ConfigError
from zmr.runtime import security
from zmr.runtime.security import Keyring, add_worker_key, init_keys


def test_init_makes_three_pairs_and_lists_the_client_and_worker_keys(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    made = init_keys(str(folder))
    assert sorted(p.name for p in made) == sorted([f"{n}.{ext}" for n in ("coordinator", "client", "worker")
                                                   for ext in ("key", "key_secret")] + ["dashboard.token"])
    assert (folder / "dashboard.token").stat().st_mode & 0o777 == 0o600
    keyring = Keyring.load(str(folder))
    assert sorted(keyring.roles.values()) == ["client", "worker"]
    assert keyring.roles[keyring.pair("client")[0]] == "client"
    assert keyring.roles[keyring.pair("worker")[0]] == "worker"
    assert keyring.coordinator_public not in keyring.roles   # the coordinator's key admits nobody
    for name in ("coordinator", "client", "worker"):
        assert stat.S_IMODE((folder / f"{name}.key_secret").stat().st_mode) == 0o600


def test_init_refuses_a_folder_that_has_a_coordinator_key_pair(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    init_keys(str(folder))
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match="already holds keys"):
        init_keys(str(folder))
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


def test_a_missing_secret_is_a_clear_config_error(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    init_keys(str(folder))
    (folder / "client.key_secret").unlink()
    with pytest.raises(ConfigError, match="client.key_secret"):
        Keyring.load(str(folder)).pair("client")


def test_a_keys_folder_or_key_file_that_is_not_there_is_named_as_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"coordinator\.key: the folder .*nowhere does not exist"):
        Keyring.load(str(tmp_path / "nowhere"))
    folder = tmp_path / "keys"
    init_keys(str(folder))
    (folder / "coordinator.key").unlink()
    with pytest.raises(ConfigError, match=r"the file .*coordinator\.key does not exist"):
        Keyring.load(str(folder))
    (folder / "coordinator.key").mkdir()
    with pytest.raises(ConfigError, match=r"coordinator\.key is not a file"):
        Keyring.load(str(folder))


def test_a_secret_key_is_never_readable_by_others_not_even_briefly(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    exposed: dict[str, str] = {}
    create = zmq.auth.create_certificates

    def create_and_look(key_dir: Any, name: str, metadata: Any = None) -> tuple[str, str]:
        public_file, secret_file = create(key_dir, name, metadata)
        # before init_keys can fix anything: may someone else read the file (its mode, and its folder's)?
        file_mode = stat.S_IMODE(Path(secret_file).stat().st_mode)
        dir_mode = stat.S_IMODE(Path(key_dir).stat().st_mode)
        if file_mode & 0o044 and dir_mode & 0o011:
            exposed[name] = f"file {file_mode:o} in folder {dir_mode:o}"
        return public_file, secret_file

    monkeypatch.setattr(security.zmq.auth, "create_certificates", create_and_look)
    old_umask = os.umask(0o022)   # the usual one, whatever this test runs under
    try:
        init_keys(str(tmp_path / "keys"))
    finally:
        os.umask(old_umask)
    assert exposed == {}


# ------------------------------------------------------------------ one key pair per worker host


def test_init_with_worker_hosts_makes_one_listed_pair_each_and_an_unlisted_data_pair(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    made = init_keys(str(folder), ["host1", "host2"])
    assert sorted(p.name for p in made) == sorted([f"{n}.{ext}" for n in
                                                   ("coordinator", "client", "data", "worker-host1", "worker-host2")
                                                   for ext in ("key", "key_secret")] + ["dashboard.token"])
    assert not (folder / "worker.key_secret").exists()
    keyring = Keyring.load(str(folder))
    hosts = {keyring.pair(f"worker-{h}")[0] for h in ("host1", "host2")}
    assert len(hosts) == 2 and all(keyring.roles[k] == "worker" for k in hosts)
    assert keyring.pair("data")[0] not in keyring.roles   # it serves data sockets, it admits nobody
    assert keyring.worker_server_key() == keyring.pair("data")[0]
    assert keyring.data_server("worker-host1").public == keyring.pair("data")[0]
    for name in ("data", "worker-host1", "worker-host2"):
        assert stat.S_IMODE((folder / f"{name}.key_secret").stat().st_mode) == 0o600


def test_add_worker_lists_one_more_host_and_never_overwrites(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    init_keys(str(folder))   # the shared worker pair first: adding a host brings in the data pair
    made = add_worker_key(str(folder), "host3")
    assert sorted(p.name for p in made) == ["data.key", "data.key_secret", "worker-host3.key",
                                            "worker-host3.key_secret"]
    keyring = Keyring.load(str(folder))
    assert keyring.roles[keyring.pair("worker-host3")[0]] == "worker"
    assert keyring.worker_server_key() == keyring.pair("data")[0]
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match="already holds the key pair worker-host3"):
        add_worker_key(str(folder), "host3")
    for bad in ("", "../up", "a b", "-x"):
        with pytest.raises(ConfigError, match="a worker name is"):
            add_worker_key(str(folder), bad)
    with pytest.raises(ConfigError, match="no coordinator key"):
        add_worker_key(str(tmp_path / "empty"), "host4")
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


def test_a_worker_finds_its_own_pair_or_is_told_to_choose(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    init_keys(str(folder), ["host1", "host2"])
    keyring = Keyring.load(str(folder))
    assert keyring.worker_name("worker-host2") == "worker-host2"
    with pytest.raises(ConfigError, match="2 worker key pairs .*set security.worker_key"):
        keyring.worker_name()
    (folder / "worker-host2.key_secret").unlink()   # a host that got only its own pair
    assert keyring.worker_name() == "worker-host1"
    shared = tmp_path / "shared"
    init_keys(str(shared))
    assert Keyring.load(str(shared)).worker_name() == "worker"
