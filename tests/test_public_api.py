"""The curated public API: exactly these names, all importable from `zmr`."""

import zmr

EXPECTED = {
    "App", "AppError", "AuthenticationFailed", "Client", "ClusterError", "Config", "ConfigError", "FILES", "JobFailed",
    "JobSpecError", "LocalCluster", "NoAnswer", "ProtocolError", "ZmrError", "__version__", "load_app", "load_config",
    "run", "run_sequential", "Step",
}


def test_all_is_the_curated_api() -> None:
    assert set(zmr.__all__) == EXPECTED


def test_every_public_name_resolves() -> None:
    for name in zmr.__all__:
        assert getattr(zmr, name) is not None, name


def test_errors_share_one_root() -> None:
    for name in ("AppError", "AuthenticationFailed", "ClusterError", "ConfigError", "JobFailed", "JobSpecError",
                 "ProtocolError"):
        assert issubclass(getattr(zmr, name), zmr.ZmrError)
