"""--py-files: what a job ships besides its app, packed as zip archives that import on a worker."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from zmr.errors import JobSpecError
from zmr.pyfiles import on_path, pack


def _names(archive: bytes) -> list[str]:
    return sorted(zipfile.ZipFile(io.BytesIO(archive)).namelist())


@pytest.fixture
def code(tmp_path: Path) -> Path:
    (tmp_path / "single.py").write_text("VALUE = 'single'\n")
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("from .sub.deep import VALUE\n")
    (tmp_path / "pkg" / "sub" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub" / "deep.py").write_text("VALUE = 'deep'\n")
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"junk")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "loose.py").write_text("VALUE = 'loose'\n")
    wheel = io.BytesIO()
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("wheeled/__init__.py", "VALUE = 'wheeled'\n")
    (tmp_path / "wheeled-1.0-py3-none-any.whl").write_bytes(wheel.getvalue())
    return tmp_path


def test_files_folders_and_wheels_pack_into_archives_that_import(code: Path, tmp_path: Path) -> None:
    paths = [str(code / "single.py"), str(code / "pkg"), str(code / "src"), str(code / "wheeled-1.0-py3-none-any.whl")]
    archives = pack(paths)
    assert len(archives) == 2
    assert _names(archives[0]) == ["loose.py", "pkg/__init__.py", "pkg/sub/__init__.py", "pkg/sub/deep.py",
                                   "single.py"]
    assert _names(archives[1]) == ["wheeled/__init__.py"]
    for i, archive in enumerate(archives):
        (tmp_path / f"{i}.zip").write_bytes(archive)
    zips = [str(tmp_path / "0.zip"), str(tmp_path / "1.zip")]
    probe = (f"import sys; sys.path[:0] = {zips!r}; import single, pkg, loose, wheeled; "
             "print(single.VALUE, pkg.VALUE, loose.VALUE, wheeled.VALUE)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd="/", check=True)
    assert out.stdout.split() == ["single", "deep", "loose", "wheeled"]


def test_nothing_to_ship_is_no_archive() -> None:
    assert pack([]) == []


@pytest.mark.parametrize(("name", "message"), [
    ("missing.py", "does not exist"), ("notes.txt", "takes .py files, folders and .whl, .zip, .egg archives"),
    ("fake.whl", "is not a zip archive"),
])
def test_what_cannot_ship_is_a_clear_error(tmp_path: Path, name: str, message: str) -> None:
    if name != "missing.py":
        (tmp_path / name).write_text("not code")
    with pytest.raises(JobSpecError, match=message):
        pack([str(tmp_path / name)])


def test_two_files_that_land_on_one_name_are_refused(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "util.py").write_text("")
    with pytest.raises(JobSpecError, match="would both be 'util.py' on the workers"):
        pack([str(tmp_path / "a" / "util.py"), str(tmp_path / "b")])


def test_on_path_makes_them_importable_here_for_a_while(code: Path) -> None:
    before = list(sys.path)
    with on_path([str(code / "pkg"), str(code / "src"), str(code / "single.py")]):
        assert sys.path[:2] == [str(code), str(code / "src")]
    assert sys.path == before
