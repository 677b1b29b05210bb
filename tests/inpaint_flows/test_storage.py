"""Atomic writes and safe path joining."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from inpaint_flows import storage
from inpaint_flows.storage import atomic_write_bytes, atomic_write_text, atomic_writer, safe_join


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_atomic_write_bytes_creates_parents_and_returns_path(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.png"
    assert atomic_write_bytes(target, b"\x89PNG data") == target
    assert target.read_bytes() == b"\x89PNG data"
    assert _leftovers(target.parent) == []


def test_atomic_write_text_keeps_unicode_and_newlines(tmp_path: Path) -> None:
    target = tmp_path / "r.csv"
    atomic_write_text(target, "näme,\r\nzeile\n")
    assert target.read_bytes() == "näme,\r\nzeile\n".encode()


def test_replaces_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "report.csv"
    target.write_text("old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert _leftovers(tmp_path) == []


def test_failed_replace_keeps_old_file_and_removes_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "report.csv"
    target.write_text("old, complete report")

    def broken_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(storage.os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_text(target, "new report")
    assert target.read_text() == "old, complete report"
    assert _leftovers(tmp_path) == []


def test_error_while_writing_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "index.html"
    target.write_text("<p>old</p>")
    with pytest.raises(RuntimeError, match="crash mid-write"), atomic_writer(target) as fh:
        fh.write(b"<p>half a ne")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "<p>old</p>"
    assert _leftovers(tmp_path) == []


def test_new_file_gets_normal_permissions_not_0600(tmp_path: Path) -> None:
    target = tmp_path / "report.csv"
    atomic_write_text(target, "x")
    mode = stat.S_IMODE(target.stat().st_mode)
    assert mode == 0o666 & ~storage._umask()


def test_existing_file_keeps_its_permissions(tmp_path: Path) -> None:
    target = tmp_path / "report.csv"
    target.write_text("x")
    os.chmod(target, 0o640)
    atomic_write_text(target, "y")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_long_file_name_still_writes(tmp_path: Path) -> None:
    target = tmp_path / ("n" * 250 + ".png")
    atomic_write_bytes(target, b"x")
    assert target.read_bytes() == b"x"


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        pytest.param("cat.png", "cat.png", id="plain"),
        pytest.param("sub/cat.png", "sub/cat.png", id="nested"),
        pytest.param("./sub/./cat.png", "sub/cat.png", id="dots"),
        pytest.param("a/../b.png", "b.png", id="dotdot-inside"),
        pytest.param("ünï cödé/<x>.png", "ünï cödé/<x>.png", id="unicode"),
    ],
)
def test_safe_join_accepts_paths_inside_root(tmp_path: Path, relative: str, expected: str) -> None:
    assert safe_join(tmp_path, relative) == tmp_path / expected


@pytest.mark.parametrize(
    ("relative", "message"),
    [
        pytest.param("../x", "climbs out", id="parent"),
        pytest.param("a/../../b", "climbs out", id="climb-after-descent"),
        pytest.param("../../../../etc/passwd", "climbs out", id="deep"),
        pytest.param("/etc/passwd", "absolute", id="absolute"),
        pytest.param("", "empty", id="empty"),
        pytest.param(".", "itself", id="root-itself"),
        pytest.param("a/..", "itself", id="root-via-dotdot"),
        pytest.param("a\x00b", "NUL", id="nul"),
    ],
)
def test_safe_join_refuses_escapes(tmp_path: Path, relative: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        safe_join(tmp_path, relative)


def test_safe_join_refuses_escape_through_symlink(tmp_path: Path) -> None:
    root = tmp_path / "out"
    outside = tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="symbolic link"):
        safe_join(root, "link/x.png")


def test_safe_join_error_names_the_path_and_root(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as info:
        safe_join(tmp_path, "../secret.png")
    assert "../secret.png" in str(info.value)
    assert str(tmp_path) in str(info.value)
