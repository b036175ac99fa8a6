"""CurveZMQ on real processes: who gets in, who does not, what the wire shows, and where sockets may bind.

With `security.keys_dir` set, the coordinator's control socket and every worker's data socket speak
CURVE, and a ZAP handler admits only the public keys listed in `clients/` and `workers/`, tagging each
peer with its role. The hostile peers here are hand-made (tests/e2e/peers.py): a client with no keys, one
with a key pair nobody listed, a listed client key pretending to be a worker (and the reverse), and a
worker process whose key pair is not listed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq.auth

from zmr.client import Client, build_spec
from zmr.errors import AuthenticationFailed, ClusterError, NoAnswer
from zmr.local import LocalCluster
from zmr.protocol import messages as m

from .conftest import (
    APPS,
    FAST,
    FAST_FLAGS,
    LIVE_CLUSTER_PIDS,
    REPO,
    Cluster,
    SeqOracle,
    clean_env,
    read_output,
    wait_until,
)
from .peers import (
    PYTHON,
    Peer,
    events,
    start_process,
    stop_process,
    wait_for_event,
    zmr_command,
    zmtp_mechanism,
)

pytestmark = pytest.mark.e2e

JSON_LOGS = {"log.format": "json"}
SILENCE = 1.5   # how long a refused peer waits for the reply that must not come


class SecureCluster(Cluster):
    """The e2e `Cluster`, with CURVE on: every process gets the key directory, and so does the client."""

    def __init__(self, workers: int, overrides: dict[str, Any], keys_dir: Path) -> None:
        super().__init__(workers, overrides)
        self.local.cleanup()   # replaced: the launcher must use the client key pair to talk to it
        self.local = LocalCluster(workers, overrides={**overrides, "security.keys_dir": str(keys_dir)},
                                  keys_dir=str(keys_dir))
        self.keys_dir = keys_dir

    def start(self) -> SecureCluster:
        self.local.start()
        self.client = Client(self.local.address, timeout=20.0, keys_dir=str(self.keys_dir))
        self.track()
        return self

    @property
    def coordinator_log(self) -> Path:
        return self.local.log_dir / "coordinator.log"

    def worker_log(self, index: int) -> Path:
        return self.local.log_dir / f"worker-{index}.log"


def _make_keys(folder: Path) -> Path:
    """`zmr keys init FOLDER`, as a user runs it."""
    proc = subprocess.run(zmr_command("keys", "init", folder), capture_output=True, text=True, timeout=60,
                          env=clean_env(), cwd=folder.parent)
    assert proc.returncode == 0, proc.stderr
    return folder


def _pair(path: Path) -> tuple[bytes, bytes]:
    public, secret = zmq.auth.load_certificate(str(path))
    assert secret is not None
    return public, secret


def _public(path: Path) -> bytes:
    return zmq.auth.load_certificate(str(path))[0]


def _curve(keys: Path, name: str) -> tuple[bytes, bytes, bytes]:
    """CURVE options of a peer using `keys/<name>.key_secret` against the coordinator."""
    return (*_pair(keys / f"{name}.key_secret"), _public(keys / "coordinator.key"))


def _unlisted_pair(folder: Path, name: str) -> tuple[bytes, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    _, secret_file = zmq.auth.create_certificates(str(folder), name)
    return _pair(Path(secret_file))


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_keys(tmp_path_factory.mktemp("security") / "keys")


@pytest.fixture(scope="module")
def secure(keys: Path) -> Iterator[SecureCluster]:
    """One CURVE cluster of two workers for the module (JSON logs, heartbeats every 0.1 s)."""
    c = SecureCluster(2, {**FAST, **JSON_LOGS}, keys)
    try:
        c.start()
        c.wait_for_workers(2)
        yield c
    finally:
        c.stop()


def _tables(c: Cluster) -> tuple[list[tuple[str, str]], list[str]]:
    """(jobs as (id, state), worker ids) as an authorised client sees them."""
    assert c.client is not None
    status = c.client.status()
    return [(j.job_id, j.state) for j in status.jobs], sorted(w.worker_id for w in status.workers)


# ------------------------------------------------------------------ the authorised path


def test_an_authorised_client_runs_a_job_equal_to_the_sequential_reference(
        secure: SecureCluster, keys: Path, library: Path, tmp_path: Path, run_zmr, seq_oracle: SeqOracle) -> None:
    """Through the CLI with `--set security.keys_dir`: the push shuffle between workers runs over CURVE too."""
    out = tmp_path / "out"
    done = run_zmr("submit", "--coordinator", secure.address, "--set", f"security.keys_dir={keys}",
                   "--app", APPS / "wc.py", "--input", library, "--output", out, "--n-reduce", "3", "--wait")
    assert done.returncode == 0, str(done)
    assert read_output(out, 3) == seq_oracle(APPS / "wc.py", [library])
    info = secure.client.job(done.stdout.split()[0])   # type: ignore[union-attr]  # run with capture
    assert info.state == "succeeded" and info.bytes_shuffled > 0
    # the same through the environment variable
    env_status = run_zmr("status", "--coordinator", secure.address, env={"ZMR_SECURITY_KEYS_DIR": str(keys)})
    assert env_status.returncode == 0 and info.job_id in env_status.stdout, str(env_status)


# ------------------------------------------------------------------ clients that must not get in


def test_a_client_without_keys_gets_no_answer_at_all(secure: SecureCluster, library: Path,
                                                      tmp_path: Path) -> None:
    before = _tables(secure)
    with Client(secure.address, timeout=SILENCE) as stranger:
        with pytest.raises(ClusterError, match="no answer"):
            stranger.status()
        with pytest.raises(ClusterError, match="no answer"):
            stranger.submit(str(APPS / "wc.py"), [str(library)], str(tmp_path / "out"), n_reduce=2)
    assert _tables(secure) == before
    assert not (tmp_path / "out").exists()


def test_an_unlisted_key_pair_gets_no_answer_and_is_logged(secure: SecureCluster, library: Path,
                                                           tmp_path: Path) -> None:
    public, secret = _unlisted_pair(tmp_path / "stranger", "stranger")
    server = _public(secure.keys_dir / "coordinator.key")
    before = _tables(secure)
    spec = build_spec(str(APPS / "wc.py"), [str(library)], str(tmp_path / "out"), 2)
    with Peer(secure.address, b"stranger", curve=(public, secret, server)) as peer:
        peer.send_msg(m.StatusRequest())
        peer.send_msg(m.SubmitJob(spec=spec))
        assert peer.replies(SILENCE) == []
    assert _tables(secure) == before
    assert not (tmp_path / "out").exists()
    rejected = wait_for_event(secure.coordinator_log, "curve_key_rejected", 5, key=public.decode())
    assert rejected, f"no curve_key_rejected for {public.decode()} in {secure.coordinator_log}"


def test_keys_in_the_wrong_role_are_dropped(secure: SecureCluster, keys: Path, library: Path,
                                            tmp_path: Path) -> None:
    """A listed client key cannot register as a worker; a listed worker key cannot submit or ask status."""
    before = _tables(secure)
    with Peer(secure.address, b"client-as-worker", curve=_curve(keys, "client")) as peer:
        peer.send_msg(m.Register(worker_id="w-impostor", data_addr="tcp://127.0.0.1:9", python=PYTHON,
                                 pid=os.getpid(), host="impostor"))
        assert peer.replies(SILENCE) == []   # no Welcome, nor anything else
        peer.send_msg(m.StatusRequest())   # the same key in its own role is served
        assert any(isinstance(r, m.StatusReply) for r in peer.replies(10, until=m.StatusReply))
    spec = build_spec(str(APPS / "wc.py"), [str(library)], str(tmp_path / "out"), 2)
    with Peer(secure.address, b"worker-as-client", curve=_curve(keys, "worker")) as peer:
        peer.send_msg(m.SubmitJob(spec=spec))
        peer.send_msg(m.StatusRequest())
        assert peer.replies(SILENCE) == []
    assert _tables(secure) == before
    assert "w-impostor" not in before[1]
    assert not (tmp_path / "out").exists()
    dropped = wait_for_event(secure.coordinator_log, "bad_message", 5)
    assert any("from a peer in role 'client'" in r.get("error", "") for r in dropped), dropped


def test_each_peer_in_a_wrong_role_is_logged_once_under_its_own_identity(secure: SecureCluster, keys: Path) -> None:
    peers = [Peer(secure.address, f"wrong-role-{i}".encode(), curve=_curve(keys, name))
             for i, name in enumerate(["client", "worker", "client"])]
    try:
        for _ in range(3):
            for peer in peers:
                if peer.identity and peer.identity.endswith(b"1"):
                    peer.send_msg(m.StatusRequest())      # worker key, client message
                else:
                    peer.send_msg(m.TaskRequest(worker_id="w-impostor"))   # client key, worker message
        time.sleep(SILENCE)
    finally:
        for peer in peers:
            peer.close()
    for peer in peers:
        lines = events(secure.coordinator_log, "bad_message", peer=peer.hex)
        assert len(lines) == 1, f"{peer.identity!r}: {lines}"


# ------------------------------------------------------------------ what a refused client is told


def test_a_client_with_an_unlisted_key_is_told_authentication_failed_at_once(secure: SecureCluster, keys: Path,
                                                                              tmp_path: Path, run_zmr) -> None:
    stranger = tmp_path / "stranger-keys"
    shutil.copytree(keys, stranger)
    _unlisted_pair(tmp_path / "pair", "client")
    shutil.copy(tmp_path / "pair" / "client.key_secret", stranger / "client.key_secret")
    started = time.monotonic()
    with Client(secure.address, timeout=20.0, keys_dir=str(stranger)) as client:
        with pytest.raises(AuthenticationFailed, match="authentication failed: the coordinator refused this "
                                                       "client's key"):
            client.status()
    assert time.monotonic() - started < 5, "a refused key must be said at once, not after the timeout"
    cli = run_zmr("status", "--coordinator", secure.address, "--set", f"security.keys_dir={stranger}")
    assert cli.returncode == 1 and cli.stderr.startswith("zmr: authentication failed: the coordinator refused "
                                                         "this client's key"), str(cli)


def test_a_client_without_keys_is_told_the_coordinator_requires_them(secure: SecureCluster) -> None:
    with Client(secure.address, timeout=SILENCE) as stranger:
        with pytest.raises(NoAnswer, match="no answer .*requires CURVE keys: set security.keys_dir"):
            stranger.status()


# ------------------------------------------------------------------ a worker id belongs to its key


def _host_keys(keys: Path, host: str, into: Path) -> Path:
    """What a worker host gets from a per-host key directory: the shared public parts and its own pair."""
    into.mkdir(parents=True)
    for name in ("coordinator.key", "data.key", "data.key_secret", f"worker-{host}.key_secret"):
        shutil.copy(keys / name, into / name)
    shutil.copytree(keys / "workers", into / "workers")
    return into


def _claim(address: str, worker: m.WorkerInfo, identity: bytes,
           curve: tuple[bytes, bytes, bytes] | None = None) -> list[Any]:
    """Register under a live worker's id and address, as a peer that is not that worker; the replies."""
    with Peer(address, identity, curve=curve) as peer:
        peer.send_msg(m.Register(worker_id=worker.worker_id, data_addr=worker.data_addr, python=PYTHON,
                                 pid=os.getpid(), host="intruder", token="a guess"))
        return peer.replies(10, until=m.Reject)


def _still_serving(c: Cluster, worker_id: str, library: Path, out: Path, seq_oracle: SeqOracle) -> None:
    """The worker is alive and registered as before, and a job runs to the reference output."""
    assert c.client is not None
    job = c.client.submit(str(APPS / "wc.py"), [str(library)], str(out), n_reduce=2, split_size=400_000)
    c.client.wait(job, timeout=120)
    assert read_output(out, 2) == seq_oracle(APPS / "wc.py", [library])
    states = {w.worker_id: w.state for w in c.client.status().workers}
    assert states.get(worker_id) not in (None, "dead"), states


def test_per_host_keys_serve_a_job_and_no_host_can_take_another_ones_worker_id(
        tmp_path: Path, library: Path, seq_oracle: SeqOracle) -> None:
    keys = tmp_path / "keys"
    made = subprocess.run(zmr_command("keys", "init", keys, "--workers", "host1,host2"), capture_output=True,
                          text=True, timeout=60, env=clean_env(), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert not (keys / "worker.key_secret").exists() and (keys / "worker-host2.key_secret").exists()
    c = SecureCluster(1, {**FAST, **JSON_LOGS, "security.worker_key": "worker-host1"}, keys)
    host2_log = tmp_path / "host2.log"
    host2 = None
    try:
        c.start()
        c.wait_for_workers(1)
        assert c.client is not None
        (host1,) = c.client.status().workers
        host2_keys = _host_keys(keys, "host2", tmp_path / "host2-keys")   # picks its only pair by itself
        host2 = start_process(zmr_command("worker", "--coordinator", c.address, "--exit-with-parent",
                                          str(os.getpid()), "--set", f"security.keys_dir={host2_keys}",
                                          "--log-format", "json", *FAST_FLAGS), host2_log, tmp_path)
        c.wait_for_workers(2)

        host2_curve = (*_pair(keys / "worker-host2.key_secret"), _public(keys / "coordinator.key"))
        replies = _claim(c.address, host1, b"host2-as-host1", host2_curve)
        assert m.Reject(reason=f"worker id {host1.worker_id} is registered by another key: refused") in replies
        host1_curve = (*_pair(keys / "worker-host1.key_secret"), _public(keys / "coordinator.key"))
        replies = _claim(c.address, host1, b"host1-key-other-process", host1_curve)
        assert m.Reject(reason=f"worker id {host1.worker_id} is registered by another process: refused") in replies
        refused = events(c.coordinator_log, "worker_id_refused", worker=host1.worker_id)
        assert [r["why"] for r in refused] == ["registered by another key", "registered by another process"]
        assert refused[0]["key"] == host2_curve[0].decode()
        assert not events(c.coordinator_log, "worker_lost"), "a live worker was evicted"
        _still_serving(c, host1.worker_id, library, tmp_path / "out", seq_oracle)
        assert not events(host2_log, "authentication_failed"), host2_log.read_text()[-2000:]
    finally:
        if host2 is not None:
            stop_process(host2)
        c.stop()


def test_without_curve_another_local_peer_cannot_take_a_live_worker_id(
        cluster, tmp_path: Path, library: Path, seq_oracle: SeqOracle) -> None:  # type: ignore[no-untyped-def]  # fixtures
    c = cluster(2, **{"log.format": "json"})
    (live, _) = c.client.status().workers
    replies = _claim(c.address, live, b"local-intruder")
    assert m.Reject(reason=f"worker id {live.worker_id} is registered by another process: refused") in replies
    log = c.local.log_dir / "coordinator.log"
    assert wait_for_event(log, "worker_id_refused", 5, worker=live.worker_id)
    assert not events(log, "worker_lost") and not events(log, "worker_back")
    _still_serving(c, live.worker_id, library, tmp_path / "out", seq_oracle)


# ------------------------------------------------------------------ workers that must not get in


def test_a_worker_with_an_unlisted_key_cannot_join_and_the_job_completes_without_it(
        secure: SecureCluster, keys: Path, library: Path, tmp_path: Path, seq_oracle: SeqOracle) -> None:
    rogue_keys = tmp_path / "rogue-keys"
    shutil.copytree(keys, rogue_keys)
    public, _ = _unlisted_pair(tmp_path / "rogue-pair", "worker")
    for name in ("worker.key", "worker.key_secret"):
        shutil.copy(tmp_path / "rogue-pair" / name, rogue_keys / name)
    assert _public(rogue_keys / "workers" / "worker.key") != public   # listed: the real worker key only
    _, workers_before = _tables(secure)
    log = tmp_path / "rogue-worker.log"
    rogue = start_process(zmr_command("worker", "--coordinator", secure.address, "--exit-with-parent",
                                      str(os.getpid()), "--set", f"security.keys_dir={rogue_keys}",
                                      "--log-format", "json", *FAST_FLAGS), log, tmp_path)
    try:
        assert wait_for_event(secure.coordinator_log, "curve_key_rejected", 20, key=public.decode()), (
            f"the coordinator never saw the rogue worker's key; its log:\n{log.read_text()}")
        assert secure.client is not None
        out = tmp_path / "out"
        job = secure.client.submit(str(APPS / "wc.py"), [str(library)], str(out), n_reduce=3,
                                   split_size=400_000)
        info = secure.client.wait(job, timeout=120)
        detail = secure.client.job(job)
        _, workers_after = _tables(secure)
        assert rogue.poll() is None, "the rogue worker should still be knocking"
        refused = wait_for_event(log, "authentication_failed", 10, rogue)
    finally:
        code = stop_process(rogue)
    assert read_output(out, 3) == seq_oracle(APPS / "wc.py", [library])
    assert info.maps_total > 2
    assert workers_after == workers_before
    assert {t.worker for t in detail.tasks} <= set(workers_before)
    assert not events(log, "registered"), "the rogue worker was welcomed"
    assert refused and "refused this worker's key" in refused[0]["reason"], log.read_text()[-2000:]
    assert code == 0


def test_a_client_key_cannot_pull_from_a_workers_data_socket(secure: SecureCluster, keys: Path) -> None:
    """Only worker keys may talk to a data socket: a client key does not even finish the handshake."""
    assert secure.client is not None
    worker = secure.client.status().workers[0]
    server = _public(keys / "workers" / "worker.key")
    client_public, client_secret = _pair(keys / "client.key_secret")
    with Peer(worker.data_addr, b"client-pulls", curve=(client_public, client_secret, server)) as peer:
        peer.send_msg(m.PullMaps(job_id="job-0001", partition=0, runs=[(0, 1)]))
        assert peer.replies(SILENCE) == []
    logs = [secure.worker_log(i) for i in range(2)]
    assert any(wait_for_event(p, "curve_key_rejected", 5, key=client_public.decode()) for p in logs)
    # a worker key is served (the job does not exist, so the answer is "not found")
    with Peer(worker.data_addr, b"worker-pulls", curve=(*_pair(keys / "worker.key_secret"), server)) as peer:
        peer.send_msg(m.PullMaps(job_id="job-9999", partition=0, runs=[(0, 1)]))
        replies = peer.replies(10, until=m.PullEnd)
    assert m.PullEnd(job_id="job-9999", partition=0, served=[]) in replies, replies


# ------------------------------------------------------------------ the wire


def test_the_wire_speaks_curve_with_keys_and_null_without(secure: SecureCluster, zmr_cli, tmp_path: Path) -> None:
    assert zmtp_mechanism(secure.address) == "CURVE"
    assert secure.client is not None
    for worker in secure.client.status().workers:
        assert zmtp_mechanism(worker.data_addr) == "CURVE"
    # the cluster is unharmed by the half-finished handshakes
    assert len(secure.client.status().workers) == 2

    plain = f"tcp://127.0.0.1:{_free_port()}"
    proc, _ = zmr_cli.spawn("coord", "--bind", plain, *FAST_FLAGS)
    wait_until(lambda: _listening(plain) or proc.poll() is not None, 20, what="a plain coordinator")
    assert proc.poll() is None
    assert zmtp_mechanism(plain) == "NULL"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(endpoint: str) -> bool:
    host, port = endpoint.rsplit("//", 1)[1].rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


# ------------------------------------------------------------------ binding beyond loopback


def _run_entry(entry: str, *args: str, tmpdir: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(zmr_command(*args, entry_point=entry), capture_output=True, text=True, timeout=timeout,
                          env={**clean_env(tmpdir), "PYTHONPATH": str(REPO)})


def _refusal_says_why(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode != 0, proc.stderr
    assert "CURVE" in proc.stderr and "--insecure" in proc.stderr, proc.stderr
    assert proc.stderr.startswith("zmr: ") and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("entry", ["zmr-coord", "zmr-worker"])
def test_a_reachable_bind_without_keys_is_refused_and_allowed_with_insecure(entry: str, keys: Path,
                                                                            tmp_path: Path) -> None:
    port = _free_port()
    if entry == "zmr-coord":
        bind = ["--bind", f"tcp://0.0.0.0:{port}"]
    else:   # the coordinator it names is never there: binding comes first
        bind = ["--data-bind", "tcp://0.0.0.0:*", "--coordinator", f"tcp://127.0.0.1:{port}"]
    common = [*bind, "--exit-with-parent", str(os.getpid()), "--log-format", "json", *FAST_FLAGS]

    refused = _run_entry(entry, *common, tmpdir=tmp_path)
    _refusal_says_why(refused)

    for extra, warned in ((["--insecure"], True), (["--set", f"security.keys_dir={keys}"], False)):
        log = tmp_path / f"{entry}-{len(extra)}.log"
        proc = start_process(zmr_command(*common, *extra, entry_point=entry), log, tmp_path)
        LIVE_CLUSTER_PIDS.add(proc.pid)
        try:
            started = "coordinator_started" if entry == "zmr-coord" else "worker_started"
            assert wait_for_event(log, started, 20, proc), log.read_text()
            assert proc.poll() is None
            if entry == "zmr-coord":
                assert zmtp_mechanism(f"tcp://127.0.0.1:{port}") == ("NULL" if warned else "CURVE")
            insecure = events(log, "insecure_bind")
            assert bool(insecure) == warned, log.read_text()
            if warned:
                assert "0.0.0.0" in insecure[0]["endpoint"] and "anyone" in insecure[0]["warning"]
        finally:
            code = stop_process(proc)
            LIVE_CLUSTER_PIDS.discard(proc.pid)
        assert code == 0, log.read_text()


@pytest.mark.parametrize("refusal", ["reachable bind without keys", "no worker key pair"])
def test_a_worker_refused_at_start_leaves_no_scratch_directory(refusal: str, keys: Path, tmp_path: Path) -> None:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    if refusal == "reachable bind without keys":
        extra = ["--data-bind", "tcp://0.0.0.0:*"]
    else:
        client_only = tmp_path / "client-host-keys"   # keys for a client host: no worker pair
        shutil.copytree(keys, client_only)
        (client_only / "worker.key_secret").unlink()
        extra = ["--set", f"security.keys_dir={client_only}"]
    proc = _run_entry("zmr-worker", "--coordinator", f"tcp://127.0.0.1:{_free_port()}", *extra,
                      "--exit-with-parent", str(os.getpid()), tmpdir=tmpdir)
    assert proc.returncode == 1 and proc.stderr.startswith("zmr: "), proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert list(tmpdir.iterdir()) == [], "the refused worker left its scratch directory"


@pytest.mark.parametrize("entry", ["zmr-coord", "zmr-worker"])
def test_insecure_prints_a_banner_on_stderr_that_anyone_can_run_code(entry: str, tmp_path: Path) -> None:
    port = _free_port()
    bind = (["--bind", f"tcp://0.0.0.0:{port}"] if entry == "zmr-coord" else
            ["--data-bind", "tcp://0.0.0.0:*", "--coordinator", f"tcp://127.0.0.1:{port}"])
    log = tmp_path / "out.log"
    proc = start_process(zmr_command(*bind, "--insecure", "--exit-with-parent", str(os.getpid()),
                                     "--log-format", "json", *FAST_FLAGS, entry_point=entry), log, tmp_path)
    LIVE_CLUSTER_PIDS.add(proc.pid)
    try:
        started = "coordinator_started" if entry == "zmr-coord" else "worker_started"
        assert wait_for_event(log, started, 20, proc), log.read_text()
    finally:
        code = stop_process(proc)
        LIVE_CLUSTER_PIDS.discard(proc.pid)
    assert code == 0, log.read_text()
    banner = [line for line in log.read_text().splitlines() if line.startswith("zmr: ")]
    text = " ".join(banner)
    assert len(banner) >= 4, log.read_text()
    assert "INSECURE" in text and "0.0.0.0" in text and "can run any code" in text, text


def _cluster_up(zmr_cli, address: str, *extra: str):  # type: ignore[no-untyped-def]  # a pytest fixture
    return zmr_cli.spawn("cluster", "up", REPO / "configs" / "local.toml",
                         "--workers", "1", "--set", f"coordinator.bind={address}", "--set", "log.format=json",
                         *FAST_FLAGS, *extra)


def test_cluster_up_on_a_reachable_address_needs_keys_or_insecure(tmp_path: Path, zmr_cli) -> None:
    address = f"tcp://0.0.0.0:{_free_port()}"
    proc, tmpdir = _cluster_up(zmr_cli, address)
    refused = zmr_cli.finish(proc, tmpdir, timeout=60)
    assert refused.returncode != 0, str(refused)
    assert refused.leftovers == []

    proc, tmpdir = _cluster_up(zmr_cli, address, "--insecure")
    try:
        line = proc.stdout.readline()   # type: ignore[union-attr]  # piped
        assert "coordinator at" in line, line + proc.stderr.read()   # type: ignore[union-attr]  # piped
        log_dir = Path(line.split("logs in ", 1)[1].split(")", 1)[0])
        assert wait_for_event(log_dir / "coordinator.log", "insecure_bind", 10, endpoint=address)
        assert wait_for_event(log_dir / "worker-0.log", "registered", 20)
    finally:
        proc.send_signal(signal.SIGTERM)
        result = zmr_cli.finish(proc, tmpdir, timeout=20)
    assert result.returncode == 0, str(result)
    assert result.leftovers == []


def test_cluster_up_refusing_a_reachable_address_says_why(tmp_path: Path, zmr_cli) -> None:
    proc, tmpdir = _cluster_up(zmr_cli, f"tcp://0.0.0.0:{_free_port()}")
    refused = zmr_cli.finish(proc, tmpdir, timeout=60)
    assert refused.returncode != 0 and refused.leftovers == [], str(refused)
    assert "CURVE" in refused.stderr and "--insecure" in refused.stderr, str(refused)


# ------------------------------------------------------------------ zmr keys init


def test_keys_init_makes_owner_only_secrets_and_never_overwrites(tmp_path: Path, run_zmr) -> None:
    folder = tmp_path / "keys"
    made = run_zmr("keys", "init", folder)
    assert made.returncode == 0, str(made)
    names = {"coordinator", "client", "worker"}
    for name in names:
        assert stat.S_IMODE((folder / f"{name}.key_secret").stat().st_mode) == 0o600, name
        public, secret = _pair(folder / f"{name}.key_secret")
        assert _public(folder / f"{name}.key") == public and secret
    assert _public(folder / "clients" / "client.key") == _public(folder / "client.key")
    assert _public(folder / "workers" / "worker.key") == _public(folder / "worker.key")
    assert len({_public(folder / f"{name}.key") for name in names}) == 3
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}

    again = run_zmr("keys", "init", folder)
    assert again.returncode != 0, str(again)
    assert "already holds keys" in again.stderr, str(again)
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("role", ["client", "worker"])
def test_keys_init_never_overwrites_the_keys_of_a_client_or_worker_host(role: str, keys: Path, tmp_path: Path,
                                                                         run_zmr) -> None:
    host = tmp_path / f"{role}-host"
    host.mkdir()
    for name in ("coordinator.key", f"{role}.key", f"{role}.key_secret"):
        shutil.copy(keys / name, host / name)
    before = {p.name: p.read_bytes() for p in host.iterdir()}
    again = run_zmr("keys", "init", host)
    assert {p.name: p.read_bytes() for p in host.iterdir() if p.name in before} == before
    assert again.returncode != 0, str(again)
