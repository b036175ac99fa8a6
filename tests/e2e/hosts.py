"""Hosts for the multi-host tests: Linux network namespaces on one bridge, each with its own address.

A switch namespace holds the bridge; each host namespace has one veth link to it (`eth0`, 10.213.0.<i+1>/24
for host i), and the test process itself is on the bridge too, at 10.213.0.254, as a user's machine would
be. Cutting a host's link takes its switch port down; a rate limit is a tbf qdisc at both ends of its link;
killing a host kills every process in its namespace. Needs root and iproute2: `unavailable()` says why not.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

SUBNET = "10.213.0"
OUTSIDE = f"{SUBNET}.254"   # the test process's own address on the bridge


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def unavailable() -> str:
    """Why network-namespace hosts cannot be built here, or ''."""
    if os.geteuid() != 0:
        return "multi-host tests build network namespaces, which needs root"
    if not shutil.which("ip") or not shutil.which("tc"):
        return "multi-host tests need ip and tc (iproute2)"
    probe = f"zmrprobe{os.getpid()}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot make a network namespace here: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return ""


class Host:
    """One namespace host: its address, and the processes started in it."""

    def __init__(self, net: Network, index: int) -> None:
        self.net, self.index = net, index
        self.ns = f"{net.tag}-h{index}"
        self.address = f"{SUBNET}.{index + 1}"
        self.port = f"p{index}"   # its link's port on the switch
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, args: Sequence[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """A process in this host's namespace, its output in `log`."""
        with open(log, "ab") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", self.ns, *args], stdout=out, stderr=out,
                                    stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        self.procs.append(proc)
        return proc

    def run(self, args: Sequence[str], env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.ns, *args], capture_output=True, text=True, env=env,
                              timeout=timeout, check=False)

    def cut(self) -> None:
        """Take this host's link down: nothing reaches it and nothing leaves it, its processes live on."""
        _ip("-n", self.net.switch, "link", "set", self.port, "down")

    def heal(self) -> None:
        _ip("-n", self.net.switch, "link", "set", self.port, "up")

    def limit(self, rate: str) -> None:
        """Limit this host's link to `rate` (tc's units, e.g. 100mbit) in both directions."""
        for ns, dev in ((self.ns, "eth0"), (self.net.switch, self.port)):
            subprocess.run(["tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", "tbf", "rate", rate,
                            "burst", "256kb", "latency", "100ms"], check=True, capture_output=True, timeout=30)

    def kill(self) -> None:
        """The host dies: every process in its namespace is SIGKILLed at once."""
        found = _ip("netns", "pids", self.ns, check=False).stdout.split()
        for pid in found:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


class Network:
    """`n` hosts on one bridge; `close()` kills every process in them and removes everything it made."""

    def __init__(self, n: int) -> None:
        self.tag = f"zmr{os.getpid()}"
        self.switch = f"{self.tag}-sw"
        self.outside = f"zo{os.getpid() % 10_000_000}"   # the test process's link, in this namespace
        self.hosts = [Host(self, i) for i in range(n)]
        self._made: list[str] = []
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        _ip("netns", "add", self.switch)
        self._made.append(self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        for host in self.hosts:
            _ip("netns", "add", host.ns)
            self._made.append(host.ns)
            _ip("link", "add", "eth0", "netns", host.ns, "type", "veth", "peer", "name", host.port,
                "netns", self.switch)
            _ip("-n", host.ns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            _ip("-n", host.ns, "link", "set", "eth0", "up")
            _ip("-n", host.ns, "link", "set", "lo", "up")
            _ip("-n", self.switch, "link", "set", host.port, "master", "br0", "up")
        _ip("link", "add", self.outside, "type", "veth", "peer", "name", "po", "netns", self.switch)
        _ip("addr", "add", f"{OUTSIDE}/24", "dev", self.outside)
        _ip("link", "set", self.outside, "up")
        _ip("-n", self.switch, "link", "set", "po", "master", "br0", "up")

    def close(self) -> None:
        for host in self.hosts:
            if host.ns in self._made:
                host.kill()
        _ip("link", "del", self.outside, check=False)
        for ns in reversed(self._made):
            _ip("netns", "del", ns, check=False)
        self._made.clear()
