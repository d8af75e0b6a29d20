"""Sidecar names and paths, and the atomic replacement both sidecars rely on."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from deepva_watch.fsutil import atomic_write, temp_name_for
from deepva_watch.sidecars import SidecarSettings, UnsafeSidecarPath, is_sidecar_name, sidecar_paths


def test_planned_paths_for_each_naming(tmp_path: Path) -> None:
    root = tmp_path / "w"
    media = root / "a" / "clip.mxf"
    auto = SidecarSettings()
    assert sidecar_paths(media, watch_root=root, settings=auto, kind="video") == (
        root / "a" / "clip.xmp", root / "a" / "clip.mxf.deepva.json")
    image = root / "IMG_1.jpg"
    assert sidecar_paths(image, watch_root=root, settings=auto, kind="image")[0] == root / "IMG_1.jpg.xmp"
    assert sidecar_paths(image, watch_root=root, settings=SidecarSettings(naming="stem"), kind="image")[0] == (
        root / "IMG_1.xmp")
    assert sidecar_paths(media, watch_root=root, settings=SidecarSettings(naming="name"), kind="video")[0] == (
        root / "a" / "clip.mxf.xmp")
    mirrored = SidecarSettings(output_dir=tmp_path / "out")
    assert sidecar_paths(media, watch_root=root, settings=mirrored, kind="video") == (
        tmp_path / "out" / "a" / "clip.xmp", tmp_path / "out" / "a" / "clip.mxf.deepva.json")


@pytest.mark.parametrize("media", ["/elsewhere/x.jpg", "w/../../etc/passwd", "w/a/../../../x.jpg"])
def test_media_outside_the_watched_root_is_refused(tmp_path: Path, media: str) -> None:
    path = Path(media) if media.startswith("/") else tmp_path / media
    with pytest.raises(UnsafeSidecarPath):
        sidecar_paths(path, watch_root=tmp_path / "w", settings=SidecarSettings(output_dir=tmp_path / "o"),
                      kind="image")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("clip.xmp", True), ("IMG_1.JPG.XMP", True), ("clip.mxf.deepva.json", True),
        (".clip.xmp.tmp-0a1b2c3d4e5f", True), ("clip.xmp.corrupt-20240101T000000Z", True),
        ("clip.mxf", False), ("data.json", False), ("photo.jpg", False), (".hidden.jpg", False),
    ],
)
def test_is_sidecar_name(name: str, expected: bool) -> None:
    assert is_sidecar_name(name) is expected


def test_atomic_write_replaces_and_keeps_permissions(tmp_path: Path) -> None:
    target = tmp_path / "a.xmp"
    target.write_bytes(b"old")
    target.chmod(0o640)
    atomic_write(target, lambda stream: stream.write(b"new"))
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert os.listdir(tmp_path) == ["a.xmp"]


def test_atomic_write_new_file_honours_umask(tmp_path: Path) -> None:
    old_umask = os.umask(0o027)
    try:
        atomic_write(tmp_path / "n.json", lambda stream: stream.write(b"{}"))
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / "n.json").stat().st_mode) == 0o640


def test_atomic_write_mode_from_another_file(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.write_bytes(b"")
    model.chmod(0o600)
    atomic_write(tmp_path / "copy", lambda stream: stream.write(b"x"), mode_from=model)
    assert stat.S_IMODE((tmp_path / "copy").stat().st_mode) == 0o600


def test_failing_writer_leaves_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "clip.xmp"
    target.write_bytes(b"precious")
    seen: list[str] = []

    def write(stream) -> None:
        stream.write(b"half")
        seen.extend(os.listdir(tmp_path))
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, write)
    assert target.read_bytes() == b"precious"
    assert os.listdir(tmp_path) == ["clip.xmp"]
    temp = [name for name in seen if name != "clip.xmp"]
    assert len(temp) == 1 and temp[0].startswith(".clip.xmp.tmp-") and is_sidecar_name(temp[0])


def test_temporary_name_fits_a_long_file_name(tmp_path: Path) -> None:
    name = "é" * 120 + ".xmp"  # 244 bytes: close to the 255-byte limit
    atomic_write(tmp_path / name, lambda stream: stream.write(b"x"))
    assert (tmp_path / name).read_bytes() == b"x"


@pytest.mark.parametrize("existing", [False, True])
def test_a_symlink_planted_at_the_temporary_name_is_never_written_through(tmp_path: Path, existing: bool) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    target = tmp_path / "clip.xmp"
    if existing:
        target.write_bytes(b"old")
    (tmp_path / temp_name_for("clip.xmp")).symlink_to(victim)
    atomic_write(target, lambda stream: stream.write(b"new"))
    assert target.read_bytes() == b"new" and not target.is_symlink()
    assert victim.read_bytes() == b"keep"
    assert sorted(os.listdir(tmp_path)) == ["clip.xmp", "victim"]
