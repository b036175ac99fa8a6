"""CurveZMQ keys and roles: who may submit jobs, who may work, and where sockets may bind.

A job carries code, so an open port is remote code execution. By default every socket binds to
loopback. With `security.keys_dir` set, every socket speaks CURVE and a ZAP authenticator (started
before any bind) admits only listed public keys, naming each peer's role and key in the messages'
User-Id: `client` keys submit, cancel and read status; `worker` keys register, take tasks and exchange
batches. The coordinator binds each worker id to the key that registered it.

Key directory layout (made by `zmr keys init DIR`):

    DIR/coordinator.key            coordinator public key (every peer needs it)
    DIR/coordinator.key_secret     coordinator key pair (the coordinator only)
    DIR/client.key_secret          a client key pair (users who submit jobs)
    DIR/worker.key_secret          the worker key pair (workers; also serves their data sockets)
    DIR/clients/*.key              public keys allowed in the client role
    DIR/workers/*.key              public keys allowed in the worker role

With one key pair per worker host (`zmr keys init DIR --workers a,b`, `zmr keys add-worker DIR c`),
`DIR/worker-NAME.key_secret` replaces the shared worker pair: host NAME gets only its own, so a host
whose key is taken off `workers/` is shut out, and no host can register under another's worker ids.
Data sockets then all serve with `DIR/data.key_secret`, a pair that is listed nowhere: it lets a
worker prove its data socket to peers, never to join or to push batches.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from zmr.errors import ConfigError

DASHBOARD_TOKEN = "dashboard.token"   # in a keys directory: what the dashboard asks of a request beyond loopback

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

    def worker_name(self, chosen: str = "") -> str:
        """This host's worker key pair: `chosen` (security.worker_key), else the shared `worker` pair,
        else the one `worker-NAME` pair copied to this host; a clear error when that is ambiguous."""
        if chosen:
            return chosen
        if (self.folder / "worker.key_secret").exists():
            return WORKER
        mine = sorted(p.name.removesuffix(".key_secret") for p in self.folder.glob("worker-*.key_secret"))
        if len(mine) == 1:
            return mine[0]
        found = ", ".join(mine) or "none"
        raise ConfigError(f"{self.folder} holds {len(mine)} worker key pairs ({found}): set security.worker_key "
                          "to this host's (e.g. worker-NAME), or copy only its own pair to the host")

    def _data_name(self) -> str:
        """With per-host worker keys, data sockets serve with the unlisted `data` pair, else the worker one."""
        return "data" if (self.folder / "data.key").exists() else WORKER

    def data_server(self, worker_name: str) -> Curve:
        """The key pair every worker's data socket serves with (so peers know its public key)."""
        return self.server(worker_name if self._data_name() == WORKER else "data")

    def worker_server_key(self) -> bytes:
        """The public key of every worker's data socket."""
        if self._data_name() == "data":
            return _read_pair(self.folder / "data.key")[0]
        return _read_pair(self.folder / "workers" / "worker.key")[0]


def _read_pair(path: Path) -> tuple[bytes, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read CURVE key {path}: {_why_unreadable(path, exc)}") from exc
    return public, secret


def _why_unreadable(path: Path, exc: Exception) -> str:
    """pyzmq says only "Invalid certificate file" for a key file that is not there: say what is missing."""
    if os.path.isfile(path):   # there, but unreadable or not a key: pyzmq's own words
        return str(exc)
    if os.path.lexists(path):
        return f"{path} is not a file"
    missing = path if os.path.isdir(path.parent) else path.parent
    return (f"the {'file' if missing == path else 'folder'} {missing} does not exist (security.keys_dir names a "
            "folder made by `zmr keys init`)")


_HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def init_keys(keys_dir: str, workers: Sequence[str] = ()) -> list[Path]:
    """Create the coordinator and client key pairs, the dashboard token, and the shared worker pair or
    (with `workers`) one pair per worker host; secret files are readable by the owner only."""
    folder = Path(keys_dir)
    existing = sorted(folder.glob("*.key")) + sorted(folder.glob("*.key_secret"))
    if existing:
        raise ConfigError(f"{folder} already holds keys ({existing[0].name}); remove them first to make new ones")
    names = [_worker_pair_name(w) for w in workers]
    if len(set(names)) != len(names):
        raise ConfigError(f"worker names repeat: {', '.join(workers)}")
    for sub in ("clients", "workers"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    made = _make_pair(folder, "coordinator") + _make_pair(folder, CLIENT, "clients")
    made.append(write_dashboard_token(keys_dir))
    if not names:
        return made + _make_pair(folder, WORKER, "workers")
    made += _make_pair(folder, "data")
    for name in names:
        made += _make_pair(folder, name, "workers")
    return made


def load_dashboard_token(keys_dir: str) -> str:
    """The dashboard token `zmr keys init` wrote in `keys_dir`, or '' when there is none."""
    if not keys_dir:
        return ""
    path = Path(keys_dir) / DASHBOARD_TOKEN
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise ConfigError(f"cannot read the dashboard token {path}: {exc}") from exc


def write_dashboard_token(keys_dir: str) -> Path:
    """Make a new dashboard token in `keys_dir` (readable by its owner only) and return its path."""
    path = Path(keys_dir) / DASHBOARD_TOKEN
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    path.write_text(secrets.token_urlsafe(32) + "\n", encoding="utf-8")
    return path


def add_worker_key(keys_dir: str, host: str) -> list[Path]:
    """One more worker host's key pair in a key directory made by `init_keys`, listed in `workers/`.

    Its data socket serves with the unlisted `data` pair, made here if the directory has none yet (every
    worker must then have it and serves with it). Every worker host needs the new `workers/` listing
    too, since data sockets admit only the worker keys they loaded at start.
    """
    folder, name = Path(keys_dir), _worker_pair_name(host)
    if not (folder / "coordinator.key").exists():
        raise ConfigError(f"{folder} holds no coordinator key: make the directory with `zmr keys init` first")
    if (folder / f"{name}.key").exists() or (folder / f"{name}.key_secret").exists():
        raise ConfigError(f"{folder} already holds the key pair {name}; remove it first to make a new one")
    made = [] if (folder / "data.key").exists() else _make_pair(folder, "data")
    return made + _make_pair(folder, name, "workers")


def _worker_pair_name(host: str) -> str:
    if not _HOST_NAME.fullmatch(host):
        raise ConfigError(f"a worker name is letters, digits, '.', '_' or '-' (at most 63), got {host!r}")
    return f"worker-{host}"


def _make_pair(folder: Path, name: str, listed_in: str = "") -> list[Path]:
    """`folder/name.key` and `.key_secret`, the public key also copied to `folder/listed_in/`."""
    old_umask = os.umask(0o077)   # secret files are never readable by others, not even for a moment
    try:
        public_file, secret_file = zmq.auth.create_certificates(str(folder), name)
        os.chmod(public_file, 0o644)
        if listed_in:
            shutil.copy(public_file, folder / listed_in / f"{name}.key")
            os.chmod(folder / listed_in / f"{name}.key", 0o644)
    finally:
        os.umask(old_umask)
    return [Path(public_file), Path(secret_file)]


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
        """`role:key`: every message then names the role and the key of its sender (`sender_of`)."""
        key = z85.encode(client_public_key)
        role = self._roles.get(key, "")
        return f"{role}:{key.decode('ascii')}" if role else ""


def sender_of(user_id: str) -> tuple[str, str]:
    """(role, z85 public key) from a message's User-Id as `RoleAuthenticator` set it; ("", "") if none."""
    role, sep, key = user_id.partition(":")
    return (role, key) if sep else ("", "")


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
    print(insecure_banner(endpoint), file=sys.stderr, flush=True)


def insecure_banner(endpoint: str) -> str:
    """What `--insecure` prints on stderr at start: a log line is too easy to miss for what it allows."""
    return "\n".join([
        "zmr: " + "!" * 72,
        f"zmr: INSECURE: {endpoint} accepts anyone, with no keys and no encryption.",
        "zmr: Anyone who can reach this port can run any code on this cluster's machines",
        "zmr: and read or change every job's data. Use CURVE keys (`zmr keys init`, then",
        "zmr: security.keys_dir) or bind 127.0.0.1 unless this network is fully trusted.",
        "zmr: " + "!" * 72,
    ])
