"""`zmr.runfile`: which `zmr cluster up` runs a config, so `zmr cluster down` finds it; with real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from zmr import runfile
from zmr.errors import ClusterError

HOLDER = """
import sys, time
from zmr import runfile
with runfile.holding(sys.argv[1]):
    print("holding", flush=True)
    time.sleep(60)
"""


def test_a_config_has_one_launcher_which_stop_ends(tmp_path: Path) -> None:
    config = str(tmp_path / "cluster.toml")
    with pytest.raises(ClusterError, match="no cluster of .* is running on this machine"):
        runfile.stop(config)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, config], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        assert runfile.running(config) == holder.pid
        assert runfile.running(str(tmp_path / "other.toml")) is None
        with pytest.raises(ClusterError, match=rf"running already \(pid {holder.pid}\)"), runfile.holding(config):
            pass
        assert runfile.stop(config, timeout=10) == holder.pid   # ends even while a zombie nobody reaped yet
        assert holder.wait(timeout=10) != 0   # SIGTERM, which this stand-in does not handle
        assert runfile.running(config) is None
    finally:
        holder.kill()
        holder.wait()


def test_a_launcher_killed_outright_leaves_a_stale_record_that_the_next_one_takes_over(tmp_path: Path) -> None:
    config = str(tmp_path / "cluster.toml")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, config], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
    holder.kill()
    holder.wait()
    assert runfile.running(config) is None   # its file is still there, its process is not
    with runfile.holding(config):
        assert runfile.running(config) == os.getpid()
    assert runfile.running(config) is None   # the record goes with the block
