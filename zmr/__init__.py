"""zmr: a MapReduce engine for Python on ZeroMQ, with a streaming peer-to-peer shuffle.

The public API is what `__all__` lists; everything else may change without notice.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zmr.apps import App, load_app
    from zmr.client import Client
    from zmr.config import Config, load_config
    from zmr.errors import (
        AppError,
        AuthenticationFailed,
        ClusterError,
        ConfigError,
        JobFailed,
        JobSpecError,
        NoAnswer,
        ProtocolError,
        ZmrError,
    )
    from zmr.local import LocalCluster, run
    from zmr.seq import run_sequential
    from zmr.steps import FILES, Step

# Where each public name lives. They are imported on first use, so a process that needs a part of
# zmr (a worker, `zmr --help`) does not pay for loading all of it at start-up.
_HOMES = {
    "App": "zmr.apps", "load_app": "zmr.apps", "Client": "zmr.client", "Config": "zmr.config",
    "load_config": "zmr.config", "LocalCluster": "zmr.local", "run": "zmr.local", "run_sequential": "zmr.seq",
    "Step": "zmr.steps", "FILES": "zmr.steps",
    **{name: "zmr.errors" for name in ("AppError", "AuthenticationFailed", "ClusterError", "ConfigError",
                                       "JobFailed", "JobSpecError", "NoAnswer", "ProtocolError", "ZmrError")},
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'zmr' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
    "App",
    "AppError",
    "AuthenticationFailed",
    "Client",
    "ClusterError",
    "Config",
    "ConfigError",
    "FILES",
    "JobFailed",
    "JobSpecError",
    "LocalCluster",
    "NoAnswer",
    "ProtocolError",
    "Step",
    "ZmrError",
    "__version__",
    "load_app",
    "load_config",
    "run",
    "run_sequential",
]
