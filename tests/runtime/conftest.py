"""An executor with real (unconnected) sockets and stores, not started: tests drive its methods or start it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import zmq

from zmr.runtime.executor import Executor, ExecutorSettings
from zmr.runtime.stores import MapOutputStore, ReceiveStore
from zmr.runtime.zygote import Zygote


@pytest.fixture()
def executor(tmp_path: Path) -> Iterator[Executor]:
    ctx: zmq.Context[Any] = zmq.Context()
    settings = ExecutorSettings(worker_id="w-1", work_dir=tmp_path / "work", memory_budget=64 << 20,
                                max_message_bytes=1 << 20, pull_timeout=1.0, commit_timeout=1.0)
    ex = Executor(ctx, settings, {}, ReceiveStore(tmp_path), MapOutputStore(tmp_path), lambda report: None,
                  log=structlog.get_logger(), zygote=Zygote.start())
    yield ex
    if ex.is_alive():
        ex.stop()
        ex.join(timeout=5)
    ex.shutdown()
    ctx.term()
