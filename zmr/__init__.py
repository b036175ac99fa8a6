"""zmr: a MapReduce engine for Python on ZeroMQ, with a streaming peer-to-peer shuffle.

The public API is what `__all__` lists; everything else may change without notice.
"""

from zmr.apps import App, load_app
from zmr.client import Client
from zmr.config import Config, load_config
from zmr.errors import (
    AppError,
    ClusterError,
    ConfigError,
    JobFailed,
    JobSpecError,
    NoAnswer,
    ProtocolError,
    ZmrError,
)
from zmr.runtime.local import LocalCluster
from zmr.seq import run_sequential

__version__ = "0.1.0"

__all__ = [
    "App",
    "AppError",
    "Client",
    "ClusterError",
    "Config",
    "ConfigError",
    "JobFailed",
    "JobSpecError",
    "LocalCluster",
    "NoAnswer",
    "ProtocolError",
    "ZmrError",
    "__version__",
    "load_app",
    "load_config",
    "run_sequential",
]
