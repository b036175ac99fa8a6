"""Inputs on an object store: a real S3 API server (moto's server mode, started here on loopback), read by
workers in byte ranges through fsspec, with the credentials and endpoint of the environment."""

from __future__ import annotations

import gzip
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from zmr.errors import JobSpecError
from zmr.seq import run_sequential

from .conftest import APPS, Cluster, independent_word_count, read_output

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=out, stderr=out, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the S3 server did not start:\n{log.read_text()}") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> object:
    """An S3 filesystem on the server; the environment every process started from here inherits says
    where it is and which (fake) credentials to use, as a user's environment would."""
    for key, value in {"AWS_ACCESS_KEY_ID": "zmr-test", "AWS_SECRET_ACCESS_KEY": "zmr-test-secret",
                       "AWS_DEFAULT_REGION": "us-east-1", "FSSPEC_S3_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(key, value)
    import fsspec
    import fsspec.config

    monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": s3_endpoint})   # read at import: set it here
    return fsspec.filesystem("s3", skip_instance_cache=True)


def test_a_job_reads_its_inputs_from_s3_in_byte_ranges(s3: object, library: Path, tmp_path: Path, cluster) -> None:
    fs = s3
    bucket = "zmr-books"
    fs.mkdir(bucket)   # type: ignore[attr-defined]
    books = sorted(library.glob("*.txt"))
    for i, book in enumerate(books):
        data = book.read_bytes()
        name, data = (f"{book.name}.gz", gzip.compress(data)) if i % 4 == 3 else (book.name, data)
        with fs.open(f"{bucket}/library/{name}", "wb") as f:   # type: ignore[attr-defined]
            f.write(data)
    with fs.open(f"{bucket}/library/.hidden", "wb") as f:   # type: ignore[attr-defined]
        f.write(b"not an input\n")
    c: Cluster = cluster(2)
    assert c.client is not None
    out = tmp_path / "out"
    job = c.client.submit(str(APPS / "wc.py"), [f"s3://{bucket}/library/"], str(out), n_reduce=3,
                          split_size=128 << 10)
    info = c.client.wait(job, timeout=120)
    expected = independent_word_count(books)
    assert read_output(out, 3) == expected
    assert info.compressed_inputs == 2 and info.maps_total > 20   # the plain objects in many ranges each
    reference = run_sequential(str(APPS / "wc.py"), [f"s3://{bucket}/library/"], tmp_path / "seq")
    assert sorted(reference.read_text().splitlines()) == sorted(expected)


def test_a_missing_object_or_bucket_is_refused_by_name(s3: object, tmp_path: Path, cluster) -> None:
    c: Cluster = cluster(1)
    assert c.client is not None
    for url in ("s3://zmr-books/no/such/key.txt", "s3://zmr-no-such-bucket/x"):
        with pytest.raises(JobSpecError, match=f"input '{url}' (does not exist|cannot be listed)"):
            c.client.submit(str(APPS / "wc.py"), [url], str(tmp_path / "out"), n_reduce=1)
