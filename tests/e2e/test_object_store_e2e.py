"""Inputs and outputs on an object store: a real S3 API server (moto's server mode, started here on
loopback). Workers read inputs in byte ranges through fsspec, with the credentials and endpoint of the
environment, and commit output there without a rename (see `zmr.runtime.object_outputs`)."""

from __future__ import annotations

import gzip
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zmr.errors import JobFailed, JobSpecError, ZmrError
from zmr.protocol import success
from zmr.protocol.messages import AttemptId
from zmr.runtime import object_outputs
from zmr.seq import run_sequential

from .conftest import (
    APPS,
    FAST_FLAGS,
    KILL_SETTINGS,
    PROBE_APP,
    Cluster,
    await_hold,
    independent_word_count,
    probe_args,
    probe_counts,
    read_output,
    release_hold,
    without_probes,
)

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
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An S3 filesystem on the server; the environment every process started from here inherits says
    where it is and which (fake) credentials to use, as a user's environment would."""
    for key, value in {"AWS_ACCESS_KEY_ID": "zmr-test", "AWS_SECRET_ACCESS_KEY": "zmr-test-secret",
                       "AWS_DEFAULT_REGION": "us-east-1", "FSSPEC_S3_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(key, value)
    import fsspec
    import fsspec.config

    monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": s3_endpoint})   # read at import: set it here
    return fsspec.filesystem("s3", skip_instance_cache=True)


def _upload_library(fs: Any, library: Path, bucket: str) -> list[Path]:
    """The library's books under `bucket/library/`, every fourth gzipped, plus hidden objects (a dot file,
    and an earlier job's `_SUCCESS`)."""
    fs.mkdir(bucket)
    books = sorted(library.glob("*.txt"))
    for i, book in enumerate(books):
        data = book.read_bytes()
        name, data = (f"{book.name}.gz", gzip.compress(data)) if i % 4 == 3 else (book.name, data)
        fs.pipe_file(f"{bucket}/library/{name}", data)
    fs.pipe_file(f"{bucket}/library/.hidden", b"not an input\n")
    fs.pipe_file(f"{bucket}/library/_SUCCESS", b"not an input either\n")
    return books


def _names(fs: Any, prefix: str) -> list[str]:
    """Every object under `prefix`, by its name there, read afresh."""
    fs.invalidate_cache()
    return sorted(path[len(prefix) + 1:] for path in fs.find(prefix))


def _lines(fs: Any, prefix: str, n_reduce: int) -> list[str]:
    return sorted(line for r in range(n_reduce) for line in fs.cat_file(f"{prefix}/mr-out-{r}").decode().splitlines())


def test_a_job_reads_its_inputs_from_s3_in_byte_ranges(s3: object, library: Path, tmp_path: Path, cluster) -> None:
    bucket = "zmr-books"
    books = _upload_library(s3, library, bucket)
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


def test_a_job_with_inputs_and_output_on_s3_commits_each_partition_once(s3: Any, library: Path, cluster) -> None:
    books = _upload_library(s3, library, "zmr-io")
    c: Cluster = cluster(2)
    assert c.client is not None
    out, prefix = "s3://zmr-io/results/wc", "zmr-io/results/wc"
    job = c.client.submit(str(APPS / "wc.py"), ["s3://zmr-io/library/"], out, n_reduce=3, split_size=128 << 10)
    info = c.client.wait(job, timeout=120)
    assert info.output_dir == out
    assert _names(s3, prefix) == ["_SUCCESS", "mr-out-0", "mr-out-1", "mr-out-2"]   # no staged key is left
    marker = success.decode(s3.cat_file(f"{prefix}/_SUCCESS"))
    assert marker is not None and marker.job_id == job
    expected = independent_word_count(books)
    assert _lines(s3, prefix, 3) == expected
    assert sorted(f"{key} {value}" for key, value in c.client.results(job)) == expected

    first = s3.cat_file(f"{prefix}/mr-out-0")
    with pytest.raises(ZmrError, match=f"output {out} already holds output"):
        c.client.submit(str(APPS / "wc.py"), [str(library)], out, n_reduce=2)
    assert s3.cat_file(f"{prefix}/mr-out-0") == first   # refused before anything was touched
    again = c.client.submit(str(APPS / "wc.py"), [str(library)], out, n_reduce=2, overwrite=True)
    assert c.client.wait(again, timeout=120).state == "succeeded"
    assert _names(s3, prefix) == ["_SUCCESS", "mr-out-0", "mr-out-1"]   # the old job's mr-out-2 went too
    assert _lines(s3, prefix, 2) == expected


def test_zmr_run_refused_by_its_coordinator_leaves_no_scratch_behind(s3: Any, s3_endpoint: str, library: Path,
                                                                      tmp_path: Path, run_zmr) -> None:
    """An output at a URL is checked at submit, by the cluster `zmr run` started: its refusal is the whole
    story, so the cluster's folder (logs and all) goes with it."""
    s3.mkdir("zmr-refused")
    s3.pipe_file("zmr-refused/out/mr-out-0", b"old 1\n")
    env = {"AWS_ACCESS_KEY_ID": "zmr-test", "AWS_SECRET_ACCESS_KEY": "zmr-test-secret",
           "AWS_DEFAULT_REGION": "us-east-1", "FSSPEC_S3_ENDPOINT_URL": s3_endpoint}
    result = run_zmr("run", "--app", str(APPS / "wc.py"), "--input", str(library), "--output", "s3://zmr-refused/out",
                     "--workers", "1", "--n-reduce", "1", *FAST_FLAGS, env=env)
    assert result.returncode == 1, str(result)
    assert "output s3://zmr-refused/out already holds output" in result.stderr, str(result)
    assert result.leftovers == [] and list(result.tmpdir.iterdir()) == [], list(result.tmpdir.iterdir())
    assert s3.cat_file("zmr-refused/out/mr-out-0") == b"old 1\n"


def test_a_failed_job_leaves_nothing_of_its_own_under_its_output_prefix(s3: Any, library: Path, cluster) -> None:
    s3.mkdir("zmr-failed")
    s3.pipe_file("zmr-failed/out/notes.txt", b"someone else's\n")
    c: Cluster = cluster(2)
    assert c.client is not None
    job = c.client.submit(str(Path(__file__).parent / "apps" / "fail_reduce.py"), [str(library)],
                          "s3://zmr-failed/out", n_reduce=3)
    with pytest.raises(JobFailed, match="zmr-e2e-reduce-boom"):
        c.client.wait(job, timeout=120)
    assert _names(s3, "zmr-failed/out") == ["notes.txt"]


def test_a_reducer_killed_mid_write_to_s3_changes_nothing_in_the_output(s3: Any, library: Path, tmp_path: Path,
                                                                        cluster, library_word_count) -> None:
    """The first attempt of partition 0 holds in the app with most of its output written; its worker is
    SIGKILLed there. Another attempt commits, and the prefix holds exactly the job's output."""
    s3.mkdir("zmr-kill")
    c: Cluster = cluster(3, **KILL_SETTINGS)
    assert c.client is not None
    markers = tmp_path / "markers"
    markers.mkdir()
    job = c.client.submit(str(PROBE_APP), [str(library)], "s3://zmr-kill/out", n_reduce=3,
                          args=probe_args(markers, probe_r=3, hold=0))
    try:
        held = await_hold(markers, 0)
        os.kill(held["pid"], signal.SIGKILL)
    finally:
        release_hold(markers, 0)
    info = c.client.wait(job, timeout=120)
    assert _names(s3, "zmr-kill/out") == ["_SUCCESS", "mr-out-0", "mr-out-1", "mr-out-2"]
    lines = _lines(s3, "zmr-kill/out", 3)
    assert probe_counts(lines) == {r: info.maps_total for r in range(3)}
    assert without_probes(lines) == library_word_count
    reduces = [t for t in c.client.job(job).tasks if t.kind == "reduce" and t.index == 0]
    assert reduces and reduces[0].attempts >= 2


def test_only_the_granted_attempt_of_a_partition_is_published(s3: Any, tmp_path: Path) -> None:
    """Two attempts of one partition staged; the one granted is published, the other left for the job's end,
    which deletes it and nothing else; a failed job's clean-up deletes only what is the job's."""
    s3.mkdir("zmr-commit")
    out, prefix = "s3://zmr-commit/out", "zmr-commit/out"
    assert object_outputs.prepare(out, overwrite=False) == ""
    staged = []
    for number, text in ((1, b"first attempt\n"), (2, b"second attempt\n")):
        local = tmp_path / f"attempt-{number}"
        local.write_bytes(text)
        staged.append(object_outputs.stage(local, out, AttemptId("j7", "reduce", 0, number)))
    assert _names(s3, prefix) == [".mr-out-0.j7.a1.tmp", ".mr-out-0.j7.a2.tmp"]   # nothing published yet
    object_outputs.commit(staged[1], out, 0)
    s3.pipe_file(f"{prefix}/.mr-out-0.j70.a1.tmp", b"another job's")
    object_outputs.remove_temporaries(out, "j7")
    assert _names(s3, prefix) == [".mr-out-0.j70.a1.tmp", "mr-out-0"]
    assert s3.cat_file(f"{prefix}/mr-out-0") == b"second attempt\n"
    assert object_outputs.read_success(out) is None
    assert "already holds output (mr-out-0, ...)" in object_outputs.prepare(out, overwrite=False)
    object_outputs.remove_job_output(out, "j7", 1)
    assert _names(s3, prefix) == [".mr-out-0.j70.a1.tmp"]


def test_an_output_url_without_a_bucket_or_with_an_unknown_protocol_is_refused_by_name(s3: Any) -> None:
    assert object_outputs.prepare("s3://", overwrite=False) == (
        "output s3:// names no bucket or folder: give one, e.g. s3://results")
    assert object_outputs.prepare("nosuchproto://x", overwrite=False).startswith(
        "cannot use output nosuchproto://x: cannot use nosuchproto:// paths here")


def test_an_output_url_overlapping_an_input_url_is_refused(s3: Any, library: Path, cluster) -> None:
    _upload_library(s3, library, "zmr-overlap")
    c: Cluster = cluster(1)
    assert c.client is not None
    for out in ("s3://zmr-overlap/library", "s3://zmr-overlap/library/out", "s3://zmr-overlap"):
        with pytest.raises(JobSpecError, match="overlaps the input"):
            c.client.submit(str(APPS / "wc.py"), ["s3://zmr-overlap/library/"], out, n_reduce=1)
