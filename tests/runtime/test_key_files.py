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
from zmr.runtime.security import Keyring, init_keys


def test_init_makes_three_pairs_and_lists_the_client_and_worker_keys(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    made = init_keys(str(folder))
    assert sorted(p.name for p in made) == sorted(f"{n}.{ext}" for n in ("coordinator", "client", "worker")
                                                  for ext in ("key", "key_secret"))
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
