"""URL sources: fetched from loopback and analysed from their bytes; a fetch that fails fails the job, not the request."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from deepva_watch.emulator import Emulator, EmulatorConfig

from .conftest import API_KEY, PROCESSING_TIME, Api, LoopbackSite, SteppedClock, session_with_key

JPEG = b"\xff\xd8\xff\xe0" + b"published photo" * 64


def test_loopback_url_is_fetched_and_analysed_from_its_bytes(api: Api, clock: SteppedClock, site: LoopbackSite) -> None:
    (site.root / "photo.bin").write_bytes(JPEG)  # no image suffix: only the fetched bytes can say "image"
    url = f"{site.url}/photo.bin"
    job = api.create_job([url])
    assert job["media_type"] == "image"
    uploaded = api.create_job([api.upload(JPEG, "same.jpg")["url"]])
    clock.advance(PROCESSING_TIME)
    fetched_items = api.get(f"/jobs/{job['id']}/").json()["result"]["summary"][0]["items"]
    assert fetched_items
    assert fetched_items == api.get(f"/jobs/{uploaded['id']}/").json()["result"]["summary"][0]["items"]
    assert not list((api.emulator.data_dir / "fetched").iterdir())  # nothing left behind


def test_localhost_name_counts_as_loopback(api: Api, site: LoopbackSite) -> None:
    (site.root / "photo.bin").write_bytes(JPEG)
    url = site.url.replace("127.0.0.1", "localhost") + "/photo.bin"
    assert api.create_job([url])["media_type"] == "image"


def test_missing_url_is_accepted_then_the_job_fails_with_the_reason(
    api: Api, clock: SteppedClock, site: LoopbackSite
) -> None:
    url = f"{site.url}/gone.mp4"
    job = api.create_job([url])
    assert job["state"] == "waiting" and job["errors"] == []
    clock.advance(PROCESSING_TIME)
    failed = api.get(f"/jobs/{job['id']}/").json()
    assert failed["state"] == "failed"
    assert failed["errors"] == [f"could not fetch source {url}: HTTP 404"]
    assert failed["result"]["summary"] == []
    assert api.get(f"/jobs/{job['id']}/detailed-results/").json()["total"] == 0


def test_refused_connection_fails_the_job(api: Api, clock: SteppedClock) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    url = f"http://127.0.0.1:{port}/clip.mp4"
    job = api.create_job([url])
    clock.advance(PROCESSING_TIME)
    assert api.get(f"/jobs/{job['id']}/").json()["errors"] == [f"could not fetch source {url}: connection refused"]


@pytest.fixture
def small_limit(clock: SteppedClock, tmp_path: Path) -> Iterator[Api]:
    config = EmulatorConfig(
        data_dir=tmp_path / "small", api_key=API_KEY, processing_time=PROCESSING_TIME, clock=clock, fetch_max_bytes=100
    )
    with Emulator(config) as emulator, session_with_key() as session:
        yield Api(emulator, session)


def test_source_above_the_size_limit_fails_the_job(small_limit: Api, clock: SteppedClock, site: LoopbackSite) -> None:
    (site.root / "big.jpg").write_bytes(JPEG)
    job = small_limit.create_job([f"{site.url}/big.jpg"])
    clock.advance(PROCESSING_TIME)
    done = small_limit.get(f"/jobs/{job['id']}/").json()
    assert done["state"] == "failed"
    assert "larger than the 100 bytes" in done["errors"][0]
    assert not list((small_limit.emulator.data_dir / "fetched").iterdir())


def test_other_hosts_are_never_fetched(api: Api, clock: SteppedClock) -> None:
    """``example.test`` does not resolve; the job still completes because the URL is never opened."""
    job = api.create_job(["https://media.example.test/clip.mp4"])
    clock.advance(PROCESSING_TIME)
    assert api.get(f"/jobs/{job['id']}/").json()["state"] == "completed"
