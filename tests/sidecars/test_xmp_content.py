"""What ExifTool (the reference reader) sees in the XMP sidecars we write, checked against a strict XML parser too."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from fractions import Fraction
from pathlib import Path

import pytest

from deepva_watch.deepva.models import Box, SummaryItem
from deepva_watch.media import MediaFacts
from deepva_watch.sidecars import SidecarSettings


def read_xmp(path: Path, make) -> dict:
    ET.fromstring(path.read_bytes())  # strict parse first: ExifTool alone forgives malformed XML
    data = path.read_bytes()
    assert data.startswith('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'.encode())
    assert data.rstrip().endswith(b'<?xpacket end="w"?>')
    return make.exiftool_json(path)


def test_image_keywords_people_and_face_regions(publish, make) -> None:
    items = [
        SummaryItem("face", "Jane Doe", "face_recognition"),
        SummaryItem("face", "John Roe"),
        SummaryItem("object", "microphone", "object_scene_recognition"),
        SummaryItem("landmark", "Eiffel Tower"),
        SummaryItem("face", "unknown"),
    ]
    segments = [
        make.segment("Jane Doe", media_type="image", frame_start=0, frame_end=0, box=Box(0.25, 0.275, 0.1, 0.15)),
        make.segment("John Roe", media_type="image", frame_start=0, frame_end=0, box=Box(0.64, 0.32, 0.12, 0.16)),
        # Partly outside the frame: clipped to [0, 1] before the centre is computed.
        make.segment("Edge Case", media_type="image", frame_start=0, frame_end=0, box=Box(0.9, -0.1, 0.2, 0.3)),
        make.segment("Jane Doe", media_type="image", frame_start=0, frame_end=0),  # a repeat without a box
    ]
    written = publish("IMG_1.jpg", segments, media=make.IMAGE, items=items)
    assert written.xmp is not None and written.xmp.name == "IMG_1.jpg.xmp"
    tags = read_xmp(written.xmp, make)

    assert tags["XMP-dc:Subject"] == ["Jane Doe", "John Roe", "microphone", "Eiffel Tower", "unknown", "Edge Case"]
    assert tags["XMP-lr:HierarchicalSubject"] == [
        "People|Jane Doe", "People|John Roe", "Objects|microphone", "Landmarks|Eiffel Tower", "People|unknown",
        "People|Edge Case",
    ]
    assert tags["XMP-iptcExt:PersonInImage"] == ["Jane Doe", "John Roe", "Edge Case"]
    regions = tags["XMP-mwg-rs:RegionInfo"]
    assert regions["AppliedToDimensions"] == {"W": 4000, "H": 3000, "Unit": "pixel"}
    by_name = {region["Name"]: region for region in regions["RegionList"]}
    assert set(by_name) == {"Jane Doe", "John Roe", "Edge Case"}
    expected_centres = {"Jane Doe": (0.3, 0.35, 0.1, 0.15), "John Roe": (0.7, 0.4, 0.12, 0.16),
                        "Edge Case": (0.95, 0.1, 0.1, 0.2)}
    for name, (x, y, w, h) in expected_centres.items():
        area = by_name[name]["Area"]
        assert by_name[name]["Type"] == "Face"
        assert area["Unit"] == "normalized"
        assert area["X"] == pytest.approx(x, abs=1e-6)
        assert area["Y"] == pytest.approx(y, abs=1e-6)
        assert area["W"] == pytest.approx(w, abs=1e-6)
        assert area["H"] == pytest.approx(h, abs=1e-6)
    assert "XMP-photoshop:SidecarForExtension" not in tags  # {name}.xmp names its file already
    assert "XMP-xmpDM:Tracks" not in tags


def test_image_without_known_size_keeps_areas_but_omits_dimensions(publish, make) -> None:
    media = MediaFacts(kind="image", mime="image/png")
    segments = [make.segment("Jane Doe", media_type="image", box=Box(0.25, 0.275, 0.1, 0.15))]
    written = publish("a.png", segments, media=media)
    regions = read_xmp(written.xmp, make)["XMP-mwg-rs:RegionInfo"]
    assert "AppliedToDimensions" not in regions
    assert regions["RegionList"][0]["Area"]["X"] == pytest.approx(0.3, abs=1e-6)


def test_provenance_tags(publish, make) -> None:
    written = publish("IMG_2.jpg", [make.segment("Jane Doe", media_type="image")], media=make.IMAGE)
    tags = read_xmp(written.xmp, make)
    assert tags["XMP-dvw:JobId"] == "job-1"
    assert tags["XMP-dvw:AssetId"] == "asset-1"
    assert tags["XMP-dvw:SourceHash"] == "blake2b-sampled:00ff"
    assert tags["XMP-dvw:SourceName"] == "IMG_2.jpg"
    assert tags["XMP-dvw:DaemonVersion"] == "0.1.0"
    assert tags["XMP-dvw:ProcessedAt"].startswith("2024:05:06 07:08:09")
    import json

    assert json.loads(tags["XMP-dvw:Modules"]) == make.job().modules


def test_video_markers_at_25_fps(publish, make) -> None:
    segments = [
        # Frames given: frame_end is the last frame, so 0..49 is 50 frames.
        make.segment("Jane Doe", frame_start=0, frame_end=49, confidence=0.91, box=Box(0.41, 0.22, 0.12, 0.2)),
        make.segment("Jane Doe", frame_start=50, frame_end=99, confidence=0.97),  # touches: merged
        make.segment("Jane Doe", frame_start=101, frame_end=110, confidence=0.5),  # one-frame gap: merged
        make.segment("Jane Doe", frame_start=200, frame_end=224, confidence=None),  # a new appearance
        make.segment("microphone", module="object_scene_recognition", kind="object", time_start=2.0, time_end=4.0,
                     confidence=None),
        make.segment("BREAKING", module="text_recognition", kind="text", time_start=1.0, time_end=1.02),
    ]
    written = publish("clip.mxf", segments, media=make.VIDEO_25)
    assert written.xmp is not None and written.xmp.name == "clip.xmp"
    tags = read_xmp(written.xmp, make)
    (track,) = tags["XMP-xmpDM:Tracks"]
    assert track["TrackName"] == "DeepVA"
    assert track["TrackType"] == "Comment"
    assert track["FrameRate"] == "f25"
    markers = [(m["StartTime"], m["Duration"], m["Name"], m.get("Comment")) for m in track["Markers"]]
    assert markers == [
        (0, 111, "Face: Jane Doe", "face_recognition, confidence 0.97"),
        (25, 1, "Text: BREAKING", "text_recognition, confidence 0.9"),  # 0.02 s is less than a frame: at least 1
        (50, 50, "Object: microphone", "object_scene_recognition"),
        (200, 25, "Face: Jane Doe", "face_recognition"),
    ]
    assert track["Markers"][0]["CuePointParams"] == [{"Key": "ai:bbox", "Value": "0.41,0.22,0.12,0.2"}]
    assert tags["XMP-xmpDM:Duration"] == {"Value": 1500, "Scale": pytest.approx(0.04)}
    assert tags["XMP-xmpDM:StartTimecode"] == {"TimeFormat": "25 fps", "TimeValue": "10:00:00:00"}
    assert tags["XMP-photoshop:SidecarForExtension"] == "MXF"
    assert tags["XMP-dc:Subject"] == ["Jane Doe", "microphone", "BREAKING"]
    assert tags["XMP-lr:HierarchicalSubject"] == ["People|Jane Doe", "Objects|microphone", "Text|BREAKING"]


def test_video_markers_at_2997_fps(publish, make) -> None:
    segments = [
        make.segment("Jane Doe", time_start=2.0, time_end=4.0, confidence=0.97),
        make.segment("Lower Third Text", module="lower_third_recognition", kind="lower_third", time_start=0.5,
                     time_end=1.5),
        make.segment("age 30-39", module="face_attributes", kind="face", time_start=0, time_end=1),
    ]
    written = publish("news.mp4", segments, media=make.VIDEO_2997)
    tags = read_xmp(written.xmp, make)
    (track,) = tags["XMP-xmpDM:Tracks"]
    assert track["FrameRate"] == "f30000s1001"
    markers = {m["Name"]: (m["StartTime"], m["Duration"]) for m in track["Markers"]}
    # round(2.0 * 29.97) = round(59.94) = 60; round(4.0 * 29.97) = round(119.88) = 120.
    assert markers["Face: Jane Doe"] == (60, 60)
    assert markers["Lower third: Lower Third Text"] == (15, 30)  # 14.985 → 15, 44.955 → 45
    assert markers["face_attributes: age 30-39"] == (0, 30)
    assert [m["StartTime"] for m in track["Markers"]] == sorted(m["StartTime"] for m in track["Markers"])
    assert tags["XMP-lr:HierarchicalSubject"] == [
        "People|Jane Doe", "Lower thirds|Lower Third Text", "DeepVA|face_attributes|age 30-39"]
    assert tags["XMP-iptcExt:PersonInImage"] == ["Jane Doe"]
    assert tags["XMP-xmpDM:Duration"]["Value"] == 300  # 10 s at 29.97
    assert tags["XMP-xmpDM:Duration"]["Scale"] == pytest.approx(1001 / 30000)
    assert tags["XMP-xmpDM:StartTimecode"] == {"TimeFormat": "29.97 fps (drop)", "TimeValue": "01:00:00;00"}


def test_video_with_unknown_frame_rate_counts_milliseconds(publish, make) -> None:
    media = MediaFacts(kind="video", mime="video/mpeg")
    written = publish("old.mpg", [make.segment("Jane Doe", time_start=1.5, time_end=2.0)], media=media)
    tags = read_xmp(written.xmp, make)
    (track,) = tags["XMP-xmpDM:Tracks"]
    assert track["FrameRate"] == "f1000"
    assert [(m["StartTime"], m["Duration"]) for m in track["Markers"]] == [(1500, 500)]
    assert "XMP-xmpDM:Duration" not in tags and "XMP-xmpDM:StartTimecode" not in tags


@pytest.mark.parametrize(
    ("rate", "timecode", "expected"),
    [
        (Fraction(24000, 1001), "00:59:50:00", "23.976 fps"),
        (Fraction(50), "10:00:00:00", "50 fps"),
        (Fraction(30000, 1001), "00:00:00:00", "29.97 fps (non-drop)"),
        (Fraction(60000, 1001), "00:00:00;00", "59.94 fps (drop)"),
    ],
)
def test_start_timecode_formats(publish, make, rate: Fraction, timecode: str, expected: str) -> None:
    media = MediaFacts(kind="video", mime="video/quicktime", frame_rate=rate, duration_seconds=1.0,
                       start_timecode=timecode)
    written = publish("tc.mov", [], media=media)
    assert read_xmp(written.xmp, make)["XMP-xmpDM:StartTimecode"] == {"TimeFormat": expected, "TimeValue": timecode}


HOSTILE_LABELS = [
    "Tom & Jerry <live> \"quoted\" 'single'",
    "Party 🎉 time 👩‍👩‍👧",
    "مرحبا بالعالم",
    "שלום עולם",
    "]]><!-- not a comment --><x:evil/>",
    "People|Nested|Pipes",
]


def test_untrusted_label_text_round_trips_through_exiftool(publish, make) -> None:
    long_label = "long " + "x" * 10_240
    labels = [*HOSTILE_LABELS, long_label]
    segments = [make.segment(label, media_type="image", box=Box(0.1, 0.1, 0.1, 0.1)) for label in labels]
    segments.append(make.segment("bell\x07 and\x00nul\x1b[31m\rcr\ud800 \ufffe", media_type="image"))
    written = publish("hostile.jpg", segments, media=make.IMAGE)
    tags = read_xmp(written.xmp, make)
    cleaned = "bell andnul[31mcr "
    # As a keyword, a '|' becomes a look-alike that separates nothing (see sidecars.keywords).
    assert tags["XMP-dc:Subject"] == [label.replace("|", "\u00a6") for label in labels] + [cleaned.strip()]
    assert tags["XMP-iptcExt:PersonInImage"] == [*labels, cleaned]
    assert "People|People\u00a6Nested\u00a6Pipes" in tags["XMP-lr:HierarchicalSubject"]
    assert "People|]]><!-- not a comment --><x:evil/>" in tags["XMP-lr:HierarchicalSubject"]
    assert "People/]]><!-- not a comment --><x:evil\u2215>" in tags["XMP-digiKam:TagsList"]
    assert {region["Name"] for region in tags["XMP-mwg-rs:RegionInfo"]["RegionList"]} == set(labels)


def test_labels_never_change_where_files_go(publish, make, watch_root: Path) -> None:
    labels = ["../../etc/passwd", "/abs/olute", "..", "a/b\\c", "\x00"]
    written = publish("sub/pic.jpg", [make.segment(label, media_type="image") for label in labels], media=make.IMAGE)
    assert written.xmp == watch_root / "sub" / "pic.jpg.xmp"
    assert written.json == watch_root / "sub" / "pic.jpg.deepva.json"
    files = sorted(path.relative_to(watch_root).as_posix() for path in watch_root.rglob("*"))
    assert files == ["sub", "sub/pic.jpg", "sub/pic.jpg.deepva.json", "sub/pic.jpg.xmp"]
    assert "../../etc/passwd" in read_xmp(written.xmp, make)["XMP-dc:Subject"]


def test_output_dir_mirrors_the_watched_tree(tmp_path: Path, publish, make, watch_root: Path) -> None:
    out = tmp_path / "out"
    settings = SidecarSettings(output_dir=out)
    written = publish("a/b/clip.mov", [make.segment("Jane Doe", time_start=0, time_end=1)], media=make.VIDEO_25,
                      settings=settings)
    assert written.xmp == out / "a" / "b" / "clip.xmp"
    assert written.json == out / "a" / "b" / "clip.mov.deepva.json"
    assert not list((watch_root / "a" / "b").glob("*.xmp"))
    read_xmp(written.xmp, make)


def test_switches_write_only_what_is_asked(publish, make) -> None:
    only_json = publish("j.jpg", [make.segment("A", media_type="image")], settings=SidecarSettings(xmp=False))
    assert only_json.xmp is None and only_json.json is not None and only_json.json.exists()
    only_xmp = publish("x.jpg", [make.segment("A", media_type="image")], settings=SidecarSettings(json=False))
    assert only_xmp.json is None and only_xmp.xmp is not None
    assert make.exiftool_json(only_xmp.xmp)["XMP-dc:Subject"] == ["A"]
    named = publish("n.mxf", [], media=make.VIDEO_25, settings=SidecarSettings(naming="name"))
    assert named.xmp is not None and named.xmp.name == "n.mxf.xmp"
    stemmed = publish("s.jpg", [], settings=SidecarSettings(naming="stem"))
    assert stemmed.xmp is not None and stemmed.xmp.name == "s.xmp"
    assert make.exiftool_json(stemmed.xmp)["XMP-photoshop:SidecarForExtension"] == "JPG"
