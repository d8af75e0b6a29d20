"""The same keywords in every tool, whichever tool wrote the sidecar first: darktable, digiKam, Immich and Lightroom
each read the sidecar by their own rule (``tools``), through the library they use (exiv2, ExifTool)."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from deepva_watch.deepva.models import Box
from deepva_watch.sidecars import SidecarSettings
from tests.sidecars.tools import (
    KeywordPath,
    exiftool_plain,
    exiv2_read,
    exiv2_regions,
    exiv2_tracks,
    field_paths,
    immich_keywords,
    shown_by_each_tool,
)

FIXTURES = Path(__file__).parent / "fixtures"
OURS = {("People", "Jane Doe"), ("Objects", "microphone")}


def results(make) -> list:
    return [
        make.segment("Jane Doe", media_type="image", box=Box(0.25, 0.275, 0.1, 0.15)),
        make.segment("microphone", module="object_scene_recognition", kind="object", media_type="image"),
    ]


def assert_every_tool_shows(sidecar: Path, expected: set[KeywordPath], media: Path | None = None) -> None:
    ET.fromstring(sidecar.read_bytes())
    shown = shown_by_each_tool(sidecar, media)
    assert shown == dict.fromkeys(shown, expected)


def assert_every_field_holds(sidecar: Path, expected: set[KeywordPath], *, tags_list: bool) -> None:
    """Each keyword in each field's form: dc:subject its leaf, the hierarchical fields its path."""
    fields = field_paths(exiv2_read(sidecar))
    assert {(path[-1],) for path in expected} <= fields["dc:subject"]
    assert fields["lr:hierarchicalSubject"] == expected
    assert fields["digiKam:TagsList"] == (expected if tags_list else set())


def test_image_with_iptc_keywords_every_tool_shows_the_files_keywords_and_ours(publish, make, watch_root) -> None:
    media = watch_root / "news.jpg"
    shutil.copyfile(FIXTURES / "iptc-keywords.jpg", media)
    assert immich_keywords(exiftool_plain(media), None) == {("agency-kw",), ("press",)}  # without our sidecar

    written = publish("news.jpg", results(make), media=make.IMAGE)
    assert written.xmp == watch_root / "news.jpg.xmp" and written.notes == ()
    expected = {("agency-kw",), ("press",), *OURS}
    assert_every_tool_shows(written.xmp, expected, media)
    assert_every_field_holds(written.xmp, expected, tags_list=False)

    xmp = exiv2_read(written.xmp)
    assert xmp["Xmp.iptcExt.PersonInImage"] == ["Jane Doe"]
    assert exiv2_regions(xmp) == {"Jane Doe": {"Type": "Face", "x": "0.3", "y": "0.35", "w": "0.1", "h": "0.15",
                                               "unit": "normalized"}}
    assert [region["Name"] for region in make.exiftool_json(written.xmp)["XMP-mwg-rs:RegionInfo"]["RegionList"]] == [
        "Jane Doe"]

    before = written.xmp.read_bytes()
    publish("news.jpg", results(make), media=make.IMAGE)
    assert written.xmp.read_bytes() == before  # the same results change nothing

    # Nothing found now: ours leaves every field, the file's keywords stay in every one.
    publish("news.jpg", [], media=make.IMAGE, job_id="job-2")
    assert_every_tool_shows(written.xmp, {("agency-kw",), ("press",)}, media)
    assert_every_field_holds(written.xmp, {("agency-kw",), ("press",)}, tags_list=False)


def test_image_embedding_a_tags_list_gets_one_in_its_sidecar(publish, make, watch_root) -> None:
    """Immich would take the file's own TagsList over a sidecar without one, and show none of ours."""
    media = watch_root / "dk.jpg"
    shutil.copyfile(FIXTURES / "xmp-keywords.jpg", media)
    written = publish("dk.jpg", results(make), media=make.IMAGE)
    expected = {("Places", "Berlin", "Mitte"), ("embedded-kw",), *OURS}
    assert_every_tool_shows(written.xmp, expected, media)
    assert_every_field_holds(written.xmp, expected, tags_list=True)


def test_png_xmp_chunk_keywords_reach_the_sidecar(publish, make, watch_root) -> None:
    media = watch_root / "graphic.png"
    shutil.copyfile(FIXTURES / "xmp-keywords.png", media)
    written = publish("graphic.png", results(make), media=make.IMAGE)
    assert_every_tool_shows(written.xmp, {("png-kw",), *OURS}, media)


TOOL_SIDECARS = {
    # fixture: (media name, naming, the user's keywords, has a TagsList)
    "bridge.xmp": ("bridge.nef", "stem", {("bridge-keyword",)}, False),
    "darktable.jpg.xmp": ("darktable.jpg", "name", {("Places", "Berlin", "Mitte"), ("darktable-kw",)}, False),
    "digikam.jpg.xmp": ("digikam.jpg", "name", {("Places", "Berlin", "Mitte"), ("digikam-kw",)}, True),
    "lightroom.xmp": ("lightroom.nef", "stem", {("Places", "Berlin", "Mitte"), ("lightroom-kw",)}, False),
}


@pytest.mark.parametrize("fixture", sorted(TOOL_SIDECARS))
def test_merging_into_a_tool_written_sidecar_every_tool_shows_theirs_and_ours(publish, make, watch_root,
                                                                             fixture: str) -> None:
    media_name, naming, theirs, tags_list = TOOL_SIDECARS[fixture]
    sidecar = watch_root / fixture
    shutil.copyfile(FIXTURES / fixture, sidecar)
    foreign_before = {key: value for key, value in make.exiftool_json(sidecar).items()
                      if not key.startswith(("XMP-dc:", "XMP-lr:", "XMP-digiKam:TagsList", "XMP-x:", "XMP-mwg-rs:"))}
    their_regions = set(exiv2_regions(exiv2_read(sidecar)))

    written = publish(media_name, results(make), media=make.IMAGE, settings=SidecarSettings(naming=naming))
    assert written.xmp == sidecar
    assert_every_tool_shows(sidecar, theirs | OURS)
    assert_every_field_holds(sidecar, theirs | OURS, tags_list=tags_list)
    after = make.exiftool_json(sidecar)
    assert {key: after.get(key) for key in foreign_before} == foreign_before  # their other data untouched
    assert set(exiv2_regions(exiv2_read(sidecar))) == their_regions | {"Jane Doe"}
    before = sidecar.read_bytes()
    publish(media_name, results(make), media=make.IMAGE, settings=SidecarSettings(naming=naming))
    assert sidecar.read_bytes() == before  # reprocessing adds nothing

    # Ours replaced on a re-run: theirs, in every field, exactly as before.
    publish(media_name, [], media=make.IMAGE, settings=SidecarSettings(naming=naming), job_id="job-2")
    assert_every_tool_shows(sidecar, theirs)
    assert_every_field_holds(sidecar, theirs, tags_list=tags_list)


def test_a_bridge_keyword_is_lost_in_darktable_and_immich_without_the_merge(make) -> None:
    """The problem the merge solves: before it, the tools disagree on the Bridge sidecar."""
    shown = shown_by_each_tool(FIXTURES / "bridge.xmp")
    assert shown["darktable"] == {("bridge-keyword",)}
    assert shown["Immich"] == set()


def _rewrite(tool: str, sidecar: Path, shown: set[KeywordPath], added: str, make) -> None:
    """What ``tool`` writes back after a person adds ``added`` to the keywords it shows."""
    paths = sorted(shown | {(added,)})
    leaves = [path[-1] for path in paths]
    every_level = sorted({part for path in paths for part in path})
    lr = [f"-XMP-lr:HierarchicalSubject={'|'.join(path)}" for path in paths]
    tags = [f"-XMP-digiKam:TagsList={'/'.join(path)}" for path in paths]
    if tool == "darktable":  # every level to dc:subject, the paths to lr:hierarchicalSubject
        args = ["-XMP-dc:Subject=", *(f"-XMP-dc:Subject={v}" for v in every_level), "-XMP-lr:HierarchicalSubject=", *lr]
    elif tool == "digiKam":  # TagsList, Windows' and Lightroom's paths, leaves to dc:subject
        args = ["-XMP-digiKam:TagsList=", *tags, "-XMP-microsoft:LastKeywordXMP=",
                *(f"-XMP-microsoft:LastKeywordXMP={'/'.join(path)}" for path in paths),
                "-XMP-lr:HierarchicalSubject=", *lr, "-XMP-dc:Subject=", *(f"-XMP-dc:Subject={v}" for v in leaves)]
    elif tool == "Immich":  # only TagsList
        args = ["-XMP-digiKam:TagsList=", *tags]
    else:  # Lightroom: leaves and their containing keywords to dc:subject
        args = ["-XMP-dc:Subject=", *(f"-XMP-dc:Subject={v}" for v in every_level), "-XMP-lr:HierarchicalSubject=", *lr]
    make.run_exiftool("-q", "-overwrite_original", *args, str(sidecar))


@pytest.mark.parametrize("tool", ["darktable", "digiKam", "Immich", "Lightroom"])
def test_a_tool_writing_after_us_then_a_rerun_every_tool_shows_the_same(publish, make, watch_root, tool: str) -> None:
    written = publish("edit.jpg", results(make), media=make.IMAGE)
    assert written.xmp is not None
    shown = shown_by_each_tool(written.xmp)[tool]
    assert shown == OURS
    _rewrite(tool, written.xmp, shown, f"{tool}-added", make)

    # The next results find no people and another object: Jane Doe and microphone go from every field, also from
    # what the tool copied, and "People", which darktable and Lightroom copied into dc:subject, goes with them.
    lectern = make.segment("lectern", module="object_scene_recognition", kind="object", media_type="image")
    publish("edit.jpg", [lectern], media=make.IMAGE, job_id="job-2")
    expected = {("Objects", "lectern"), (f"{tool}-added",)}
    assert_every_tool_shows(written.xmp, expected)
    fields = field_paths(exiv2_read(written.xmp))
    assert ("People",) not in fields["dc:subject"] and ("Jane Doe",) not in fields["dc:subject"]
    assert fields["digiKam:TagsList"] == (set() if tool in ("darktable", "Lightroom") else expected)


def test_video_every_tool_shows_the_same_keywords_people_and_markers(publish, make, watch_root) -> None:
    shutil.copyfile(Path(__file__).parents[1] / "fixtures" / "media" / "sample.mxf", watch_root / "clip.mxf")
    segments = [
        make.segment("Jane Doe", frame_start=0, frame_end=49, time_start=0.0, time_end=2.0),
        make.segment("microphone", module="object_scene_recognition", kind="object", time_start=2.0, time_end=4.0),
    ]
    written = publish("clip.mxf", segments, media=make.VIDEO_25)
    assert written.xmp == watch_root / "clip.xmp"
    assert_every_tool_shows(written.xmp, OURS, watch_root / "clip.mxf")
    xmp = exiv2_read(written.xmp)
    assert xmp["Xmp.iptcExt.PersonInImage"] == ["Jane Doe"]
    assert exiv2_tracks(xmp) == {"DeepVA": {"frameRate": "f25", "markers": [(0, 50, "Face: Jane Doe"),
                                                                           (50, 50, "Object: microphone")]}}
