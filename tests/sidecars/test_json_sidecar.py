"""The JSON sidecar: valid against its published schema, streamed, and written for failures too."""

from __future__ import annotations

import json
import math
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from deepva_watch.deepva.models import Box, Segment, SummaryItem
from deepva_watch.media import MediaFacts
from deepva_watch.sidecars import SidecarSettings, publish_failure, publish_results


class OnePass:
    """An iterator that refuses a second pass, like the paged detailed results."""

    def __init__(self, segments: Iterator[Segment]) -> None:
        self._segments = segments
        self.started = 0
        self.count = 0

    def __iter__(self) -> Iterator[Segment]:
        self.started += 1
        assert self.started == 1, "segments were iterated twice"
        for segment in self._segments:
            self.count += 1
            yield segment


def test_results_sidecar_validates_and_holds_every_field(publish, make, validate_sidecar, watch_root: Path) -> None:
    segments = [
        make.segment("Jane Doe", frame_start=10, frame_end=20, time_start=0.4, time_end=0.8,
                     box=Box(0.1, 0.2, 0.3, 0.4), meta={"label": "Jane Doe", "similarity": 0.8, "weird": math.nan,
                                                        "nested": {"inf": math.inf, "list": [1, "two", None]}}),
        make.segment("Ümlaut 🎉 \ud800", module="text_recognition", kind="text", confidence=None),
    ]
    written = publish("sub/clip.mxf", segments, media=make.VIDEO_2997,
                      items=[SummaryItem("face", "Jane Doe", "face_recognition")])
    assert written.json == watch_root / "sub" / "clip.mxf.deepva.json"
    raw = written.json.read_bytes()
    assert "Ümlaut 🎉".encode() in raw  # ensure_ascii=False
    assert b"NaN" not in raw and b"Infinity" not in raw
    document = validate_sidecar(written.json)
    assert document["schema"] == "deepva-watch/sidecar/1"
    assert document["asset"] == {
        "path": "sub/clip.mxf", "name": "clip.mxf", "size": 1234, "mtime": "2024-05-01T00:00:00Z",
        "hash": "blake2b-sampled:00ff", "asset_id": "asset-1",
        "media": {"kind": "video", "mime": "video/mp4", "width": 1920, "height": 1080, "frame_rate": "30000/1001",
                  "duration_seconds": 10.0, "start_timecode": "01:00:00;00"},
    }
    assert document["job"]["id"] == "job-1" and document["job"]["state"] == "completed"
    assert document["job"]["time_completed"] == "2024-05-06T07:05:00Z"
    assert document["job"]["modules"] == make.job().modules
    assert document["summary"] == [{"source": "storage://abc", "media_type": "video",
                                    "items": [{"type": "face", "label": "Jane Doe", "module": "face_recognition"}]}]
    first, second = document["detailed_results"]
    assert first["frame_start"] == 10 and first["time_end"] == 0.8
    assert first["detections"] == [{"type": "face_bbox", "frame_index": 10, "box": {"x": 0.1, "y": 0.2, "w": 0.3, "h": 0.4}}]
    assert first["meta"] == {"label": "Jane Doe", "similarity": 0.8, "weird": None,
                             "nested": {"inf": None, "list": [1, "two", None]}}
    assert second["label"] == "Ümlaut 🎉 \ufffd"
    assert document["processed_at"] == "2024-05-06T07:08:09Z"
    assert document["daemon_version"] == "0.1.0"


def test_failure_sidecar_validates_and_writes_no_xmp(make, validate_sidecar, watch_root: Path) -> None:
    media_path = watch_root / "bad.mov"
    media_path.write_bytes(b"x")
    failed_job = make.job(state="failed", errors=("decoder error",))
    written = publish_failure(media_path, watch_root=watch_root, settings=SidecarSettings(), job=failed_job,
                              errors=["gave up after 3 attempts"], media=make.VIDEO_25, provenance=make.provenance())
    assert written.xmp is None
    assert not list(watch_root.glob("*.xmp"))
    document = validate_sidecar(written.json)
    assert document["job"]["state"] == "failed"
    assert document["job"]["errors"] == ["decoder error", "gave up after 3 attempts"]
    assert document["detailed_results"] == []

    # Before any job existed and before the file could be probed.
    other = watch_root / "unknown.mxf"
    other.write_bytes(b"x")
    written = publish_failure(other, watch_root=watch_root, settings=SidecarSettings(), job=None,
                              errors=["upload rejected: 413"], media=None, provenance=make.provenance("none"))
    document = validate_sidecar(written.json)
    assert document["job"] == {"id": "none", "state": "failed", "modules": {}, "errors": ["upload rejected: 413"],
                               "time_created": None, "time_started": None, "time_completed": None, "progress": None}
    assert document["asset"]["media"] is None and document["summary"] == []


def test_stopped_job_keeps_its_state(make, validate_sidecar, watch_root: Path) -> None:
    media_path = watch_root / "s.jpg"
    media_path.write_bytes(b"x")
    written = publish_failure(media_path, watch_root=watch_root, settings=SidecarSettings(),
                              job=make.job(state="stopped"), errors=[], media=make.IMAGE, provenance=make.provenance())
    assert validate_sidecar(written.json)["job"]["state"] == "stopped"


def _many_segments(count: int) -> Iterator[Segment]:
    """Ten-segment-long appearances of 100 labels in time order, as OCR at 4 frames/s would produce."""
    for index in range(count):
        label = f"headline {index // 1000}"
        yield Segment(module="text_recognition", source="storage://abc", media_type="video", label=label, kind="text",
                      confidence=0.5 + (index % 50) / 100, frame_start=None, frame_end=None, time_start=index * 0.25,
                      time_end=index * 0.25 + 0.25, tc_start=None, tc_end=None,
                      detections=(), meta={"text": label, "confidence": 0.9, "line": index})


def test_hundred_thousand_segments_stream_in_bounded_memory(make, validate_sidecar, watch_root: Path) -> None:
    media_path = watch_root / "long.mxf"
    media_path.write_bytes(b"x")
    segments = OnePass(_many_segments(100_000))
    media = MediaFacts(kind="video", mime="application/mxf", frame_rate=make.VIDEO_25.frame_rate,
                       duration_seconds=25_000.0)
    tracemalloc.start()
    try:
        written = publish_results(media_path, watch_root=watch_root, settings=SidecarSettings(), job=make.job(),
                                  segments=segments, media=media, provenance=make.provenance())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert segments.started == 1 and segments.count == 100_000
    assert peak < 4 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB: memory grows with the number of segments"
    assert written.json.stat().st_size > 10 * 1024 * 1024  # the data really went through
    document = json.loads(written.json.read_bytes().decode("utf-8"))
    assert len(document["detailed_results"]) == 100_000
    assert [item["meta"]["line"] for item in document["detailed_results"]] == list(range(100_000))
    # Schema-check a sample: validating all 100,000 elements takes longer than the rest of this suite together.
    sample = watch_root / "sample.deepva.json"
    document_sample = {**document, "detailed_results": document["detailed_results"][:500] + document["detailed_results"][-500:]}
    sample.write_text(json.dumps(document_sample), encoding="utf-8")
    validate_sidecar(sample)
    assert document["detailed_results"][-1]["meta"]["line"] == 99_999
    tags = make.exiftool_json(written.xmp)
    (track,) = tags["XMP-xmpDM:Tracks"]
    assert len(track["Markers"]) == 100  # one per continuous appearance
    assert track["Markers"][1] == {"StartTime": 6250, "Duration": 6250, "Name": "Text: headline 1",
                                   "Comment": "text_recognition, confidence 0.99"}


def test_segments_are_consumed_once_even_without_a_json_sidecar(make, watch_root: Path) -> None:
    media_path = watch_root / "x.mxf"
    media_path.write_bytes(b"x")
    segments = OnePass(_many_segments(50))
    written = publish_results(media_path, watch_root=watch_root, settings=SidecarSettings(json=False), job=make.job(),
                              segments=segments, media=make.VIDEO_25, provenance=make.provenance())
    assert segments.started == 1 and segments.count == 50
    assert written.json is None and not list(watch_root.glob("*.json"))


def test_json_is_replaced_atomically_when_the_stream_breaks(make, watch_root: Path) -> None:
    media_path = watch_root / "y.mxf"
    media_path.write_bytes(b"x")
    publish_results(media_path, watch_root=watch_root, settings=SidecarSettings(), job=make.job(),
                    segments=iter([make.segment("A", time_start=0, time_end=1)]), media=make.VIDEO_25,
                    provenance=make.provenance())
    json_path = watch_root / "y.mxf.deepva.json"
    xmp_path = watch_root / "y.xmp"
    before_json, before_xmp = json_path.read_bytes(), xmp_path.read_bytes()

    def broken() -> Iterator[Segment]:
        yield make.segment("B", time_start=0, time_end=1)
        raise ConnectionError("page 2 failed")

    with pytest.raises(ConnectionError):
        publish_results(media_path, watch_root=watch_root, settings=SidecarSettings(), job=make.job(),
                        segments=broken(), media=make.VIDEO_25, provenance=make.provenance())
    assert json_path.read_bytes() == before_json and xmp_path.read_bytes() == before_xmp
    assert sorted(path.name for path in watch_root.iterdir()) == ["y.mxf", "y.mxf.deepva.json", "y.xmp"]
    json.loads(before_json)
