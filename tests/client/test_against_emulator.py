"""The client against the project's emulator: two independent readings of the API contract must agree."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import deepva_watch.emulator as emulator_module
from deepva_watch.deepva import DeepVAClient, NotAuthenticated, NotFound, RetryPolicy


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[object]:
    config = emulator_module.EmulatorConfig(host="127.0.0.1", port=0, data_dir=tmp_path / "emulator", api_key="emu-key-1234",
                                            processing_time=0)
    running = emulator_module.Emulator(config).start()
    yield running
    running.stop()


@pytest.fixture
def client(emulator) -> Iterator[DeepVAClient]:
    with DeepVAClient(emulator.base_url, "emu-key-1234", retry=RetryPolicy(attempts=1)) as connected:
        yield connected


def test_upload_create_job_and_read_results(client, tmp_path):
    media = tmp_path / "frame.jpg"
    media.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 64 + b"\xff\xd9")
    progress: list[int] = []

    stored = client.upload(media, on_progress=progress.append)
    assert stored.url.startswith("storage://")
    assert progress[-1] == media.stat().st_size
    assert client.get_storage(stored.id).url == stored.url

    job = client.create_job([stored.url], {"face_recognition": {"model": "celebrities"}}, tag="asset-42")
    assert job.tag == "asset-42"
    finished = client.get_job(job.id)
    assert finished.state == "completed"

    segments = list(client.iter_detailed_results(job.id, page_size=2))
    assert all(segment.source == stored.url for segment in segments)
    assert [found.id for found in client.find_jobs_by_tag("asset-42")] == [job.id]
    assert client.find_jobs_by_tag("asset-4") == []

    client.delete_job(job.id)
    with pytest.raises(NotFound):
        client.get_job(job.id)
    client.delete_storage(stored.id)


def test_wrong_key_is_not_authenticated(emulator):
    with DeepVAClient(emulator.base_url, "wrong-key-5678") as client, pytest.raises(NotAuthenticated) as caught:
        client.list_jobs()

    assert "wrong-key-5678" not in str(caught.value)
