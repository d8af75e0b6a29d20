"""Synthetic results: shaped like DeepVA's, deterministic per content, and inside the video's real duration."""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from deepva_watch.emulator.results import PERSONS, timecode

from .conftest import PROCESSING_TIME, Api, SteppedClock, make_test_video

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "media"
ALL_MODULES = {
    "face_recognition": {"model": "celebrities"},
    "object_scene_recognition": {},
    "landmark_recognition": {},
    "text_recognition": {},
    "lower_third_recognition": {},
}
ITEM_TYPES = {
    "face_recognition": "face",
    "object_scene_recognition": "object",
    "landmark_recognition": "landmark",
    "text_recognition": "text",
    "lower_third_recognition": "lower_third",
}
SEGMENT_FIELDS = {
    "media_type", "frame_start", "frame_end", "time_start", "time_end", "tc_start", "tc_end", "source", "module",
    "meta", "detections", "thumbnail",
}  # fmt: skip


def _completed(
    api: Api, clock: SteppedClock, sources: list[str], modules: dict[str, Any] = ALL_MODULES
) -> dict[str, Any]:
    job = api.create_job(sources, modules)
    clock.advance(PROCESSING_TIME)
    done = api.get(f"/jobs/{job['id']}/").json()
    assert done["state"] == "completed"
    return done


def _segments(api: Api, job_id: str, limit: int = 1000) -> list[dict[str, Any]]:
    segments: list[dict[str, Any]] = []
    page = api.get(f"/jobs/{job_id}/detailed-results/", params={"limit": limit}).json()
    while True:
        segments += page["data"]
        if page["next"] is None:
            return segments
        page = api.session.get(page["next"]).json()


def _without_source(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{key: value for key, value in entry.items() if key != "source"} for entry in values]


@pytest.fixture(scope="session")
def generated_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four seconds at 30 fps, made on the spot so the test knows the facts exactly."""
    return make_test_video(tmp_path_factory.mktemp("video") / "four-seconds.mp4", size="160x90", rate=30, seconds=4)


def test_image_summary_has_items_for_every_known_module(api: Api, clock: SteppedClock) -> None:
    url = api.upload(b"\xff\xd8\xff\xe0" + b"summary" * 64, "a.jpg")["url"]
    done = _completed(api, clock, [url], {**ALL_MODULES, "speech_recognition": {}})
    (summary,) = done["result"]["summary"]
    assert summary["media_type"] == "image" and summary["info"] == {}
    by_module = defaultdict(list)
    for item in summary["items"]:
        assert set(item) == {"type", "label", "module"}
        assert item["type"] == ITEM_TYPES[item["module"]]
        by_module[item["module"]].append(item["label"])
    assert set(by_module) == set(ALL_MODULES)
    assert all(1 <= len(labels) <= 3 and len(set(labels)) == len(labels) for labels in by_module.values())
    assert set(by_module["face_recognition"]) <= set(PERSONS)


def test_image_detailed_results_have_one_segment_per_label_with_face_boxes(api: Api, clock: SteppedClock) -> None:
    url = api.upload(b"\x89PNG\r\n\x1a\n" + b"pixels" * 50, "a.png")["url"]
    done = _completed(api, clock, [url])
    segments = _segments(api, done["id"])
    items = done["result"]["summary"][0]["items"]
    assert [(s["module"], s["meta"]["label"]) for s in segments] == [(i["module"], i["label"]) for i in items]
    for segment in segments:
        assert set(segment) == SEGMENT_FIELDS
        assert (segment["frame_start"], segment["frame_end"], segment["time_start"], segment["time_end"]) == (
            0,
            0,
            0,
            0,
        )
        assert segment["tc_start"] == segment["tc_end"] == "00:00:00:00"
        assert segment["media_type"] == "image" and segment["source"] == url and segment["thumbnail"] is None
        assert segment["meta"]["type"] == ITEM_TYPES[segment["module"]]
        assert 0 < segment["meta"]["confidence"] <= 1
        if segment["module"] == "face_recognition":
            (box,) = segment["detections"]
            assert box["frame_index"] == 0 and box["type"] == "face_bbox"
            _assert_inside_frame(box["data"])
        else:
            assert segment["detections"] == []


def _assert_inside_frame(box: dict[str, float]) -> None:
    assert set(box) == {"x", "y", "w", "h"}
    assert box["w"] > 0 and box["h"] > 0
    assert 0 <= box["x"] and box["x"] + box["w"] <= 1
    assert 0 <= box["y"] and box["y"] + box["h"] <= 1


def test_same_bytes_give_the_same_results_and_different_bytes_do_not(api: Api, clock: SteppedClock) -> None:
    content = b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 40
    first = api.upload(content, "first.mp4")["url"]
    again = api.upload(content, "renamed.mov", folder="/elsewhere")["url"]
    other = api.upload(content + b"!", "other.mp4")["url"]
    done = _completed(api, clock, [first, again, other])
    summaries = done["result"]["summary"]
    assert _without_source(summaries[0:1]) == _without_source(summaries[1:2])
    assert _without_source(summaries[0:1]) != _without_source(summaries[2:3])
    segments = _segments(api, done["id"])
    per_source = [[s for s in segments if s["source"] == url] for url in (first, again, other)]
    assert _without_source(per_source[0]) == _without_source(per_source[1])
    assert _without_source(per_source[0]) != _without_source(per_source[2])


def test_results_of_a_module_do_not_depend_on_the_other_modules(api: Api, clock: SteppedClock) -> None:
    url = api.upload(b"\xff\xd8\xff" + b"face" * 100, "a.jpg")["url"]
    alone = _completed(api, clock, [url], {"face_recognition": {}})["result"]["summary"][0]["items"]
    together = _completed(api, clock, [url], ALL_MODULES)["result"]["summary"][0]["items"]
    assert alone == [item for item in together if item["module"] == "face_recognition"]


def test_url_sources_are_deterministic_per_url(api: Api, clock: SteppedClock) -> None:
    done = _completed(
        api, clock, ["https://example.test/a.jpg", "https://example.test/a.jpg", "https://example.test/b.jpg"]
    )
    first, same, other = done["result"]["summary"]
    assert first == same
    assert first["items"] != other["items"]


def test_detailed_results_pagination(api: Api, clock: SteppedClock) -> None:
    done = _completed(api, clock, [f"https://example.test/{index}.mp4" for index in range(4)])
    everything = api.get(f"/jobs/{done['id']}/detailed-results/").json()
    assert everything["limit"] == 100 and everything["offset"] == 0
    total = everything["total"]
    assert total > 5
    walked = _segments(api, done["id"], limit=3)
    assert len(walked) == total
    assert walked == _segments(api, done["id"], limit=1000)
    assert api.get(f"/jobs/{done['id']}/detailed-results/", params={"limit": 5000}).json()["limit"] == 1000
    assert api.get(f"/jobs/{done['id']}/detailed-results/", params={"offset": -3}).status_code == 400


def _video_cases() -> list[Any]:
    cases: list[Any] = [pytest.param("generated", 4.0, 30, id="generated-4s-30fps")]
    for name, duration, fps in (("pal50.mp4", 1.0, 50), ("ntsc.mp4", 1.001, 30), ("sample.mxf", 1.0, 25)):
        marks = [] if (FIXTURES / name).exists() else [pytest.mark.skip(reason=f"fixture {name} not present")]
        cases.append(pytest.param(name, duration, fps, id=name, marks=marks))
    return cases


@pytest.mark.parametrize(("video", "duration", "nominal_fps"), _video_cases())
def test_video_segments_stay_inside_the_real_duration_and_frame_rate(
    api: Api, clock: SteppedClock, request: pytest.FixtureRequest, video: str, duration: float, nominal_fps: int
) -> None:
    path = request.getfixturevalue("generated_video") if video == "generated" else FIXTURES / video
    url = api.upload(path.read_bytes(), path.name)["url"]
    done = _completed(api, clock, [url])
    assert done["media_type"] == "video"
    segments = _segments(api, done["id"])
    assert segments
    for segment in segments:
        assert segment["media_type"] == "video"
        assert 0 <= segment["time_start"] <= segment["time_end"] <= duration
        assert segment["frame_start"] <= segment["frame_end"] < round(duration * nominal_fps)
        assert segment["tc_start"] == timecode(segment["frame_start"], nominal_fps)
        assert segment["tc_end"] == timecode(segment["frame_end"], nominal_fps)
        for detection in segment["detections"]:
            assert segment["frame_start"] <= detection["frame_index"] <= segment["frame_end"]
            _assert_inside_frame(detection["data"])
    assert [s["time_start"] for s in segments] == sorted(s["time_start"] for s in segments)
    # Some segments of one label touch or overlap, so a consumer has to merge them.
    by_label = defaultdict(list)
    for segment in segments:
        by_label[(segment["module"], segment["meta"]["label"])].append(segment)
    for label_segments in by_label.values():
        assert len(label_segments) >= 2
        pairs = itertools.pairwise(label_segments)
        assert any(later["frame_start"] <= earlier["frame_end"] for earlier, later in pairs)


def test_unreadable_video_falls_back_to_ten_seconds(api: Api, clock: SteppedClock) -> None:
    url = api.upload(b"not really a video" * 1000, "noise.mp4")["url"]
    segments = _segments(api, _completed(api, clock, [url])["id"])
    assert max(s["time_end"] for s in segments) <= 10.0
    assert max(s["time_end"] for s in segments) > 1.0  # spread over the fallback duration, not squeezed into a second
    assert all(s["frame_end"] < 250 for s in segments)


@pytest.mark.parametrize(
    ("frame", "fps", "expected"),
    [(0, 25, "00:00:00:00"), (24, 25, "00:00:00:24"), (25, 25, "00:00:01:00"), (90_000, 25, "01:00:00:00"),
     (29, 29.97, "00:00:00:29"), (30, 29.97, "00:00:01:00"), (149, 50, "00:00:02:49")],
)  # fmt: skip
def test_timecode(frame: int, fps: float, expected: str) -> None:
    assert timecode(frame, fps) == expected
