"""Fixtures for the sidecar tests: typed DeepVA values built directly, ExifTool and exiv2 as the independent readers."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from deepva_watch.deepva.models import Box, Detection, Job, Segment, SourceSummary, SummaryItem
from deepva_watch.media import MediaFacts
from deepva_watch.sidecars import Provenance, SidecarSettings, WrittenSidecars, load_schema, publish_results
from tests.conftest import require_program

PROCESSED_AT = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
MODULES = {"face_recognition": {"model": "celebrities", "max_distance": 0.7}, "object_scene_recognition": {}}


def exiftool_json(path: Path) -> dict[str, Any]:
    """What ExifTool reads from an XMP file: ``exiftool -j -struct -G1 -XMP:all FILE``, first (only) entry."""
    exiftool = require_program("exiftool")
    completed = subprocess.run(
        [exiftool, "-j", "-struct", "-G1", "-XMP:all", str(path)], capture_output=True, check=True, timeout=60
    )
    result: list[dict[str, Any]] = json.loads(completed.stdout.decode("utf-8"))
    return result[0]


def run_exiftool(*args: str) -> None:
    subprocess.run([require_program("exiftool"), *args], capture_output=True, check=True, timeout=60)


def segment(
    label: str,
    *,
    module: str = "face_recognition",
    kind: str = "face",
    media_type: str = "video",
    confidence: float | None = 0.9,
    frame_start: int | None = None,
    frame_end: int | None = None,
    time_start: float | None = None,
    time_end: float | None = None,
    box: Box | None = None,
    meta: dict[str, Any] | None = None,
) -> Segment:
    detections = (Detection(type="face_bbox", frame_index=frame_start, box=box),) if box else ()
    return Segment(
        module=module,
        source="storage://abc",
        media_type=media_type,
        label=label,
        kind=kind,
        confidence=confidence,
        frame_start=frame_start,
        frame_end=frame_end,
        time_start=time_start,
        time_end=time_end,
        tc_start=None,
        tc_end=None,
        detections=detections,
        meta=meta if meta is not None else {"label": label},
    )


def job(items: Iterable[SummaryItem] = (), *, state: str = "completed", job_id: str = "job-1", errors: tuple[str, ...] = ()) -> Job:
    return Job(
        id=job_id,
        tag="asset-1",
        state=state,
        progress=1.0,
        sources=("storage://abc",),
        modules=MODULES,
        summary=(SourceSummary(source="storage://abc", media_type="video", items=tuple(items)),),
        errors=errors,
        time_created=datetime(2024, 5, 6, 7, 0, 0, tzinfo=UTC),
        time_started=datetime(2024, 5, 6, 7, 0, 1, tzinfo=UTC),
        time_completed=datetime(2024, 5, 6, 7, 5, 0, tzinfo=UTC),
    )


def provenance(job_id: str = "job-1") -> Provenance:
    return Provenance(
        job_id=job_id,
        modules=MODULES,
        processed_at=PROCESSED_AT,
        daemon_version="0.1.0",
        source_hash="blake2b-sampled:00ff",
        source_size=1234,
        source_mtime=datetime(2024, 5, 1, tzinfo=UTC),
        asset_id="asset-1",
    )


IMAGE = MediaFacts(kind="image", mime="image/jpeg", width=4000, height=3000)
VIDEO_25 = MediaFacts(kind="video", mime="application/mxf", width=1920, height=1080, frame_rate=Fraction(25),
                      duration_seconds=60.0, start_timecode="10:00:00:00")
VIDEO_2997 = MediaFacts(kind="video", mime="video/mp4", width=1920, height=1080, frame_rate=Fraction(30000, 1001),
                        duration_seconds=10.0, start_timecode="01:00:00;00")


Publish = Callable[..., WrittenSidecars]


@pytest.fixture
def watch_root(tmp_path: Path) -> Path:
    root = tmp_path / "watch"
    root.mkdir()
    return root


@pytest.fixture
def publish(watch_root: Path) -> Publish:
    """``publish(name, segments, media=..., items=..., settings=...)``: creates the media file and publishes."""

    def run(
        name: str,
        segments: Iterable[Segment] = (),
        *,
        media: MediaFacts = IMAGE,
        items: Iterable[SummaryItem] = (),
        settings: SidecarSettings | None = None,
        job_id: str = "job-1",
    ) -> WrittenSidecars:
        media_path = watch_root / name
        media_path.parent.mkdir(parents=True, exist_ok=True)
        if not media_path.exists():
            media_path.write_bytes(b"media")
        return publish_results(
            media_path,
            watch_root=watch_root,
            settings=settings or SidecarSettings(),
            job=job(items, job_id=job_id),
            segments=iter(list(segments)),
            media=media,
            provenance=provenance(job_id),
        )

    return run


@pytest.fixture(scope="session")
def validate_sidecar() -> Callable[[Path], dict[str, Any]]:
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)

    def validate(path: Path) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(path.read_bytes().decode("utf-8"))
        validator.validate(document)
        return document

    return validate


class Factory:
    """The helpers above, handed to tests as a fixture: test modules cannot reliably import a conftest by name."""

    segment = staticmethod(segment)
    job = staticmethod(job)
    provenance = staticmethod(provenance)
    exiftool_json = staticmethod(exiftool_json)
    run_exiftool = staticmethod(run_exiftool)
    IMAGE = IMAGE
    VIDEO_25 = VIDEO_25
    VIDEO_2997 = VIDEO_2997
    PROCESSED_AT = PROCESSED_AT


@pytest.fixture
def make() -> type[Factory]:
    return Factory


@pytest.fixture
def exiftool() -> Callable[[Path], dict[str, Any]]:
    return exiftool_json
