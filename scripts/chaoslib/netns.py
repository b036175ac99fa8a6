"""A private network on this machine: one namespace per worker, joined by a bridge in the root namespace.

The bridge holds `<prefix>.1` (where the coordinator binds), worker i's namespace holds `<prefix>.<10+i>`
on the inner end of a veth pair whose outer end is a port of the bridge. Cutting worker i sets that
outer end down, so its packets go nowhere until it is set up again. Names carry this process's pid, so
two runs never share a device, and `teardown` removes every namespace, veth and bridge it made, even
after a failure half-way through `setup`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field


def unavailable() -> str:
    """Why private namespaces cannot be used here, or '' if they can."""
    if os.geteuid() != 0:
        return "needs root (ip netns add)"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2)"
    probe = f"zmrc-probe-{os.getpid()}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return ""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


@dataclass
class Network:
    """The bridge and one namespace per worker; `prefix` is the /24 the addresses come from."""

    workers: int
    prefix: str = "10.77.0"
    tag: str = field(default_factory=lambda: str(os.getpid() % 100_000))
    made_links: list[str] = field(default_factory=list)
    made_namespaces: list[str] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return f"zcb{self.tag}"

    @property
    def host_address(self) -> str:
        return f"{self.prefix}.1"

    def namespace(self, i: int) -> str:
        return f"zmr-chaos-{self.tag}-w{i}"

    def address(self, i: int) -> str:
        return f"{self.prefix}.{10 + i}"

    def outer(self, i: int) -> str:
        return f"zcv{self.tag}-{i}"   # at most 15 characters: a Linux interface name limit

    def inner(self, i: int) -> str:
        return f"zcp{self.tag}-{i}"

    def exec_prefix(self, i: int) -> list[str]:
        """Run a command in worker i's namespace (`ip netns exec` execs it: the pid stays the same)."""
        return ["ip", "netns", "exec", self.namespace(i)]

    def setup(self) -> None:
        """Make the bridge and the namespaces; refuse a /24 that this machine already uses (another run)."""
        taken = _ip("-o", "addr", "show", "to", f"{self.prefix}.0/24", check=False).stdout.strip()
        if taken:
            raise RuntimeError(f"{self.prefix}.0/24 is already in use on this machine ({taken.split()[1]}): "
                               "another run? pick another with --net-prefix")
        _ip("link", "add", self.bridge, "type", "bridge")
        self.made_links.append(self.bridge)
        _ip("addr", "add", f"{self.host_address}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i in range(self.workers):
            self._add_worker(i)

    def _add_worker(self, i: int) -> None:
        ns, outer, inner = self.namespace(i), self.outer(i), self.inner(i)
        _ip("netns", "add", ns)
        self.made_namespaces.append(ns)
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        self.made_links.append(outer)
        _ip("link", "set", outer, "master", self.bridge)
        _ip("link", "set", outer, "up")
        _ip("link", "set", inner, "netns", ns)
        for args in (["addr", "add", f"{self.address(i)}/24", "dev", inner], ["link", "set", inner, "up"],
                     ["link", "set", "lo", "up"]):
            _ip("netns", "exec", ns, "ip", *args)

    def cut(self, i: int) -> None:
        _ip("link", "set", self.outer(i), "down")

    def restore(self, i: int) -> None:
        _ip("link", "set", self.outer(i), "up")

    def teardown(self) -> list[str]:
        """Remove everything made; returns what could not be removed (to report, never to ignore)."""
        failed = []
        for ns in reversed(self.made_namespaces):   # takes the inner veth ends, and so their outer peers
            if _ip("netns", "del", ns, check=False).returncode != 0:
                failed.append(f"netns {ns}")
        for link in reversed(self.made_links):
            if _ip("link", "show", link, check=False).returncode == 0 and \
                    _ip("link", "del", link, check=False).returncode != 0:
                failed.append(f"link {link}")
        self.made_namespaces.clear()
        self.made_links.clear()
        return failed

    def leftovers(self) -> list[str]:
        """Namespaces or links of this run still on the machine (after `teardown`: should be none)."""
        ours = (f"zmr-chaos-{self.tag}-", self.bridge, f"zcv{self.tag}-", f"zcp{self.tag}-")
        names = _ip("netns", "list", check=False).stdout.split()
        lines = _ip("-o", "link", "show", check=False).stdout.splitlines()
        links = [line.split(":")[1].strip().split("@")[0] for line in lines if line.count(":") >= 2]
        return [name for name in names + links if name.startswith(ours)]
