"""Many machines: a coordinator, an S3 server and three workers on four network-namespace hosts joined by
a bridge (`hosts.py`), with CURVE keys and no shared working directory. Workers bind 0.0.0.0 and advertise
their own address (`worker.advertise`); inputs and output are on the S3 server. The tests cut a host's
link and heal it, kill a host for good, limit the workers' links to 100 Mbit/s, and start the whole
cluster from one config file over SSH (`zmr cluster up`).

Needs root (CI runs as root); elsewhere every test here skips, saying why.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from zmr.client import Client
from zmr.protocol import messages as m
from zmr.seq import run_sequential

from . import hosts
from .conftest import (
    APPS,
    PROBE_APP,
    independent_word_count,
    live_workers,
    probe_args,
    probe_counts,
    wait_until,
    without_probes,
)

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
S3_PORT = 9000
COORD_PORT = 5555
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "zmr-test", "AWS_SECRET_ACCESS_KEY": "zmr-test-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}


def _await_port(address: str, port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((address, port), 0.2).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"nothing listens at {address}:{port}:\n{log.read_text()}") from None
            time.sleep(0.1)


class MultiHost:
    """h0: the coordinator and the S3 server; h1..h3: one worker each. The test process is the user's
    machine on the same bridge: its client and S3 calls cross the network too."""

    def __init__(self, net: hosts.Network, tmp: Path, s3: Any, client: Client, env: dict[str, str],
                 worker_args: Callable[[hosts.Host], list[str]]) -> None:
        self.net, self.tmp, self.s3, self.client, self.env = net, tmp, s3, client, env
        self._worker_args = worker_args
        self.coordinator, self.workers = net.hosts[0], net.hosts[1:]

    def start_worker(self, host: hosts.Host) -> None:
        host.start(self._worker_args(host), self.tmp / f"worker-{host.index}.log", self.env)

    def work_dir(self, host: hosts.Host) -> Path:
        return self.tmp / f"work-{host.index}"

    def upload(self, bucket: str, files: list[Path], copies: int = 1) -> str:
        self.s3.mkdir(bucket)
        for path in files:
            data = path.read_bytes()
            for c in range(copies):
                self.s3.pipe_file(f"{bucket}/in/{c}-{path.name}", data)
        return f"s3://{bucket}/in/"

    def names(self, prefix: str) -> list[str]:
        self.s3.invalidate_cache()
        return sorted(path[len(prefix) + 1:] for path in self.s3.find(prefix))

    def lines(self, prefix: str, n_reduce: int) -> list[str]:
        return sorted(line for r in range(n_reduce)
                      for line in self.s3.cat_file(f"{prefix}/mr-out-{r}").decode().splitlines())

    def workers_alive(self) -> int:
        return live_workers(self.client)

    def nothing_left_behind(self) -> None:
        """Every worker's intermediate data of ended jobs is gone (zero clean-up), on every host."""
        def leftovers() -> list[str]:
            return [str(p) for host in self.workers for p in self.work_dir(host).glob("*/jobs/*")]
        wait_until(lambda: not leftovers(), 30, what="every worker to drop its jobs' data")


@dataclass
class Site:
    """Four namespace hosts with the S3 server running on h0, cluster keys, and the environment (S3
    endpoint and credentials) that processes there get; the test process is set up as a client too."""

    net: hosts.Network
    tmp: Path
    keys: Path
    env: dict[str, str]
    s3: Any
    coordinator_address: str


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    if why := hosts.unavailable():
        pytest.skip(why)
    keys = tmp_path / "keys"
    subprocess.run([str(BIN / "zmr"), "keys", "init", str(keys)], check=True, capture_output=True, timeout=60)
    net = hosts.Network(4)
    try:
        h0 = net.hosts[0]
        endpoint = f"http://{h0.address}:{S3_PORT}"
        env = {**CREDENTIALS, "PATH": f"{BIN}:/usr/sbin:/usr/bin:/sbin:/bin", "FSSPEC_S3_ENDPOINT_URL": endpoint,
               "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
        for key, value in {**CREDENTIALS, "FSSPEC_S3_ENDPOINT_URL": endpoint}.items():
            monkeypatch.setenv(key, value)
        import fsspec
        import fsspec.config

        monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": endpoint})
        s3_log = tmp_path / "s3.log"
        moto = h0.start([sys.executable, "-m", "moto.server", "-H", h0.address, "-p", str(S3_PORT)], s3_log, env)
        _await_port(h0.address, S3_PORT, moto, s3_log)
        yield Site(net, tmp_path, keys, env, fsspec.filesystem("s3", skip_instance_cache=True),
                   f"tcp://{h0.address}:{COORD_PORT}")
    finally:
        net.close()


@pytest.fixture
def multihost(site: Site) -> Iterator[MultiHost]:
    """The coordinator and the workers started by hand in their hosts, as a user would with `zmr-coord` and
    `zmr-worker`; the workers bind 0.0.0.0 and advertise their host's address."""
    h0, address, tmp_path = site.net.hosts[0], site.coordinator_address, site.tmp
    common = ["--set", f"security.keys_dir={site.keys}", "--set", "coordinator.heartbeat_interval=0.2",
              "--set", "coordinator.heartbeat_liveness=10"]
    coord_log = tmp_path / "coordinator.log"
    coord = h0.start([str(BIN / "zmr-coord"), "--bind", address, "--no-dashboard", *common], coord_log, site.env)
    _await_port(h0.address, COORD_PORT, coord, coord_log)

    def worker_args(host: hosts.Host) -> list[str]:
        return [str(BIN / "zmr-worker"), "--coordinator", address, "--data-bind", "tcp://0.0.0.0:*",
                "--work-dir", str(tmp_path / f"work-{host.index}"), "--set", f"worker.advertise={host.address}",
                *common]

    with Client(address, timeout=20.0, keys_dir=str(site.keys)) as client:
        cluster = MultiHost(site.net, tmp_path, site.s3, client, site.env, worker_args)
        for host in cluster.workers:
            cluster.start_worker(host)
        wait_until(lambda: cluster.workers_alive() == 3, 60, what="three workers to register")
        workers = cluster.client.status().workers
        assert sorted(w.data_addr.rpartition(":")[0] for w in workers) == [
            f"tcp://{h.address}" for h in cluster.workers]   # each advertises its own host's address
        yield cluster


def test_a_job_with_inputs_and_output_on_s3_runs_across_three_hosts(multihost: MultiHost, library: Path) -> None:
    books = sorted(library.glob("*.txt"))
    inputs = multihost.upload("books", books)
    job = multihost.client.submit(str(APPS / "wc.py"), [inputs], "s3://books/out", n_reduce=3,
                                  split_size=256 << 10)
    info = multihost.client.wait(job, timeout=180)
    assert info.state == "succeeded", info.error
    assert multihost.names("books/out") == ["_SUCCESS", "mr-out-0", "mr-out-1", "mr-out-2"]
    assert multihost.lines("books/out", 3) == independent_word_count(books)
    ran_on = {t.worker for t in multihost.client.job(job).tasks if t.kind == "map"}
    assert len(ran_on) == 3, "every host ran maps"
    multihost.nothing_left_behind()


def test_a_host_cut_off_mid_job_and_healed_changes_nothing_in_the_output(multihost: MultiHost,
                                                                        library: Path, tmp_path: Path) -> None:
    """Host 1's link goes down for 8 s while its maps run: longer than the coordinator waits for heartbeats,
    so it is declared dead and its work runs elsewhere; when the link heals, it comes back as a worker."""
    markers = tmp_path / "markers"   # written by workers on their own hosts: the same folder, not shared data
    markers.mkdir()
    books = sorted(library.glob("*.txt"))
    inputs = multihost.upload("cut", books)
    job = multihost.client.submit(str(PROBE_APP), [inputs], "s3://cut/out", n_reduce=3, split_size=128 << 10,
                                  args=probe_args(markers, probe_r=3, map_sleep=0.3))
    victim = multihost.workers[0]
    wait_until(lambda: multihost.client.job(job, tasks=False).maps_done >= 3, 60, what="some maps to finish")
    victim.cut()
    try:
        wait_until(lambda: multihost.workers_alive() == 2, 30, interval=0.2,
                   what="the cut-off worker to be declared dead")
        time.sleep(3)
    finally:
        victim.heal()
    info = multihost.client.wait(job, timeout=180)
    assert info.state == "succeeded", info.error
    lines = multihost.lines("cut/out", 3)
    assert probe_counts(lines) == {r: info.maps_total for r in range(3)}   # each map counted once
    assert without_probes(lines) == independent_word_count(books)
    assert multihost.names("cut/out") == ["_SUCCESS", "mr-out-0", "mr-out-1", "mr-out-2"]
    wait_until(lambda: multihost.workers_alive() == 3, 60, what="the healed host's worker to be back")
    again = multihost.client.submit(str(APPS / "wc.py"), [inputs], "s3://cut/again", n_reduce=2)
    assert multihost.client.wait(again, timeout=120).state == "succeeded"
    multihost.nothing_left_behind()


def test_a_host_killed_for_good_mid_job_changes_nothing_in_the_output(multihost: MultiHost, library: Path,
                                                                     tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    books = sorted(library.glob("*.txt"))
    inputs = multihost.upload("kill", books)
    job = multihost.client.submit(str(PROBE_APP), [inputs], "s3://kill/out", n_reduce=3, split_size=128 << 10,
                                  args=probe_args(markers, probe_r=3, map_sleep=0.3))
    wait_until(lambda: multihost.client.job(job, tasks=False).maps_done >= 3, 60, what="some maps to finish")
    multihost.workers[1].kill()
    info = multihost.client.wait(job, timeout=180)
    assert info.state == "succeeded", info.error
    lines = multihost.lines("kill/out", 3)
    assert probe_counts(lines) == {r: info.maps_total for r in range(3)}
    assert without_probes(lines) == independent_word_count(books)
    assert multihost.names("kill/out") == ["_SUCCESS", "mr-out-0", "mr-out-1", "mr-out-2"]
    wait_until(lambda: multihost.workers_alive() == 2, 30, what="the killed host's worker to be declared dead")


def test_on_100_mbit_links_the_compressed_shuffle_moves_fewer_bytes(multihost: MultiHost, library: Path,
                                                                    tmp_path: Path) -> None:
    """The same job with the shuffle plain and compressed, on links as they are and then with every worker
    host's link at 100 Mbit/s (the S3 server's stays as it is, as a store's would): each right (the
    sequential reference's output), and compression moves fewer bytes over the links. The times are
    printed (`pytest -s`) to measure by, after one job that warms the workers up."""
    inputs = multihost.upload("slow", sorted(library.glob("*.txt")), copies=3)
    reference = run_sequential(str(APPS / "indexer.py"), [inputs], tmp_path / "seq")
    expected = sorted(reference.read_text(encoding="utf-8").splitlines())
    warm = multihost.client.submit(str(APPS / "indexer.py"), [inputs], "s3://slow/warm", n_reduce=3)
    assert multihost.client.wait(warm, timeout=300).state == "succeeded"
    shuffled: dict[str, int] = {}
    for links in ("as they are", "100mbit"):
        if links == "100mbit":
            for host in multihost.workers:
                host.limit(links)
        for codec in ("none", "zstd", "lz4"):
            out = f"slow/{codec}-{links.replace(' ', '-')}"
            started = time.monotonic()
            job = multihost.client.submit(str(APPS / "indexer.py"), [inputs], f"s3://{out}", n_reduce=3,
                                          split_size=512 << 10, compression=codec)   # type: ignore[arg-type]
            info = multihost.client.wait(job, timeout=300)
            assert info.state == "succeeded", info.error
            shuffled[codec] = info.bytes_shuffled
            print(f"links {links}, shuffle {codec}: {time.monotonic() - started:.2f} s, "
                  f"{info.bytes_shuffled / 1e6:.1f} MB shuffled")
            assert multihost.names(out) == ["_SUCCESS", "mr-out-0", "mr-out-1", "mr-out-2"]
            assert multihost.lines(out, 3) == expected
    assert shuffled["zstd"] < shuffled["none"] * 0.6 and shuffled["lz4"] < shuffled["none"] * 0.8, shuffled


SSHD = "/usr/sbin/sshd"


def _start_sshd(site: Site, host: hosts.Host, authorized: Path, host_key: Path) -> None:
    """An OpenSSH server on `host` that lets in the test's key as root and takes the S3 environment."""
    config = site.tmp / f"sshd-{host.index}.conf"
    config.write_text(f"""ListenAddress {host.address}:22
HostKey {host_key}
AuthorizedKeysFile {authorized}
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PidFile {site.tmp}/sshd-{host.index}.pid
AcceptEnv AWS_* FSSPEC_*
""")
    Path("/run/sshd").mkdir(exist_ok=True)   # its privilege-separation directory
    log = site.tmp / f"sshd-{host.index}.log"
    _await_port(host.address, 22, host.start([SSHD, "-D", "-e", "-f", str(config)], log, site.env), log)


def _workers_on(host: hosts.Host) -> list[int]:
    """The pids of the zmr workers running in `host`."""
    found = []
    for pid in subprocess.run(["ip", "netns", "pids", host.ns], capture_output=True, text=True).stdout.split():
        try:
            if b"zmr-worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            continue
    return found


def test_one_config_starts_a_cluster_across_three_hosts_over_ssh(site: Site, library: Path) -> None:
    """`zmr cluster up CONFIG` on h0 runs the coordinator there and one worker on each of h1..h3 through
    their SSH servers; a worker killed on its host is started again; `zmr cluster down CONFIG` stops all,
    and so does SIGKILL of the launcher."""
    if not (Path(SSHD).exists() and shutil.which("ssh") and shutil.which("ssh-keygen")):
        pytest.skip("needs the OpenSSH server and client (openssh-server)")
    tmp = site.tmp
    for name in ("id", "host"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / name)], check=True, timeout=30)
    (tmp / "authorized_keys").write_text((tmp / "id.pub").read_text())
    workers = site.net.hosts[1:]
    for host in workers:
        _start_sshd(site, host, tmp / "authorized_keys", tmp / "host")
    ssh = ["ssh", "-i", str(tmp / "id"), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
           "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "SendEnv=AWS_* FSSPEC_*"]
    config = tmp / "cluster.toml"
    config.write_text(f"""[coordinator]
bind = "{site.coordinator_address}"
heartbeat_interval = 0.2
heartbeat_liveness = 10
dashboard = ""

[worker]
coordinator = "{site.coordinator_address}"
work_dir = "{tmp / 'remote-work'}"

[security]
keys_dir = "{site.keys}"

[cluster]
ssh_command = {json.dumps(ssh)}
worker_command = "{BIN / 'zmr-worker'}"
""" + "".join(f"""
[[cluster.hosts]]
address = "{host.address}"
ssh = "root@{host.address}"
""" for host in workers))
    h0 = site.net.hosts[0]
    up_log = tmp / "cluster-up.log"
    up = h0.start([str(BIN / "zmr"), "cluster", "up", str(config)], up_log, site.env)
    try:
        with Client(site.coordinator_address, timeout=20.0, keys_dir=str(site.keys)) as client:
            def alive() -> list[m.WorkerInfo]:
                return [w for w in client.status().workers if w.state != "dead"] if live_workers(client) else []

            wait_until(lambda: len(alive()) == 3, 60, what=f"three workers over SSH (log: {up_log.read_text()})")
            assert sorted(w.data_addr.rpartition(":")[0] for w in alive()) == [f"tcp://{h.address}" for h in workers]
            books = sorted(library.glob("*.txt"))
            site.s3.mkdir("ssh")
            for book in books:
                site.s3.pipe_file(f"ssh/in/{book.name}", book.read_bytes())
            job = client.submit(str(APPS / "wc.py"), ["s3://ssh/in/"], "s3://ssh/out", n_reduce=3,
                                split_size=256 << 10)
            assert client.wait(job, timeout=180).state == "succeeded"
            site.s3.invalidate_cache()
            assert sorted(line for r in range(3) for line in site.s3.cat_file(f"ssh/out/mr-out-{r}").decode()
                          .splitlines()) == independent_word_count(books)

            before = {w.worker_id for w in alive()}
            [victim] = _workers_on(workers[1])
            os.kill(victim, signal.SIGKILL)
            wait_until(lambda: len(alive()) == 3 and {w.worker_id for w in alive()} != before, 60,
                       what="the killed worker to be started again over SSH")
            assert "exited" in up_log.read_text()
        down = subprocess.run([str(BIN / "zmr"), "cluster", "down", str(config)], capture_output=True, text=True,
                              timeout=90)
        assert down.returncode == 0, down.stderr
        assert up.wait(timeout=30) == 0, up_log.read_text()
        wait_until(lambda: not any(_workers_on(h) for h in workers), 30, what="every remote worker to stop")
        assert not list((tmp / "remote-work").iterdir())   # each stopped worker took its data with it

        # a launcher killed outright takes its remote workers with it: none is left to join a later cluster
        again = h0.start([str(BIN / "zmr"), "cluster", "up", str(config)], up_log, site.env)
        with Client(site.coordinator_address, timeout=20.0, keys_dir=str(site.keys)) as client:
            wait_until(lambda: live_workers(client) == 3, 60, what="three workers over SSH again")
        os.kill(again.pid, signal.SIGKILL)
        again.wait(timeout=10)
        wait_until(lambda: not any(_workers_on(h) for h in workers), 30,
                   what="every remote worker to stop with its killed launcher")
    finally:
        if up.poll() is None:
            up.kill()
