"""CurveZMQ keys and roles: who may submit jobs, who may work, and where sockets may bind.

A job carries code, so an open port is remote code execution. By default every socket binds to
loopback. With `security.keys_dir` set, every socket speaks CURVE and a ZAP authenticator (started
before any bind) admits only listed public keys, naming each peer's role in the messages' User-Id:
`client` keys submit, cancel and read status; `worker` keys register, take tasks and exchange batches.

Key directory layout (made by `zmr keys init DIR`):

    DIR/coordinator.key            coordinator public key (every peer needs it)
    DIR/coordinator.key_secret     coordinator key pair (the coordinator only)
    DIR/client.key_secret          a client key pair (users who submit jobs)
    DIR/worker.key_secret          the worker key pair (workers; also serves their data sockets)
    DIR/clients/*.key              public keys allowed in the client role
    DIR/workers/*.key              public keys allowed in the worker role
"""

from __future__ import annotations

import ipaddress
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from zmr.errors import ConfigError

CLIENT, WORKER = "client", "worker"


@dataclass(frozen=True)
class Curve:
    """CURVE options for one socket: its own key pair, and the server's public key when it connects."""

    public: bytes
    secret: bytes
    server_key: bytes | None = None   # None: this socket is the CURVE server

    def apply(self, sock: zmq.Socket[Any]) -> None:
        """Set before bind/connect: libzmq reads them when the connection's handshake starts."""
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret)
        if self.server_key is None:
            sock.setsockopt(zmq.CURVE_SERVER, 1)
        else:
            sock.setsockopt(zmq.CURVE_SERVERKEY, self.server_key)


@dataclass(frozen=True)
class Keyring:
    """The keys one process needs, loaded from a key directory."""

    folder: Path
    coordinator_public: bytes
    roles: dict[bytes, str]           # z85 public key -> role, for the servers' authenticators

    @classmethod
    def load(cls, keys_dir: str) -> Keyring:
        folder = Path(keys_dir)
        public, _ = _read_pair(folder / "coordinator.key")
        roles: dict[bytes, str] = {}
        for role, sub in ((CLIENT, "clients"), (WORKER, "workers")):
            for key_file in sorted((folder / sub).glob("*.key")):
                roles[_read_pair(key_file)[0]] = role
        return cls(folder, public, roles)

    def pair(self, name: str) -> tuple[bytes, bytes]:
        """The key pair of `coordinator`, `client` or `worker`; a clear error if this host lacks it."""
        public, secret = _read_pair(self.folder / f"{name}.key_secret")
        if secret is None:
            raise ConfigError(f"{self.folder / (name + '.key_secret')} holds no secret key")
        return public, secret

    def server(self, name: str) -> Curve:
        public, secret = self.pair(name)
        return Curve(public, secret)

    def client_of(self, name: str, server_key: bytes) -> Curve:
        public, secret = self.pair(name)
        return Curve(public, secret, server_key)

    def worker_server_key(self) -> bytes:
        """Every worker's data socket serves with the worker key pair, so peers know its public key."""
        return _read_pair(self.folder / "workers" / "worker.key")[0]


def _read_pair(path: Path) -> tuple[bytes, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read CURVE key {path}: {exc}") from exc
    return public, secret


def init_keys(keys_dir: str) -> list[Path]:
    """Create the coordinator, client and worker key pairs; secret files are readable by the owner only."""
    folder = Path(keys_dir)
    existing = sorted(folder.glob("*.key")) + sorted(folder.glob("*.key_secret"))
    if existing:
        raise ConfigError(f"{folder} already holds keys ({existing[0].name}); remove them first to make new ones")
    for sub in ("clients", "workers"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    made = []
    old_umask = os.umask(0o077)   # secret files are never readable by others, not even for a moment
    try:
        for name in ("coordinator", CLIENT, WORKER):
            public_file, secret_file = zmq.auth.create_certificates(str(folder), name)
            os.chmod(public_file, 0o644)
            made += [Path(public_file), Path(secret_file)]
            if name != "coordinator":
                shutil.copy(public_file, folder / f"{name}s" / f"{name}.key")
                os.chmod(folder / f"{name}s" / f"{name}.key", 0o644)
    finally:
        os.umask(old_umask)
    return made


class RoleAuthenticator(ThreadAuthenticator):
    """A ZAP handler that admits listed keys only and names each peer's role as its User-Id."""

    def __init__(self, ctx: zmq.Context[Any], roles: dict[bytes, str], allowed: set[str], log: Any) -> None:
        super().__init__(ctx)
        self._roles = {key: role for key, role in roles.items() if role in allowed}
        self._zmr_log = log

    def start(self) -> None:
        super().start()
        self.configure_curve_callback(domain="*", credentials_provider=self)

    def callback(self, domain: str, key: bytes) -> bool:
        if key in self._roles:
            return True
        self._zmr_log.warning("curve_key_rejected", key=key.decode("ascii", "replace"))
        return False

    def curve_user_id(self, client_public_key: bytes) -> str:
        return self._roles.get(z85.encode(client_public_key), "")


def is_loopback(endpoint: str) -> bool:
    """Does a bind endpoint stay on this machine (loopback TCP, ipc, inproc)?"""
    transport, _, rest = endpoint.partition("://")
    if transport in ("ipc", "inproc"):
        return True
    host = rest.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False   # '*', an interface name or a host name: reachable from elsewhere


def check_bind(endpoint: str, secure: bool, insecure: bool, log: Any) -> None:
    """Refuse a reachable bind without CURVE unless the user said --insecure (then warn loudly)."""
    if secure or is_loopback(endpoint):
        return
    if not insecure:
        raise ConfigError(f"refusing to bind {endpoint} without CURVE keys: anyone who reaches it could run "
                          "code on this cluster. Set security.keys_dir (see `zmr keys init`), bind to "
                          "127.0.0.1, or pass --insecure if this network is trusted")
    log.warning("insecure_bind", endpoint=endpoint,
                warning="no authentication: anyone who can reach this address can run code here")
