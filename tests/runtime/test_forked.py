"""Forked cluster processes: when forking is allowed, and what a forked child looks like from outside.

Each case runs in a fresh interpreter, as `zmr run` does: pytest's own process may hold threads.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc")


def run_script(body: str, tmp_path: Path) -> dict[str, object]:
    script = textwrap.dedent("""
        import json, os, signal, subprocess, sys, threading, time
        from pathlib import Path
        from zmr.runtime.forked import can_fork, fork_command
        tmp = Path(sys.argv[1])
        out = {}
    """) + textwrap.dedent(body) + "\nprint(json.dumps(out))\n"
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_forking_is_allowed_only_while_the_process_has_one_thread(tmp_path: Path) -> None:
    out = run_script("""
        out["alone"] = can_fork()
        stop = threading.Event()
        t = threading.Thread(target=stop.wait)
        t.start()
        out["with_thread"] = can_fork()
        stop.set(); t.join()
        deadline = time.monotonic() + 5   # the OS thread ends a moment after join() returns
        while not can_fork() and time.monotonic() < deadline:
            time.sleep(0.001)
        out["alone_again"] = can_fork()
    """, tmp_path)
    assert out == {"alone": True, "with_thread": False, "alone_again": True}


def test_a_forked_command_runs_in_its_own_session_under_its_title_and_exits_with_its_code(tmp_path: Path) -> None:
    out = run_script("""
        def command(argv):
            print("hello from", argv[0], flush=True)
            time.sleep(0.5)
            return 7
        child = fork_command(command, ["child"], ["python", "-m", "zmr", "worker", "--x", "1"], str(tmp / "c.log"))
        time.sleep(0.2)
        out["cmdline"] = Path(f"/proc/{child.pid}/cmdline").read_bytes().decode().strip("\\0")
        out["own_session"] = os.getsid(child.pid) == child.pid
        out["running"] = child.poll() is None
        out["code"] = child.wait(timeout=10)
        out["log"] = (tmp / "c.log").read_text()
    """, tmp_path)
    assert out["cmdline"] == "python -m zmr worker --x 1"
    assert out["own_session"] and out["running"]
    assert out["code"] == 7
    assert out["log"] == "hello from child\n"


def test_a_forked_child_keeps_no_descriptor_of_the_launcher_but_its_stdio(tmp_path: Path) -> None:
    out = run_script("""
        read_end, write_end = os.pipe()
        def command(argv):
            print(sorted(int(fd) for fd in os.listdir("/proc/self/fd")))
            return 0
        child = fork_command(command, [], ["zmr-test"], str(tmp / "c.log"))
        out["code"] = child.wait(timeout=10)
        out["fds"] = (tmp / "c.log").read_text().strip()
    """, tmp_path)
    assert out == {"code": 0, "fds": "[0, 1, 2, 3]"}, "fd 3 is the listing's own: the pipe's ends are closed"


def test_a_forked_command_that_raises_exits_1_with_its_traceback_in_the_log(tmp_path: Path) -> None:
    out = run_script("""
        def command(argv):
            raise RuntimeError("boom in the child")
        child = fork_command(command, [], ["zmr-test"], str(tmp / "c.log"))
        out["code"] = child.wait(timeout=10)
        out["log"] = (tmp / "c.log").read_text()
    """, tmp_path)
    assert out["code"] == 1
    assert "Traceback" in str(out["log"]) and "RuntimeError: boom in the child" in str(out["log"])


def test_a_forked_child_is_waited_for_signalled_and_killed_like_a_popen(tmp_path: Path) -> None:
    out = run_script("""
        def command(argv):
            time.sleep(60)
            return 0
        child = fork_command(command, [], ["zmr-test"], str(tmp / "c.log"))
        try:
            child.wait(timeout=0.1)
            out["timed_out"] = False
        except subprocess.TimeoutExpired:
            out["timed_out"] = True
        child.send_signal(signal.SIGTERM)
        out["term"] = child.wait(timeout=10)
        other = fork_command(command, [], ["zmr-test"], str(tmp / "d.log"))
        other.kill()
        out["kill"] = other.wait(timeout=10)
        other.kill()   # already gone: no error
    """, tmp_path)
    assert out == {"timed_out": True, "term": -15, "kill": -9}
