"""Signed webhooks: delivered for the listed events only, HMAC-SHA512 over the exact body, increasing nonces, no retries."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deepva_watch.emulator import Emulator, EmulatorConfig

from .conftest import API_KEY, PROCESSING_TIME, Api, LoopbackSite, SteppedClock, session_with_key, wait_until

SECRET = "webhook-secret-7"
JPEG = b"\xff\xd8\xff\xe0" + b"hooked" * 64


def _config(clock: SteppedClock, tmp_path: Path, **extra: Any) -> EmulatorConfig:
    settings: dict[str, Any] = {
        "data_dir": tmp_path / "hooks",
        "api_key": API_KEY,
        "processing_time": PROCESSING_TIME,
        "clock": clock,
        "webhook_secret": SECRET,
        "webhook_interval": 0.01,
        **extra,
    }
    return EmulatorConfig(**settings)


@pytest.fixture
def hooked(clock: SteppedClock, tmp_path: Path) -> Iterator[Api]:
    with Emulator(_config(clock, tmp_path)) as emulator, session_with_key() as session:
        yield Api(emulator, session)


def _job_with_webhook(api: Api, site: LoopbackSite, events: list[str], modules: dict[str, Any] | None = None) -> str:
    source = api.upload(JPEG, "photo.jpg")["url"]
    body = {
        "sources": [source],
        "modules": modules or {"face_recognition": {}},
        "webhook": {"events": events, "callback": f"{site.url}/hook?folder=news"},
    }
    response = api.post("/jobs/", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_started_and_completed_are_delivered_signed_with_increasing_nonces(
    hooked: Api, clock: SteppedClock, site: LoopbackSite
) -> None:
    events = ["job.face_recognition.on_started", "job.face_recognition.on_completed"]
    job_id = _job_with_webhook(hooked, site, events)
    clock.advance(PROCESSING_TIME / 2)
    wait_until(lambda: len(site.received) == 1)
    clock.advance(PROCESSING_TIME)
    wait_until(lambda: len(site.received) == 2)

    started, completed = site.received
    for delivery in (started, completed):
        assert delivery.path == "/hook?folder=news"
        assert delivery.headers["content-type"] == "application/json"
        expected = hmac.new(SECRET.encode(), delivery.body, hashlib.sha512).hexdigest()
        assert hmac.compare_digest(delivery.headers["x-deepva-signature"], expected)
    assert int(completed.headers["x-deepva-nonce"]) > int(started.headers["x-deepva-nonce"])

    first = json.loads(started.body)
    assert first["event"] == "job.face_recognition.on_started"
    assert first["data"]["job"]["state"] == "processing"
    final = json.loads(completed.body)
    assert set(final) == {"event", "timestamp", "data"}
    assert final["event"] == "job.face_recognition.on_completed"
    assert isinstance(final["timestamp"], float)
    assert final["data"]["job"] == hooked.get(f"/jobs/{job_id}/").json()
    # The receiver records a delivery before answering it; the emulator counts it once the answer is in.
    wait_until(lambda: hooked.emulator.stats()["webhooks_delivered"] == 2)
    assert hooked.emulator.stats()["webhooks_failed"] == 0


def test_only_listed_events_of_the_jobs_modules_are_delivered(
    hooked: Api, clock: SteppedClock, site: LoopbackSite
) -> None:
    events = ["job.face_recognition.on_completed", "job.landmark_recognition.on_completed"]
    _job_with_webhook(hooked, site, events)  # landmark_recognition does not run in this job
    clock.advance(PROCESSING_TIME * 2)
    wait_until(lambda: hooked.emulator.stats()["webhooks_delivered"] == 1)
    hooked.emulator.set_faults(job_failure_every=1)
    _job_with_webhook(hooked, site, ["job.face_recognition.on_completed"])  # will fail: nothing listed for that
    clock.advance(PROCESSING_TIME * 2)
    wait_until(lambda: hooked.emulator.stats()["jobs_by_state"].get("failed") == 1)
    _job_with_webhook(hooked, site, ["job.face_recognition.on_failed"])
    clock.advance(PROCESSING_TIME * 2)
    wait_until(lambda: len(site.received) == 2)
    assert [json.loads(item.body)["event"] for item in site.received] == [
        "job.face_recognition.on_completed",
        "job.face_recognition.on_failed",
    ]
    failed_job = json.loads(site.received[1].body)["data"]["job"]
    assert failed_job["state"] == "failed" and failed_job["errors"] == ["emulated processing failure"]


def test_failed_delivery_is_counted_and_not_retried(hooked: Api, clock: SteppedClock, site: LoopbackSite) -> None:
    site.post_status = 500
    first = _job_with_webhook(hooked, site, ["job.face_recognition.on_completed"])
    clock.advance(PROCESSING_TIME)
    wait_until(lambda: hooked.emulator.stats()["webhooks_failed"] == 1)
    site.post_status = 200
    # A later job's delivery arriving proves the ticker went round again after the failure; deliveries are in order.
    second = _job_with_webhook(hooked, site, ["job.face_recognition.on_completed"])
    clock.advance(PROCESSING_TIME)
    wait_until(lambda: len(site.received) == 2)
    delivered_for = [json.loads(item.body)["data"]["job"]["id"] for item in site.received]
    assert delivered_for == [first, second]
    wait_until(lambda: hooked.emulator.stats()["webhooks_delivered"] == 1)
    assert hooked.emulator.stats()["webhooks_failed"] == 1


def test_unreachable_receiver_counts_as_failed(hooked: Api, clock: SteppedClock, tmp_path: Path) -> None:
    import socket

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    body = {
        "sources": [hooked.upload(JPEG)["url"]],
        "modules": {"face_recognition": {}},
        "webhook": {"events": ["job.face_recognition.on_completed"], "callback": f"http://127.0.0.1:{port}/hook"},
    }
    assert hooked.post("/jobs/", json=body).status_code == 201
    clock.advance(PROCESSING_TIME)
    wait_until(lambda: hooked.emulator.stats()["webhooks_failed"] == 1)


def test_non_loopback_callbacks_are_skipped(hooked: Api, clock: SteppedClock) -> None:
    body = {
        "sources": [hooked.upload(JPEG)["url"]],
        "modules": {"face_recognition": {}},
        "webhook": {"events": ["job.face_recognition.on_completed"], "callback": "https://hooks.example.test/x"},
    }
    assert hooked.post("/jobs/", json=body).status_code == 201
    clock.advance(PROCESSING_TIME)
    wait_until(lambda: hooked.emulator.stats()["webhooks_skipped"] == 1)
    assert hooked.emulator.stats()["webhooks_delivered"] == 0


def test_header_names_are_configurable(clock: SteppedClock, tmp_path: Path, site: LoopbackSite) -> None:
    config = _config(clock, tmp_path, webhook_signature_header="X-Sig", webhook_nonce_header="X-Once")
    with Emulator(config) as emulator, session_with_key() as session:
        api = Api(emulator, session)
        _job_with_webhook(api, site, ["job.face_recognition.on_completed"])
        clock.advance(PROCESSING_TIME)
        wait_until(lambda: len(site.received) == 1)
    headers = site.received[0].headers
    assert headers["x-sig"] == hmac.new(SECRET.encode(), site.received[0].body, hashlib.sha512).hexdigest()
    assert headers["x-once"].isdigit()
    assert "x-deepva-signature" not in headers


def test_without_a_secret_nothing_is_delivered(api: Api, clock: SteppedClock, site: LoopbackSite) -> None:
    _job_with_webhook(api, site, ["job.face_recognition.on_completed"])
    clock.advance(PROCESSING_TIME)
    assert api.get("/jobs/").json()["data"][0]["state"] == "completed"
    assert site.received == []


@pytest.mark.parametrize(
    ("webhook", "complaint"),
    [
        ({"events": ["job.face_recognition.on_completed"]}, "webhook.callback"),
        ({"events": ["job.face_recognition.on_completed"], "callback": "ftp://x/y"}, "webhook.callback"),
        ({"events": [], "callback": "http://127.0.0.1:1/x"}, "webhook.events"),
        ({"events": ["job.face_recognition.on_done"], "callback": "http://127.0.0.1:1/x"}, "unknown event"),
    ],
)
def test_malformed_webhook_is_400(api: Api, webhook: dict[str, Any], complaint: str) -> None:
    body = {"sources": ["https://example.test/a.jpg"], "modules": {"face_recognition": {}}, "webhook": webhook}
    response = api.post("/jobs/", json=body)
    assert response.status_code == 400
    assert complaint in response.json()["detail"]
