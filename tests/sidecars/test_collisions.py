"""Two media files that would share one sidecar never overwrite each other's."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import deepva_watch.sidecars as sidecars
from deepva_watch.sidecars import SidecarSettings


def test_master_and_proxy_keep_separate_sidecars(publish, make, watch_root: Path) -> None:
    (watch_root / "clip.mp4").write_bytes(b"proxy")
    master = publish("clip.mxf", [make.segment("Jane Doe", time_start=0, time_end=1)], media=make.VIDEO_25)
    assert master.xmp == watch_root / "clip.xmp" and master.notes == ()
    proxy = publish("clip.mp4", [make.segment("John Roe", time_start=0, time_end=1)], media=make.VIDEO_25)
    assert proxy.xmp == watch_root / "clip.mp4.xmp"
    assert proxy.notes == ("clip.xmp belongs to clip.mxf; wrote clip.mp4.xmp instead",)
    assert make.exiftool_json(watch_root / "clip.xmp")["XMP-dc:Subject"] == ["Jane Doe"]
    assert make.exiftool_json(watch_root / "clip.mp4.xmp")["XMP-dc:Subject"] == ["John Roe"]
    assert "XMP-photoshop:SidecarForExtension" not in make.exiftool_json(watch_root / "clip.mp4.xmp")

    # Re-runs stay where they are.
    assert publish("clip.mp4", [], media=make.VIDEO_25).xmp == watch_root / "clip.mp4.xmp"
    assert publish("clip.mxf", [], media=make.VIDEO_25).xmp == watch_root / "clip.xmp"
    # JSON sidecars use the full name and never collide.
    assert (watch_root / "clip.mxf.deepva.json").exists() and (watch_root / "clip.mp4.deepva.json").exists()


def test_sidecar_for_extension_from_another_tool_is_respected(publish, make, watch_root: Path) -> None:
    make.run_exiftool("-q", "-XMP-photoshop:SidecarForExtension=MXF", "-XMP-xmp:Rating=5", str(watch_root / "take.xmp"))
    written = publish("take.mov", [make.segment("Jane Doe", time_start=0, time_end=1)], media=make.VIDEO_25)
    assert written.xmp == watch_root / "take.mov.xmp"
    assert written.notes == ("take.xmp belongs to take.mxf; wrote take.mov.xmp instead",)
    assert "XMP-dc:Subject" not in make.exiftool_json(watch_root / "take.xmp")
    owner = publish("take.mxf", [make.segment("Jane Doe", time_start=0, time_end=1)], media=make.VIDEO_25)
    assert owner.xmp == watch_root / "take.xmp"  # "mxf" matches "MXF": case does not matter
    assert make.exiftool_json(owner.xmp)["XMP-xmp:Rating"] == 5


def test_unmarked_sidecar_with_several_candidates_is_left_alone(publish, make, watch_root: Path) -> None:
    (watch_root / "shared.xmp").write_text(
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="2"/></rdf:RDF></x:xmpmeta>'
    )
    original = (watch_root / "shared.xmp").read_bytes()
    (watch_root / "shared.mp4").write_bytes(b"other")
    written = publish("shared.mxf", [make.segment("Jane Doe", time_start=0, time_end=1)], media=make.VIDEO_25)
    assert written.xmp == watch_root / "shared.mxf.xmp"
    assert written.notes == ("shared.xmp belongs to another file with the same name; wrote shared.mxf.xmp instead",)
    assert (watch_root / "shared.xmp").read_bytes() == original


def test_collision_in_a_mirrored_output_folder(tmp_path: Path, publish, make, watch_root: Path) -> None:
    settings = SidecarSettings(output_dir=tmp_path / "out")
    (watch_root / "d").mkdir()
    (watch_root / "d" / "clip.mp4").write_bytes(b"proxy")
    first = publish("d/clip.mxf", [], media=make.VIDEO_25, settings=settings)
    second = publish("d/clip.mp4", [], media=make.VIDEO_25, settings=settings)
    assert first.xmp == tmp_path / "out" / "d" / "clip.xmp"
    assert second.xmp == tmp_path / "out" / "d" / "clip.mp4.xmp"


def test_only_files_that_could_share_an_xmp_wait_for_each_other(publish, make, watch_root: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """While clip.mxf's XMP is being written, CLIP.mp4 waits (on a share that ignores case it may want the same
    clip.xmp), and other.mxf does not: one slow write, an fsync on a network share, holds back only its own clip."""
    real_write = sidecars.atomic_write_at
    writing, release = threading.Event(), threading.Event()

    def slow_for_clip(dir_fd: int, name: str, write, **options) -> None:
        if name == "clip.xmp":
            writing.set()
            assert release.wait(10)
        real_write(dir_fd, name, write, **options)

    monkeypatch.setattr(sidecars, "atomic_write_at", slow_for_clip)
    done: dict[str, threading.Event] = {name: threading.Event() for name in ("clip.mxf", "CLIP.mp4")}

    def publish_in_thread(name: str) -> threading.Thread:
        def run() -> None:
            publish(name, [make.segment("Jane Doe", time_start=0, time_end=1)], media=make.VIDEO_25)
            done[name].set()
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    threads = [publish_in_thread("clip.mxf")]
    assert writing.wait(10)
    other = publish("other.mxf", [make.segment("John Roe", time_start=0, time_end=1)], media=make.VIDEO_25)
    assert other.xmp == watch_root / "other.xmp"
    threads.append(publish_in_thread("CLIP.mp4"))
    assert not done["CLIP.mp4"].wait(0.5), "CLIP.mp4 went ahead while clip.xmp was being written"
    release.set()
    for thread in threads:
        thread.join(10)
    assert all(event.is_set() for event in done.values())
    assert make.exiftool_json(watch_root / "clip.xmp")["XMP-dc:Subject"] == ["Jane Doe"]
    assert sidecars.XMP_CLAIMS.in_use() == 0, "a lock outlived its holders"
