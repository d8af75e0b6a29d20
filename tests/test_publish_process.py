"""Sidecars written by the publishing process: the same files as in-process, errors that arrive as themselves, API
exchanges reported back, a new key followed, and a process that dies replaced without losing a step."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import threading
from datetime import datetime, timezone
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from deepva_watch.config import ApiConfig
from deepva_watch.deepva import DeepVAClient, NotAuthenticated, NotFound
from deepva_watch.sidecars import Provenance, SidecarSettings
from deepva_watch.stages.publish import write_sidecars
from deepva_watch.stages.publish_process import PublisherGone, PublisherProcess, SidecarJob
from tests.conftest import API_KEY, FIXTURES, wait_for

MODULES = {"face_recognition": {"model": "celebrities"}, "object_scene_recognition": {}}


@pytest.fixture
def finished_job(tmp_path, make_emulator):
    """A media file in a watched folder and the completed DeepVA job for it."""
    emulator = make_emulator(processing_time=0)
    watch = tmp_path / "watch"
    watch.mkdir()
    media = watch / "clip.jpg"
    shutil.copy(FIXTURES / "sample.jpg", media)
    with DeepVAClient(emulator.base_url, API_KEY) as client:
        stored = client.upload(media, filename="clip.jpg")
        job = client.create_job([stored.url], MODULES, tag="dvw-test")
        wait_for(lambda: client.get_job(job.id).state == "completed", 10, "the job to complete")
    return emulator, media, job.id


def _sidecar_job(media: Path, job_id: str, **changes) -> SidecarJob:
    stamp = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
    values = dict(
        media_path=media, job=None, job_id=job_id, completed=True, errors=(), mime="image/jpeg", kind="image",
        watch_root=media.parent, settings=SidecarSettings(),
        provenance=Provenance(job_id=job_id, modules=MODULES, processed_at=stamp, daemon_version="test",
                              source_hash="blake2b-sampled:0", source_size=media.stat().st_size, source_mtime=stamp,
                              asset_id="dvw-test"),
    )
    values.update(changes)
    return SidecarJob(**values)


@contextmanager
def _publisher(emulator, key=lambda: API_KEY, calls=None) -> Iterator[PublisherProcess]:
    """A publishing process for one test, closed (its child ended) however the test ends."""
    api = ApiConfig(url=emulator.base_url, retries=1, read_timeout_seconds=10)
    publisher = PublisherProcess(api, key, threads=2, log_level="warning",
                                 on_call=None if calls is None else lambda *call: calls.append(call))
    try:
        yield publisher
    finally:
        publisher.close()


def test_the_process_writes_what_the_daemon_would_write_itself(finished_job, tmp_path):
    emulator, media, job_id = finished_job
    calls: list[tuple] = []
    with _publisher(emulator, calls=calls) as publisher:
        written = publisher.submit(_sidecar_job(media, job_id)).result()
    from_process = {path.name: path.read_bytes() for path in (written.xmp, written.json)}

    for path in (written.xmp, written.json):
        path.unlink()
    with DeepVAClient(emulator.base_url, API_KEY) as client:
        here = write_sidecars(client, _sidecar_job(media, job_id))
    assert {path.name: path.read_bytes() for path in (here.xmp, here.json)} == from_process
    assert json.loads(from_process["clip.jpg.deepva.json"])["job"]["id"] == job_id
    # every exchange the child had reaches the daemon's observer (metrics, health, the refused-key gate)
    assert ("GET", "/jobs/{id}/", 200) in calls
    assert ("GET", "/jobs/{id}/detailed-results/", 200) in calls


def test_writes_handed_over_together_each_get_their_own_answer(finished_job):
    """A publishing worker hands over its whole claim before it collects the answers: more writes than the child has
    threads, one of them failing, each answer reaching the write it belongs to."""
    emulator, media, job_id = finished_job
    copies = [media.with_name(f"take{number}.jpg") for number in range(5)]
    for copy in copies:
        shutil.copy(media, copy)
    calls: list[tuple] = []
    with _publisher(emulator, calls=calls) as publisher:
        pending = [publisher.submit(_sidecar_job(copy, job_id)) for copy in copies]
        failing = publisher.submit(_sidecar_job(media, "no-such-job"))
        written = [write.result() for write in pending]
        with pytest.raises(NotFound):
            failing.result()
    assert [(item.xmp, item.json) for item in written] == [
        (copy.with_name(copy.name + ".xmp"), copy.with_name(copy.name + ".deepva.json")) for copy in copies]
    assert [json.loads(item.json.read_bytes())["asset"]["name"] for item in written] == [copy.name for copy in copies]
    assert calls.count(("GET", "/jobs/{id}/detailed-results/", 200)) == 5


def test_an_error_in_the_process_arrives_as_itself(finished_job):
    emulator, media, job_id = finished_job
    with _publisher(emulator) as publisher:
        with pytest.raises(NotFound) as raised:
            publisher.submit(_sidecar_job(media, "no-such-job")).result()
        assert raised.value.status == 404 and raised.value.method == "GET"
        # sidecars to go under a path that is a file: the OSError arrives with its errno and file name
        with pytest.raises(OSError) as raised_os:
            publisher.submit(_sidecar_job(media, job_id, settings=SidecarSettings(output_dir=media))).result()
        assert raised_os.value.errno in (errno.ENOTDIR, errno.EEXIST) and raised_os.value.filename


def test_the_process_uses_the_key_the_daemon_uses_now(finished_job):
    emulator, media, job_id = finished_job
    key = [API_KEY]
    calls: list[tuple] = []
    with _publisher(emulator, key=lambda: key[0], calls=calls) as publisher:
        publisher.submit(_sidecar_job(media, job_id)).result()
        emulator.rotate_key("rotated-key-0123456789")
        with pytest.raises(NotAuthenticated):
            publisher.submit(_sidecar_job(media, job_id)).result()
        assert calls[-1][2] == 401, "the daemon hears the 401 and pauses API work"
        key[0] = "rotated-key-0123456789"
        assert publisher.submit(_sidecar_job(media, job_id)).result().json is not None


def test_a_killed_process_fails_its_step_as_gone_and_the_next_step_starts_a_new_one(finished_job):
    emulator, media, job_id = finished_job
    with _publisher(emulator) as publisher:
        publisher.submit(_sidecar_job(media, job_id)).result()
        first = publisher.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: publisher.pid is None, 10, "the daemon to notice the process ended")
        written = publisher.submit(_sidecar_job(media, job_id)).result()
        assert written.xmp is not None and publisher.pid not in (None, first)


def test_a_step_in_flight_when_the_process_dies_ends_as_gone(finished_job):
    emulator, media, job_id = finished_job
    emulator.set_faults(latency={"GET /api/v1/jobs/{id}/detailed-results/": 5})  # killed inside that request
    outcome: list[BaseException] = []
    with _publisher(emulator) as publisher:

        def step() -> None:
            try:
                publisher.submit(_sidecar_job(media, job_id)).result()
            except BaseException as error:  # noqa: BLE001 - what the step ended with is the point
                outcome.append(error)

        thread = threading.Thread(target=step)
        thread.start()
        wait_for(lambda: publisher.pid is not None, 10, "the process to start")
        wait_for(lambda: emulator.stats()["faults_injected"].get("latency", 0) >= 1, 10,
                 "the child's request to be held by the emulator")
        os.kill(publisher.pid, signal.SIGKILL)
        thread.join(10)
    emulator.clear_faults()
    assert not thread.is_alive(), "the waiting step must not hang"
    assert len(outcome) == 1 and isinstance(outcome[0], PublisherGone)


def test_new_api_settings_start_a_new_process_and_the_old_one_ends_cleanly(finished_job):
    emulator, media, job_id = finished_job
    with _publisher(emulator) as publisher:
        publisher.submit(_sidecar_job(media, job_id)).result()
        old_child = publisher._child
        publisher.use_api(ApiConfig(url=emulator.base_url, retries=1, read_timeout_seconds=30))
        publisher.submit(_sidecar_job(media, job_id)).result()
        assert publisher._child is not old_child
        old_child.process.join(10)
        assert old_child.process.exitcode == 0
