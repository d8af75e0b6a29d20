"""Fault injection, each kind observed with a plain ``requests`` call, plus the control endpoints that steer it."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from deepva_watch.emulator import Emulator, EmulatorConfig

from .conftest import API_KEY, PROCESSING_TIME, Api, SteppedClock, session_with_key, wait_until

JPEG = b"\xff\xd8\xff\xe0" + b"fault photo" * 64
JOB_BODY = {"sources": ["https://example.test/a.jpg"], "modules": {"face_recognition": {}}, "tag": "asset-1"}


def _control(emulator: Emulator, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{emulator.origin}/_emulator/{path}", timeout=5, **kwargs)


# -- the control endpoint -----------------------------------------------------------------------------------------


def test_faults_are_set_read_merged_and_cleared_over_http(emulator: Emulator) -> None:
    assert _control(emulator, "GET", "faults").json()["error_rate"] == {}
    response = _control(emulator, "POST", "faults", json={"error_rate": 0.5, "seed": 3})
    assert response.status_code == 200
    assert response.json()["error_rate"] == {"*": 0.5}
    merged = _control(emulator, "POST", "faults", json={"retry_after": 7}).json()
    assert (merged["error_rate"], merged["retry_after"], merged["seed"]) == ({"*": 0.5}, 7, 3)
    assert _control(emulator, "GET", "faults").json() == merged
    assert _control(emulator, "DELETE", "faults").json()["error_rate"] == {}
    assert emulator.faults.error_rate == {}


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({"eror_rate": 1}, "unknown field"),
        ({"error_rate": 2}, "between 0 and 1"),
        ({"error_statuses": [404]}, "5xx"),
        ({"latency": [2, 1]}, "min <= max"),
        ({"down": True, "down_mode": "refuse"}, "down_for"),
        ([1], "JSON object"),
    ],
)
def test_bad_fault_plans_are_400(emulator: Emulator, body: Any, complaint: str) -> None:
    response = _control(emulator, "POST", "faults", json=body)
    assert response.status_code == 400
    assert complaint in response.json()["detail"]


def test_faults_never_touch_the_control_endpoints(emulator: Emulator) -> None:
    emulator.set_faults(error_rate=1, latency=5, down=True)
    assert _control(emulator, "GET", "stats").status_code == 200
    assert _control(emulator, "GET", "faults").status_code == 200


def test_config_accepts_a_json_like_plan(clock: SteppedClock) -> None:
    config = EmulatorConfig(api_key=API_KEY, clock=clock, faults={"error_rate": {"GET /api/v1/jobs": 1}})
    with Emulator(config) as emulator, session_with_key() as session:
        assert session.get(emulator.base_url + "/jobs/").status_code in (500, 502, 503)


# -- request faults -----------------------------------------------------------------------------------------------


def test_proxy_error_has_an_html_body_and_only_hits_its_route(api: Api) -> None:
    api.emulator.set_faults(error_rate={"GET /api/v1/jobs/": 1}, error_statuses=[502])
    response = api.get("/jobs/")
    assert response.status_code == 502
    assert response.headers["Content-Type"] == "text/html"
    assert "<h1>502 Bad Gateway</h1>" in response.text
    assert api.get("/storage/").status_code == 200
    assert api.emulator.stats()["faults_injected"] == {"error": 1}


def test_proxy_error_on_upload_reads_the_body_and_stores_nothing(api: Api) -> None:
    api.emulator.set_faults(error_rate={"POST /api/v1/storage": 1})
    response = api.post("/storage/", files={"file": ("a.jpg", JPEG * 100)})
    assert response.status_code in (500, 502, 503) and "<html>" in response.text
    assert api.emulator.stats()["storage_objects"] == 0


def test_error_after_handling_keeps_the_side_effect(api: Api) -> None:
    api.emulator.set_faults(error_after_rate={"POST /api/v1/jobs/": 1}, error_statuses=[503])
    response = api.post("/jobs/", json=JOB_BODY)
    assert response.status_code == 503 and "<h1>503 Service Unavailable</h1>" in response.text
    assert api.get("/jobs/", params={"tag": "asset-1"}).json()["total"] == 1


def test_rate_limit_says_when_to_come_back(api: Api) -> None:
    api.emulator.set_faults(rate_limit_rate=1, retry_after=4)
    response = api.get("/jobs/")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "4"
    assert "throttled" in response.json()["detail"]


def test_latency_is_added(api: Api) -> None:
    api.emulator.set_faults(latency={"GET /api/v1/jobs/": 0.3})
    started = time.monotonic()
    assert api.get("/jobs/").status_code == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    api.get("/storage/")
    assert time.monotonic() - started < 0.3
    assert api.emulator.stats()["faults_injected"] == {"latency": 1}


def test_held_answer_outlasts_the_client_timeout_but_the_job_exists(api: Api) -> None:
    api.emulator.set_faults(hang_rate={"POST /api/v1/jobs/": 1}, hang_seconds=5)
    with pytest.raises(requests.exceptions.ReadTimeout):
        api.post("/jobs/", json=JOB_BODY, timeout=0.3)
    api.emulator.clear_faults()
    wait_until(lambda: api.emulator.stats()["jobs_created"] == 1)


def test_upload_reset_mid_body_raises_connection_error(api: Api) -> None:
    api.emulator.set_faults(reset_rate={"POST /api/v1/storage/": 1}, reset_after_bytes=1024)
    with pytest.raises(requests.exceptions.ConnectionError):
        api.session.post(api.url("/storage/"), files={"file": ("big.mp4", b"\0" * (8 << 20))}, timeout=10)
    stats = api.emulator.stats()
    assert stats["faults_injected"] == {"reset": 1}
    assert stats["storage_objects"] == 0
    assert not list((api.emulator.data_dir / "incoming").iterdir())


@pytest.mark.parametrize("kind", ["truncate", "malformed"])
def test_spoiled_json_after_the_job_was_created(api: Api, kind: str) -> None:
    api.emulator.set_faults(**{f"{kind}_rate": {"POST /api/v1/jobs/": 1}})
    response = api.post("/jobs/", json=JOB_BODY)
    assert response.status_code == 201
    assert response.headers["Content-Type"] == "application/json"
    with pytest.raises(requests.exceptions.JSONDecodeError):
        response.json()
    if kind == "malformed":
        assert response.content == b'{"id": '
    else:
        assert response.content.startswith(b'{"id": ')
    assert api.get("/jobs/", params={"tag": "asset-1"}).json()["total"] == 1


def test_the_same_seed_gives_the_same_faults(api: Api) -> None:
    def run() -> list[int]:
        api.emulator.set_faults(error_rate=0.5, seed=11)
        return [api.get("/jobs/").status_code for _ in range(20)]

    first = run()
    assert 200 in first and any(status >= 500 for status in first)
    assert run() == first


# -- jobs and uploads -----------------------------------------------------------------------------------------------


def test_every_nth_job_fails_with_errors(api: Api, clock: SteppedClock) -> None:
    api.emulator.set_faults(job_failure_every=2, job_failure_errors=["decoder crashed"])
    ids = [api.post("/jobs/", json=JOB_BODY).json()["id"] for _ in range(4)]
    clock.advance(PROCESSING_TIME)
    jobs = [api.get(f"/jobs/{job_id}/").json() for job_id in ids]
    assert [job["state"] for job in jobs] == ["completed", "failed", "completed", "failed"]
    assert jobs[1]["errors"] == ["decoder crashed"] and jobs[0]["errors"] == []
    stats = api.emulator.stats()
    assert stats["faults_injected"] == {"job_failed": 2}
    assert stats["jobs_by_state"] == {"completed": 2, "failed": 2}
    assert stats["completed_jobs_by_tag"] == {"asset-1": 2}


def test_job_failure_rate(api: Api, clock: SteppedClock) -> None:
    api.emulator.set_faults(job_failure_rate=1)
    job_id = api.post("/jobs/", json=JOB_BODY).json()["id"]
    clock.advance(PROCESSING_TIME)
    assert api.get(f"/jobs/{job_id}/").json()["state"] == "failed"


def test_stuck_job_processes_forever(api: Api, clock: SteppedClock) -> None:
    api.emulator.set_faults(stuck_job_rate=1)
    job_id = api.post("/jobs/", json=JOB_BODY).json()["id"]
    clock.advance(PROCESSING_TIME * 1000)
    job = api.get(f"/jobs/{job_id}/").json()
    assert job["state"] == "processing" and job["progress"] < 1 and job["time_completed"] is None


def test_completed_jobs_by_tag_remembers_deleted_jobs(api: Api, clock: SteppedClock) -> None:
    first = api.post("/jobs/", json=JOB_BODY).json()["id"]
    clock.advance(PROCESSING_TIME)
    api.delete(f"/jobs/{first}/")
    api.post("/jobs/", json=JOB_BODY)
    clock.advance(PROCESSING_TIME)
    assert api.emulator.stats()["completed_jobs_by_tag"] == {"asset-1": 2}


def test_failed_upload_is_reported_and_cannot_be_used(api: Api) -> None:
    api.emulator.set_faults(upload_failed_rate=1)
    stored = api.upload(JPEG, "photo.jpg")
    assert (stored["uploaded"], stored["upload_failed"]) == (False, True)
    assert api.get(f"/storage/{stored['id']}/").json()["upload_failed"] is True
    response = api.post("/jobs/", json={"sources": [stored["url"]], "modules": {"face_recognition": {}}})
    assert response.status_code == 400
    assert "failed to upload" in response.json()["detail"]


# -- the key and outages -------------------------------------------------------------------------------------------


def test_rotated_key_refuses_the_old_one(api: Api) -> None:
    response = _control(api.emulator, "POST", "rotate-key", json={"api_key": "fresh-key"})
    assert response.status_code == 200
    assert "fresh-key" not in response.text
    assert api.get("/jobs/").status_code == 401
    assert api.get("/jobs/", headers={"Authorization": "Key fresh-key"}).status_code == 200
    assert _control(api.emulator, "POST", "rotate-key", json={"api_key": ""}).status_code == 400


def test_down_resets_connections_until_switched_back(api: Api) -> None:
    assert api.get("/jobs/").status_code == 200  # a kept-alive connection exists now
    assert _control(api.emulator, "POST", "faults", json={"down": True}).status_code == 200
    with pytest.raises(requests.exceptions.ConnectionError):
        api.get("/jobs/")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(api.url("/jobs/"), timeout=5)
    assert _control(api.emulator, "POST", "faults", json={"down": False}).status_code == 200
    assert api.get("/jobs/").status_code == 200
    assert api.emulator.stats()["faults_injected"]["down"] == 2


def test_refusing_outage_from_python(api: Api) -> None:
    api.emulator.set_faults(down=True, down_mode="refuse")
    with pytest.raises(requests.exceptions.ConnectionError, match="[Rr]efused"):
        requests.get(api.url("/jobs/"), timeout=5)
    api.emulator.clear_faults()
    assert api.get("/jobs/").status_code == 200


def test_refusing_outage_over_http_ends_by_itself(api: Api) -> None:
    body = {"down": True, "down_mode": "refuse", "down_for": 0.5}
    assert _control(api.emulator, "POST", "faults", json=body).status_code == 200
    wait_until(lambda: _refused(api))
    wait_until(lambda: not _refused(api))
    assert api.get("/jobs/").status_code == 200
    assert api.emulator.faults.down is False


def _refused(api: Api) -> bool:
    try:
        requests.get(api.url("/jobs/"), headers={"Authorization": f"Key {API_KEY}"}, timeout=5)
    except requests.exceptions.ConnectionError:
        return True
    return False
