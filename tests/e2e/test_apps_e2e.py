"""The example apps on a real local cluster give exactly what the sequential reference gives."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from zmr.errors import ClusterError, JobFailed, JobSpecError
from zmr.output_formats import read_results

from .conftest import (
    APPS,
    FAST_FLAGS,
    GREP_PATTERN,
    TEST_APPS,
    Cluster,
    SeqOracle,
    Watcher,
    ZmrResult,
    independent_word_count,
    read_output,
)

pytestmark = pytest.mark.e2e

APP_ARGS = {"wc": [], "indexer": [], "grep": [GREP_PATTERN]}


def _run_args(app: str, inputs: list[Path], out: Path, n_reduce: int, workers: int, *extra: str) -> list[str]:
    args = ["run", "--app", str(APPS / f"{app}.py"), "--input", *map(str, inputs), "--output", str(out),
            "--n-reduce", str(n_reduce), "--workers", str(workers), *FAST_FLAGS, *extra]
    for arg in APP_ARGS[app]:
        args += ["--arg", arg]
    return args


def _assert_ran(result: ZmrResult, maps: int, reduces: int) -> None:
    assert result.returncode == 0, str(result)
    assert re.search(rf"succeeded in [\d.]+ s: {maps} map and {reduces} reduce tasks", result.stdout), str(result)
    assert result.leftovers == [], result.leftovers


@pytest.mark.parametrize("app", ["wc", "indexer", "grep"])
def test_app_equals_sequential_reference(app: str, library: Path, tmp_path: Path, run_zmr, seq_oracle: SeqOracle,
                                         library_word_count: list[str]) -> None:
    out = tmp_path / "out"
    result = run_zmr(*_run_args(app, [library], out, 10, 3))
    _assert_ran(result, maps=len(list(library.glob("*.txt"))), reduces=10)
    got = read_output(out, 10)
    assert got, "the job wrote no output at all"
    expected = seq_oracle(APPS / f"{app}.py", [library], APP_ARGS[app])
    assert got == expected
    if app == "wc":
        assert got == library_word_count


def test_int_float_and_str_values_come_out_as_the_sequential_reference_has_them(
        library: Path, tmp_path: Path, run_zmr, seq_oracle: SeqOracle) -> None:
    app, out = Path(__file__).parent / "apps" / "numbers.py", tmp_path / "out"
    result = run_zmr("run", "--app", str(app), "--input", str(library), "--output", str(out), "--n-reduce", "3",
                     "--workers", "2", "--split-size-mb", "1", *FAST_FLAGS)
    assert result.returncode == 0, str(result)
    got = read_output(out, 3)
    assert got == seq_oracle(app, [library])
    values = dict(line.split(" ", 1) for line in got)
    assert values["n:T"].isdigit() and values["half:T"].endswith((".0", ".5")) and values["first:T"].startswith("T")


def test_values_that_change_kind_part_way_through_a_map_come_out_as_the_sequential_reference_has_them(
        library: Path, big_input: Path, tmp_path: Path, run_zmr, seq_oracle: SeqOracle) -> None:
    """Maps that start with int columns and go back to pairs, maps of pairs from the start: their runs meet
    in the reducers, which merge them as pairs; ints stay ints, floats floats."""
    app, out = Path(__file__).parent / "apps" / "mixed_values.py", tmp_path / "out"
    small = tmp_path / "small.txt"
    small.write_text("zqone zqtwo zqthree zqtwo\n")
    result = run_zmr("run", "--app", str(app), "--input", str(big_input), str(small), "--output", str(out),
                     "--n-reduce", "3", "--workers", "2", *FAST_FLAGS)
    assert result.returncode == 0, str(result)
    got = read_output(out, 3)
    assert got == seq_oracle(app, [big_input, small])
    values = dict(line.split(" ", 1) for line in got)
    assert values["zqtwo"] == "2" and values["zqone"] == values["zqthree"] == "1.5"


def test_a_fed_step_map_that_changes_value_kind_part_way_gives_seqs_output(
        big_input: Path, tmp_path: Path, run_zmr, seq_oracle: SeqOracle) -> None:
    """A later step's map, fed by a reduce, makes int columns first and pairs later: the step's reducers
    merge both kinds, and the output is `zmr seq`'s."""
    app, out = Path(__file__).parent / "apps" / "mixed_steps.py", tmp_path / "out"
    result = run_zmr("run", "--app", str(app), "--input", str(big_input), "--output", str(out),
                     "--n-reduce", "3", "--workers", "2", *FAST_FLAGS)
    assert result.returncode == 0, str(result)
    got = read_output(out, 3)
    assert got == seq_oracle(app, [big_input])
    values = [line.split(" ", 1) for line in got]
    early = sum(1 for key, _ in values if key < "n")
    assert early > 2 * 8192, "the fed map's first blocks must all be ints"
    assert all(("." in value) == (key >= "n") for key, value in values)


@pytest.mark.parametrize(("app", "split_flags", "env"), [
    ("wc", ["--split-size-mb", "1"], {}),
    ("grep", ["--split-size-mb", "1"], {}),
    ("indexer", [], {"ZMR_JOB_SPLIT_SIZE_MB": "1"}),
])
def test_split_files_give_the_same_output(app: str, split_flags: list[str], env: dict[str, str], big_input: Path,
                                          tmp_path: Path, run_zmr, seq_oracle: SeqOracle) -> None:
    """One 3.3 MB file cut into 1 MiB splits: line-aligned splits, absolute grep line numbers, one result."""
    out = tmp_path / "out"
    result = run_zmr(*_run_args(app, [big_input], out, 10, 3, *split_flags), env=env)
    n_splits = -(-big_input.stat().st_size // (1 << 20))
    assert n_splits >= 4
    _assert_ran(result, maps=n_splits, reduces=10)
    got = read_output(out, 10)
    # the reference reads the file as one split: splitting must change nothing
    assert got == seq_oracle(APPS / f"{app}.py", [big_input], APP_ARGS[app])
    if app == "wc":
        assert got == independent_word_count([big_input])


@pytest.mark.parametrize("compression", [["--set", "shuffle.compression=lz4"], ["--compression", "zstd"]])
def test_compressed_shuffle_with_spills_and_merges_on_disk_gives_the_same_output(
        compression: list[str], big_input: Path, tmp_path: Path, run_zmr, seq_oracle: SeqOracle) -> None:
    """Compressed chunks pushed, kept, spilled and merged in levels (1 KiB batches make over a hundred runs per
    partition, past the reducer's fan-in of 16): the output is the reference's, byte for byte."""
    out = tmp_path / "out"
    result = run_zmr(*_run_args("wc", [big_input], out, 4, 2, "--split-size-mb", "1",
                                *compression, "--set", "worker.memory_budget_mb=1",
                                "--set", "shuffle.batch_bytes=1024", "--set", "shuffle.window_bytes=65536"))
    _assert_ran(result, maps=-(-big_input.stat().st_size // (1 << 20)), reduces=4)
    assert read_output(out, 4) == seq_oracle(APPS / "wc.py", [big_input]) == independent_word_count([big_input])


def test_split_size_set_as_a_config_override(big_input: Path, tmp_path: Path, run_zmr,
                                             seq_oracle: SeqOracle) -> None:
    out = tmp_path / "out"
    result = run_zmr(*_run_args("wc", [big_input], out, 10, 3, "--set", "job.split_size_mb=1"))
    _assert_ran(result, maps=-(-big_input.stat().st_size // (1 << 20)), reduces=10)
    assert read_output(out, 10) == seq_oracle(APPS / "wc.py", [big_input])


def test_many_small_splits_through_the_api_and_no_temporary_name_is_ever_output(
        library: Path, tmp_path: Path, cluster, seq_oracle: SeqOracle, library_word_count: list[str]) -> None:
    """Files cut into ~100 KB splits; while the job runs, nothing matching mr-out-* is partial or foreign."""
    c: Cluster = cluster(3)
    assert c.client is not None
    out = tmp_path / "out"
    watcher = Watcher(c.processes(), out)
    watcher.start()
    try:
        job = c.client.submit(str(APPS / "wc.py"), [str(library)], str(out), n_reduce=7, split_size=100_000)
        info = c.client.wait(job, timeout=120)
    finally:
        watcher.stop()
    assert info.maps_total > 30
    got = read_output(out, 7)
    assert got == seq_oracle(APPS / "wc.py", [library]) == library_word_count
    output_like = {n for n in watcher.names if n.startswith("mr-out-")}
    assert output_like <= {f"mr-out-{r}" for r in range(7)}, output_like
    for name, seen in watcher.snapshots.items():
        assert seen == {(out / name).read_text(encoding="utf-8")}, f"{name} was seen incomplete"
    assert all(n.startswith(".") or n.startswith("mr-out-") or n == "_SUCCESS" for n in watcher.names), watcher.names


HELPER = '''
import re

WORD = re.compile(r"[a-z']+")


def words(text):
    return WORD.findall(text.lower())
'''

BIGRAM = '''
import {helper}
from {helper} import words


def map(filename, contents):
    first = {helper}.words(contents)
    return ((f"{{a}}_{{b}}", 1) for a, b in zip(first, words(contents)[1:]))


def reduce(key, values):
    return sum(values)
'''


def test_a_helper_module_beside_the_app_travels_with_it(library: Path, tmp_path: Path, cluster,
                                                         seq_oracle: SeqOracle) -> None:
    """`import textutil` from the app's folder: found when the app is loaded (its folder comes first on
    sys.path, as for a script), and shipped by value, so workers that never saw the folder run it."""
    helper = f"textutil_{tmp_path.name.replace('-', '_')}"   # a name no other test has imported
    folder = tmp_path / "myapp"
    folder.mkdir()
    (folder / f"{helper}.py").write_text(HELPER)
    (folder / "bigram.py").write_text(BIGRAM.format(helper=helper))
    c: Cluster = cluster(2)
    assert c.client is not None
    out = tmp_path / "out"
    c.client.wait(c.client.submit(str(folder / "bigram.py"), [str(library)], str(out), n_reduce=2), timeout=60)
    got = read_output(out, 2)
    assert got == seq_oracle(folder / "bigram.py", [library]) and len(got) > 1000
    texts = [book.read_bytes().decode("utf-8", errors="replace").lower() for book in sorted(library.glob("*.txt"))]
    assert sum(int(line.rsplit(" ", 1)[1]) for line in got) == sum(len(re.findall(r"[a-z']+", t)) - 1 for t in texts)


EVENTS_APP = '''
INPUT = "jsonl"


def map(filename, event):
    yield event["user"], event["bytes"]


def reduce(user, values):
    return sum(values)
'''

BLOCKS_APP = '''
INPUT = "records:64"


def map(filename, record):
    yield record[:1].hex(), 1


def reduce(key, values):
    return sum(values)
'''


def test_json_lines_and_fixed_size_binary_records_on_a_cluster(tmp_path: Path, cluster, seq_oracle: SeqOracle) -> None:
    """Apps that declare their input: JSON lines cut into many splits, and 64-byte binary records (NUL bytes
    and all) in splits that do not fall on record boundaries; each record reaches map exactly once."""
    draw = random.Random(5)
    events = [{"user": f"user{draw.randrange(50)}", "bytes": draw.randrange(10**6), "path": "/x" * draw.randrange(9)}
              for _ in range(60_000)]
    jsonl = tmp_path / "events.jsonl"
    jsonl.write_text("".join(json.dumps(e) + "\n" for e in events))
    blocks = tmp_path / "blocks.dat"
    blocks.write_bytes(draw.randbytes(64 * 40_000))
    (tmp_path / "events.py").write_text(EVENTS_APP)
    (tmp_path / "blocks.py").write_text(BLOCKS_APP)
    c: Cluster = cluster(2)
    assert c.client is not None
    for app, data, expected in [
        ("events.py", jsonl, _sums(events)),
        ("blocks.py", blocks, Counter(blocks.read_bytes()[i:i + 1].hex() for i in range(0, 64 * 40_000, 64))),
    ]:
        out = tmp_path / f"out-{app}"
        job = c.client.submit(str(tmp_path / app), [str(data)], str(out), n_reduce=3, split_size=300_001)
        info = c.client.wait(job, timeout=120)
        assert info.maps_total >= 8
        got = read_output(out, 3)
        assert got == seq_oracle(tmp_path / app, [data])
        assert {line.split(" ")[0]: int(line.split(" ")[1]) for line in got} == dict(expected)


def test_a_bad_json_line_fails_the_job_naming_the_file_as_typed_and_the_line(tmp_path: Path, run_zmr) -> None:
    (tmp_path / "events.py").write_text(EVENTS_APP)
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "bad.jsonl").write_text('{"user": "a", "bytes": 1}\n{"user": \n')
    typed = str(tmp_path / "logs" / ".." / "logs" / "bad.jsonl")   # its absolute path differs from this
    result = run_zmr("run", "--app", str(tmp_path / "events.py"), "--input", typed, "--output", str(tmp_path / "out"),
                     "--n-reduce", "1", "--workers", "1", *FAST_FLAGS)
    assert result.returncode == 1, str(result)
    assert f"input {typed!r}, line 2 of the split from byte 0: not JSON" in result.stderr, str(result)


def _sums(events: list[dict[str, Any]]) -> Counter[str]:
    sums: Counter[str] = Counter()
    for e in events:
        sums[e["user"]] += e["bytes"]
    return sums


@pytest.mark.parametrize("output_format", ["jsonl", "csv", "parquet"])
def test_results_come_back_through_the_client_in_each_output_format(
        output_format: str, library: Path, tmp_path: Path, cluster, run_zmr) -> None:
    """Written as jsonl or parquet (types kept) or csv on a cluster, equal to the reference written the same
    way, and read back by `Client.results`. (Parquet holds one value type a column: word counts there.)"""
    numbers = Path(__file__).parent / "apps" / "numbers.py"
    app = APPS / "wc.py" if output_format == "parquet" else numbers
    c: Cluster = cluster(2)
    assert c.client is not None
    out = tmp_path / "out"
    job = c.client.submit(str(app), [str(library)], str(out), n_reduce=3, output_format=output_format)  # type: ignore[arg-type]
    c.client.wait(job, timeout=60)
    assert c.client.job(job).output_format == output_format
    reference = tmp_path / "seq"
    seq = run_zmr("seq", "--app", str(app), "--input", str(library), "--output", str(reference),
                  "--output-format", output_format)
    assert seq.returncode == 0, str(seq)
    expected = list(read_results(reference / "mr-out-0", output_format))
    got = list(c.client.results(job))
    assert sorted(got, key=lambda kv: kv[0]) == expected and len(got) > 100
    if output_format == "jsonl":
        kinds = {key.split(":")[0]: type(value) for key, value in got}
        assert kinds == {"n": int, "half": float, "first": str}
    if output_format == "parquet":
        assert all(type(value) is int for _, value in got)
        mixed = c.client.submit(str(numbers), [str(library)], str(tmp_path / "mixed"), n_reduce=1,
                                output_format="parquet")
        with pytest.raises(JobFailed, match=r"reduce-0 failed: .*the parquet output holds one value type"):
            c.client.wait(mixed, timeout=60)
    failing = c.client.submit(str(TEST_APPS / "fail_reduce.py"), [str(library)], str(tmp_path / "failed"),
                              n_reduce=1, max_attempts=1)
    with pytest.raises(JobFailed):
        c.client.wait(failing, timeout=60)
    with pytest.raises(ClusterError, match=f"job {failing} has failed: it has no results"):
        c.client.results(failing)


LIB_INIT = '''
from .tokens import domain_of
'''

LIB_TOKENS = '''
def domain_of(url):
    return url.split("/")[2] if url.count("/") >= 2 else url
'''

VISITS_APP = '''
INPUT = "jsonl"

import weblib


def map(filename, visit):
    yield weblib.domain_of(visit["url"]), visit["ms"]


def reduce(domain, values):
    return sum(values)
'''


def test_py_files_ship_a_package_from_elsewhere_and_results_come_back_typed(
        tmp_path: Path, cluster, run_zmr) -> None:
    """The README's app guide: a JSON-lines app whose helper package lives outside the app's folder, shipped
    with --py-files (through `zmr run` and through the client onto separate worker processes), results read
    back with `Client.results` with their types."""
    lib = tmp_path / "libs" / "weblib"
    lib.mkdir(parents=True)
    (lib / "__init__.py").write_text(LIB_INIT)
    (lib / "tokens.py").write_text(LIB_TOKENS)
    (tmp_path / "app").mkdir()
    app = tmp_path / "app" / "visits.py"
    app.write_text(VISITS_APP)
    draw = random.Random(9)
    visits = [{"url": f"https://site{draw.randrange(20)}.example/p/{i}", "ms": draw.randrange(1000)}
              for i in range(20_000)]
    data = tmp_path / "visits.jsonl"
    data.write_text("".join(json.dumps(v) + "\n" for v in visits))
    expected: Counter[str] = Counter()
    for v in visits:
        expected[v["url"].split("/")[2]] += v["ms"]

    without = run_zmr("run", "--app", app, "--input", data, "--output", tmp_path / "out-none", "--n-reduce", "2",
                      "--workers", "2", *FAST_FLAGS)
    assert without.returncode != 0 and "No module named 'weblib'" in without.stderr, str(without)
    result = run_zmr("run", "--app", app, "--input", data, "--output", tmp_path / "out-run", "--n-reduce", "2",
                     "--workers", "2", "--py-files", lib, "--output-format", "jsonl", *FAST_FLAGS)
    assert result.returncode == 0, str(result)
    got = {}
    for r in range(2):
        for line in (tmp_path / "out-run" / f"mr-out-{r}").read_text().splitlines():
            row = json.loads(line)
            got[row["key"]] = row["value"]
    assert got == dict(expected)

    c: Cluster = cluster(2)
    assert c.client is not None
    job = c.client.submit(str(app), [str(data)], str(tmp_path / "out-cluster"), n_reduce=3,
                          py_files=[str(lib)], output_format="jsonl")
    c.client.wait(job, timeout=60)
    results = dict(c.client.results(job))
    assert results == dict(expected) and all(type(v) is int for v in results.values())


def test_zmr_run_returns_a_small_jobs_results(library: Path, tmp_path: Path, library_word_count: list[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """`zmr.run(...)`: a local cluster, the job, and its results as Python values, in one call."""
    import tempfile

    import zmr

    scratch = tmp_path / "tmp"   # where its clusters keep their scratch (zmr-local-*)
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    results = zmr.run(str(APPS / "wc.py"), [str(library)], str(tmp_path / "out"), 3, workers=2)
    assert sorted(f"{key} {value}" for key, value in results) == sorted(library_word_count)
    assert all(type(value) is int for _, value in results)
    with pytest.raises(ClusterError, match=r"over max_results=10: they are in .*out2, mr-out-0 to mr-out-2, "
                                           r"written as jsonl"):
        zmr.run(str(APPS / "wc.py"), [str(library)], str(tmp_path / "out2"), 3, workers=2, max_results=10)
    assert len(list((tmp_path / "out2").glob("mr-out-*"))) == 3
    # refused before a cluster starts, nothing left behind: a bad job, an output in use, raw output
    with pytest.raises(JobSpecError, match="n_reduce must be"):
        zmr.run(str(APPS / "wc.py"), [str(library)], str(tmp_path / "out4"), 0, workers=2)
    with pytest.raises(JobSpecError, match=r"already holds output .*overwrite=True"):
        zmr.run(str(APPS / "wc.py"), [str(library)], str(tmp_path / "out"), 3, workers=2)
    with pytest.raises(JobSpecError, match="raw output has no boundaries between results, so zmr.run cannot"):
        zmr.run(str(APPS / "wc.py"), [str(library)], str(tmp_path / "out5"), 3, workers=2, output_format="raw")
    assert list(scratch.iterdir()) == [] and not (tmp_path / "out4").exists() and not (tmp_path / "out5").exists()
    # a failed job keeps its cluster's logs, and the error says where
    with pytest.raises(zmr.JobFailed) as failed:
        zmr.run(str(TEST_APPS / "fail_reduce.py"), [str(library)], str(tmp_path / "out6"), 2, workers=1)
    [note] = failed.value.__notes__
    logs = Path(note.removeprefix("the local cluster's logs are in "))
    assert logs.is_relative_to(scratch) and (logs / "coordinator.log").is_file()
    import apps.wc  # an imported module is an app too (the repository's root is on sys.path here)

    by_module = zmr.run(apps.wc, [str(library)], str(tmp_path / "out3"), 2, workers=2)
    assert sorted(by_module) == sorted(results)
