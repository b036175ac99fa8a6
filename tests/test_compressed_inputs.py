"""Compressed and non-text inputs: read decompressed as one split each, or refused with the file's name."""

from __future__ import annotations

import bz2
import gzip
import lzma
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from zmr import compressed
from zmr.errors import InputError, JobSpecError
from zmr.inputs import TEXT_PROBE_BYTES, expand_inputs, plan_splits, read_chunks
from zmr.seq import run_sequential

TEXT = "".join(f"line {i} of the text, with some words: caf\u00e9 na\u00efve {i * i}\n" for i in range(3000))
COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "bz2": bz2.compress,
    "xz": lzma.compress,
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
}


def _text_of(path: Path, codec: compressed.Codec, chunk_bytes: int = 1 << 20) -> str:
    return "".join(text for text, _ in read_chunks(str(path), 0, path.stat().st_size, chunk_bytes, codec=codec))


@pytest.mark.parametrize("codec", sorted(COMPRESSORS))
def test_each_format_is_told_by_its_bytes_and_read_whole(tmp_path: Path, codec: compressed.Codec) -> None:
    path = tmp_path / "data.txt"   # the name says nothing: the bytes do
    path.write_bytes(COMPRESSORS[codec](TEXT.encode()))
    [found] = expand_inputs([str(path)])
    assert found.codec == codec
    assert _text_of(path, codec) == TEXT
    pieces = list(read_chunks(str(path), 0, found.size, 4096, codec=codec))
    assert len(pieces) > 10 and "".join(text for text, _ in pieces) == TEXT
    assert all(text.endswith("\n") for text, _ in pieces)   # cut at line ends, as plain text is
    assert [line for _, line in pieces][:2] == [1, 1 + pieces[0][0].count("\n")]


def test_plain_text_is_not_taken_for_a_compressed_file(tmp_path: Path) -> None:
    for i, start in enumerate([b"BZh91AY&S", b"BZhx1AY&SY", b"\x1f", b"plain\n", b""]):
        path = tmp_path / f"{i}.gz"
        path.write_bytes(start + b" and then text\n")
        assert expand_inputs([str(path)])[0].codec == ""
    assert compressed.detect(bz2.compress(b""))[:3] == "bz2"   # an empty bzip2 stream has no block


def test_a_compressed_file_is_one_split_even_at_the_tail(tmp_path: Path) -> None:
    plain, packed = tmp_path / "a.txt", tmp_path / "b.txt.gz"
    plain.write_text(TEXT)
    packed.write_bytes(gzip.compress(TEXT.encode() * 20))
    files = expand_inputs([str(plain), str(packed)])
    splits = plan_splits(files, 4096, min_tail_piece=1)
    compressed_splits = [s for s in splits if s.path == str(packed)]
    assert compressed_splits == [type(splits[0])(str(packed), str(packed), 0, packed.stat().st_size, "gzip")]
    assert len(splits) > 10   # the plain file is still cut


def test_members_and_frames_are_all_read(tmp_path: Path) -> None:
    gz, zst = tmp_path / "a.gz", tmp_path / "a.zst"
    gz.write_bytes(gzip.compress(b"first\n") + gzip.compress(b"second\n"))
    zst.write_bytes(zstandard.ZstdCompressor().compress(b"first\n") + zstandard.ZstdCompressor().compress(b"second\n"))
    assert _text_of(gz, "gzip") == _text_of(zst, "zstd") == "first\nsecond\n"


def test_an_empty_compressed_file_is_one_empty_split(tmp_path: Path) -> None:
    path = tmp_path / "empty.gz"
    path.write_bytes(gzip.compress(b""))
    [found] = expand_inputs([str(path)])
    assert list(read_chunks(str(path), 0, found.size, codec="gzip")) == [("", 1)]


def test_a_nul_byte_at_the_start_refuses_the_job_naming_the_file(tmp_path: Path) -> None:
    utf16 = tmp_path / "utf16.txt"
    utf16.write_bytes("hello\n".encode("utf-16-le"))
    with pytest.raises(JobSpecError, match=r"'.*utf16.txt' is not text: it holds a NUL byte at byte 1"):
        expand_inputs([str(utf16)])
    packed = tmp_path / "bin.gz"
    packed.write_bytes(gzip.compress(b"ok\n\0\1\2"))
    with pytest.raises(JobSpecError, match="NUL byte at byte 3 of its decompressed text"):
        expand_inputs([str(packed)])


def test_a_nul_byte_further_in_fails_the_reading_task(tmp_path: Path) -> None:
    data = b"x" * (TEXT_PROBE_BYTES + 10) + b"\n" + b"y\0\n"
    plain, packed = tmp_path / "late.txt", tmp_path / "late.gz"
    plain.write_bytes(data)
    packed.write_bytes(gzip.compress(data))
    assert {f.codec for f in expand_inputs([str(plain), str(packed)])} == {"", "gzip"}   # the probe missed it
    with pytest.raises(InputError, match=r"late.txt' is not text: it holds a NUL byte \(at byte 8204 of the split"):
        list(read_chunks(str(plain), 0, len(data), 1024))
    with pytest.raises(InputError, match="NUL byte"):
        list(read_chunks(str(packed), 0, packed.stat().st_size, 1024, codec="gzip"))


def test_a_damaged_compressed_file_is_a_clear_error(tmp_path: Path) -> None:
    whole = gzip.compress(TEXT.encode() * 10)
    broken = tmp_path / "broken.gz"
    broken.write_bytes(whole[:20] + bytes(64))   # damaged where the submit-time probe reads
    with pytest.raises(JobSpecError, match=r"broken.gz' is not a readable gzip file"):
        expand_inputs([str(broken)])
    truncated = tmp_path / "truncated.gz"
    truncated.write_bytes(whole[:len(whole) // 2])   # readable at first, cut off later
    [found] = expand_inputs([str(truncated)])
    with pytest.raises(InputError, match=r"truncated.gz' is not a readable gzip file: EOFError"):
        list(read_chunks(str(truncated), 0, found.size, codec="gzip"))


def test_the_reference_run_reads_compressed_input_as_text(tmp_path: Path) -> None:
    app = tmp_path / "wc.py"
    app.write_text("def map(name, text):\n    return ((w, 1) for w in text.split())\n\n"
                   "def reduce(key, values):\n    return sum(values)\n")
    (tmp_path / "plain").mkdir()
    (tmp_path / "packed").mkdir()
    (tmp_path / "plain" / "a.txt").write_text(TEXT)
    for codec, compress in COMPRESSORS.items():
        (tmp_path / "packed" / f"a.{codec}").write_bytes(compress(TEXT.encode()))
    plain = run_sequential(str(app), [str(tmp_path / "plain")], tmp_path / "out-plain").read_text()
    packed = run_sequential(str(app), [str(tmp_path / "packed")], tmp_path / "out-packed").read_text()
    counts = {k: int(v) for k, v in (line.split(" ") for line in plain.splitlines())}
    assert counts["line"] == 3000
    assert {k: int(v) for k, v in (line.split(" ") for line in packed.splitlines())} == {
        k: 4 * v for k, v in counts.items()}
