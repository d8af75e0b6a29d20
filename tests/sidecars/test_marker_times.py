"""Markers agree with time: frame numbers counted at another rate than the file's lose to the times, and say so once."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from tests.sidecars.tools import exiv2_read, exiv2_tracks


def markers_read_by_both(path, make) -> list[tuple[int, int, str]]:
    """The DeepVA track's markers as exiv2 reads them, checked against ExifTool's reading."""
    ET.fromstring(path.read_bytes())
    track = exiv2_tracks(exiv2_read(path))["DeepVA"]
    (exiftool_track,) = make.exiftool_json(path)["XMP-xmpDM:Tracks"]
    assert [(m["StartTime"], m["Duration"], m["Name"]) for m in exiftool_track["Markers"]] == track["markers"]
    assert exiftool_track["FrameRate"] == track["frameRate"]
    return list(track["markers"])


def test_frames_counted_at_25_per_second_in_a_2997_clip_lose_to_the_times(publish, make) -> None:
    segments = [
        # 2.0-4.0 s is frames 60-120 at 29.97; the frame numbers count at 25 per second.
        make.segment("Jane Doe", frame_start=50, frame_end=99, time_start=2.0, time_end=4.0),
        # One frame by its frame numbers, half a second by its times.
        make.segment("microphone", module="object_scene_recognition", kind="object", frame_start=25, frame_end=25,
                     time_start=1.0, time_end=1.5),
        # Agrees at 25 and at 29.97 alike: nothing to tell.
        make.segment("LIVE", module="text_recognition", kind="text", frame_start=0, frame_end=0, time_start=0.0,
                     time_end=0.02),
    ]
    written = publish("news.mp4", segments, media=make.VIDEO_2997)
    assert written.xmp is not None and written.json is not None
    assert markers_read_by_both(written.xmp, make) == [
        (0, 1, "Text: LIVE"),
        (30, 15, "Object: microphone"),  # 1.0 s → 29.97 → 30; 1.5 s → 44.955 → 45
        (60, 60, "Face: Jane Doe"),
    ]
    assert exiv2_tracks(exiv2_read(written.xmp))["DeepVA"]["frameRate"] == "f30000s1001"
    (note,) = [note for note in written.notes if "frame numbers" in note]  # once per job, not per result
    assert "2 detailed result(s)" in note and "29.97 fps" in note and "markers follow the times" in note

    document = json.loads(written.json.read_bytes())
    sent = [(r["label"], r["frame_start"], r["frame_end"], r["time_start"], r["time_end"])
            for r in document["detailed_results"]]
    assert sent == [("Jane Doe", 50, 99, 2.0, 4.0), ("microphone", 25, 25, 1.0, 1.5), ("LIVE", 0, 0, 0.0, 0.02)]


def test_frames_that_agree_with_the_times_are_used_and_never_shorten_a_marker(publish, make) -> None:
    segments = [
        # Frame 51 against 2.0 s = frame 50: within one frame, so the frame numbers place it.
        make.segment("Jane Doe", frame_start=51, frame_end=99, time_start=2.0, time_end=4.0),
        # Ends a frame before its time_end says: within one frame, but the marker keeps the 1 s the times give.
        make.segment("microphone", module="object_scene_recognition", kind="object", frame_start=250, frame_end=273,
                     time_start=10.0, time_end=11.0),
    ]
    written = publish("clip.mxf", segments, media=make.VIDEO_25)
    assert markers_read_by_both(written.xmp, make) == [(51, 50, "Face: Jane Doe"), (250, 25, "Object: microphone")]
    assert not [note for note in written.notes if "frame numbers" in note]


def test_with_an_unknown_rate_only_times_count(publish, make) -> None:
    from deepva_watch.media import MediaFacts

    media = MediaFacts(kind="video", mime="video/mpeg")
    written = publish("old.mpg", [make.segment("Jane Doe", frame_start=7, frame_end=9, time_start=1.5, time_end=2.0)],
                      media=media)
    assert markers_read_by_both(written.xmp, make) == [(1500, 500, "Face: Jane Doe")]
    assert written.notes == ()
