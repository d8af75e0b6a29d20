"""``video_processing_ratio``: jobs timed by their media, seconds per image and about real time per video minute."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from deepva_watch.emulator import Emulator, EmulatorConfig
from deepva_watch.emulator.cli import build_parser, main
from deepva_watch.emulator.timeline import processing_time_for

from .conftest import API_KEY, Api, SteppedClock, make_test_video

IMAGE_SECONDS = 3.0
JPEG = b"\xff\xd8\xff\xe0" + b"still" * 200


@pytest.fixture(scope="session")
def minute_video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """Sixty seconds at 2 fps, 64×36: a video minute in a few kilobytes."""
    path = tmp_path_factory.mktemp("video") / "one-minute.mp4"
    return make_test_video(path, size="64x36", rate=2, seconds=60).read_bytes()


def _api(clock: SteppedClock, tmp_path: Path, ratio: float) -> Iterator[Api]:
    config = EmulatorConfig(
        data_dir=tmp_path / "data",
        api_key=API_KEY,
        processing_time=IMAGE_SECONDS,
        video_processing_ratio=ratio,
        clock=clock,
    )
    with Emulator(config) as emulator, requests.Session() as session:
        session.headers["Authorization"] = f"Key {API_KEY}"
        yield Api(emulator, session)


@pytest.fixture
def real_time(clock: SteppedClock, tmp_path: Path) -> Iterator[Api]:
    yield from _api(clock, tmp_path, 1.0)


@pytest.fixture
def ratio_off(clock: SteppedClock, tmp_path: Path) -> Iterator[Api]:
    yield from _api(clock, tmp_path, 0.0)


def _state(api: Api, job_id: str) -> str:
    return str(api.get(f"/jobs/{job_id}/").json()["state"])


def test_a_minute_of_video_at_ratio_one_takes_a_minute(
    real_time: Api, clock: SteppedClock, minute_video: bytes
) -> None:
    job = real_time.create_job([real_time.upload(minute_video, "clip.mp4")["url"]])
    clock.advance(59.9)
    assert _state(real_time, job["id"]) == "processing"
    clock.advance(0.1)
    done = real_time.get(f"/jobs/{job['id']}/").json()
    assert done["state"] == "completed"
    assert done["duration"] == pytest.approx(60.0)


def test_an_image_still_takes_the_processing_time(real_time: Api, clock: SteppedClock) -> None:
    job = real_time.create_job([real_time.upload(JPEG, "photo.jpg")["url"]])
    clock.advance(IMAGE_SECONDS - 0.1)
    assert _state(real_time, job["id"]) == "processing"
    clock.advance(0.1)
    assert _state(real_time, job["id"]) == "completed"


def test_a_job_over_several_sources_takes_their_sum(real_time: Api, clock: SteppedClock, minute_video: bytes) -> None:
    video = real_time.upload(minute_video, "clip.mp4")["url"]
    image = real_time.upload(JPEG, "photo.jpg")["url"]
    job = real_time.create_job([video, image, video])
    clock.advance(2 * 60 + IMAGE_SECONDS - 0.1)
    assert _state(real_time, job["id"]) == "processing"
    clock.advance(0.1)
    assert _state(real_time, job["id"]) == "completed"


def test_ratio_off_keeps_one_processing_time_per_job(ratio_off: Api, clock: SteppedClock, minute_video: bytes) -> None:
    job = ratio_off.create_job([ratio_off.upload(minute_video, "clip.mp4")["url"]])
    clock.advance(IMAGE_SECONDS)
    assert _state(ratio_off, job["id"]) == "completed"


def test_processing_time_for() -> None:
    media = [("video", 60.0), ("image", 0.0), ("video", 30.0)]
    assert processing_time_for(media, 2.0, 0.0) == 2.0
    assert processing_time_for(media, 2.0, 0.5) == pytest.approx(30 + 2 + 15)
    assert processing_time_for([], 2.0, 1.0) == 0.0


def test_the_ratio_on_the_command_line() -> None:
    assert build_parser().parse_args([]).video_processing_ratio == 0.0
    assert build_parser().parse_args(["--video-processing-ratio", "1"]).video_processing_ratio == 1.0
    with pytest.raises(ValueError, match="video_processing_ratio"):
        EmulatorConfig(video_processing_ratio=-1)
    with pytest.raises(SystemExit) as stopped:
        main(["--video-processing-ratio", "-0.5"])
    assert stopped.value.code == 2
